"""The .dockerignore reader and matcher, against the tables of moby/patternmatcher's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from devsync.model.dockerignore import (
    BadPatternError,
    DockerignoreError,
    MatchInfo,
    PatternMatcher,
    clean_path,
    go_match,
    is_ignored,
    matches_single_parent,
    parse_dockerignore,
    read_dockerignore,
    trim_build_files_from_excludes,
)

EXACT, INEXACT, FAIL = "exact", "inexact", "fail"

# moby/patternmatcher patternmatcher_test.go TestMatches (Linux rows)
MATCHES = [
    ("**", "file", EXACT),
    ("**", "file/", EXACT),
    ("**/", "file", EXACT),
    ("**/", "file/", EXACT),
    ("**", "/", EXACT),
    ("**/", "/", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT),
    ("**/**", "dir/file", EXACT),
    ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        EXACT,
    ),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", FAIL),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", EXACT),
    (
        ["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        FAIL,
    ),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
]

# Go's filepath.Match table as moby/patternmatcher runs it through Matches (TestMatch)
GO_MATCH = [
    ("abc", "abc", True, False),
    ("*", "abc", True, False),
    ("*c", "abc", True, False),
    ("a*", "a", True, False),
    ("a*", "abc", True, False),
    ("a*", "ab/c", True, False),
    ("a*/b", "abc/b", True, False),
    ("a*/b", "a/c/b", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True, False),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False, False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False, False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True, False),
    ("a*b?c*x", "abxbbxdbxebxczzy", False, False),
    ("ab[c]", "abc", True, False),
    ("ab[b-d]", "abc", True, False),
    ("ab[e-g]", "abc", False, False),
    ("ab[^c]", "abc", False, False),
    ("ab[^b-d]", "abc", False, False),
    ("ab[^e-g]", "abc", True, False),
    ("a\\*b", "a*b", True, False),
    ("a\\*b", "ab", False, False),
    ("a?b", "a☺b", True, False),
    ("a[^a]b", "a☺b", True, False),
    ("a???b", "a☺b", False, False),
    ("a[^a][^a][^a]b", "a☺b", False, False),
    ("[a-ζ]*", "α", True, False),
    ("*[a-ζ]", "A", False, False),
    ("a?b", "a/b", False, False),
    ("a*b", "a/b", False, False),
    ("[\\]a]", "]", True, False),
    ("[\\-]", "-", True, False),
    ("[x\\-]", "x", True, False),
    ("[x\\-]", "-", True, False),
    ("[x\\-]", "z", False, False),
    ("[\\-x]", "x", True, False),
    ("[\\-x]", "-", True, False),
    ("[\\-x]", "a", False, False),
    ("[]a]", "]", False, True),
    ("[-]", "-", False, True),
    ("[x-]", "x", False, True),
    ("[x-]", "-", False, True),
    ("[x-]", "z", False, True),
    ("[-x]", "x", False, True),
    ("[-x]", "-", False, True),
    ("[-x]", "a", False, True),
    ("\\", "a", False, True),
    ("[a-b-c]", "a", False, True),
    ("[", "a", False, True),
    ("[^", "a", False, True),
    ("[^bc", "a", False, True),
    ("a[", "a", False, True),
    ("a[", "ab", False, True),
    ("*x", "xxx", True, False),
]

# Go's own filepath.Match table (path/filepath match_test.go), on Match itself
FILEPATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", False),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("*x", "xxx", True),
    ("a[", "x", None),
    ("[", "a", None),
    ("*.json", "a.json", True),
    ("*.json", "dir/a.json", False),
    ("*", ".hidden", True),
]


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."), ("abc", "abc"), ("abc/def", "abc/def"), ("a/b/c", "a/b/c"), (".", "."),
        ("..", ".."), ("../..", "../.."), ("../../abc", "../../abc"), ("/abc", "/abc"),
        ("/", "/"), ("abc/", "abc"), ("abc//def//ghi", "abc/def/ghi"), ("//abc", "/abc"),
        ("abc/./def", "abc/def"), ("/./abc/def", "/abc/def"), ("abc/.", "abc"),
        ("abc/def/ghi/../jkl", "abc/def/jkl"), ("abc/def/../ghi/../jkl", "abc/jkl"),
        ("abc/def/..", "abc"), ("abc/def/../..", "."), ("/abc/def/../..", "/"),
        ("abc/def/../../..", ".."), ("/abc/def/../../..", "/"),
        ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"), ("/../abc", "/abc"),
    ],
)
def test_clean_path_like_go(path: str, cleaned: str) -> None:
    assert clean_path(path) == cleaned


def _modern(patterns: list[str]) -> PatternMatcher:
    return PatternMatcher(patterns)


@pytest.mark.parametrize(("pattern", "text", "kind"), MATCHES)
def test_matches_or_parent_matches(pattern: str, text: str, kind: str) -> None:
    assert _modern([pattern]).matches(text) is (kind != FAIL)


@pytest.mark.parametrize(("patterns", "text", "kind"), MULTI)
def test_multi_pattern_matches(patterns: list[str], text: str, kind: str) -> None:
    assert _modern(patterns).matches(text) is (kind != FAIL)


def _with_parent_results(pm: PatternMatcher, text: str) -> bool:
    parent = text.rpartition("/")[0] if "/" in text else ""
    info = MatchInfo()
    if parent and parent != ".":
        dirs = parent.split("/")
        for i in range(len(dirs)):
            _, info = pm.matches_using_parent_results("/".join(dirs[: i + 1]), info)
    return pm.matches_using_parent_results(text, info)[0]


@pytest.mark.parametrize(("pattern", "text", "kind"), MATCHES)
def test_matches_using_parent_results(pattern: str, text: str, kind: str) -> None:
    pm = _modern([pattern])
    assert _with_parent_results(pm, text) is (kind != FAIL)
    # without context it falls back to checking every parent
    assert pm.matches_using_parent_results(text)[0] is (kind != FAIL)


@pytest.mark.parametrize(("patterns", "text", "kind"), MULTI)
def test_multi_matches_using_parent_results(patterns: list[str], text: str, kind: str) -> None:
    pm = _modern(patterns)
    assert _with_parent_results(pm, text) is (kind != FAIL)
    assert pm.matches_using_parent_results(text)[0] is (kind != FAIL)


@pytest.mark.parametrize(("pattern", "text", "match", "bad"), GO_MATCH)
def test_package_matches_on_go_match_table(pattern: str, text: str, match: bool,
                                           bad: bool) -> None:
    for legacy in (False, True):
        if bad:
            with pytest.raises(DockerignoreError):
                matches_single_parent(text, [pattern], legacy=legacy)
        else:
            assert matches_single_parent(text, [pattern], legacy=legacy) is match


@pytest.mark.parametrize(("pattern", "name", "expected"), FILEPATH_MATCH)
def test_go_filepath_match(pattern: str, name: str, expected: bool | None) -> None:
    if expected is None:
        with pytest.raises(BadPatternError):
            go_match(pattern, name)
    else:
        assert go_match(pattern, name) is expected


# Where docker 20.10's regexp translation disagrees with the modern matcher.
LEGACY_DIFFERENT = {
    ("a(b)c/def", "a(b)c/def"),  # `(b)` is a regexp group in 20.10 (it matches "abc/def")
    ("a.|)$(}+{bc", "a.|)$(}+{bc"),  # unbalanced regexp: a bad pattern in 20.10
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
    ),  # `+` is a regexp operator in 20.10
}


@pytest.mark.parametrize(("pattern", "text", "kind"), MATCHES)
def test_legacy_matcher_agrees_except_for_regexp_metacharacters(pattern: str, text: str,
                                                                 kind: str) -> None:
    pm = PatternMatcher([pattern], legacy=True)
    if (pattern, text) in LEGACY_DIFFERENT:
        if "|" in pattern:
            with pytest.raises(DockerignoreError):
                pm.matches(text)
        else:
            assert pm.matches(text) is False
        if pattern == "a(b)c/def":
            assert pm.matches("abc/def")
        return
    assert pm.matches(text) is (kind != FAIL)


def test_suffix_fast_path_differs_between_generations() -> None:
    # modern "**foo" is a plain suffix test; 20.10 anchored it at a path component
    assert PatternMatcher(["**foo"]).matches("barfoo")
    assert not PatternMatcher(["**foo"], legacy=True).matches("barfoo")


def test_single_parent_bug_is_reproduced() -> None:
    # the deprecated Matches only looks at the parent prefix as deep as the pattern
    pm = PatternMatcher(["**/node_modules"])
    assert pm.matches("a/b/node_modules/x")
    assert not pm.matches_single_parent("a/b/node_modules/x")
    assert pm.matches_single_parent("a/node_modules/x")


def test_exclusion_and_errors() -> None:
    assert PatternMatcher(["docs", "!docs/README.md"]).exclusions
    assert not PatternMatcher(["docs"]).exclusions
    assert PatternMatcher(["docs", "  !docs/README.md  "]).exclusions
    assert len(PatternMatcher(["docs", "config", ""]).patterns) == 2
    with pytest.raises(DockerignoreError):
        PatternMatcher(["!"])
    with pytest.raises(DockerignoreError):
        PatternMatcher(["["])
    # a pattern that passes filepath.Match's check but not regexp compilation
    pm = PatternMatcher(["[Local-Only]/"])
    with pytest.raises(DockerignoreError):
        pm.matches("x")
    with pytest.raises(DockerignoreError):
        pm.matches("x")


def test_is_ignored_helpers() -> None:
    assert is_ignored("fileutils.go", ["*"])
    assert is_ignored("fileutils.go", ["*.go"])
    assert is_ignored("fileutils.go", ["!fileutils.go", "*.go"])
    assert not is_ignored("docs/README.md", ["docs", "!docs/README.md"])
    assert not is_ignored("docs/README.md", ["docs/", "!docs/README.md"])
    assert not is_ignored("docs/README.md", ["docs/*", "!docs/README.md"])
    assert not is_ignored("fileutils.go", ["*.go", "!fileutils.go"])
    assert not is_ignored(".", ["*.go"])
    assert not is_ignored("/any/path/there", [])


def test_parse_dockerignore_like_read_all() -> None:
    content = (
        b"test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n"
        b"! /inverted/abs/path\n!\n! \n"
    )
    assert parse_dockerignore(content) == [
        "test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!",
    ]


def test_parse_dockerignore_bom_crlf_and_cleaning() -> None:
    data = b"\xef\xbb\xbf# comment\r\n  ./src//a/../b  \r\n*.log\r\n!keep.log\r\n/\r\n#no\n  #yes"
    assert parse_dockerignore(data) == ["src/b", "*.log", "!keep.log", "/", "#yes"]
    # BOM is stripped only on the first line; a comment must start the line
    assert parse_dockerignore(b"a\n\xef\xbb\xbfb") == ["a", "\ufeffb"]


def test_read_dockerignore(tmp_path: Path) -> None:
    assert read_dockerignore(tmp_path) == []
    (tmp_path / ".dockerignore").write_text("node_modules\n**/*.pyc\n")
    assert read_dockerignore(tmp_path) == ["node_modules", "**/*.pyc"]


def test_trim_build_files_from_excludes() -> None:
    assert trim_build_files_from_excludes(["*.md"], "Dockerfile") == ["*.md"]
    assert trim_build_files_from_excludes(["*"], "Dockerfile") == [
        "*", "!.dockerignore", "!Dockerfile",
    ]
    assert trim_build_files_from_excludes(["docker"], "docker/Dockerfile") == [
        "docker", "!docker/Dockerfile",
    ]
