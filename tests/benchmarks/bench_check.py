"""Benchmark: `devsync --check` on a big, in-sync repository versus a bare `python -c pass`.

    python tests/benchmarks/bench_check.py [CACHE_DIR] [--runs N]

Builds once (cached in CACHE_DIR, default /tmp/devsync-bench) a repository with 10,000 commits
(written with `git fast-import`) and 10,000 files, records an in-sync devsync state for it,
then times N runs of each command, alternating them so that machine noise hits both alike,
and prints the medians and their ratio. Target: the check costs at most 2x a bare interpreter.

Bytecode caching is forced on (PYTHONPYCACHEPREFIX inside CACHE_DIR) because an installed
devsync has .pyc files; without them every run would compile our modules from source.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_COMMITS = 10_000
N_FILES = 10_000
WATCHED_EXTRA = 20  # files named by COPY steps, on top of the Dockerfiles and app.py


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          env=env, check=True)
    return proc.stdout.decode().strip()


def _file(i: int) -> str:
    return f"src/d{i // 100:03d}/f{i % 100:02d}.txt"


def _fast_import_stream() -> bytes:
    """10,000 commits: the first adds every file, each later one edits one of them."""
    out: list[bytes] = []

    def blob(data: bytes) -> None:
        out.append(b"data %d\n%s\n" % (len(data), data))

    def commit(n: int, message: str) -> None:
        out.append(b"commit refs/heads/main\n")
        out.append(b"committer Bench <bench@example.com> %d +0000\n" % (1_600_000_000 + n))
        blob(message.encode())

    commit(0, "initial")
    for path, data in _initial_files().items():
        out.append(f"M 100644 inline {path}\n".encode())
        blob(data)
    for n in range(1, N_COMMITS):
        commit(n, f"change {n}")
        path = _file(n % N_FILES)
        out.append(f"M 100644 inline {path}\n".encode())
        blob(f"{path} revision {n}\n".encode())
    return b"".join(out)


def _initial_files() -> dict[str, bytes]:
    files = {_file(i): f"{_file(i)}\n".encode() for i in range(N_FILES)}
    files["Dockerfile"] = b"FROM registry.example.com/app:base-1.0\nCOPY . /app\n"
    files["Dockerfile.base"] = b"FROM registry.example.com/busybox:1\nRUN echo base\n"
    files["app.py"] = b"print('hello')\n"
    return files


def build_repo(cache: Path) -> Path:
    repo = cache / "repo"
    ready = cache / "repo.ready"
    if ready.exists():
        return repo
    if repo.exists():
        subprocess.run(["rm", "-rf", str(repo)], check=True)
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    t = time.monotonic()
    _git(repo, "fast-import", "--quiet", stdin=_fast_import_stream())
    _git(repo, "reset", "-q", "--hard", "main")
    _git(repo, "gc", "-q")
    count = _git(repo, "rev-list", "--count", "HEAD")
    files = _git(repo, "ls-files").count("\n") + 1
    print(f"built {repo}: {count} commits, {files} files in {time.monotonic() - t:.1f}s")
    ready.touch()
    return repo


def record_in_sync_state(repo: Path, env: dict[str, str]) -> None:
    """What a sync leaves behind, then one check to cache the prompt answer."""
    watched_app = ["Dockerfile", "app.py"] + [_file(i * 37) for i in range(WATCHED_EXTRA)]
    past = time.time() - 3600
    for rel in [*watched_app, "Dockerfile.base"]:
        os.utime(repo / rel, (past, past))
    script = f"""
import hashlib, json, sys
from devsync.adapters import state
root = sys.argv[1]
images = json.loads(sys.argv[2])
def digest(rel):
    return hashlib.sha256(open(root + "/" + rel, "rb").read()).hexdigest()
def mutate(s):
    s.images.clear()
    for name, paths in images.items():
        s.images[name] = state.ImageRecord(name=name, status=state.STATUS_IN_SYNC,
                                           watched={{p: digest(p) for p in paths}})
    s.registry_checked_at = {time.time()}
state.update(root, mutate)
"""
    images = {"app": watched_app, "base": ["Dockerfile.base"]}
    subprocess.run([sys.executable, "-c", script, str(repo), json.dumps(images)], env=env,
                   check=True)
    first = subprocess.run(CHECK, cwd=repo, env=env, capture_output=True, text=True,
                           check=False)
    if first.stdout or first.returncode:
        raise SystemExit(f"expected an in-sync, silent check; got {first!r}")


CHECK = [sys.executable, "-c", "from devsync.prompt.check import main; main()"]
CLI = [sys.executable, "-c", "from devsync.cli import main; raise SystemExit(main(['--check']))"]
BARE = [sys.executable, "-c", "pass"]


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode or proc.stdout or proc.stderr:
        raise SystemExit(f"{cmd} misbehaved: {proc!r}")
    return elapsed


def _stored_check(repo: Path, env: dict[str, str]) -> float | None:
    code = ("import sys; from devsync.adapters import state; "
            "c = state.load(sys.argv[1]).state.check;"
            "print(c.computed_at if c else '')")
    out = subprocess.run([sys.executable, "-c", code, str(repo)], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    return float(out) if out else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", default="/tmp/devsync-bench")
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--cli", action="store_true",
                        help="also time the CLI route (`devsync.cli.main(['--check'])`)")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(cache / "pycache"), DEVSYNC_STATE_DIR=str(cache / "state"),
               DEVSYNC_NO_REFRESH="1")
    repo = build_repo(cache)
    record_in_sync_state(repo, env)
    computed_at = _stored_check(repo, env)

    commands = {"check": CHECK, "python -c pass": BARE}
    if args.cli:
        commands["cli --check"] = CLI
    for cmd in commands.values():  # warm the page cache and the bytecode cache
        for _ in range(3):
            _time(cmd, repo, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(_time(cmd, repo, env))
    if _stored_check(repo, env) != computed_at:
        print("warning: the stored check record changed: some runs took the slow path")

    bare = statistics.median(times["python -c pass"])
    print(f"{args.runs} alternating runs in {repo} (python {sys.version.split()[0]})")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:16s} median {med * 1000:7.1f} ms   ratio {med / bare:4.2f}")


if __name__ == "__main__":
    main()
