"""Reading a file of the repository without trusting what sits at its path.

A checkout can hold a FIFO or a device where a file is expected (planted, or left by a tool):
`Path.read_bytes()` on a FIFO blocks until a writer comes, which hangs `status` for good. The
docker CLI sends such entries as headers without content and never opens them; devsync reads
only regular files, and says "not a regular file" for anything else.
"""

from __future__ import annotations

import errno
import os
import stat


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file at `path` (following links, as `open` does). Raises
    OSError as `Path.read_bytes()` would (FileNotFoundError, IsADirectoryError, ...), and
    OSError(EINVAL) for a FIFO, socket or device, which is never read: opened non-blocking,
    checked with fstat, then read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", os.fspath(path))
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
