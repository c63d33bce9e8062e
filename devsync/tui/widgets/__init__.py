"""Widgets of the devsync TUI."""

from __future__ import annotations
