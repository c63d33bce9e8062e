"""The words of a changed line and of a stage built on another stage (devsync.ops.reasons)."""

from __future__ import annotations

from pathlib import Path

from devsync.model.dockerfiles import parse_text
from devsync.ops.reasons import built_on_stage, where_they_differ

PACKAGES = ('RUN mkdir -p /etc/php7/conf.d /etc/php7/php-fpm.d /etc/nginx/conf.d /run/nginx '
            '&& echo "nginx php7 php7-fpm php7-intl" > /etc/packages')


def test_both_sides_are_cut_around_what_differs() -> None:
    apcu = PACKAGES.replace("php7-intl", "php7-intl php7-apcu")
    assert where_they_differ(PACKAGES, apcu) == (
        '`...php7-fpm php7-intl" > /etc/packages`',
        '`...php7-fpm php7-intl php7-apcu" > /etc/packages`')
    # the same column would have hidden it: each side keeps its own differing part
    old, new = where_they_differ("RUN cp /etc/php7/conf.d/a.ini /etc/php7/conf.d/zz.ini && "
                                 "echo done with all of it", "RUN cp /etc/php7/conf.d/b.ini "
                                 "/etc/php7/conf.d/zz.ini && echo done with all of it")
    assert "a.ini" in old and "b.ini" in new and old != new


def test_short_lines_are_shown_whole() -> None:
    assert where_they_differ("ARG PHP_VERSION=8.2", "ARG PHP_VERSION=8.3") == (
        "`ARG PHP_VERSION=8.2`", "`ARG PHP_VERSION=8.3`")


def test_a_long_difference_shows_its_start_and_its_end() -> None:
    old, new = where_they_differ("RUN x " + "a" * 200, "RUN y " + "b" * 200)
    assert old.startswith("`RUN x aaa") and "..." in old and len(old) < 120
    assert new.startswith("`RUN y bbb") and new.endswith("bbb`")


def test_a_stage_built_on_a_stage_that_rebuilds_names_that_stage() -> None:
    df = parse_text("FROM busybox AS build\nRUN make\nFROM build AS test\nRUN test\n"
                    "FROM busybox\nCOPY --from=test /out /out\n", Path("Dockerfile"))
    bases = {0: "busybox", 1: "build", 2: "busybox"}
    assert built_on_stage(df, bases, 1, {0: 2}) == (
        "rebuilds with stage build (from line 2), which this stage is built on")
    assert built_on_stage(df, bases, 2, {0: 2}) is None  # (FROM an image, not a stage)
    assert built_on_stage(df, bases, 1, {}) is None
