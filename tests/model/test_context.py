"""The build context and COPY/ADD hashes, checked against the real engine and both docker CLIs.

The engine tests build the same Dockerfiles with docker 20.10's CLI, the modern CLI and the SDK
(fed by `BuildContext.write_tar`), then compare every COPY/ADD `CreatedBy` with the prediction.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from devsync.model.context import (
    BuildContext,
    BuildContextError,
    TarFlavor,
    copy_created_by,
    scan_context,
)

LEGACY_CLI = "/usr/bin/docker"
MODERN_CLI = "/usr/local/bin/docker"
CLI_FLAVOR = {LEGACY_CLI: TarFlavor.CLI_LEGACY, MODERN_CLI: TarFlavor.CLI_MODERN}

LONG_DIR = "d" * 60
LONG_FILE = "y" * 60 + ".txt"
HUGE_DIR = "h" * 120
HUGE_FILE = "f" * 150 + ".txt"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


# ---------------------------------------------------------------- unit tests


def test_known_tarsums_of_one_file(tmp_path: Path) -> None:
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "f.txt", b"hello\n")
    ctx = scan_context(tmp_path)
    assert ctx.tarsum("f.txt", TarFlavor.CLI_MODERN) == (
        "99dab1a7a2dd5d9f985450ffe99777fca12ef0bdae5ec5e071c7846d31930e6d"
    )
    assert ctx.tarsum("f.txt", TarFlavor.CLI_LEGACY) == (
        "a76d97b9e333b20275d3a840325f2eb49929ce711c732e45f5b6a24cce4caac3"
    )
    assert ctx.source_hash(["f.txt"], TarFlavor.CLI_MODERN) == (
        "file:99dab1a7a2dd5d9f985450ffe99777fca12ef0bdae5ec5e071c7846d31930e6d"
    )


def test_walk_order_names_and_kinds(tmp_path: Path) -> None:
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "a.txt", b"1")
    _write(tmp_path / "a" / "b", b"2")
    _write(tmp_path / "B", b"3")
    (tmp_path / "empty").mkdir()
    os.symlink("a.txt", tmp_path / "ln")
    os.link(tmp_path / "a.txt", tmp_path / "z-hard")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        ctx = scan_context(tmp_path)
    # filepath.Walk order: byte order per directory, depth first ("a/" before "a.txt")
    assert [(e.name, e.kind) for e in ctx.entries] == [
        ("B", "file"), ("Dockerfile", "file"), ("a/", "dir"), ("a/b", "file"),
        ("a.txt", "file"), ("empty/", "dir"), ("fifo", "fifo"), ("ln", "symlink"),
        ("z-hard", "hardlink"),
    ]
    hard = ctx.entry("z-hard")
    assert hard is not None and hard.linkname == "a.txt" and hard.size == 0
    assert ctx.tar_size_estimate() == 512 * (9 + 4 + 2)


def test_dockerignore_walk_and_always_sent_files(tmp_path: Path) -> None:
    _write(tmp_path / ".dockerignore", b"*\n!src\nsrc/**/*.log\n!src/keep.log\n")
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "other.txt", b"x")
    _write(tmp_path / "src" / "a.py", b"x")
    _write(tmp_path / "src" / "deep" / "x.log", b"x")
    _write(tmp_path / "src" / "keep.log", b"x")
    ctx = scan_context(tmp_path)
    assert [e.name for e in ctx.entries] == [
        ".dockerignore", "Dockerfile", "src/", "src/a.py", "src/deep/", "src/keep.log",
    ]
    # the daemon deletes the ignored Dockerfile and .dockerignore after reading them
    assert ctx.files_under(["."]) == ["src", "src/a.py", "src/deep", "src/keep.log"]
    with pytest.raises(BuildContextError, match="not found"):
        ctx.source_hash(["Dockerfile"], TarFlavor.CLI_MODERN)


def test_excluded_directory_entered_for_an_exception(tmp_path: Path) -> None:
    _write(tmp_path / ".dockerignore", b"secret\n!secret/keep.txt\n")
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "secret" / "keep.txt", b"k")
    _write(tmp_path / "secret" / "token", b"t")
    ctx = scan_context(tmp_path)
    assert [e.name for e in ctx.entries] == [".dockerignore", "Dockerfile", "secret/keep.txt"]
    keep = ctx.tarsum("secret/keep.txt", TarFlavor.CLI_MODERN)
    # no tar entry for "secret": the daemon hashes the path string itself
    expected = hashlib.sha256(",".join(sorted(["secret", keep])).encode()).hexdigest()
    assert ctx.source_hash(["secret"], TarFlavor.CLI_MODERN) == "dir:" + expected


def test_legacy_and_modern_ignore_walks_differ_like_the_clis(tmp_path: Path) -> None:
    _write(tmp_path / ".dockerignore", b"**/node_modules\n!a/b/node_modules/keep\n")
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "a" / "b" / "node_modules" / "keep", b"k")
    _write(tmp_path / "a" / "b" / "node_modules" / "x", b"x")
    modern = scan_context(tmp_path)
    legacy = scan_context(tmp_path, ignore_flavor=TarFlavor.CLI_LEGACY)
    assert [e.rel for e in modern.entries if "node_modules/" in e.name] == [
        "a/b/node_modules/keep",
    ]
    assert [e.rel for e in legacy.entries if "node_modules/" in e.name] == [
        "a/b/node_modules/keep", "a/b/node_modules/x",
    ]


def test_source_resolution_rules(tmp_path: Path) -> None:
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "f.txt", b"hello\n")
    _write(tmp_path / "src" / "a.py", b"a")
    os.symlink("../f.txt", tmp_path / "src" / "up")
    os.symlink("/f.txt", tmp_path / "src" / "abs")
    os.symlink("/nowhere", tmp_path / "dangling")
    os.symlink("src", tmp_path / "srclink")
    ctx = scan_context(tmp_path)
    m = TarFlavor.CLI_MODERN
    f_hash = ctx.source_hash(["f.txt"], m)
    # leading "/" and "./" are trimmed, ".." inside the context is cleaned away
    assert ctx.source_hash(["/f.txt"], m) == f_hash
    assert ctx.source_hash(["./f.txt"], m) == f_hash
    assert ctx.source_hash(["src/../f.txt"], m) == f_hash
    # symlinks are followed inside the context (absolute ones re-rooted at the context)
    assert ctx.source_hash(["src/up"], m) == f_hash
    assert ctx.source_hash(["src/abs"], m) == f_hash
    assert ctx.source_hash(["srclink"], m) == ctx.source_hash(["src"], m)
    assert ctx.source_hash(["./"], m) == ctx.source_hash(["."], m)
    # a directory's hash includes the directory's own entry
    parts = [ctx.tarsum(r, m) for r in ("src", "src/a.py")] + [ctx.tarsum("f.txt", m)] * 2
    assert ctx.source_hash(["src"], m) == "dir:" + hashlib.sha256(
        ",".join(sorted(parts)).encode()
    ).hexdigest()
    assert ctx.files_under(["src"]) == ["f.txt", "src", "src/a.py"]
    # wildcards: one match is a plain file:, several are multi:, no match alone is an error
    assert ctx.source_hash(["f.tx?"], m) == f_hash
    assert ctx.source_hash(["*.nomatch", "f.txt"], m) == f_hash
    multi = ctx.source_hash(["f.txt", "src"], m)
    assert multi == "multi:" + hashlib.sha256(
        f"{f_hash},{ctx.source_hash(['src'], m)}".encode()
    ).hexdigest()
    wild = [f_hash, ctx.source_hash(["src"], m), ctx.source_hash(["srclink"], m)]
    assert ctx.source_hash(["[fs]*"], m) == "multi:" + hashlib.sha256(
        ",".join(str(h) for h in wild).encode()
    ).hexdigest()
    with pytest.raises(BuildContextError, match="no source files"):
        ctx.source_hash(["*.nomatch"], m)
    with pytest.raises(BuildContextError, match="not found"):
        ctx.source_hash(["missing.txt"], m)
    with pytest.raises(BuildContextError, match="not found"):
        ctx.source_hash(["dangling"], m)
    with pytest.raises(BuildContextError, match="outside the build context"):
        ctx.source_hash(["../f.txt"], m)
    with pytest.raises(BuildContextError, match="URL"):
        ctx.source_hash(["https://example.invalid/x"], m)
    assert ctx.source_hash(["https://example.invalid/x", "f.txt"], m, instruction="ADD") is None
    with pytest.raises(BuildContextError, match="not found"):
        ctx.source_hash(["https://example.invalid/x", "nope"], m, instruction="ADD")


def test_symlinks_out_of_the_context_are_rerooted_not_refused(tmp_path: Path) -> None:
    # the daemon untars in a chroot, so an escaping link is kept and resolved inside the root
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    os.symlink("../../etc/passwd", tmp_path / "escape")
    ctx = scan_context(tmp_path)
    m = TarFlavor.CLI_MODERN
    with pytest.raises(BuildContextError, match="not found"):
        ctx.source_hash(["escape"], m)
    # with no tar entry at the resolved path, the walk hashes the link's own path string
    parts = sorted([ctx.tarsum("Dockerfile", m), "escape"])
    expected = "dir:" + hashlib.sha256(",".join(parts).encode()).hexdigest()
    assert ctx.source_hash(["."], m) == expected
    assert ctx.files_under(["."]) == ["Dockerfile"]


def test_dockerfile_lookup(tmp_path: Path) -> None:
    _write(tmp_path / "dockerfile", b"FROM scratch\n")
    assert scan_context(tmp_path).dockerfile == "dockerfile"
    _write(tmp_path / "sub" / "Build.df", b"FROM scratch\n")
    assert scan_context(tmp_path, "sub/Build.df").dockerfile == "sub/Build.df"
    with pytest.raises(BuildContextError, match="cannot locate"):
        scan_context(tmp_path, "nope")
    _write(tmp_path.parent / f"{tmp_path.name}.df", b"FROM scratch\n")
    os.symlink(f"../{tmp_path.name}.df", tmp_path / "outside.df")
    with pytest.raises(BuildContextError, match="outside"):
        scan_context(tmp_path, "outside.df")


def test_unreadable_file_is_refused_with_its_name() -> None:
    root = Path(tempfile.mkdtemp(prefix="dsx-unreadable-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        _write(root / "Dockerfile", b"FROM scratch\n")
        _write(root / "secret.key", b"k", mode=0o600)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child becomes an ordinary user, as a developer would be
            code = 0
            try:
                os.close(read_fd)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    scan_context(root)
                except BuildContextError as exc:
                    os.write(write_fd, exc.message.encode())
                    code = 3
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as r:
            message = r.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3
        assert "secret.key" in message
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def _reference_tarsums(data: bytes) -> dict[str, str]:
    """An independent tarsum v1 over a tar stream (what the daemon computes on extraction)."""
    sums: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for member in tf:
            h = hashlib.sha256()
            raw_name = member.name + ("/" if member.isdir() else "")
            typeflag = member.type.decode()
            fields = [
                ("name", raw_name), ("mode", str(member.mode)), ("uid", str(member.uid)),
                ("gid", str(member.gid)), ("size", str(member.size)), ("typeflag", typeflag),
                ("linkname", member.linkname), ("uname", ""), ("gname", ""),
                ("devmajor", str(member.devmajor)), ("devminor", str(member.devminor)),
            ]
            for k, v in fields:
                h.update((k + v).encode("utf-8", "surrogateescape"))
            for k in sorted(member.pax_headers):
                if k.startswith("SCHILY.xattr."):
                    h.update(k[len("SCHILY.xattr."):].encode()
                             + member.pax_headers[k].encode("utf-8", "surrogateescape"))
            if member.isfile():
                fobj = tf.extractfile(member)
                assert fobj is not None
                h.update(fobj.read())
            sums[member.name.rstrip("/")] = h.hexdigest()
    return sums


@pytest.mark.parametrize("flavor", list(TarFlavor))
def test_write_tar_carries_the_predicted_tarsums(tmp_path: Path, flavor: TarFlavor) -> None:
    _make_main_context(tmp_path, chown=False)
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    ctx = scan_context(tmp_path)
    buf = io.BytesIO()
    ctx.write_tar(buf, flavor)
    data = buf.getvalue()
    assert len(data) == ctx.tar_size_estimate(flavor)
    sums = _reference_tarsums(data)
    assert list(sums) == [e.rel for e in ctx.entries]
    for e in ctx.entries:
        assert sums[e.rel] == ctx.tarsum(e.rel, flavor), e.name
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        src = tf.getmember("src")
        expected = 0o40755 if flavor.base is TarFlavor.CLI_LEGACY else 0o755
        assert src.mode == expected


def test_git_modes_flavors_send_what_a_umask_022_checkout_sends(tmp_path: Path) -> None:
    """umask 002 gives 0664/0775 where CI's checkout had 0644/0755: the git-modes flavors hash
    and write the developer's tree exactly as their base flavor does CI's tree."""

    def tree(root: Path, file_mode: int, exec_mode: int, dir_mode: int) -> BuildContext:
        _write(root / "Dockerfile", b"FROM scratch\n", file_mode)
        _write(root / "f.txt", b"hello\n", file_mode)
        _write(root / "run.sh", b"#!/bin/sh\n", exec_mode)
        _write(root / "sub" / "deep" / "x.txt", b"x\n", file_mode)
        os.link(root / "f.txt", root / "sub" / "hard.txt")
        os.symlink("../f.txt", root / "sub" / "link")
        for d in (root / "sub", root / "sub" / "deep"):
            os.chmod(d, dir_mode)
        os.chmod(root, dir_mode)
        return scan_context(root)

    dev = tree(tmp_path / "dev", 0o664, 0o775, 0o775)
    ci = tree(tmp_path / "ci", 0o644, 0o755, 0o755)
    assert dev.git_modes_differ() and not ci.git_modes_differ()
    for plain in (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY, TarFlavor.SDK_DEFAULT):
        variant = plain.with_git_modes()
        assert (plain.git_modes, plain.base, plain.with_git_modes()) == (False, plain, variant)
        assert (variant.git_modes, variant.base, variant.with_git_modes()) == (True, plain,
                                                                               variant)
        assert [e.rel for e in dev.entries] == [e.rel for e in ci.entries]
        for e in dev.entries:
            assert dev.tarsum(e.rel, variant) == ci.tarsum(e.rel, plain), (variant, e.rel)
            # on a tree that already has git's modes the variant changes nothing
            assert ci.tarsum(e.rel, variant) == ci.tarsum(e.rel, plain), (variant, e.rel)
        for sources in (["."], ["f.txt", "sub"], ["sub/link"], ["run.sh"]):
            assert dev.source_hash(sources, variant) == ci.source_hash(sources, plain)
            # the plain flavor still sends the developer's modes: a real miss for the CLI
            assert dev.source_hash(sources, plain) != ci.source_hash(sources, plain)
    # the three plain flavors keep their values and behaviour
    assert [f.value for f in (TarFlavor.CLI_MODERN, TarFlavor.CLI_LEGACY,
                              TarFlavor.SDK_DEFAULT)] == ["cli-modern", "cli-legacy",
                                                           "sdk-default"]

    # the written tar carries git's modes (file-type bits for 20.10) and the hashed tarsums;
    # setuid/setgid/sticky bits are not umask artefacts and are sent as they are
    _write(tmp_path / "dev" / "suid", b"s\n", 0o4775)
    os.mkdir(tmp_path / "dev" / "shared")
    os.chmod(tmp_path / "dev" / "shared", 0o2775)
    os.mkdir(tmp_path / "dev" / "tmp")
    os.chmod(tmp_path / "dev" / "tmp", 0o1777)
    _write(tmp_path / "dev" / "private.txt", b"p\n", 0o600)
    dev = scan_context(tmp_path / "dev")
    expected = {"f.txt": 0o644, "run.sh": 0o755, "sub": 0o755, "sub/deep/x.txt": 0o644,
                "sub/hard.txt": 0o644, "sub/link": 0o777, "suid": 0o4755,
                "shared": 0o2755, "tmp": 0o1755, "private.txt": 0o644}
    for variant in (TarFlavor.CLI_MODERN_GIT_MODES, TarFlavor.CLI_LEGACY_GIT_MODES,
                    TarFlavor.SDK_DEFAULT_GIT_MODES):
        buf = io.BytesIO()
        dev.write_tar(buf, variant)
        data = buf.getvalue()
        assert len(data) == dev.tar_size_estimate(variant)
        sums = _reference_tarsums(data)
        assert sums == {e.rel: dev.tarsum(e.rel, variant) for e in dev.entries}
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            modes = {m.name.rstrip("/"): m.mode for m in tf.getmembers()}
        for rel, perm in expected.items():
            entry = dev.entry(rel)
            assert entry is not None
            want = perm | stat.S_IFMT(entry.mode) if variant.base is TarFlavor.CLI_LEGACY \
                else perm
            assert modes[rel] == want, (variant, rel, oct(modes[rel]))
        # only the modes changed: the plain flavor's headers are kept otherwise
        plain_tar = io.BytesIO()
        dev.write_tar(plain_tar, variant.base)
        assert len(plain_tar.getvalue()) == len(data) and plain_tar.getvalue() != data


# ---------------------------------------------------------------- real engine


@dataclass(frozen=True)
class Step:
    instruction: str
    sources: tuple[str, ...]
    dest: str
    chown: str | None = None

    def line(self) -> str:
        chown = f"--chown={self.chown} " if self.chown else ""
        return f"{self.instruction} {chown}{' '.join(self.sources)} {self.dest}"


MAIN_STEPS = [
    Step("COPY", ("f.txt",), "/c/f"),
    Step("COPY", ("exec.sh", "private.txt", "owned.txt"), "/c/multi/"),
    Step("COPY", ("*.json",), "/c/json/"),
    Step("COPY", ("exec.s?",), "/c/one"),
    Step("COPY", ("src",), "/c/src"),
    Step("COPY", ("src/link",), "/c/link"),
    Step("COPY", ("dirlink",), "/c/dirlink"),
    Step("COPY", ("secret",), "/c/secret"),
    Step("COPY", ("empty",), "/c/empty"),
    Step("COPY", ("hard.txt",), "/c/hard"),
    Step("COPY", ("f.txt",), "/c/chowned", chown="1:1"),
    Step("ADD", ("f.txt",), "/c/added"),
    Step("ADD", ("archive.tar",), "/c/archive/"),
    Step("COPY", ("deep",), "/c/deep"),
    Step("COPY", ("ünï.txt",), "/c/unicode"),
    Step("COPY", ("./src/../f.txt",), "/c/dots"),
    Step("COPY", ("s*",), "/c/wild/"),
    Step("COPY", ("*.nomatch", "f.txt"), "/c/nomatch/"),
    Step("COPY", (".",), "/c/all"),
]


def _make_main_context(root: Path, *, chown: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _write(root / ".dockerignore",
           b"# devsync test\n**/*.log\nsecret/\n!secret/keep.txt\nDockerfile\n")
    _write(root / "f.txt", b"hello\n")
    os.link(root / "f.txt", root / "hard.txt")
    _write(root / "exec.sh", b"#!/bin/sh\necho hi\n", 0o755)
    _write(root / "private.txt", b"private\n", 0o600)
    _write(root / "owned.txt", b"owned\n")
    if chown:
        os.chown(root / "owned.txt", 1000, 1000)
    _write(root / "a.json", b"{}\n")
    _write(root / "b.json", b"[]\n")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo("inside.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"in\n"))
    _write(root / "archive.tar", archive.getvalue())
    _write(root / "src" / "a.py", b"print('a')\n")
    _write(root / "src" / "sub" / "b.txt", b"b\n")
    _write(root / "src" / "sub" / "debug.log", b"ignored\n")
    os.symlink("a.py", root / "src" / "link")
    os.symlink("/etc/passwd", root / "src" / "abslink")
    os.symlink("src", root / "dirlink")
    (root / "empty").mkdir()
    _write(root / "secret" / "keep.txt", b"keep\n")
    _write(root / "secret" / "token", b"token\n")
    _write(root / "deep" / LONG_DIR / LONG_FILE, b"long\n")
    _write(root / "deep" / HUGE_DIR / HUGE_FILE, b"huge\n")
    _write(root / "ünï.txt", b"unicode\n")
    for d in (root, root / "src", root / "src" / "sub", root / "empty", root / "secret",
              root / "deep", root / "deep" / LONG_DIR, root / "deep" / HUGE_DIR):
        os.chmod(d, 0o755)


def _history(engine: sandbox.PrivateEngine, tag: str) -> dict[str, str]:
    """dest -> CreatedBy of this image's COPY/ADD steps (the base image's own are left out)."""
    out = sandbox.docker_cli(engine, "history", "--no-trunc", "--format",
                             "{{.CreatedBy}}", tag).stdout
    steps: dict[str, str] = {}
    for line in out.split("\n"):
        m = re.search(r"#\(nop\) (?:COPY|ADD) .* in (\S+) $", line)
        if m and m.group(1) != "/bin/busybox":
            steps[m.group(1)] = line
    return steps


def _image_id(engine: sandbox.PrivateEngine, tag: str) -> str:
    return sandbox.docker_cli(engine, "image", "inspect", "--format", "{{.Id}}",
                              tag).stdout.strip()


def _sdk_build(engine: sandbox.PrivateEngine, ctx: BuildContext, flavor: TarFlavor,
               tag: str) -> None:
    import docker

    client = docker.DockerClient(base_url=engine.url)
    try:
        with tempfile.TemporaryFile() as buf:
            ctx.write_tar(buf, flavor)
            buf.seek(0)
            for chunk in client.api.build(fileobj=buf, custom_context=True, tag=tag,
                                          dockerfile=ctx.dockerfile, rm=True, decode=True):
                assert "error" not in chunk, chunk
    finally:
        client.close()


def _predicted(ctx: BuildContext, steps: list[Step], flavor: TarFlavor) -> dict[str, str]:
    out = {}
    for step in steps:
        h = ctx.source_hash(list(step.sources), flavor, instruction=step.instruction)
        assert h is not None
        out[step.dest] = copy_created_by(step.instruction, h, step.dest, step.chown)
    return out


@dataclass
class Built:
    root: Path
    history: dict[str, dict[str, str]]  # build name -> dest -> CreatedBy
    image_ids: dict[str, str]


@pytest.fixture(scope="module")
def main_builds(engine: sandbox.PrivateEngine, busybox_image: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = Path(tempfile.mkdtemp(prefix="dsx-ctx-", dir="/tmp")) / "ctx"
    _make_main_context(root, chown=True)
    dockerfile = "\n".join([f"FROM {busybox_image}", *(s.line() for s in MAIN_STEPS)]) + "\n"
    (root / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    built = Built(root, {}, {})
    for name, cli in (("legacy", LEGACY_CLI), ("modern", MODERN_CLI)):
        tag = f"dsx-bc-{name}:1"
        sandbox.docker_cli(engine, "build", "-t", tag, str(root), cli=cli)
        built.history[name] = _history(engine, tag)
        built.image_ids[name] = _image_id(engine, tag)
    ctx = scan_context(root)
    for name, flavor in (("sdk-legacy", TarFlavor.CLI_LEGACY),
                         ("sdk-modern", TarFlavor.CLI_MODERN)):
        tag = f"dsx-bc-{name}:1"
        _sdk_build(engine, ctx, flavor, tag)
        built.history[name] = _history(engine, tag)
        built.image_ids[name] = _image_id(engine, tag)
    yield built
    subprocess.run(["rm", "-rf", str(root.parent)], check=False)


@pytest.mark.engine
@pytest.mark.parametrize("cli", [LEGACY_CLI, MODERN_CLI])
def test_predicted_copy_hashes_match_the_cli_builds(main_builds: Built, cli: str) -> None:
    name = "legacy" if cli == LEGACY_CLI else "modern"
    ctx = scan_context(main_builds.root)
    predicted = _predicted(ctx, MAIN_STEPS, CLI_FLAVOR[cli])
    actual = main_builds.history[name]
    assert set(actual) >= set(predicted)
    mismatched = {d: (p, actual[d]) for d, p in predicted.items() if actual[d] != p}
    assert not mismatched
    # the flavors really differ, so the prediction is not trivially flavor-blind
    assert main_builds.history["legacy"]["/c/f"] != main_builds.history["modern"]["/c/f"]


@pytest.mark.engine
def test_chown_quirk_and_trailing_space(main_builds: Built) -> None:
    line = main_builds.history["modern"]["/c/chowned"]
    assert line.startswith("/bin/sh -c #(nop) COPY --chown=1:1file:")
    assert line.endswith(" in /c/chowned ")


@pytest.mark.engine
@pytest.mark.parametrize("name", ["legacy", "modern"])
def test_sdk_build_from_write_tar_hits_the_cli_cache(main_builds: Built, name: str) -> None:
    assert main_builds.history[f"sdk-{name}"] == main_builds.history[name]
    # every step was a cache hit: the very same image
    assert main_builds.image_ids[f"sdk-{name}"] == main_builds.image_ids[name]


SUB_STEPS = [
    Step("COPY", ("a",), "/d/a"),
    Step("COPY", ("docker",), "/d/docker"),
    Step("COPY", (".",), "/d/all"),
]


@pytest.mark.engine
def test_ignored_dockerfile_dir_and_ignore_generations(engine: sandbox.PrivateEngine,
                                                       busybox_image: str,
                                                       tmp_path: Path) -> None:
    root = tmp_path / "ctx2"
    _write(root / ".dockerignore", b"docker\n**/node_modules\n!a/b/node_modules/keep\n")
    _write(root / "a" / "c.txt", b"c\n")
    _write(root / "a" / "b" / "node_modules" / "keep", b"k\n")
    _write(root / "a" / "b" / "node_modules" / "x", b"x\n")
    dockerfile = "\n".join([f"FROM {busybox_image}", *(s.line() for s in SUB_STEPS)]) + "\n"
    _write(root / "docker" / "Dockerfile", dockerfile.encode())
    for d in (root, root / "a", root / "a" / "b", root / "a" / "b" / "node_modules",
              root / "docker"):
        os.chmod(d, 0o755)
    results = {}
    for cli in (LEGACY_CLI, MODERN_CLI):
        tag = "dsx-bc-sub:" + ("legacy" if cli == LEGACY_CLI else "modern")
        sandbox.docker_cli(engine, "build", "-f", str(root / "docker" / "Dockerfile"),
                           "-t", tag, str(root), cli=cli)
        flavor = CLI_FLAVOR[cli]
        ctx = scan_context(root, "docker/Dockerfile", ignore_flavor=flavor)
        assert _history(engine, tag) == _predicted(ctx, SUB_STEPS, flavor)
        results[cli] = ctx
    # 20.10's single-parent matching sends a/b/node_modules/x, the modern CLI does not
    assert "a/b/node_modules/x" in results[LEGACY_CLI].files_under(["a"])
    assert "a/b/node_modules/x" not in results[MODERN_CLI].files_under(["a"])
    # "docker" is only an implied directory, emptied by the daemon: hashed as its path
    expected = "dir:" + hashlib.sha256(b"docker").hexdigest()
    assert results[MODERN_CLI].source_hash(["docker"], TarFlavor.CLI_MODERN) == expected


@pytest.mark.engine
def test_sdk_default_flavor_matches_docker_py_default_context(
        engine: sandbox.PrivateEngine, busybox_image: str, tmp_path: Path) -> None:
    import docker

    root = tmp_path / "ctx3"
    _write(root / "owned.txt", b"owned\n")
    _write(root / "sub" / "x.txt", b"x\n", 0o640)
    os.chown(root / "owned.txt", 1000, 1000)
    os.chown(root / "sub", 1000, 1001)
    os.chmod(root / "sub", 0o750)
    os.chmod(root, 0o755)
    steps = [Step("COPY", ("owned.txt",), "/s/o"), Step("COPY", ("sub",), "/s/sub"),
             Step("COPY", (".",), "/s/all")]
    dockerfile = "\n".join([f"FROM {busybox_image}", *(s.line() for s in steps)]) + "\n"
    _write(root / "Dockerfile", dockerfile.encode())
    client = docker.DockerClient(base_url=engine.url)
    try:
        client.images.build(path=str(root), tag="dsx-bc-sdkdefault:1", rm=True)
    finally:
        client.close()
    ctx = scan_context(root)
    assert _history(engine, "dsx-bc-sdkdefault:1") == _predicted(ctx, steps,
                                                                 TarFlavor.SDK_DEFAULT)
    # and with the owner's uid the CLI's cache would be missed
    assert ctx.source_hash(["owned.txt"], TarFlavor.SDK_DEFAULT) != ctx.source_hash(
        ["owned.txt"], TarFlavor.CLI_MODERN)


def test_flavors_writing_the_same_header_share_one_sum(tmp_path: Path) -> None:
    # git's modes are a 0644 file's own: both flavors send the same header, so the file is
    # read once (a rewrite in between, same size, goes unseen by the second flavor)
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "f.txt", b"hello\n", 0o644)
    ctx = scan_context(tmp_path)
    first = ctx.tarsum("f.txt", TarFlavor.CLI_MODERN)
    (tmp_path / "f.txt").write_bytes(b"HELLO\n")
    assert ctx.tarsum("./f.txt", TarFlavor.CLI_MODERN_GIT_MODES) == first
    # another header (the legacy CLI's mode has the file-type bits) is a sum of its own
    assert ctx.tarsum("f.txt", TarFlavor.CLI_LEGACY) != first
    with pytest.raises(KeyError):
        ctx.tarsum("nothing.txt", TarFlavor.CLI_MODERN)


def test_check_sources_refuses_what_source_hash_refuses(tmp_path: Path) -> None:
    _write(tmp_path / "Dockerfile", b"FROM scratch\n")
    _write(tmp_path / "f.txt", b"hello\n")
    ctx = scan_context(tmp_path)
    ctx.check_sources(["f.txt", "*.txt"])
    for sources in (["missing.txt"], ["../f.txt/../../x"], []):
        with pytest.raises(BuildContextError) as hashed:
            ctx.source_hash(sources, TarFlavor.CLI_MODERN)
        with pytest.raises(BuildContextError) as checked:
            ctx.check_sources(sources)
        assert checked.value.message == hashed.value.message


HOSTILE_STEPS = [
    Step("COPY", ("src",), "/h/src"),
    Step("COPY", (".",), "/h/all"),
]


@pytest.mark.engine
def test_hostile_tree_hashes_as_both_clis_build_it(engine: sandbox.PrivateEngine,
                                                   busybox_image: str, tmp_path: Path) -> None:
    """Self-loops, a loop pair, links to a parent, dangling links, links out of the context and
    a FIFO (issue 14): the scan lists them without following any, and the COPY hashes are the
    ones both CLIs' builds write."""
    root = tmp_path / "hostile"
    _write(root / "src" / "a.txt", b"a\n")
    os.symlink("loop", root / "src" / "loop")
    os.symlink("pong", root / "src" / "ping")
    os.symlink("ping", root / "src" / "pong")
    os.symlink("..", root / "src" / "up")
    os.symlink("../..", root / "src" / "upup")
    os.symlink("nowhere", root / "src" / "gone")
    os.symlink("/etc", root / "src" / "etc")
    os.symlink(str(tmp_path), root / "src" / "outside")
    os.mkfifo(root / "src" / "pipe")
    dockerfile = "\n".join([f"FROM {busybox_image}", *(s.line() for s in HOSTILE_STEPS)])
    _write(root / "Dockerfile", (dockerfile + "\n").encode())
    for d in (root, root / "src"):
        os.chmod(d, 0o755)
    kinds = {e.name: e.kind for e in scan_context(root).entries}
    assert {name: kinds[f"src/{name}"] for name in ("loop", "ping", "up", "gone", "etc",
                                                    "outside", "pipe")} == {
        "loop": "symlink", "ping": "symlink", "up": "symlink", "gone": "symlink",
        "etc": "symlink", "outside": "symlink", "pipe": "fifo"}
    for cli in (LEGACY_CLI, MODERN_CLI):
        tag = "dsx-hostile:" + ("legacy" if cli == LEGACY_CLI else "modern")
        sandbox.docker_cli(engine, "build", "-t", tag, str(root), cli=cli)
        flavor = CLI_FLAVOR[cli]
        ctx = scan_context(root, ignore_flavor=flavor)
        assert _history(engine, tag) == _predicted(ctx, HOSTILE_STEPS, flavor)
    # a COPY of the loop itself: the engine refuses it, and the plan says it in its words
    _write(root / "Dockerfile", f"FROM {busybox_image}\nCOPY src/loop /x\n".encode())
    built = sandbox.docker_cli(engine, "build", str(root), check=False)
    refusal = "COPY failed: forbidden path outside the build context: src/loop"
    assert built.returncode != 0 and refusal in built.stderr, built.stderr
    with pytest.raises(BuildContextError) as info:
        scan_context(root).source_hash(["src/loop"], TarFlavor.CLI_MODERN)
    assert info.value.message == refusal
