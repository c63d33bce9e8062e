"""Colours for state badges and step marks, taken from the current theme so they read well in
both the light and the dark theme."""

from __future__ import annotations

from typing import Any

from textual.app import App

from devsync.ops.verdict import IN_SYNC, MISSING, STALE, UNKNOWN

_LABELS = {IN_SYNC: "IN SYNC", STALE: "STALE", MISSING: "MISSING", UNKNOWN: "UNKNOWN"}
_ROLES = {IN_SYNC: "success", STALE: "warning", MISSING: "error", UNKNOWN: "foreground"}


def _colour(app: App[Any], name: str, fallback: str) -> str:
    value = app.theme_variables.get(name, fallback)
    # Rich styles take #rrggbb; theme variables may carry an alpha channel
    return value[:7] if value.startswith("#") else fallback


def badge_style(app: App[Any], state: str) -> str:
    role = _ROLES.get(state, "foreground")
    if role == "foreground":
        return f"bold {_colour(app, 'foreground-muted', '#888888')}"
    fg = _colour(app, f"text-{role}", "#ffffff")
    return f"bold {fg} on {_colour(app, f'{role}-muted', '#444444')}"


def badge_label(state: str) -> str:
    return f" {_LABELS.get(state, state.upper())} "


def style(app: App[Any], role: str) -> str:
    """Foreground style for a role: success, warning, error, muted, accent, primary."""
    if role == "muted":
        return _colour(app, "foreground-muted", "#888888")
    return _colour(app, f"text-{role}", _colour(app, role, "#ffffff"))
