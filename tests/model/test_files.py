"""The one read of a repository file: a FIFO or device is refused at once, never waited on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from devsync.model.files import read_regular


def test_a_regular_file_and_a_link_to_one(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 3_000_000)
    (tmp_path / "link").symlink_to("a")
    assert read_regular(tmp_path / "a") == b"x" * 3_000_000
    assert read_regular(tmp_path / "link") == b"x" * 3_000_000


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # no writer: a blocking open or read would wait for ever
    with pytest.raises(OSError) as caught:
        read_regular(tmp_path / "pipe")
    assert caught.value.errno == errno.EINVAL


def test_missing_and_directories_fail_as_read_bytes_does(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "nothing")
    with pytest.raises(IsADirectoryError):
        read_regular(tmp_path)
    (tmp_path / "dangling").symlink_to("nowhere")
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "dangling")
