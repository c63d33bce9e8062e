"""Benchmark: the shell prompt's `devsync --check` against a bare `python -c pass` of the same
interpreter, in a big repository.

    python tests/benchmarks/bench_check.py [CACHE_DIR] [--runs N] [--files N ...] [--cli]

Installs devsync (this source tree, not editable) into a venv of its own in CACHE_DIR (default
/tmp/devsync-bench), as pipx or `uv tool install` would: the baseline is that venv's python,
the very interpreter the prompt hook runs, started the same way. Builds once per size (cached)
a repository with 10,000 commits (`git fast-import`) and N files (default 10,000), records an
in-sync devsync state for it, then measures, each against the bare interpreter in the same
loop, alternating and in a rotating order so that machine noise hits both alike:

* steady: the hook's command (`shell_init.check_command()` in that venv) when nothing changed
  since the last prompt, past git's 2 s racy-timestamp window: the fast path. Goal <= 1.5x.
* checkout: the first prompt after a `git checkout` that changes files but none of the
  watched inputs: the slow path (hash the watched files, write the answer). Goal <= 3x.
* checkout-df: the first prompt after a checkout that changes the Dockerfile: the slow path
  with its one `git log`.
* with --cli: `devsync --check` through the console script pip writes (which imports `re`
  before devsync runs): what a hand-written rc line calling `devsync --check` costs.

Prints medians and ratios, and the modules the fast path imports beyond the bare interpreter
(`-X importtime`). Several sizes (`--files 10000 50000`) show whether the slow path grows
with the repository (it should not: it stats and hashes only the watched files).
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

SOURCE = Path(__file__).resolve().parents[2]
N_COMMITS = 10_000
WATCHED_EXTRA = 20  # files named by COPY steps, on top of the Dockerfiles and app.py
CHANGED_ON_BRANCH = 200  # files a checkout between the two branches rewrites
GOALS = {"steady": 1.5, "checkout": 3.0, "checkout-df": 3.0}


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.com")
    proc = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True,
                          env=env, check=True)
    return proc.stdout.decode().strip()


def _file(i: int) -> str:
    return f"src/d{i // 100:03d}/f{i % 100:02d}.txt"


def _fast_import_stream(n_files: int) -> bytes:
    """N_COMMITS commits: the first adds every file, each later one edits one of them."""
    out: list[bytes] = []

    def blob(data: bytes) -> None:
        out.append(b"data %d\n%s\n" % (len(data), data))

    def commit(n: int, message: str) -> None:
        out.append(b"commit refs/heads/main\n")
        out.append(b"committer Bench <bench@example.com> %d +0000\n" % (1_600_000_000 + n))
        blob(message.encode())

    commit(0, "initial")
    for path, data in _initial_files(n_files).items():
        out.append(f"M 100644 inline {path}\n".encode())
        blob(data)
    for n in range(1, N_COMMITS):
        commit(n, f"change {n}")
        path = _file(n % n_files)
        out.append(f"M 100644 inline {path}\n".encode())
        blob(f"{path} revision {n}\n".encode())
    return b"".join(out)


def _initial_files(n_files: int) -> dict[str, bytes]:
    files = {_file(i): f"{_file(i)}\n".encode() for i in range(n_files)}
    files["Dockerfile"] = b"FROM registry.example.com/app:base-1.0\nCOPY . /app\n"
    files["Dockerfile.base"] = b"FROM registry.example.com/busybox:1\nRUN echo base\n"
    files["app.py"] = b"print('hello')\n"
    return files


def _watched() -> dict[str, list[str]]:
    app = ["Dockerfile", "app.py"] + [_file(i * 37) for i in range(WATCHED_EXTRA)]
    return {"app": app, "base": ["Dockerfile.base"]}


def build_repo(cache: Path, n_files: int) -> Path:
    """The repository, with two more branches off main: `other` rewrites CHANGED_ON_BRANCH
    files that nobody watches, `dockerfile` also changes the Dockerfile."""
    repo = cache / f"repo-{n_files}"
    ready = cache / f"repo-{n_files}.ready"
    if ready.exists():
        return repo
    if repo.exists():
        subprocess.run(["rm", "-rf", str(repo)], check=True)
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    t = time.monotonic()
    _git(repo, "fast-import", "--quiet", stdin=_fast_import_stream(n_files))
    _git(repo, "reset", "-q", "--hard", "main")
    watched = {p for paths in _watched().values() for p in paths}
    unwatched = [_file(i) for i in range(n_files) if _file(i) not in watched]
    step = max(1, len(unwatched) // CHANGED_ON_BRANCH)
    _git(repo, "checkout", "-q", "-b", "other")
    for rel in unwatched[::step][:CHANGED_ON_BRANCH]:
        (repo / rel).write_text(f"{rel} on the other branch\n")
    _git(repo, "commit", "-qam", "other branch")
    _git(repo, "checkout", "-q", "-b", "dockerfile")
    (repo / "Dockerfile").write_text("FROM registry.example.com/app:base-1.1\nCOPY . /app\n")
    _git(repo, "commit", "-qam", "Move to base 1.1")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "gc", "-q")
    count = _git(repo, "rev-list", "--count", "HEAD")
    files = _git(repo, "ls-files").count("\n") + 1
    print(f"built {repo}: {count} commits, {files} files in {time.monotonic() - t:.1f}s")
    ready.touch()
    return repo


def install_venv(cache: Path) -> Path:
    """A venv with this source tree installed (not editable, no dependencies: the check needs
    none), compiled to bytecode at install time as pip does for any user."""
    venv = cache / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(SOURCE)], check=True, stdout=subprocess.DEVNULL)
    return python


def record_in_sync_state(python: Path, repo: Path, env: dict[str, str]) -> None:
    """What a sync leaves behind (its watched inputs' hashes and the commit it was made
    from), the watched files dated past the racy window."""
    past = time.time() - 3600
    for paths in _watched().values():
        for rel in paths:
            os.utime(repo / rel, (past, past))
    script = """
import hashlib, json, sys
from devsync.prompt import statestore
root, images, head = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
def digest(rel):
    return hashlib.sha256(open(root + "/" + rel, "rb").read()).hexdigest()
def mutate(doc):
    doc["images"] = {name: {"name": name, "status": "in_sync", "line": "",
                            "synced_revision": head, "watched": {p: digest(p) for p in paths}}
                     for name, paths in images.items()}
    doc["check"] = None
    doc["registry_checked_at"] = 4e9  # far ahead: no background refresh
statestore.update_raw(root, mutate, timeout=None)
"""
    head = _git(repo, "rev-parse", "HEAD")
    subprocess.run([str(python), "-c", script, str(repo), json.dumps(_watched()), head],
                   env=env, check=True)


def _time(cmd: list[str], cwd: Path, env: dict[str, str], expect: str = "") -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t
    if proc.returncode or proc.stderr or not proc.stdout.decode().startswith(expect) \
            or (not expect and proc.stdout):
        raise SystemExit(f"{cmd} misbehaved: {proc!r}")
    return elapsed


def _stored_check(python: Path, repo: Path, env: dict[str, str]) -> object:
    code = ("import sys, json; from devsync.prompt import statestore; "
            "print(json.dumps(statestore.read_raw(sys.argv[1])[0].get('check')))")
    return json.loads(subprocess.run([str(python), "-c", code, str(repo)], env=env,
                                     capture_output=True, text=True, check=True).stdout)


def fast_path_imports(python: Path, hook: list[str], repo: Path, env: dict[str, str]
                      ) -> list[str]:
    def names(argv: list[str]) -> list[str]:
        err = subprocess.run([str(python), "-X", "importtime", *argv], cwd=repo, env=env,
                             capture_output=True, text=True, check=True).stderr
        return [ln.rsplit("|", 1)[1].strip() for ln in err.splitlines()
                if ln.startswith("import time:") and not ln.endswith("| imported package")]

    bare = set(names(["-c", "pass"]))
    return [m for m in names(hook[1:]) if m not in bare]


def measure(python: Path, repo: Path, env: dict[str, str], runs: int, cli: bool
            ) -> dict[str, tuple[float, float]]:
    """name -> (median of the command, median of the bare interpreter it alternated with)."""
    hook = json.loads(subprocess.run(
        [str(python), "-c", "import json; from devsync.prompt.shell_init import check_command;"
                            "print(json.dumps(check_command()))"],
        capture_output=True, text=True, check=True).stdout)
    bare = [str(python), "-c", "pass"]
    _git(repo, "checkout", "-q", "main")
    record_in_sync_state(python, repo, env)
    _time(hook, repo, env)  # computes and caches the in-sync answer
    cached = _stored_check(python, repo, env)
    if not cached:
        raise SystemExit("the first check cached nothing")
    print(f"  fast path imports beyond a bare interpreter: "
          f"{' '.join(fast_path_imports(python, hook, repo, env))}")

    steady: dict[str, list[str]] = {"steady": hook}
    if cli:
        steady["cli"] = [str(python.parent / "devsync"), "--check"]
    results: dict[str, tuple[float, float]] = {}
    for cmd in [*steady.values(), bare]:  # warm the page cache
        for _ in range(3):
            _time(cmd, repo, env)
    times: dict[str, list[float]] = {name: [] for name in [*steady, "bare"]}
    for n in range(runs):
        order = [*steady.items(), ("bare", bare)]
        for name, cmd in order[n % len(order):] + order[:n % len(order)]:
            times[name].append(_time(cmd, repo, env))
    if _stored_check(python, repo, env) != cached:
        print("  warning: the stored check record changed: some runs took the slow path")
    for name in steady:
        results[name] = (statistics.median(times[name]), statistics.median(times["bare"]))

    # The first prompt after a checkout: each round checks out the branch (untimed), times
    # the hook and the bare interpreter once each (in alternating order), then goes back.
    for name, branch, expect in (("checkout", "other", ""),
                                 ("checkout-df", "dockerfile", "devsync: ")):
        mine: list[float] = []
        base: list[float] = []
        for n in range(runs):
            _git(repo, "checkout", "-q", branch)
            pair = [(hook, expect, mine), (bare, "", base)]
            for cmd, want, into in pair[::-1] if n % 2 else pair:
                into.append(_time(cmd, repo, env, want))
            _git(repo, "checkout", "-q", "main")
            _time(hook, repo, env)
        results[name] = (statistics.median(mine), statistics.median(base))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", default="/tmp/devsync-bench")
    parser.add_argument("--runs", type=int, default=41)
    parser.add_argument("--files", type=int, nargs="+", default=[10_000])
    parser.add_argument("--cli", action="store_true",
                        help="also time `devsync --check` through pip's console script")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    python = install_venv(cache)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    # (a deadline that a loaded machine's outlier cannot reach: it is timed, not silenced)
    env.update(DEVSYNC_STATE_DIR=str(cache / "state"), DEVSYNC_NO_REFRESH="1",
               DEVSYNC_CHECK_DEADLINE="5")
    print(f"python {sys.version.split()[0]} in {python.parent.parent} (devsync from {SOURCE}),"
          f" {args.runs} runs of each")
    print("| files | what | devsync | `python -c pass` | ratio | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = []
    for n_files in args.files:
        repo = build_repo(cache, n_files)
        for name, (mine, bare) in measure(python, repo, env, args.runs, args.cli).items():
            goal = GOALS.get(name)
            rows.append(f"| {n_files:,} | {name} | {mine * 1000:.1f} ms | {bare * 1000:.1f} ms "
                        f"| {mine / bare:.2f} | {f'<= {goal}' if goal else ''} |")
            print(rows[-1], flush=True)


if __name__ == "__main__":
    main()
