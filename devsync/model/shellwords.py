"""Dockerfile variable expansion, exactly as the Docker Engine 20.10 classic builder does it.

A port of `frontend/dockerfile/shell/lex.go` from moby/buildkit as vendored by moby 20.10
(Apache License 2.0, Copyright The BuildKit Authors). devsync predicts a build's cache keys
before building, so every instruction argument has to expand to the very string the engine
will produce: the quirks below are deliberate and must not be "fixed".

What this version does (tests/test_shellwords.py checks it against the real dockerd):
  - `'...'` is literal; `"..."` expands `$` and lets the escape token escape `"`, `$` and
    itself (before anything else the escape token stays);
  - outside quotes the escape token (backslash, or backtick under `# escape=`) escapes any
    character, and is dropped at the very end of the word;
  - `$NAME` and `${NAME}`; a digit run (`$1`, `$001`) or one of `@*#?-$!0` is a name that is
    never set; a `$` followed by anything else stays literal;
  - `${NAME:-word}`, `${NAME:+word}`, `${NAME:?word}` (empty counts as unset) and
    `${NAME?word}`, with `word` expanded in turn;
  - `${NAME-word}`, `${NAME+word}`, `${NAME=word}`, `${#NAME}`, `${NAME%...}`, `${NAME/...}`
    are errors here ("missing ':' in substitution"): later BuildKit releases added them.
An environment given as `NAME=value` strings becomes a mapping first; the last one wins.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from devsync.errors import DockerfileError

__all__ = ["ExpansionError", "Lexer", "build_envs"]

# text/scanner skips one byte-order mark at the very start of its input
_BOM = "\ufeff"
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# unicode.IsSpace: Latin-1 space characters, then the White_Space property above Latin-1
_LATIN1_SPACES = frozenset("\t\n\v\f\r \x85\xa0")
_OTHER_SPACES = frozenset(
    "\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class ExpansionError(DockerfileError):
    """A word that the engine's lexer rejects; `message` is the engine's own error text."""

    def __init__(self, word: str, reason: str) -> None:
        super().__init__(f"failed to process {_go_quote(word)}: {reason}")
        self.word = word
        self.reason = reason


class _LexError(Exception):
    pass


def build_envs(env: Iterable[str]) -> dict[str, str]:
    """`["K=V", ...]` as the lexer sees it: the last occurrence wins, a bare `K` means `K=`."""
    envs: dict[str, str] = {}
    for entry in env:
        key, sep, value = entry.partition("=")
        envs[key] = value if sep else ""
    return envs


@dataclass
class Lexer:
    """Expands one Dockerfile word; the options mirror the Go `Lex` struct's fields."""

    escape_token: str = "\\"
    raw_quotes: bool = field(default=False, kw_only=True)
    raw_escapes: bool = field(default=False, kw_only=True)
    skip_process_quotes: bool = field(default=False, kw_only=True)
    skip_unset_env: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if len(self.escape_token) != 1:
            raise ValueError(f"escape token must be one character, got {self.escape_token!r}")

    def process_word(self, word: str, env: Mapping[str, str] | Sequence[str]) -> str:
        """The word with quotes removed and variables expanded (spaces kept)."""
        return self._process(word, env)[0]

    def process_words(self, word: str, env: Mapping[str, str] | Sequence[str]) -> list[str]:
        """The expanded word split on unquoted white space (after expansion, as Go does)."""
        return self._process(word, env)[1]

    def process_word_with_matches(
        self, word: str, env: Mapping[str, str] | Sequence[str]
    ) -> tuple[str, frozenset[str]]:
        """The expanded word and the names it looked up that were set (even if unused)."""
        result, _, matches = self._process(word, env)
        return result, matches

    def _process(
        self, word: str, env: Mapping[str, str] | Sequence[str]
    ) -> tuple[str, list[str], frozenset[str]]:
        envs = _as_mapping(env)
        sw = _ShellWord(self, word, envs)
        try:
            result, words = sw.process_stop_on(None)
        except _LexError as exc:
            raise ExpansionError(word, str(exc)) from None
        return result, words, frozenset(sw.matches)


def _as_mapping(env: Mapping[str, str] | Sequence[str]) -> Mapping[str, str]:
    if isinstance(env, Mapping):
        return env
    if isinstance(env, str | bytes):
        raise TypeError("env must be a mapping or a sequence of 'NAME=value' strings")
    return build_envs(env)


class _Scanner:
    """The two operations of Go's text/scanner the lexer uses; None is EOF."""

    __slots__ = ("_pos", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 1 if text.startswith(_BOM) else 0

    def peek(self) -> str | None:
        return self._text[self._pos] if self._pos < len(self._text) else None

    def next(self) -> str | None:
        if self._pos < len(self._text):
            self._pos += 1
            return self._text[self._pos - 1]
        return None


class _Words:
    """Splits the expanded text on white space that came from expansion or the source."""

    __slots__ = ("in_word", "word", "words")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if _is_space(ch):
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _ShellWord:
    def __init__(self, lex: Lexer, word: str, envs: Mapping[str, str]) -> None:
        self.scanner = _Scanner(word)
        self.envs = envs
        self.escape = lex.escape_token
        self.raw_quotes = lex.raw_quotes
        self.raw_escapes = lex.raw_escapes
        self.skip_unset_env = lex.skip_unset_env
        self.skip_process_quotes = lex.skip_process_quotes
        self.matches: set[str] = set()

    def process_stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        sc = self.scanner
        while (ch := sc.peek()) is not None:
            if stop is not None and ch == stop:
                sc.next()
                return "".join(result), words.get_words()
            if ch == "$":
                tmp = self.process_dollar()
                result.append(tmp)
                # expanded text is split on its white space, unlike quoted text
                words.add_string(tmp)
            elif ch in "'\"" and not self.skip_process_quotes:
                tmp = self.process_single_quote() if ch == "'" else self.process_double_quote()
                result.append(tmp)
                words.add_raw_string(tmp)
            else:
                ch = sc.next()
                assert ch is not None
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                    ch = sc.next()
                    if ch is None:
                        # a trailing escape token is dropped
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        # everything up to the next single quote is literal; a single quote cannot be escaped
        sc = self.scanner
        result: list[str] = []
        ch = sc.next()
        if self.raw_quotes:
            result.append(ch or "")
        while True:
            ch = sc.next()
            if ch is None:
                raise _LexError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        # like sh: only `"`, `$` and the escape token itself can be escaped in double quotes
        sc = self.scanner
        result: list[str] = []
        ch = sc.next()
        if self.raw_quotes:
            result.append(ch or "")
        while True:
            peek = sc.peek()
            if peek is None:
                raise _LexError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if peek == '"':
                sc.next()
                if self.raw_quotes:
                    result.append(peek)
                return "".join(result)
            if peek == "$":
                result.append(self.process_dollar())
                continue
            ch = sc.next()
            assert ch is not None
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                after = sc.peek()
                if after is None:
                    continue
                if after in ('"', "$", self.escape):
                    ch = sc.next()
                    assert ch is not None
            result.append(ch)

    def process_dollar(self) -> str:
        sc = self.scanner
        sc.next()

        if sc.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value = self.get_env(name)
            if value is None:
                return "$" + name if self.skip_unset_env else ""
            return value

        sc.next()
        peek = sc.peek()
        if peek is None:
            raise _LexError("syntax error: missing '}'")
        if peek in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = sc.next()
        if ch == "}":
            value = self.get_env(name)
            if value is None:
                return "${" + name + "}" if self.skip_unset_env else ""
            return value
        if ch == "?":
            word = self._word_until_brace()
            value = self.get_env(name)
            if value is None:
                if self.skip_unset_env:
                    return "${" + name + "?" + word + "}"
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        if ch == ":":
            modifier = sc.next()
            word = self._word_until_brace()
            value = self.get_env(name)
            unset_kept = "${" + name + ":" + (modifier or "") + word + "}"
            if modifier == "+":
                if value is None and self.skip_unset_env:
                    return unset_kept
                return word if value else (value or "")
            if modifier == "-":
                if value is None and self.skip_unset_env:
                    return unset_kept
                return value if value else word
            if modifier == "?":
                if value is None:
                    if self.skip_unset_env:
                        return unset_kept
                    raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if not value:
                    raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            # modifier cannot be EOF here: the brace search above has already failed then
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        raise _LexError("missing ':' in substitution")

    def _word_until_brace(self) -> str:
        try:
            return self.process_stop_on("}")[0]
        except _LexError:
            # whatever went wrong inside, running off the end is reported as a missing brace
            if self.scanner.peek() is None:
                raise _LexError("syntax error: missing '}'") from None
            raise

    def process_name(self) -> str:
        # a run of letters, digits and `_`; or a run of digits; or one special parameter
        sc = self.scanner
        name: list[str] = []
        while (ch := sc.peek()) is not None:
            if not name and _is_digit(ch):
                while (digit := sc.peek()) is not None and _is_digit(digit):
                    name.append(digit)
                    sc.next()
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                sc.next()
                return ch
            if not (ch.isalpha() or _is_digit(ch) or ch == "_"):
                break
            name.append(ch)
            sc.next()
        return "".join(name)

    def get_env(self, name: str) -> str | None:
        # None is "unset"; Linux compares names exactly (Windows would ignore case)
        value = self.envs.get(name)
        if value is not None:
            self.matches.add(name)
        return value


def _is_digit(ch: str) -> bool:
    # unicode.IsDigit is general category Nd, which is what str.isdecimal tests
    return ch.isdecimal()


def _is_space(ch: str) -> bool:
    return ch in _LATIN1_SPACES or ch in _OTHER_SPACES


def _go_quote(text: str) -> str:
    """Go's `%q` (strconv.Quote) of `text`, so messages match the engine's byte for byte."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif _go_printable(ch):
            out.append(ch)
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            # a lone surrogate is not a valid rune: Go prints the replacement character
            out.append("\\ufffd")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_printable(ch: str) -> bool:
    # unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"
