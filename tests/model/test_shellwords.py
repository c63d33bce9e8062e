"""Tests for devsync.model.shellwords, the port of the 20.10 engine's Dockerfile word lexer.

Three layers: the Go package's own test tables (envVarTest, wordsTest, the mandatory-variable
and getEnv tests of the BuildKit version moby 20.10 vendors), edge cases read off the Go
source, and a differential check against the real engine: every word is expanded by a
classic-builder `USER` step on the private dockerd 20.10 and must come out byte for byte as
the port predicts, errors included.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from devsync.errors import DockerfileError
from devsync.model.shellwords import ExpansionError, Lexer, build_envs

# Go test data: frontend/dockerfile/shell/envVarTest as vendored by moby 20.10
# (`platform|source|expected`, fields trimmed; "error" means ProcessWord must fail).
ENV_VAR_TEST = r"""
A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|he$1x                    |     hex
A|he$.x                    |     he$.x
# Next one is different on Windows as $pwd==$PWD
U|he$pwd.                  |     he.
W|he$pwd.                  |     he/home.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX?}                |     error
A|he${XXX:?}               |     error
A|he${PWD?}                |     he/home
A|he${PWD:?}               |     he/home
A|he${NULL?}               |     he
A|he${NULL:?}              |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
# Next one is different on Windows as $pwd==$PWD
U|안녕$pwd.                  |     안녕.
W|안녕$pwd.                  |     안녕/home.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error

# Positional parameters won't be set:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_01
A|$1                        |
A|${1}                      |
A|${1:+bbb}                 |
A|${1:-bbb}                 |     bbb
A|$2                        |
A|${2}                      |
A|${2:+bbb}                 |
A|${2:-bbb}                 |     bbb
A|$3                        |
A|${3}                      |
A|${3:+bbb}                 |
A|${3:-bbb}                 |     bbb
A|$4                        |
A|${4}                      |
A|${4:+bbb}                 |
A|${4:-bbb}                 |     bbb
A|$5                        |
A|${5}                      |
A|${5:+bbb}                 |
A|${5:-bbb}                 |     bbb
A|$6                        |
A|${6}                      |
A|${6:+bbb}                 |
A|${6:-bbb}                 |     bbb
A|$7                        |
A|${7}                      |
A|${7:+bbb}                 |
A|${7:-bbb}                 |     bbb
A|$8                        |
A|${8}                      |
A|${8:+bbb}                 |
A|${8:-bbb}                 |     bbb
A|$9                        |
A|${9}                      |
A|${9:+bbb}                 |
A|${9:-bbb}                 |     bbb
A|$999                      |
A|${999}                    |
A|${999:+bbb}               |
A|${999:-bbb}               |     bbb
A|$999aaa                   |     aaa
A|${999}aaa                 |     aaa
A|${999:+bbb}aaa            |     aaa
A|${999:-bbb}aaa            |     bbbaaa
A|$001                      |
A|${001}                    |
A|${001:+bbb}               |
A|${001:-bbb}               |     bbb
A|$001aaa                   |     aaa
A|${001}aaa                 |     aaa
A|${001:+bbb}aaa            |     aaa
A|${001:-bbb}aaa            |     bbbaaa

# Special parameters won't be set in the Dockerfile:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02
A|$@                        |
A|${@}                      |
A|${@:+bbb}                 |
A|${@:-bbb}                 |     bbb
A|$@@@                      |     @@
A|$@aaa                     |     aaa
A|${@}aaa                   |     aaa
A|${@:+bbb}aaa              |     aaa
A|${@:-bbb}aaa              |     bbbaaa
A|$*                        |
A|${*}                      |
A|${*:+bbb}                 |
A|${*:-bbb}                 |     bbb
A|$#                        |
A|${#}                      |
A|${#:+bbb}                 |
A|${#:-bbb}                 |     bbb
A|$?                        |
A|${?}                      |
A|${?:+bbb}                 |
A|${?:-bbb}                 |     bbb
A|$-                        |
A|${-}                      |
A|${-:+bbb}                 |
A|${-:-bbb}                 |     bbb
A|$$                        |
A|${$}                      |
A|${$:+bbb}                 |
A|${$:-bbb}                 |     bbb
A|$!                        |
A|${!}                      |
A|${!:+bbb}                 |
A|${!:-bbb}                 |     bbb
A|$0                        |
A|${0}                      |
A|${0:+bbb}                 |
A|${0:-bbb}                 |     bbb
"""

GO_ENVS = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]


def _env_var_rows() -> list[tuple[int, str, str]]:
    rows = []
    for number, line in enumerate(ENV_VAR_TEST.splitlines()[1:], start=1):
        if line.startswith("#") or not line.strip():
            continue
        platform, source, expected = (part.strip() for part in line.split("|"))
        assert platform in ("A", "U", "W")
        if platform != "W":
            rows.append((number, source, expected))
    return rows


ENV_VAR_ROWS = _env_var_rows()

# Go test data: wordsTest (ProcessWords). "ENV" rows add to the environment of later rows; an
# expected value of ["error"] means ProcessWords must fail.
WORDS_TEST: list[tuple[str, list[str]] | str] = [
    ("hello", ["hello"]),
    ("hello${hi}bye", ["hellobye"]),
    "hi=hi",
    ("hello${hi}bye", ["hellohibye"]),
    "space=abc  def",
    ("hello${space}bye", ["helloabc", "defbye"]),
    ('hello"${space}"bye', ["helloabc  defbye"]),
    ('hello "${space}"bye', ["hello", "abc  defbye"]),
    "leading=  ab c",
    ("hello${leading}def", ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', ["hello  ab c", "def"]),
    ('hello"${leading}"', ["hello  ab c"]),
    ("hello${leading}", ["hello", "ab", "c"]),
    "trailing=ab c   ",
    ("hello${trailing}", ["helloab", "c"]),
    ("hello${trailing}d", ["helloab", "c", "d"]),
    ('hello"${trailing}"d', ["helloab c   d"]),
    ('hel"lo${trailing}"', ["helloab c   "]),
    ('hello" there  "', ["hello there  "]),
    ("hello there     ", ["hello", "there"]),
    ("hello\\ there", ["hello there"]),
    # the pre-BuildKit lexer accepted an unterminated quote here; this one fails
    ('hello" there', ["error"]),
    ('hello\\" there', ['hello"', "there"]),
]


def _lex(word: str, env: dict[str, str] | list[str] | None = None) -> str:
    return Lexer().process_word(word, env if env is not None else [])


# -- the Go test tables -----------------------------------------------------------------------


@pytest.mark.parametrize(("line", "source", "expected"), ENV_VAR_ROWS,
                         ids=[f"line{n}" for n, _, _ in ENV_VAR_ROWS])
def test_go_env_var_table(line: int, source: str, expected: str) -> None:
    lexer = Lexer("\\")
    for env in (GO_ENVS, build_envs(GO_ENVS)):
        if expected == "error":
            with pytest.raises(DockerfileError):
                lexer.process_word(source, env)
        else:
            assert lexer.process_word(source, env) == expected


def test_go_words_table() -> None:
    lexer = Lexer()
    envs: list[str] = []
    checked = 0
    for row in WORDS_TEST:
        if isinstance(row, str):
            envs.append(row)
            continue
        source, expected = row
        # the Go test trims the source but keeps the expected fields' trailing spaces
        for env in (envs, build_envs(envs)):
            try:
                result = lexer.process_words(source.strip(), env)
            except DockerfileError:
                result = ["error"]
            assert result == expected, source
        checked += 1
    assert checked == 19


def test_go_mandatory_env_vars() -> None:
    set_envs = ["VAR=plain", "ARG=x"]
    empty_envs = ["VAR=", "ARG=x"]
    unset_envs = ["ARG=x"]
    no_empty = "${VAR:?message here$ARG}"
    no_unset = "${VAR?message here$ARG}"

    assert _lex(no_empty, set_envs) == "plain"
    for env in (empty_envs, unset_envs):
        with pytest.raises(DockerfileError, match="message herex"):
            _lex(no_empty, env)

    assert _lex(no_unset, set_envs) == "plain"
    assert _lex(no_unset, empty_envs) == ""
    with pytest.raises(DockerfileError, match="message herex"):
        _lex(no_unset, unset_envs)


def test_go_get_env_last_occurrence_wins() -> None:
    assert build_envs([]) == {}
    assert build_envs(["foo"]) == {"foo": ""}
    assert build_envs(["foo="]) == {"foo": ""}
    assert build_envs(["foo=bar"]) == {"foo": "bar"}
    assert build_envs(["foo=bar", "car=hat"]) == {"foo": "bar", "car": "hat"}
    assert build_envs(["foo=bar", "car=hat", "car=bike"])["car"] == "bike"
    assert build_envs(["a=b=c"]) == {"a": "b=c"}
    assert _lex("$car", ["car=hat", "car=bike"]) == "bike"
    # a bare name is set (to empty), which `?` distinguishes from unset
    assert _lex("${foo?}", ["foo"]) == ""


# -- edge cases read off the Go source --------------------------------------------------------


@pytest.mark.parametrize(("word", "expected"), [
    ("$", "$"),
    ("a$", "a$"),
    ("$ x", "$ x"),
    ("$/x", "$/x"),
    ("$$x", "x"),  # `$$` is the (never set) special parameter `$`
    ("$_", ""),
    ("$_SHELL", ""),
    ("$SHELL_", ""),
    ("$SHELL-x", "bash-x"),
    ("$SHELL.x", "bash.x"),
    ("${SHELL}_", "bash_"),
    ("$0x", "x"),  # `0` is a special parameter: one character only
    ("$01x", "x"),  # but a digit run starting with 0 is read as a whole
    ("$12SHELL", "SHELL"),
    ("$é", ""),  # unicode letters are name characters
    ("$SHELLé", ""),
    ("$٣x", "x"),  # an Arabic-Indic digit (Nd) starts a digit run
    ("$²", "$²"),  # a superscript two is a number (No) but not a digit: not a name
    ("${A:-'}'}", "}"),  # quotes work inside the modifier word
    ('${A:-"x  y"}', "x  y"),
    ("${A:-\\}}", "}"),
    ('"${A:-\\}}"', "}"),
    ('"$"', "$"),
    ('"a\\b"', "a\\b"),  # backslash stays before other characters in double quotes
    ('"a\\\\b"', "a\\b"),
    ('"\\"\\$\\a"', '"$\\a'),
    ("${SHELL:+'$x'}", "$x"),
    ("${NULL:+x}", ""),
    ("${NULL:-x}", "x"),
    ("${NULL?x}", ""),
    ("\ufeff$SHELL", "bash"),  # text/scanner skips a leading byte-order mark ...
    ("a\ufeff", "a\ufeff"),  # ... and only that one
    ("\ufeff\ufeffa", "\ufeffa"),
    ("a\\", "a"),
    ("''", ""),
    ('""', ""),
    ("", ""),
])
def test_expansion_edge_cases(word: str, expected: str) -> None:
    assert _lex(word, GO_ENVS) == expected


@pytest.mark.parametrize(("word", "reason"), [
    ("${", "syntax error: missing '}'"),
    ("${}", "syntax error: bad substitution"),
    ("${:}", "syntax error: bad substitution"),
    ("${{A}", "syntax error: bad substitution"),
    ("${A", "missing ':' in substitution"),
    ("${.}", "missing ':' in substitution"),
    ("${A-x}", "missing ':' in substitution"),  # not in this engine: no non-colon - + =
    ("${A+x}", "missing ':' in substitution"),
    ("${A=x}", "missing ':' in substitution"),
    ("${A#x}", "missing ':' in substitution"),
    ("${A%x}", "missing ':' in substitution"),
    ("${A/x/y}", "missing ':' in substitution"),
    ("${#A}", "missing ':' in substitution"),  # `#` is read as the special parameter
    ("${A:", "syntax error: missing '}'"),
    ("${A:-", "syntax error: missing '}'"),
    ("${A:-x", "syntax error: missing '}'"),
    ("${A?", "syntax error: missing '}'"),
    ("${A:x}", "unsupported modifier (x) in substitution"),
    ("${A:=x}", "unsupported modifier (=) in substitution"),
    ("${A:}}", "unsupported modifier (}) in substitution"),
    ("${A:안}", "unsupported modifier (안) in substitution"),
    ("${A?}", "A: is not allowed to be unset"),
    ("${A:?}", "A: is not allowed to be unset"),
    ("${NULL:?}", "NULL: is not allowed to be empty"),
    ("${A?go $SHELL}", "A: go bash"),
    ("${NULL:?'quoted  msg'}", "NULL: quoted  msg"),
    ("${XX:-${A:?inner}}", "A: inner"),
    # an error inside a modifier word is reported as the missing brace when at the end
    ("${XX:-${A:?inner}", "syntax error: missing '}'"),
    ("${XX:-'abc}", "syntax error: missing '}'"),
    ("${XX:-'abc}x", "syntax error: missing '}'"),
    ('"${A', "missing ':' in substitution"),
    ('"abc', "unexpected end of statement while looking for matching double-quote"),
    ('"abc\\', "unexpected end of statement while looking for matching double-quote"),
    ("'abc", "unexpected end of statement while looking for matching single-quote"),
])
def test_errors_carry_the_engine_message(word: str, reason: str) -> None:
    with pytest.raises(ExpansionError) as info:
        _lex(word, GO_ENVS)
    assert info.value.reason == reason
    assert info.value.word == word
    assert isinstance(info.value, DockerfileError)
    assert info.value.exit_code == DockerfileError.exit_code
    # Go's %q agrees with JSON for these words
    assert str(info.value) == f"failed to process {json.dumps(word, ensure_ascii=False)}: {reason}"


@pytest.mark.parametrize(("word", "quoted"), [
    ("a\tb${", '"a\\tb${"'),
    ("\x01${", '"\\x01${"'),
    ("\x7f${", '"\\x7f${"'),
    ("\u00a0${", '"\\u00a0${"'),  # no-break space is not printable for Go
    ("\u200b${", '"\\u200b${"'),
    ("안${", '"안${"'),
    ("\U0001f680${", '"\U0001f680${"'),
    ("\U000e0001${", '"\\U000e0001${"'),
    ('"\\${', '"\\"\\\\${"'),
])
def test_error_message_quotes_like_go(word: str, quoted: str) -> None:
    with pytest.raises(ExpansionError) as info:
        _lex(word)
    assert info.value.message.startswith(f"failed to process {quoted}: ")


def test_backtick_escape_token() -> None:
    lexer = Lexer("`")
    env = {"SHELL": "bash"}
    assert lexer.process_word("C:\\dir\\$SHELL", env) == "C:\\dir\\bash"
    assert lexer.process_word("a`$SHELL", env) == "a$SHELL"
    assert lexer.process_word('"a`"b`$c``d`x"', env) == 'a"b$c`d`x'
    assert lexer.process_word('"a\\"', env) == "a\\"
    assert lexer.process_word("a` b", env) == "a b"
    assert lexer.process_words("a` b c", env) == ["a b", "c"]
    assert lexer.process_word("a`", env) == "a"


def test_process_words_splits_expanded_but_not_quoted_text() -> None:
    env = {"X": " a\u3000b\u00a0c\u200bd ", "E": ""}
    lexer = Lexer()
    # ideographic and no-break spaces split, zero-width space does not (unicode.IsSpace)
    assert lexer.process_words("1${X}2", env) == ["1", "a", "b", "c\u200bd", "2"]
    assert lexer.process_words('1"${X}"2', env) == ["1 a\u3000b\u00a0c\u200bd 2"]
    assert lexer.process_words("$E", env) == []
    assert lexer.process_words('""', env) == []
    assert lexer.process_words("a\\ b c", env) == ["a b", "c"]
    assert lexer.process_word("1${X}2", env) == "1 a\u3000b\u00a0c\u200bd 2"


def test_env_mapping_and_matches() -> None:
    lexer = Lexer()
    result, matches = lexer.process_word_with_matches(
        "${A:+x}$B${C:-c}${D?}", {"A": "", "B": "b", "D": "d"}
    )
    assert result == "bcd"
    assert matches == frozenset({"A", "B", "D"})
    with pytest.raises(TypeError):
        # a str is a Sequence[str] to the type checker, so this is caught at run time
        lexer.process_word("$A", "A=1")


def test_optional_modes_of_the_go_lexer() -> None:
    keep = Lexer(skip_unset_env=True)
    env = {"SET": "v", "EMPTY": ""}
    assert keep.process_word("$U ${U} ${U:-d} ${U:+p} ${U?m} ${U:?m} $SET", env) == (
        "$U ${U} ${U:-d} ${U:+p} ${U?m} ${U:?m} v"
    )
    assert keep.process_word("${EMPTY:-d}${SET:+p}", env) == "dp"
    with pytest.raises(ExpansionError, match="EMPTY: is not allowed to be empty"):
        keep.process_word("${EMPTY:?}", env)
    assert Lexer(raw_quotes=True).process_word("a'b'\"c$SET\"", env) == "a'b'\"cv\""
    assert Lexer(raw_escapes=True).process_word('a\\b"\\$"', env) == 'a\\b\\$'
    assert Lexer(skip_process_quotes=True).process_word("'$SET' \"x\"", env) == "'v' \"x\""
    with pytest.raises(ValueError):
        Lexer("")


# -- differential check against the real engine (classic builder, dockerd 20.10) --------------

# Words reach the engine's lexer as elements of `VOLUME ["w1", "w2", ...]` (JSON: any word
# survives the Dockerfile parser intact, one build step for all of them) and as `USER word`;
# the builder records `/bin/sh -c #(nop)  VOLUME [e1 e2 ...]` / `... USER e` in the history.
ENGINE_ENV = [
    *GO_ENVS, "A=first", "DUP=one", "DUP=two", "SP=a  b",
    # for EXPOSE, which splits words (ProcessWords): which characters are white space to Go
    "PORTS= 80  443/tcp ", "NBSP=9000\u00a09001", "IDEO=7000\u30007001", "NEL=6000\x856001",
    "FS=5000\x1c5001", "ZWSP=4000\u200b4001",
]

EXTRA_WORDS = [
    "$DUP", "${DUP}x", "$A$A", "${A:-x}${NULL:-y}", "${SP}", '"$SP"', "'$SP'",
    "$é", "$٣x", "$²", "${A:-'}'}", '${ZZ:-"x  y"}', "${ZZ:-\\}}", '"${ZZ:-\\}}"',
    '"a\\b"', '"\\"\\$\\a"', "${NULL?x}", "${SHELL:+'$x'}", "$$x", "$0x", "$01x", "a\ufeff",
    "${A-x}", "${A+x}", "${A#x}", "${A/x/y}", "${#A}", "${A:x}", "${A:=x}", "${A:}}",
    "${ZZ?}", "${NULL:?}", "${ZZ?go $SHELL}", "${XX:-${ZZ:?inner}}", "${XX:-${ZZ:?inner}",
    "${XX:-'abc}x", '"${ZZ', "a\tb${", "\u00a0${", "\x01${", "\U0001f680${", "a\\",
    '"abc\\', "\ufeff$SHELL", "\ufeff\ufeffa",
]


def _engine_words() -> list[str]:
    # VOLUME trims its arguments and refuses empty ones before expanding them
    words = [source for _, source, _ in ENV_VAR_ROWS] + EXTRA_WORDS
    return [w for w in dict.fromkeys(words) if w and w == w.strip()]


def _user_safe(word: str) -> bool:
    # the Dockerfile parser trims the line, takes a trailing escape as a continuation and a
    # leading `--` as a flag: such words cannot reach the lexer through `USER word`
    return not word.endswith("\\") and not word.startswith("--")


def _image_with_env(engine: sandbox.PrivateEngine, root: Path, tag: str, env: list[str]) -> None:
    """`docker load` a one-empty-layer image whose config has exactly `env` (duplicates too)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w"):
        pass
    layer_bytes = layer.getvalue()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Env": env},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
        "history": [{"created_by": "devsync test"}],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]
    ).encode()
    archive = root / "image.tar"
    with tarfile.open(archive, mode="w") as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sandbox.docker_cli(engine, "load", "-i", str(archive), cli="/usr/bin/docker")


Builder = Callable[[list[str], str], tuple[list[str] | None, str]]


@pytest.fixture(scope="module")
def user_builder(engine: sandbox.PrivateEngine, tmp_path_factory: pytest.TempPathFactory
                 ) -> Builder:
    root = tmp_path_factory.mktemp("shellwords-engine")
    _image_with_env(engine, root, "devsync-lex-base:1", ENGINE_ENV)
    counter = iter(range(1_000_000))

    def build(instructions: list[str], escape: str) -> tuple[list[str] | None, str]:
        """`#(nop)` steps recorded in history, or None and the build's output if it failed."""
        ctx = root / f"ctx{next(counter)}"
        ctx.mkdir()
        lines = [f"# escape={escape}", "FROM devsync-lex-base:1", *instructions]
        (ctx / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tag = f"devsync-lex-out:{ctx.name}"
        proc = sandbox.docker_cli(engine, "build", "-q", "-t", tag, str(ctx), check=False,
                                  cli="/usr/bin/docker")
        if proc.returncode != 0:
            return None, proc.stdout + proc.stderr
        history = sandbox.docker_cli(engine, "history", "--no-trunc", "--format",
                                     "{{json .CreatedBy}}", tag, cli="/usr/bin/docker")
        prefix = "/bin/sh -c #(nop)  "
        created = [json.loads(line) for line in history.stdout.splitlines()]
        return [c[len(prefix):] for c in reversed(created) if c.startswith(prefix)], ""

    return build


def _users(builder: Builder, words: list[str], escape: str) -> tuple[list[str] | None, str]:
    steps, output = builder([f"USER {w}" for w in words], escape)
    if steps is None:
        return None, output
    return [step.removeprefix("USER ") for step in steps], output


def _expected(word: str, lexer: Lexer) -> str | ExpansionError:
    try:
        return lexer.process_word(word, ENGINE_ENV)
    except ExpansionError as exc:
        return exc


@pytest.mark.engine
def test_engine_expands_every_word_as_predicted(user_builder: Builder) -> None:
    lexer = Lexer()
    good = [w for w in _engine_words() if isinstance(_expected(w, lexer), str)]
    assert len(good) > 200
    # "x" keeps results non-empty (VOLUME refuses ""); the lexer only treats a leading BOM
    # differently, and those words go through USER below
    volume = [w for w in good if not w.startswith("\ufeff")]
    users = [w for w in good if w.startswith("\ufeff")] + [w for w in volume if _user_safe(w)][:20]
    steps, output = user_builder(
        [f"VOLUME {json.dumps(['x' + w for w in volume])}", *(f"USER {w}" for w in users)], "\\"
    )
    assert steps is not None, output
    expanded = [_expected("x" + w, lexer) for w in volume]
    assert steps[0] == f"VOLUME [{' '.join(expanded)}]"  # type: ignore[arg-type]
    assert dict(zip(users, steps[1:], strict=True)) == {
        w: f"USER {_expected(w, lexer)}" for w in users
    }


@pytest.mark.engine
def test_engine_rejects_every_word_as_predicted(user_builder: Builder) -> None:
    lexer = Lexer()
    bad = [(w, e) for w in _engine_words() if isinstance(e := _expected(w, lexer), Exception)]
    assert len(bad) > 50
    mismatches = []
    for word, error in bad:
        instruction = f"USER {word}" if _user_safe(word) else f"VOLUME {json.dumps([word])}"
        steps, output = user_builder([instruction], "\\")
        # the builder prints the lexer's error as the last line of the failed step
        last = output.strip().splitlines()[-1:]
        if steps is not None or last != [error.message]:
            mismatches.append((instruction, error.message, last))
    assert mismatches == []


@pytest.mark.engine
def test_engine_backtick_escape(user_builder: Builder) -> None:
    lexer = Lexer("`")
    words = ["C:\\dir\\$SHELL", "a`$SHELL", '"a`"b`$c``d`x"', '"a\\"', "a` b", "`$DUP`\\"]
    users, output = _users(user_builder, words, "`")
    assert users is not None, output
    assert users == [lexer.process_word(w, ENGINE_ENV) for w in words]


@pytest.mark.engine
def test_engine_splits_expose_words_as_predicted(user_builder: Builder) -> None:
    # EXPOSE is the one classic-builder instruction that expands with ProcessWords
    lexer = Lexer()
    splits = ["$PORTS 8080", "$NBSP", "$IDEO", "$NEL", "1${E:-0}0 ${PORTS:+22}"]
    for args in splits:
        words = [w for arg in args.split() for w in lexer.process_words(arg, ENGINE_ENV)]
        steps, output = user_builder([f"EXPOSE {args}"], "\\")
        # the builder records the ports sorted, so compare them as a set of words
        assert steps is not None, output
        assert len(steps) == 1 and steps[0].startswith("EXPOSE ")
        assert sorted(steps[0].split()[1:]) == sorted(words)
    # Python's str.isspace() says yes to these, Go's unicode.IsSpace says no: one bad port
    for args in ("$FS", "$ZWSP"):
        assert len(lexer.process_words(args, ENGINE_ENV)) == 1
        steps, output = user_builder([f"EXPOSE {args}"], "\\")
        assert steps is None and "Invalid containerPort" in output
