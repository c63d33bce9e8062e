"""Turning repository-controlled strings into safe Rich `Text`.

Commit messages, author names, file names, Dockerfile lines and build output come from a
repository that may be hostile. They are never parsed as markup, and control characters and
escape sequences are stripped so nothing can move the cursor or restyle the terminal.
"""

from __future__ import annotations

from rich.text import Text

from devsync.prompt.sanitize import clean


def plain(value: object, style: str = "") -> Text:
    """`value` as literal text on one line (tabs and newlines become spaces)."""
    text = clean(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")
    return Text(text, style=style, no_wrap=False, end="")


def cell(value: object, style: str = "") -> Text:
    """`value` for a table cell: one line, cut with an ellipsis rather than wrapped."""
    text = plain(value, style)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def lines(value: object, style: str = "") -> Text:
    """`value` as literal text keeping its line breaks."""
    text = clean(value).replace("\t", "    ").replace("\r", "")
    return Text(text, style=style, end="")


def join(*parts: Text | str | tuple[str, str]) -> Text:
    """Concatenate pieces; plain `str` pieces are our own words (still never markup)."""
    out = Text(end="")
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append(part[0], style=part[1])
        else:
            out.append(part)
    return out


def short(value: str, width: int) -> str:
    """`value` cut to `width` characters with an ellipsis."""
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"
