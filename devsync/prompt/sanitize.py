"""The one terminal sanitizer: every string that comes from a repository (file names, commit
messages, author names, Dockerfile lines, build output) passes through here before any view
prints it, so a hostile clone cannot move the cursor, retitle the terminal or hide text.

Whole escape sequences go, not just their ESC (a stripped "\\x1b]0;title\\x07" must not leave
"]0;title" behind); then C0/C1 control characters and the invisible or bidi-override
characters that could disguise what is shown. Standard library only and no `re`: the shell
prompt check imports this on every prompt.
"""

_ONE_LINE_LIMIT = 300
# Whitespace controls: kept by `clean` (newline, tab), turned into a space by `one_line`.
_KEPT = "\t\n"
_BREAKS = "\t\n\r\v\f\u2028\u2029\x85"
_ESCAPE_STARTS = "\x1b\x9b\x9d\x90\x98\x9e\x9f"


def clean(text: object) -> str:
    """`text` with escape sequences and control characters removed; newlines and tabs stay."""
    return _filter(str(text), one_line=False)


def one_line(text: object, limit: int = _ONE_LINE_LIMIT) -> str:
    """`text` safe for one short terminal line: sanitized, line breaks and tabs turned into
    spaces, stripped, and cut to `limit` characters with an ellipsis."""
    line = _filter(str(text), one_line=True).strip()
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return line


def _filter(text: str, *, one_line: bool) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _ESCAPE_STARTS:
            i = _skip_escape(text, i)
            continue
        code = ord(ch)
        if one_line and ch in _BREAKS:
            out.append(" ")
        elif ch in _KEPT:
            out.append(ch)
        elif code < 0x20 or 0x7F <= code <= 0x9F or _is_invisible(code):
            pass
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _is_invisible(code: int) -> bool:
    # Bidi overrides/isolates and zero-width characters can disguise what is printed.
    return (0x200B <= code <= 0x200F or 0x202A <= code <= 0x202E or 0x2060 <= code <= 0x2069
            or code == 0xFEFF)


def _skip_escape(text: str, i: int) -> int:
    """Index just past the escape sequence starting at text[i]."""
    n = len(text)
    ch = text[i]
    if ch == "\x1b":
        if i + 1 >= n:
            return n
        nxt = text[i + 1]
        if nxt == "[":
            ch, i = "\x9b", i + 1
        elif nxt in "]P^_X":
            ch, i = "\x9d", i + 1
        else:
            # ESC c, ESC 7, ESC ( B...: intermediates (0x20-0x2f), then one final byte
            i += 1
            while i < n and "\x20" <= text[i] <= "\x2f":
                i += 1
            return min(i + 1, n) if i < n and "\x30" <= text[i] <= "\x7e" else i
    i += 1
    if ch == "\x9b":  # CSI: parameters and intermediates, then one final byte
        while i < n and not ("\x40" <= text[i] <= "\x7e"):
            i += 1
        return min(i + 1, n)
    # OSC / DCS / SOS / PM / APC: up to BEL or ST (ESC \ or \x9c)
    while i < n:
        if text[i] in "\x07\x9c":
            return i + 1
        if text[i] == "\x1b":
            return min(i + 2, n) if i + 1 < n and text[i + 1] == "\\" else i
        i += 1
    return n
