"""The one terminal sanitizer, as the prompt line (`one_line`) and as the views' text (`clean`)."""

from __future__ import annotations

from devsync.prompt.sanitize import clean, one_line


def test_one_line() -> None:
    s = one_line
    assert s("devsync: plain") == "devsync: plain"
    assert s("a\x1b[31mred\x1b[0m b") == "ared b"
    assert s("x\x1b]0;evil title\x07y") == "xy"
    assert s("x\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\y") == "xlinky"
    assert s("a\nb\rc\td") == "a b c d"
    assert s("bell\x07\x08\x00 del\x7f c1\x9b2J") == "bell del c1"
    assert s("rtl\u202eevil\u2066x\u200b") == "rtlevilx"
    assert s("é ü 日本") == "é ü 日本"
    assert len(s("x" * 1000)) == 300
    assert s("x" * 1000, 20) == "x" * 19 + "…"


def test_clean_keeps_lines_and_tabs() -> None:
    assert clean("a\nb\tc\rd") == "a\nb\tcd"
    assert clean("a\x1b[2Jb\x1b]0;title\x07c\x1bcd\x1b(Be") == "abcde"
    assert clean("x\x90dcs payload\x9cy\x98sos\x1b\\z") == "xyz"
    assert clean("\u202eevil\ufeff") == "evil"
    assert clean(42) == "42"
    # a lone ESC at the end, an unterminated OSC
    assert clean("ok\x1b") == "ok"
    assert clean("ok\x1b]0;never ends") == "ok"
