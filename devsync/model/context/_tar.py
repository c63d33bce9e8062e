"""Tar headers written the way Go's `archive/tar` writes them, as the docker CLI sends them.

A ustar header, with a PAX header first when a name, link name, number or extended attribute
does not fit (`tar_header`); `header_plan` decides that without writing, so that a context's
tar size is known before it is sent (`tar_size`). File contents are read exactly as large as
the walk saw them (`read_exactly`). `tar_chunks` produces a context's tar piece by piece and
`TarStream` reads it like a file, so a build request can send it while it is being made.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO

from devsync.model.context._entries import FILE, TYPEFLAG, BuildContextError, ContextEntry

if TYPE_CHECKING:
    from devsync.model.context._entries import TarFlavor

_CHUNK = 1 << 20
BLOCK = 512


def write_file(fileobj: BinaryIO, name: str, content: bytes, *, mtime: int) -> None:
    fileobj.write(tar_header(name=name, mode=0o644, uid=0, gid=0, size=len(content),
                             mtime=mtime, typeflag=TYPEFLAG[FILE], linkname="",
                             devmajor=0, devminor=0, xattrs={}))
    fileobj.write(content)
    pad = -len(content) % BLOCK
    if pad:
        fileobj.write(b"\0" * pad)


def read_exactly(e: ContextEntry) -> Iterator[bytes]:
    remaining = e.size
    try:
        with open(e.abspath, "rb") as f:
            while remaining:
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
    except OSError as exc:
        raise BuildContextError(
            f"cannot read {e.rel!r} in the build context: {exc.strerror or exc}"
        ) from exc
    if remaining:
        raise BuildContextError(f"{e.rel!r} changed while devsync was reading the build context")


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 8 ** (width - 1)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath."""
    length = len(name)
    if length <= 100:
        return None
    if length > 156:
        length = 156
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen = len(name) - i - 1
    if i <= 0 or nlen > 100 or nlen == 0 or i > 155:
        return None
    return name[:i], name[i + 1 :]


def _pax_record(key: bytes, value: bytes) -> bytes:
    payload = b" " + key + b"=" + value + b"\n"
    size = len(payload) + 1
    while True:
        record = str(size).encode() + payload
        if len(record) == size:
            return record
        size = len(record)


def _ustar_block(*, name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int,
                 typeflag: bytes, linkname: bytes, devmajor: int, devminor: int,
                 prefix: bytes = b"") -> bytes:
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\0")
    block[100:108] = _octal(mode, 8)
    block[108:116] = _octal(uid, 8)
    block[116:124] = _octal(gid, 8)
    block[124:136] = _octal(size, 12)
    block[136:148] = _octal(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = linkname[:100].ljust(100, b"\0")
    block[257:265] = b"ustar\x0000"
    block[329:337] = _octal(devmajor, 8)
    block[337:345] = _octal(devminor, 8)
    block[345:500] = prefix[:155].ljust(155, b"\0")
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def header_plan(*, name: str, linkname: str, uid: int, gid: int, size: int, mtime: int,
                xattrs: dict[str, bytes]) -> tuple[bytes, bytes, bytes, bytes]:
    """(ustar name, ustar prefix, link name, PAX body) the way Go's tar.Writer decides them."""
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape")
    pax: list[tuple[bytes, bytes]] = []
    prefix = b""
    if len(bname) > 100 or not bname.isascii():
        split = _split_ustar(bname) if bname.isascii() else None
        if split is None:
            pax.append((b"path", bname))
            bname = bname[:100] if bname.isascii() else b""
        else:
            prefix, bname = split
    if len(blink) > 100 or not blink.isascii():
        pax.append((b"linkpath", blink))
        blink = blink[:100] if blink.isascii() else b""
    for key, value, width in (("uid", uid, 8), ("gid", gid, 8), ("size", size, 12),
                              ("mtime", mtime, 12)):
        if not _fits(value, width):
            pax.append((key.encode(), str(value).encode()))
    for xk, xv in sorted(xattrs.items()):
        pax.append((b"SCHILY.xattr." + xk.encode(), xv))
    body = b"".join(_pax_record(k, v) for k, v in sorted(pax))
    return bname, prefix, blink, body


def header_size(plan_body: bytes) -> int:
    if not plan_body:
        return BLOCK
    return 2 * BLOCK + -(-len(plan_body) // BLOCK) * BLOCK


def tar_header(*, name: str, mode: int, uid: int, gid: int, size: int, mtime: int,
               typeflag: bytes, linkname: str, devmajor: int, devminor: int,
               xattrs: dict[str, bytes]) -> bytes:
    """A ustar header like Go's tar.Writer, with a PAX header first when a field needs it."""
    bname, prefix, blink, body = header_plan(name=name, linkname=linkname, uid=uid, gid=gid,
                                             size=size, mtime=mtime, xattrs=xattrs)
    main = _ustar_block(
        name=bname,
        mode=mode,
        typeflag=typeflag,
        devmajor=devmajor,
        devminor=devminor,
        uid=uid if _fits(uid, 8) else 0,
        gid=gid if _fits(gid, 8) else 0,
        size=size if _fits(size, 12) else 0,
        mtime=mtime if _fits(mtime, 12) else 0,
        linkname=blink,
        prefix=prefix,
    )
    if not body:
        return main
    base = name.rstrip("/").rpartition("/")[2].encode("utf-8", "surrogateescape")
    pax_name = (b"PaxHeaders.0/" + base)[:100]
    if not pax_name.isascii():
        pax_name = b"PaxHeaders.0/entry"
    head = _ustar_block(name=pax_name, mode=0o644, uid=0, gid=0, size=len(body), mtime=0,
                        typeflag=b"x", linkname=b"", devmajor=0, devminor=0)
    return head + body + b"\0" * (-len(body) % BLOCK) + main


def _entry_header(e: ContextEntry, flavor: TarFlavor) -> bytes:
    uid, gid = e.tar_owner(flavor)
    major, minor = e.devices()
    return tar_header(name=e.name, mode=e.tar_mode(flavor), uid=uid, gid=gid, size=e.size,
                      mtime=e.mtime, typeflag=TYPEFLAG[e.kind], linkname=e.linkname,
                      devmajor=major, devminor=minor, xattrs=e.tar_xattrs(flavor))


def _file_bytes(name: str, content: bytes, mtime: int) -> bytes:
    header = tar_header(name=name, mode=0o644, uid=0, gid=0, size=len(content), mtime=mtime,
                        typeflag=TYPEFLAG[FILE], linkname="", devmajor=0, devminor=0,
                        xattrs={})
    return header + content + b"\0" * (-len(content) % BLOCK)


# files up to this size go out with their header in one piece
_SMALL = 256 * 1024


def tar_chunks(entries: Iterable[ContextEntry], flavor: TarFlavor,
               files: Mapping[str, bytes]) -> Iterator[bytes]:
    """The context tar in pieces: each entry's header, then its content read from disk (a
    file changed since the scan raises BuildContextError); `files` replace the entries of
    their names, or come after them (regular files, 0644, owned by root)."""
    extra = dict(files)
    for e in entries:
        content = extra.pop(e.rel, None)
        if content is not None and e.kind == FILE:
            yield _file_bytes(e.name, content, e.mtime)
            continue
        header = _entry_header(e, flavor)
        if e.kind != FILE or not e.size:
            yield header
            continue
        pad = b"\0" * (-e.size % BLOCK)
        if e.size <= _SMALL:
            yield b"".join((header, *read_exactly(e), pad))
            continue
        yield header
        yield from read_exactly(e)
        if pad:
            yield pad
    for name, content in extra.items():
        yield _file_bytes(name, content, 0)
    yield b"\0" * (2 * BLOCK)


def tar_size(entries: Sequence[ContextEntry], flavor: TarFlavor,
             files: Mapping[str, bytes]) -> int:
    """The exact number of bytes `tar_chunks` produces (no file is read)."""
    extra = dict(files)
    total = 2 * BLOCK
    for e in entries:
        content = extra.pop(e.rel, None)
        if content is not None and e.kind == FILE:
            body = header_plan(name=e.name, linkname="", uid=0, gid=0, size=len(content),
                               mtime=e.mtime, xattrs={})[3]
            total += header_size(body) + -(-len(content) // BLOCK) * BLOCK
            continue
        uid, gid = e.tar_owner(flavor)
        body = header_plan(name=e.name, linkname=e.linkname, uid=uid, gid=gid, size=e.size,
                           mtime=e.mtime, xattrs=e.tar_xattrs(flavor))[3]
        total += header_size(body) + -(-e.size // BLOCK) * BLOCK
    for name, content in extra.items():
        body = header_plan(name=name, linkname="", uid=0, gid=0, size=len(content), mtime=0,
                           xattrs={})[3]
        total += header_size(body) + -(-len(content) // BLOCK) * BLOCK
    return total


class TarStream:
    """A context tar read like a file while it is being made: `size` bytes in all, read in
    whatever pieces the reader asks for (a build request's body). Not seekable."""

    def __init__(self, chunks: Iterator[bytes], size: int) -> None:
        self.size = size
        self._chunks = chunks
        self._pending: deque[bytes] = deque()
        self._offset = 0  # into the first pending chunk
        self._buffered = 0
        self._sent = 0
        self._ended = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._sent

    def read(self, size: int | None = -1) -> bytes:
        want = self.size - self._sent if size is None or size < 0 else size
        while self._buffered < want and not self._ended:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._ended = True
                break
            if chunk:
                self._pending.append(chunk)
                self._buffered += len(chunk)
        out: list[bytes] = []
        left = min(want, self._buffered)
        while left:
            first = self._pending[0]
            take = min(left, len(first) - self._offset)
            out.append(first[self._offset:self._offset + take])
            self._offset += take
            left -= take
            if self._offset == len(first):
                self._pending.popleft()
                self._offset = 0
        data = b"".join(out)
        self._buffered -= len(data)
        self._sent += len(data)
        if self._ended and not self._buffered and self._sent != self.size:
            raise BuildContextError(
                f"the build context came to {self._sent} bytes where {self.size} were "
                "announced: it changed while devsync was sending it")
        return data

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
