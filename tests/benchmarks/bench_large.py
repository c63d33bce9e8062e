"""Benchmark: devsync on large repositories (20,000 and 50,000 files under `COPY .`).

    python tests/benchmarks/bench_large.py [--files 20000,50000] [--rounds N] [--keep DIR]

Starts its own private engine and registry (devsync.devtools.sandbox; stopped at the end, also
on error or Ctrl-C). For each size it makes a team repository whose app Dockerfile copies the
whole checkout (`COPY . /var/www/html`, N source files of 0.1-20 KB, ~2.9 KB on average), CI
builds `base-1.0.0` and deploys app `1.0.0` with the plain docker CLI (classic builder, the
revision as a `--label`, as CI does), and the engine is then made a developer's machine: every
image removed, then the base and the deployed image pulled (a developer who synced before).

Starting point of every timed sync, devsync's and the hand-typed one alike: the engine holds
the base and the deployed image (pulled), and no `REPO:dev` (removed, with the images only it
kept); the checkout is the deployed revision, clean (N) or with one file edited just before
the run (E, a new edit every run). So the hand-typed baseline includes no pull:

  N  nothing changed since the deployed image:
       H  `docker build --cache-from REPO:1.0.0 -t REPO:dev .`
       D  `devsync sync --yes`
  E  one file edited (uncommitted):
       H  `docker build --cache-from REPO:1.0.0 -t REPO:dev .`
       D  `devsync sync --yes`
  P  `devsync plan app` and `devsync status`, warm (the run before left devsync's hash cache)
  C  `devsync plan app`, cold (devsync's hash cache removed; the OS page cache stays warm)
  W  the TUI's re-plan after a one-file edit: `collect_statuses` in a process that has its
     session open already (as the TUI has), timed in-process, with the files it hashed
  G  `git status --porcelain` on the same checkout: a stat walk in C, for scale

Runs alternate (H and D in an order that flips each round) after one untimed warm-up round;
medians are printed with the ratios D/H of the medians and the median of each round's own
D/H. Every run is checked: the build succeeded, H's and D's images have the same layers, and
devsync's own report of cached steps matches the engine's (it says so when they differ).
Targets (issue 18): warm plan and status <= 0.6 s at 20k files; N: D <= 0.5 x H; E: D <= 1.1 x
H. Bytecode caching is forced on (PYTHONPYCACHEPREFIX) as an installed devsync has .pyc files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devsync.devtools import sandbox  # noqa: E402
from tests.support.teamrepo import TeamRepo, git  # noqa: E402

TARGETS = {"plan": 0.6, "status": 0.6, "N": 0.5, "E": 1.1}

BASE_DOCKERFILE = """\
FROM {busybox}
ENV LANG=C.UTF-8 APP_HOME=/var/www/html
RUN mkdir -p /opt/runtime && head -c 2000000 /dev/urandom > /opt/runtime/libs.bin
"""

APP_DOCKERFILE = """\
ARG BASE_TAG=base-1.0.0
FROM {repo}:${{BASE_TAG}}
WORKDIR $APP_HOME
COPY composer.json composer.lock ./
RUN mkdir -p /opt/vendor && head -c 1000000 /dev/urandom > /opt/vendor/packages.bin
COPY . /var/www/html
RUN find /var/www/html -type f | wc -l > /opt/files.txt
CMD ["sh", "-c", "cat /opt/files.txt"]
"""


class BenchError(RuntimeError):
    """A run did not do what the scenario says: the figures would be meaningless."""


@dataclass
class Repo:
    files: int
    team: TeamRepo
    deployed: str
    tag: str
    edits: int = 0


@dataclass
class Bench:
    root: Path
    engine: sandbox.PrivateEngine
    registry: sandbox.PrivateRegistry
    busybox: str
    pycache: Path
    cache_dir: Path
    state_dir: Path
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, size: str, what: str, seconds: float) -> None:
        self.results.setdefault(size, {}).setdefault(what, []).append(seconds)


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def sandbox_bench(keep: Path | None) -> Iterator[Bench]:
    # short path: unix socket paths are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="dsl-", dir="/tmp")) if keep is None else keep
    root.mkdir(parents=True, exist_ok=True)
    engine = sandbox.PrivateEngine(root / "engine")
    registry = sandbox.PrivateRegistry(root / "registry")
    try:
        sandbox.ensure_system_packages()
        engine.start()
        registry.start()
        busybox = f"{registry.host}/busybox:1"
        ctx = sandbox.busybox_context(root / "busybox-ctx")
        sandbox.docker_cli(engine, "build", "-q", "-t", busybox, str(ctx))
        sandbox.docker_cli(engine, "push", busybox)
        yield Bench(root=root, engine=engine, registry=registry, busybox=busybox,
                    pycache=root / "pycache", cache_dir=root / "cache",
                    state_dir=root / "state")
    finally:
        registry.stop()
        engine.stop()
        # overlay mounts may outlive the daemon briefly
        subprocess.run(["umount", "-R", str(root / "engine")], capture_output=True)
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def write_sources(path: Path, count: int, seed: int = 18) -> int:
    """`count` source files in directories of 40, sizes log-normal (median ~1.8 KB)."""
    rnd = random.Random(seed)
    total = 0
    line = "    $x = compute($x, 1); // filler line of code\n"
    for i in range(count):
        d = path / "src" / f"pkg{i // 400:03d}" / f"mod{(i // 40) % 10:02d}"
        if i % 40 == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = min(20_000, max(100, int(rnd.lognormvariate(7.5, 1.0))))
        body = (f"<?php // file {i}\n" + line * (size // len(line) + 1))[:size]
        (d / f"Class{i:05d}.php").write_text(body)
        total += size
    return total


def make_repo(b: Bench, files: int) -> Repo:
    path = b.root / f"shop{files}"
    repo = f"{b.registry.host}/shop{files}"
    team = TeamRepo(path=path, engine=b.engine, registry=b.registry, repo=repo,
                    busybox=b.busybox)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(BASE_DOCKERFILE.format(busybox=b.busybox))
    (path / "Dockerfile").write_text(APP_DOCKERFILE.format(repo=repo))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "composer.lock").write_text('{"packages": []}\n')
    total = write_sources(path, files)
    (path / ".dockerignore").write_text(".git\n*.log\nnode_modules\n")
    (path / ".gitignore").write_text("*.log\nnode_modules\n")
    team.commit("Initial commit")
    team.ci_build_base("1.0.0")
    deployed = team.ci_deploy("1.0.0")
    print(f"  repository of {files} source files ({total / 1e6:.0f} MB) deployed as "
          f"{deployed}", flush=True)
    return Repo(files=files, team=team, deployed=deployed, tag=f"{repo}:dev")


def developer_machine(b: Bench, r: Repo) -> None:
    """Every image removed, then the base and the deployed image pulled."""
    docker = r.team.docker
    docker("system", "prune", "-af", check=False)
    left = docker("images", "-aq").stdout.split()
    if left:
        docker("rmi", "-f", *left, check=False)
    docker("pull", f"{r.team.repo}:base-1.0.0")
    docker("pull", r.deployed)


def drop_dev(r: Repo) -> None:
    """No REPO:dev, and no image only it kept (as before a first sync of this checkout)."""
    r.team.docker("rmi", r.tag, check=False)
    r.team.docker("image", "prune", "-f", check=False)
    if r.team.docker("image", "inspect", r.tag, check=False).returncode == 0:
        raise BenchError(f"{r.tag} is still here")


def edit_one_file(r: Repo) -> str:
    r.edits += 1
    i = (r.edits * 7919) % r.files
    rel = f"src/pkg{i // 400:03d}/mod{(i // 40) % 10:02d}/Class{i:05d}.php"
    with open(r.team.path / rel, "a") as f:
        f.write(f"// edit {r.edits}\n")
    return rel


def restore_checkout(r: Repo) -> None:
    git(r.team.path, "checkout", "-q", "--", ".")
    if git(r.team.path, "status", "--porcelain").strip():
        raise BenchError("the checkout is not clean")


# --------------------------------------------------------------------------- runs


def devsync_env(b: Bench) -> dict[str, str]:
    env = b.engine.env()  # DOCKER_HOST = the private engine, DOCKER_BUILDKIT=0
    env.pop("DOCKER_CONTEXT", None)
    env["DEVSYNC_STATE_DIR"] = str(b.state_dir)
    env["DEVSYNC_CACHE_DIR"] = str(b.cache_dir)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(b.pycache)
    env.pop("NO_COLOR", None)
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
                         f"\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def devsync(b: Bench, r: Repo, *args: str) -> tuple[float, str]:
    return timed([sys.executable, "-m", "devsync", *args], r.team.path, devsync_env(b))


def hand_build(b: Bench, r: Repo) -> float:
    elapsed, out = timed(["docker", "build", "--cache-from", r.deployed, "-t", r.tag, "."],
                         r.team.path, b.engine.env())
    if "Successfully built" not in out:
        raise BenchError(f"docker build printed no 'Successfully built':\n{out[-2000:]}")
    return elapsed


def devsync_sync(b: Bench, r: Repo) -> float:
    elapsed, out = devsync(b, r, "sync", "--yes")
    if "differed from the plan" in out or "done:" not in out:
        raise BenchError(f"devsync sync went against its plan, or did not finish:\n{out}")
    return elapsed


def layers(r: Repo, ref: str) -> list[str]:
    out = r.team.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).stdout
    return list(json.loads(out))


def alternate(b: Bench, r: Repo, size: str, what: str, rounds: int,
              before: Callable[[], None], after: Callable[[], None], rebuilt: int) -> None:
    """H and D alternately, the order flipping each round; round 0 is a warm-up. The two
    images must have the same layers but for the last `rebuilt` (made anew by each build)."""
    runs = {"H": lambda: hand_build(b, r), "D": lambda: devsync_sync(b, r)}
    for round_ in range(rounds + 1):
        order = ["H", "D"] if round_ % 2 else ["D", "H"]
        seen: dict[str, list[str]] = {}
        for kind in order:
            before()
            os.sync()
            elapsed = runs[kind]()
            seen[kind] = layers(r, r.tag)
            after()
            label = "warm-up" if round_ == 0 else f"round {round_}"
            print(f"    {what} {label} {kind}: {elapsed:6.2f} s", flush=True)
            if round_:
                b.add(size, f"{what}.{kind}", elapsed)
        keep = len(seen["H"]) - rebuilt
        if seen["H"][:keep] != seen["D"][:keep] or len(seen["H"]) != len(seen["D"]):
            raise BenchError(f"{what}: devsync's image has other layers than docker build's:"
                             f"\n{seen}")
    h, d = b.results[size][f"{what}.H"], b.results[size][f"{what}.D"]
    b.results[size][f"{what}.ratio"] = [di / hi for hi, di in zip(h, d, strict=True)]


_WATCH = r"""
import json, sys, time
from pathlib import Path
from devsync.ops.session import Session
from devsync.ops.status import collect_statuses
root = Path.cwd()
edits = int(sys.argv[1])
out = []
with Session(root, need_engine=False) as s:
    collect_statuses(s.project, s.resolver, s.git)  # (what the TUI shows first)
    for n in range(edits):
        path = root / sys.argv[2 + n]
        with open(path, "a") as f:
            f.write(f"// watched edit {n}\n")
        t0 = time.perf_counter()
        c0 = time.process_time()
        statuses = collect_statuses(s.project, s.resolver, s.git)
        took = time.perf_counter() - t0
        cpu = time.process_time() - c0
        hashed = sum(st.plan.scanned_context.digests.hashed for st in statuses
                     if st.plan is not None and st.plan.scanned_context is not None)
        out.append({"seconds": took, "cpu": cpu, "hashed": hashed,
                    "states": {st.name: st.state for st in statuses}})
print(json.dumps(out))
"""


def watch_replans(b: Bench, r: Repo, size: str, edits: int) -> None:
    """W: the re-plan a watching TUI makes after each of `edits` one-file edits."""
    rels = []
    for _ in range(edits):
        r.edits += 1
        i = (r.edits * 7919) % r.files
        rels.append(f"src/pkg{i // 400:03d}/mod{(i // 40) % 10:02d}/Class{i:05d}.php")
    _elapsed, out = timed([sys.executable, "-c", _WATCH, str(edits), *rels], r.team.path,
                          devsync_env(b))
    for n, row in enumerate(json.loads(out)):
        print(f"    watch re-plan after edit {n + 1}: {row['seconds']:6.2f} s "
              f"({row['cpu']:.2f} s CPU), {row['hashed']} file(s) hashed, {row['states']}",
              flush=True)
        if row["hashed"] > 2:
            raise BenchError(f"the re-plan after one edit hashed {row['hashed']} files")
        b.add(size, "watch", row["seconds"])
        b.add(size, "watch.cpu", row["cpu"])
    restore_checkout(r)


def bench_size(b: Bench, files: int, rounds: int, syncs: bool) -> None:
    size = f"{files // 1000}k"
    print(f"== {files} files", flush=True)
    r = make_repo(b, files)
    developer_machine(b, r)
    drop_dev(r)
    shutil.rmtree(b.cache_dir, ignore_errors=True)
    # cold plan: no hash cache (each run starts without one)
    for i in range(rounds + 1):
        shutil.rmtree(b.cache_dir, ignore_errors=True)
        elapsed, _out = devsync(b, r, "plan", "app")
        print(f"    cold plan {'warm-up' if i == 0 else f'run {i}'}: {elapsed:6.2f} s",
              flush=True)
        if i:
            b.add(size, "plan.cold", elapsed)
    # warm plan and status, git status for scale (after the last cold plan left the cache)
    for i in range(rounds + 1):
        for what, run in (("plan.warm", lambda: devsync(b, r, "plan", "app")[0]),
                          ("status.warm", lambda: devsync(b, r, "status")[0]),
                          ("git-status", lambda: timed(["git", "status", "--porcelain"],
                                                       r.team.path, dict(os.environ))[0])):
            elapsed = run()
            print(f"    {what} {'warm-up' if i == 0 else f'run {i}'}: {elapsed:6.2f} s",
                  flush=True)
            if i:
                b.add(size, what, elapsed)
    watch_replans(b, r, size, rounds + 2)
    if not syncs:
        return
    alternate(b, r, size, "N", rounds, before=lambda: drop_dev(r), after=lambda: None,
              rebuilt=0)
    alternate(b, r, size, "E", rounds, before=lambda: (drop_dev(r), edit_one_file(r)),
              after=lambda: restore_checkout(r), rebuilt=2)


# --------------------------------------------------------------------------- report


def report(b: Bench) -> None:
    med = statistics.median
    print()
    print("| repository | what | devsync (median) | by hand (median) | ratio | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, rows in b.results.items():
        for what, label in (("plan.warm", "`plan app`, warm"), ("status.warm", "`status`, warm"),
                            ("plan.cold", "`plan app`, cold (no hash cache)"),
                            ("watch", "TUI re-plan after a one-file edit (in-process)"),
                            ("watch.cpu", "the same, CPU seconds"),
                            ("git-status", "`git status` (for scale)")):
            if what in rows:
                goal = TARGETS.get(what.split(".")[0]) if what.endswith("warm") else None
                goal_text = f"<= {goal} s" if goal and size == "20k" else ""
                print(f"| {size} | {label} | {med(rows[what]):.2f} s | | | {goal_text} |")
        for what, label in (("N", "sync, nothing changed"), ("E", "sync, one file edited")):
            if f"{what}.D" not in rows:
                continue
            d, h = med(rows[f"{what}.D"]), med(rows[f"{what}.H"])
            paired = med(rows[f"{what}.ratio"])
            print(f"| {size} | {label} | {d:.2f} s | {h:.2f} s | {d / h:.2f} "
                  f"(rounds: {paired:.2f}) | <= {TARGETS[what]} |")
    sizes = list(b.results)
    if len(sizes) >= 2 and all("plan.cold" in b.results[s] for s in sizes[:2]):
        a, z = (med(b.results[s]["plan.cold"]) for s in sizes[:2])
        print(f"\ncold plan grows {z / a:.2f}x from {sizes[0]} to {sizes[1]} files")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--files", default="20000,50000",
                    help="repository sizes, comma-separated (default 20000,50000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each scenario")
    ap.add_argument("--syncs", default="20000",
                    help="sizes at which the syncs are timed too (default 20000)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.files.split(",") if x]
    with_syncs = {int(x) for x in args.syncs.split(",") if x}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    with sandbox_bench(args.keep) as b:
        print(f"engine and registry up in {time.perf_counter() - t0:.1f} s; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
        for files in sizes:
            bench_size(b, files, args.rounds, files in with_syncs)
        report(b)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench_large: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
