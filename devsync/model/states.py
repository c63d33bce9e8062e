"""The one spelling of an image's state and role, for every layer.

States are what a verdict says of an image: `in-sync` (the local image is what this checkout
builds), `stale` (something it is built from changed), `missing` (not built or pulled here),
`unknown` (devsync could not tell: engine, registry or git unreachable). Earlier devsync
versions wrote `in_sync` into the state file; `normalise` reads every old spelling.
"""

from __future__ import annotations

IN_SYNC = "in-sync"
STALE = "stale"
MISSING = "missing"
UNKNOWN = "unknown"
STATES = (IN_SYNC, STALE, MISSING, UNKNOWN)

ROLE_APP = "app"
ROLE_BASE = "base"
ROLES = (ROLE_APP, ROLE_BASE)

_OLD_SPELLINGS = {"in_sync": IN_SYNC, "insync": IN_SYNC, "error": UNKNOWN}


def normalise(state: str | None) -> str:
    """A state as any devsync version wrote it, in today's spelling (`unknown` if unknown)."""
    if not state:
        return UNKNOWN
    text = state.strip().lower()
    text = _OLD_SPELLINGS.get(text, text)
    return text if text in STATES else UNKNOWN
