"""The devsync terminal UI (Textual): a thin view over the core.

Only modules in this package import Textual. The UI reaches the core through one object,
`devsync.tui.services.Services`, so tests can drive every screen with canned data.
"""

from __future__ import annotations
