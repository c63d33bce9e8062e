"""One entry of a build context, and how each client ("flavor") writes its tar header.

The header fields of each entry depend on the client: the modern CLI writes permission bits
only, docker 20.10's CLI adds the file-type bits, and the Python SDK keeps the owner's
uid/gid (`TarFlavor`, `ContextEntry.tar_mode`/`tar_owner`/`tar_xattrs`). Each flavor has a
"git modes" variant that writes the modes a fresh `git checkout` under umask 022 (CI's) would
have produced (`git_mode`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from devsync.errors import DockerfileError


class BuildContextError(DockerfileError):
    """A build context (or a COPY/ADD source in it) that docker would refuse."""


class TarFlavor(Enum):
    """How a client writes the context tar headers (and so which tarsums the daemon sees).

    The `*_GIT_MODES` variants write headers like their `base`, except that permission bits
    are those git would check out under umask 022 (`git_mode`): what CI's checkout had when
    the deployed image was built, whatever the developer's umask made of the same commit.
    """

    CLI_MODERN = "cli-modern"  # docker >= 23: mode = permission bits, uid/gid 0
    CLI_LEGACY = "cli-legacy"  # docker 20.10: mode with file-type bits, uid/gid 0
    SDK_DEFAULT = "sdk-default"  # docker-py's own archive: permission bits, owner's uid/gid
    CLI_MODERN_GIT_MODES = "cli-modern+git-modes"
    CLI_LEGACY_GIT_MODES = "cli-legacy+git-modes"
    SDK_DEFAULT_GIT_MODES = "sdk-default+git-modes"

    # (set on each member below: asked per file, an Enum's hash would cost a scan's worth)
    _base: TarFlavor
    _git_modes: bool

    @property
    def base(self) -> TarFlavor:
        """The client whose headers this flavor writes (itself for the plain flavors)."""
        return self._base

    @property
    def git_modes(self) -> bool:
        """Whether permission bits are normalized to git's (see `git_mode`)."""
        return self._git_modes

    def with_git_modes(self) -> TarFlavor:
        """The git-modes variant of this flavor's base."""
        return _WITH_GIT_MODES[self.base]


_GIT_MODES_BASE = {
    TarFlavor.CLI_MODERN_GIT_MODES: TarFlavor.CLI_MODERN,
    TarFlavor.CLI_LEGACY_GIT_MODES: TarFlavor.CLI_LEGACY,
    TarFlavor.SDK_DEFAULT_GIT_MODES: TarFlavor.SDK_DEFAULT,
}
_WITH_GIT_MODES = {base: variant for variant, base in _GIT_MODES_BASE.items()}
for _flavor in TarFlavor:
    _flavor._base = _GIT_MODES_BASE.get(_flavor, _flavor)
    _flavor._git_modes = _flavor in _GIT_MODES_BASE
PLAIN_FLAVORS = (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY, TarFlavor.SDK_DEFAULT)
GIT_MODES_FLAVORS = tuple(_WITH_GIT_MODES[f] for f in PLAIN_FLAVORS)

_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX


def git_mode(mode: int) -> int:
    """The permission bits git would check out for an entry with st_mode `mode` (umask 022).

    Git records only 644 or 755 for a regular file (755 when any execute bit is set) and
    nothing for a directory, so a checkout under umask 022 has 0644/0755 files and 0755
    directories. Symlinks and other kinds keep their bits (git stores no mode for them, and a
    symlink's 0777 is the same everywhere). Setuid, setgid and sticky bits are kept: git never
    sets them, so they are a deliberate local choice (or a setgid shared directory), not an
    umask artefact, and sending them keeps the image faithful to the files; the cost is a cache
    miss that the plan's mode reasons point at.
    """
    perm = stat.S_IMODE(mode)
    special = perm & _SPECIAL_BITS
    if stat.S_ISREG(mode):
        return special | (0o755 if perm & 0o111 else 0o644)
    if stat.S_ISDIR(mode):
        return special | 0o755
    return perm


FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"
FIFO = "fifo"
CHARDEV = "chardev"
BLOCKDEV = "blockdev"

TYPEFLAG = {
    FILE: b"0",
    HARDLINK: b"1",
    SYMLINK: b"2",
    CHARDEV: b"3",
    BLOCKDEV: b"4",
    DIR: b"5",
    FIFO: b"6",
}


@dataclass(slots=True)
class ContextEntry:
    """One entry of the context tar, in the CLI's walk order (never changed once scanned).

    Not a frozen dataclass: making 20,000 of those costs a large repository's scan twice as
    much. The `*_ns`, `ino` and `dev` fields are what `lstat` said during the walk: a file
    with the same signature (`stat_key`) still has the content a cache of digests saw.
    """

    name: str  # as written in the tar: slash-separated, directories end with "/"
    kind: str  # file, dir, symlink, hardlink, fifo, chardev or blockdev
    mode: int  # st_mode on disk (file-type and permission bits)
    uid: int  # owner on disk; only SDK_DEFAULT writes it, the CLI writes 0
    gid: int
    size: int  # content bytes in the tar (0 for everything but regular files)
    linkname: str  # symlink target, or for a hard link the name of its first copy
    abspath: str  # absolute path on disk (a str: building 10,000 Paths costs a third of a scan)
    mtime: int = 0
    rdev: int = 0
    capability: bytes | None = None  # security.capability xattr, which the CLI sends
    mtime_ns: int = 0
    ctime_ns: int = 0
    ino: int = 0
    dev: int = 0
    # the cleaned relative path (the daemon's key for this entry's tarsum); from `name`
    rel: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.rel:
            self.rel = self.name.rstrip("/")

    @property
    def path(self) -> Path:
        return Path(self.abspath)

    @property
    def stat_key(self) -> tuple[int, int, int, int, int, int]:
        """(size, mtime_ns, ctime_ns, inode, mode, device): what git's index keys a file's
        hash by. Any write, chmod, chown, xattr change or replacement moves one of them."""
        return (self.size, self.mtime_ns, self.ctime_ns, self.ino, self.mode, self.dev)

    def tar_mode(self, flavor: TarFlavor) -> int:
        perm = git_mode(self.mode) if flavor._git_modes else self.mode & 0o7777
        if flavor._base is TarFlavor.CLI_LEGACY:
            return perm | (self.mode & 0o170000)  # (stat.S_IFMT)
        return perm

    def tar_owner(self, flavor: TarFlavor) -> tuple[int, int]:
        if flavor._base is TarFlavor.SDK_DEFAULT:
            return self.uid, self.gid
        return 0, 0

    def tar_xattrs(self, flavor: TarFlavor) -> dict[str, bytes]:
        cap = self.capability
        base = flavor.base
        if cap is None or base is TarFlavor.SDK_DEFAULT:
            return {}
        if base is TarFlavor.CLI_MODERN and len(cap) > 3 and cap[3] == 3:
            # the modern CLI downgrades VFS_CAP_REVISION_3 to revision 2
            cap = cap[:3] + b"\x02" + cap[4:20]
        return {"security.capability": cap}

    def devices(self) -> tuple[int, int]:
        if self.kind in (CHARDEV, BLOCKDEV):
            return os.major(self.rdev), os.minor(self.rdev)
        return 0, 0
