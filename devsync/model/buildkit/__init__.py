"""BuildKit's cache, predicted: the cache keys dockerd 20.10's embedded BuildKit (v0.8) gives
each vertex of a Dockerfile build, and which of them an imported cache lets it reuse.
"""

from __future__ import annotations

from devsync.model.buildkit._steps import StepRef, parse_step_name

__all__ = ["StepRef", "parse_step_name"]
