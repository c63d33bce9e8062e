"""Benchmark: `devsync sync` on a fresh developer machine after a code change.

    python tests/benchmarks/bench_sync.py [--runs N] [--sleep SECONDS] [--no-profile]
                                          [--base-local] [--compare-src PATH]

Starts its own private engine and registry (devsync.devtools.sandbox; stopped at the end, also
on error
or Ctrl-C), builds a tiny busybox base, and a team repository whose dependency step is slow
(`RUN sleep 8 && ...` standing in for `composer install`, with a few MB of vendor code so that
pulls move real bytes). CI builds `base-1.0.0` and deploys app `1.0.0` with the plain docker
CLI (classic builder), then a developer commits a code change (not a dependency change).

Each run starts from an engine with no images at all, as on a freshly set-up machine, and
times one of:
  A. `docker build -t REPO:dev .`: what a fresh clone does today, without the deployed image;
  B. the hand-done minimum: `docker pull REPO:1.0.0` + `docker build --cache-from REPO:1.0.0`;
  L. B with the OCI labels devsync stamps (`--label`): the same image devsync makes, by hand;
  C. `devsync sync --yes`, a subprocess as a user types it (fresh DEVSYNC_STATE_DIR).
With `--base-local` each run starts from an engine that holds the base image (pulled,
untimed): a developer's machine that synced before, whose next sync pulls the deployed image
only. With `--compare-src PATH` a fifth kind, D, runs `devsync sync --yes` from another
checkout of devsync (PYTHONPATH=PATH, e.g. a worktree of an earlier commit) in the same
rounds, and C is compared with D: a change's cost measured against its baseline in one run.

Runs are interleaved, A first in each round and B, L, C in an order that rotates from round to
round, after one untimed warm-up round, so that machine noise hits all alike; every run starts
with the previous one's deletions written to disk. The medians and their ratios are printed,
and the median of each round's own (C-B)/B. Every run is checked: the build succeeded, and B,
L and C reused exactly the steps before `COPY .` (C's per-step report must match B's `Using
cache` lines, and the vendor layer must be the deployed image's own).

Then, unless --no-profile, one `python -X importtime` and one cProfile run of the same sync
show where devsync's own time goes. Bytecode caching is forced on (PYTHONPYCACHEPREFIX in the
temporary root) because an installed devsync has .pyc files; C's stdout is unbuffered (as on
a terminal) so that its phases can be timed from its output lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devsync.devtools import sandbox  # noqa: E402
from tests.support.teamrepo import TeamRepo, git, parse_cache_hits  # noqa: E402

BASE_BYTES = 3_000_000  # "system packages" in the base
VENDOR_BYTES = 5_000_000  # what the dependency step installs
SOURCE_FILES = 300  # the app's code, copied by `COPY .`
TARGET_OVERHEAD = 0.10

BASE_DOCKERFILE = """\
FROM {busybox}
ENV LANG=C.UTF-8 APP_HOME=/var/www/html
RUN mkdir -p /opt/runtime && head -c {base_bytes} /dev/urandom > /opt/runtime/libs.bin \\
    && echo "runtime 1" > /opt/runtime/version
"""

APP_DOCKERFILE = """\
ARG BASE_TAG=base-1.0.0
FROM {repo}:${{BASE_TAG}}
ARG COMPOSER_FLAGS=--no-dev
WORKDIR $APP_HOME
COPY composer.json composer.lock ./
# stands in for `composer install`: slow, and it writes megabytes of vendor code
RUN sleep {sleep} && mkdir -p /opt/vendor \\
    && head -c {vendor_bytes} /dev/urandom > /opt/vendor/packages.bin \\
    && echo "install $COMPOSER_FLAGS" && cat composer.json composer.lock > /opt/vendor/installed
COPY . /var/www/html
RUN ls -laR /var/www/html > /opt/files.txt
CMD ["sh", "-c", "cat /opt/vendor/installed"]
"""

_STEP = re.compile(r"^  step (\d+)/(\d+): (.*)$")
_STEP_RESULT = re.compile(r"^    -> (cached|rebuilt)$")
_STEP_HEADER = re.compile(r"^Step (\d+)/(\d+) : (.*)$", re.MULTILINE)


class BenchError(RuntimeError):
    """A run did not do what the scenario says: the figures would be meaningless."""


@dataclass
class Setup:
    root: Path
    engine: sandbox.PrivateEngine
    registry: sandbox.PrivateRegistry
    team: TeamRepo
    deployed: str
    tag: str
    pycache: Path


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=dict)

    def add(self, total: float, phases: dict[str, float]) -> None:
        self.total.append(total)
        for name, value in phases.items():
            self.phases.setdefault(name, []).append(value)


# --------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def sandbox_setup(sleep: int) -> Iterator[Setup]:
    # short path: unix socket paths are limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="dsb-", dir="/tmp"))
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
        team = _team_repo(root, engine, registry, busybox, sleep)
        yield Setup(root=root, engine=engine, registry=registry, team=team,
                    deployed=team.deployed[-1], tag=f"{team.repo}:dev",
                    pycache=root / "pycache")
    finally:
        registry.stop()
        engine.stop()
        # overlay mounts may outlive the daemon briefly
        subprocess.run(["umount", "-R", str(root / "engine")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _team_repo(root: Path, engine: sandbox.PrivateEngine, registry: sandbox.PrivateRegistry,
               busybox: str, sleep: int) -> TeamRepo:
    path = root / "shop"
    path.mkdir()
    repo = f"{registry.host}/shop"
    team = TeamRepo(path=path, engine=engine, registry=registry, repo=repo, busybox=busybox)
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(
        BASE_DOCKERFILE.format(busybox=busybox, base_bytes=BASE_BYTES))
    (path / "Dockerfile").write_text(
        APP_DOCKERFILE.format(repo=repo, sleep=sleep, vendor_bytes=VENDOR_BYTES))
    (path / "composer.json").write_text('{"require": {"php": "^8.2", "guzzle": "^7"}}\n')
    (path / "composer.lock").write_text('{"packages": ["guzzlehttp/guzzle"]}\n')
    for i in range(SOURCE_FILES):
        f = path / "src" / f"m{i // 30:02d}" / f"Class{i:03d}.php"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"<?php\nfinal class Class{i:03d}\n{{\n" + "    // code\n" * 150 + "}\n")
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / "public").mkdir()
    (path / "public" / "app.js").write_text("console.log('app');\n" * 20_000)
    (path / "README.md").write_text("# shop\n")
    (path / ".dockerignore").write_text(".git\n*.log\nnode_modules\n")
    (path / ".gitignore").write_text("*.log\nnode_modules\n")
    team.commit("Initial commit")
    team.ci_build_base("1.0.0")
    team.ci_deploy("1.0.0")
    # the developer's week: a code change, not a dependency change
    (path / "src" / "index.php").write_text("<?php echo 'hello, world';\n")
    team.commit("Say hello to the world", author="Ben")
    return team


BASE_LOCAL = False  # --base-local: each run starts with the base image on the engine


def fresh_machine(s: Setup) -> None:
    """Leave the engine as a freshly set-up developer machine has it: no images at all (with
    --base-local, then the base pulled, as on a machine that synced before)."""
    s.team.docker("system", "prune", "-af")
    left = s.team.docker("images", "-aq").stdout.split()
    if left:
        s.team.docker("rmi", "-f", *left)
        left = s.team.docker("images", "-aq").stdout.split()
    if left:
        raise BenchError(f"the engine still has images after pruning: {left}")
    if BASE_LOCAL:
        _docker(s, "pull", f"{s.team.repo}:base-1.0.0")


# --------------------------------------------------------------------------- scenarios


def _docker(s: Setup, *args: str) -> str:
    proc = s.team.docker(*args, check=False)
    if proc.returncode != 0:
        raise BenchError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _cli_steps(output: str) -> list[str]:
    return [m.group(3) for m in _STEP_HEADER.finditer(output)]


def _built(output: str) -> None:
    if "Successfully built" not in output:
        raise BenchError(f"docker build printed no 'Successfully built':\n{output[-2000:]}")


def run_plain(s: Setup) -> tuple[float, dict[str, float], list[bool]]:
    t0 = time.perf_counter()
    out = _docker(s, "build", "-t", s.tag, ".")
    elapsed = time.perf_counter() - t0
    _built(out)
    hits = parse_cache_hits(out)
    return elapsed, {}, hits


def run_by_hand(s: Setup, *, labelled: bool = False
                ) -> tuple[float, dict[str, float], list[bool]]:
    """B; with `labelled`, L: the OCI labels devsync stamps passed the usual way (`--label`),
    i.e. the same image devsync makes, by hand."""
    flags: list[str] = []
    if labelled:
        head = git(s.team.path, "rev-parse", "HEAD").strip()
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        labels = {"org.opencontainers.image.created": created,
                  "org.opencontainers.image.revision": head,
                  "org.opencontainers.image.version": "dev"}
        flags = [a for k, v in labels.items() for a in ("--label", f"{k}={v}")]
    t0 = time.perf_counter()
    _docker(s, "pull", s.deployed)
    t1 = time.perf_counter()
    out = _docker(s, "build", "--cache-from", s.deployed, *flags, "-t", s.tag, ".")
    t2 = time.perf_counter()
    _built(out)
    return t2 - t0, {"pull": t1 - t0, "build": t2 - t1}, parse_cache_hits(out)


def devsync_env(s: Setup, state: Path) -> dict[str, str]:
    env = s.engine.env()  # DOCKER_HOST = the private engine, DOCKER_BUILDKIT=0
    env.pop("DOCKER_CONTEXT", None)
    env["DEVSYNC_STATE_DIR"] = str(state)
    # an installed devsync has .pyc files: cache bytecode (outside the source tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(s.pycache)
    env["PYTHONUNBUFFERED"] = "1"  # line by line, as on a terminal: lets us time phases
    env.pop("NO_COLOR", None)
    return env


def run_devsync(s: Setup, run_dir: Path, src: Path | None = None
                ) -> tuple[float, dict[str, float], list[bool]]:
    """C, or with `src` D: the devsync of that checkout."""
    env = devsync_env(s, run_dir / "state")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    cmd = [sys.executable, "-m", "devsync", "sync", "--yes"]
    stamped: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    with open(run_dir / "stderr", "w+") as errfile:
        proc = subprocess.Popen(cmd, cwd=s.team.path, env=env, stdout=subprocess.PIPE,
                                stderr=errfile, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            stamped.append((time.perf_counter() - t0, line.rstrip("\n")))
        code = proc.wait()
        elapsed = time.perf_counter() - t0
        errfile.seek(0)
        err = errfile.read()
    out = "\n".join(line for _t, line in stamped)
    (run_dir / "stdout").write_text(out)
    if code != 0:
        raise BenchError(f"devsync sync exited {code}:\n{out[-3000:]}\n{err[-3000:]}")
    if "differed from the plan" in out:
        raise BenchError(f"devsync's build went against its own plan:\n{out}")
    if not any(line.startswith("done: ") for _t, line in stamped):
        raise BenchError(f"devsync sync did not say done:\n{out}")
    hits, steps = _devsync_hits(stamped)
    # then the one LABEL step with devsync's labels: rebuilt after the code change (and the
    # `created` label alone differs every time)
    n = len(expected_hits(s))
    if len(steps) != n + 1 or not steps[n].startswith("LABEL ") or hits[n]:
        raise BenchError(f"devsync's steps are not the Dockerfile's plus its labels:\n{out}")
    return elapsed, _devsync_phases(stamped, elapsed), hits


def _devsync_hits(stamped: list[tuple[float, str]]) -> tuple[list[bool], list[str]]:
    hits: list[bool] = []
    steps: list[str] = []
    for _t, line in stamped:
        m = _STEP.match(line)
        if m:
            steps.append(m.group(3))
            continue
        r = _STEP_RESULT.match(line)
        if r:
            hits.append(r.group(1) == "cached")
    if len(hits) != len(steps) or not steps:
        raise BenchError(f"cannot read devsync's steps: {len(steps)} started, "
                         f"{len(hits)} finished")
    return hits, steps


def _devsync_phases(stamped: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Phase boundaries from the first line of each phase devsync prints."""
    def first(prefix: str) -> float:
        for t, line in stamped:
            if line.startswith(prefix):
                return t
        raise BenchError(f"devsync printed no line starting {prefix!r}")

    pull = first("==> app: pull")
    build = first("==> app: build")
    done = first("done: ")
    return {"start+plan": pull, "pull": build - pull, "build": done - build,
            "record+exit": total - done}


# --------------------------------------------------------------------------- checks


def expected_hits(s: Setup) -> list[bool]:
    """The classic builder's steps for the Dockerfile: reused up to `COPY .`, rebuilt after."""
    lines = [ln for ln in (s.team.path / "Dockerfile").read_text().splitlines()]
    steps: list[str] = []
    for ln in lines:
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        if steps and steps[-1].endswith("\\"):
            steps[-1] = steps[-1][:-1] + ln
        else:
            steps.append(ln)
    cut = next(i for i, st in enumerate(steps) if st.startswith("COPY . "))
    return [i < cut for i in range(len(steps))]


def _layer_lines(s: Setup, ref: str) -> list[str]:
    return _docker(s, "history", "--no-trunc", "--format", "{{.CreatedAt}} {{.CreatedBy}}",
                   ref).splitlines()


def check_run(s: Setup, kind: str, hits: list[bool], expected: list[bool]) -> None:
    n = len(expected)
    dockerfile_hits = hits[:n]
    if kind == "A":
        if any(dockerfile_hits[i] for i in range(n) if not _no_layer(s, i)):
            raise BenchError(f"plain build reused a step on a fresh machine: {hits}")
    elif dockerfile_hits != expected:
        raise BenchError(f"{kind} reused steps {dockerfile_hits}, expected {expected}")
    # a reused layer is the deployed image's own (same creation time and command)
    deployed = set(_layer_lines(s, s.deployed)) if kind != "A" else set()
    vendor = [ln for ln in _layer_lines(s, s.tag) if "sleep " in ln]
    if len(vendor) != 1:
        raise BenchError(f"{s.tag} has no single dependency layer: {vendor}")
    if (vendor[0] in deployed) != (kind != "A"):
        raise BenchError(f"{kind}: dependency layer reuse is wrong: {vendor[0]}")


def _no_layer(s: Setup, index: int) -> bool:
    # ARG before FROM and FROM itself: parse_cache_hits counts them as hits
    return index < 2


# --------------------------------------------------------------------------- profile


# Runs `devsync sync --yes` in-process with plain timers (no profiler overhead) around the
# calls that matter, attributed to the phase they happen in: "start" (Session), "plan", "sync"
# (pull and build) and "after" (record_sync and the status recorded after the sync).
_TIMED_SYNC = r"""
import collections, os, sys, time
t0 = time.perf_counter()
from devsync.adapters import engine, registry
from devsync.adapters import gitrepo as gitinfo
from devsync.cli import main as cli_main
from devsync.cli import output as cli
from devsync.model import classic as buildsim
from devsync.model import context as buildcontext
from devsync.model import project
from devsync.ops import plan, recording, status, sync
rows = collections.defaultdict(lambda: [0, 0.0])
phase = ["start"]

def timed(owner, name, label, sets=None):
    fn = getattr(owner, name, None)
    if fn is None:
        print(f"(nothing called {label} to time)")
        return
    def enter():
        prev = phase[0]
        if sets and prev != "after":
            phase[0] = sets
        return prev, time.perf_counter()
    def leave(prev, t):
        rows[(phase[0], label)][0] += 1
        rows[(phase[0], label)][1] += time.perf_counter() - t
        phase[0] = prev
    def inner(*args, **kwargs):
        prev, t = enter()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            leave(prev, t)
            raise
        if not hasattr(result, "__next__"):
            leave(prev, t)
            return result
        def gen():
            try:
                yield from result
            finally:
                leave(prev, t)
        return gen()
    setattr(owner, name, inner)

for owner, name, label, sets in [
    (cli, "open_session", "cli.open_session (project, git, engine)", "start"),
    (project, "load_project", "project.load_project", None),
    (gitinfo, "open_repo", "gitinfo.open_repo (imports git)", None),
    (engine.Engine, "connect", "engine.Engine.connect", None),
    (engine._connect, "sdk_client",
     "engine._connect.sdk_client (imports docker; not in a local sync)", None),
    (plan, "plan_image", "plan.plan_image", "plan"),
    (sync, "sync_image", "sync.sync_image", "sync"),
    (recording, "record_sync", "recording.record_sync", "after"),
    (status, "image_status", "status.image_status", "after"),
    (recording, "record_statuses", "recording.record_statuses", "after"),
    (registry.RegistryClient, "__init__", "registry.RegistryClient.__init__", None),
    (registry.RegistryClient, "_request", "registry.RegistryClient._request", None),
    (plan, "scan_context", "buildcontext.scan_context", None),
    (buildcontext, "scan_context", "buildcontext.scan_context", None),
    (sync.BuildInput, "__init__", "sync.BuildInput (context tar, labels)", None),
    (buildcontext.BuildContext, "write_tar", "buildcontext.BuildContext.write_tar", None),
    (buildsim.BuildSimulator, "run", "buildsim.BuildSimulator.run", None),
    (engine.Engine, "image", "engine.Engine.image", None),
    (engine.Engine, "has_image", "engine.Engine.has_image", None),
    (engine.Engine, "pull", "engine.Engine.pull", None),
    (engine.Engine, "build", "engine.Engine.build", None),
    (engine.Engine, "tag", "engine.Engine.tag", None),
]:
    timed(owner, name, label, sets)
# the CLI's printer holds on to the sys.stdout it was imported with: silence the descriptor
sys.stdout.flush()
saved_stdout = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
try:
    code = cli_main(["sync", "--yes"])
finally:
    sys.stdout.flush()
    os.dup2(saved_stdout, 1)
print(f"exit {code}; {(time.perf_counter() - t0) * 1000:.0f} ms in all")
for (ph, label), (n, secs) in sorted(rows.items(), key=lambda kv: (
        ["start", "plan", "sync", "after"].index(kv[0][0]), -kv[1][1])):
    print(f"  {ph:6s} {secs * 1000:8.1f} ms {n:3d}x  {label}")
"""


def profile(s: Setup, work: Path) -> None:
    print("\n== where devsync's own time goes (one fresh-machine sync each) ==")
    fresh_machine(s)
    env = devsync_env(s, work / "state-timed")
    proc = subprocess.run([sys.executable, "-c", _TIMED_SYNC], cwd=s.team.path, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.startswith("exit 0"):
        raise BenchError(f"timed run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("in-process timers, no profiler (phase, ms, calls; phases nest their calls):")
    print(proc.stdout, end="")
    fresh_machine(s)
    env = devsync_env(s, work / "state-importtime")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "devsync", "sync",
                           "--yes"], cwd=s.team.path, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"importtime run failed:\n{proc.stderr[-3000:]}")
    _print_importtime(proc.stderr)

    fresh_machine(s)
    prof = work / "sync.prof"
    env = devsync_env(s, work / "state-cprofile")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "devsync",
                           "sync", "--yes"], cwd=s.team.path, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"cProfile run failed:\n{proc.stderr[-3000:]}")
    _print_profile(prof, wall)


def _print_importtime(stderr: str) -> None:
    rows: list[tuple[int, int, str]] = []  # cumulative us, depth, module
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cum_text, raw = line.removeprefix("import time:").split("|")
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        rows.append((int(cum_text), depth, raw.strip()))
    top = [r for r in rows if r[1] == 0]
    total = sum(c for c, _d, _n in top)
    print(f"imports (python -X importtime): {total / 1000:.0f} ms for "
          f"{len(rows)} modules; the biggest top-level ones:")
    for cum, _depth, name in sorted(top, key=lambda r: -r[0])[:12]:
        print(f"  {cum / 1000:7.1f} ms  {name}")
    third_party: dict[str, int] = {}
    for cum, _depth, name in rows:
        if name in ("docker", "requests", "urllib3", "git", "paramiko", "textual") \
                and name not in third_party:
            third_party[name] = cum
    if third_party:
        print("  of which third-party packages: " + ", ".join(
            f"{k} {v / 1000:.0f} ms" for k, v in sorted(third_party.items(),
                                                      key=lambda kv: -kv[1])))


def _print_profile(prof: Path, wall: float) -> None:
    stats = pstats.Stats(str(prof))
    entries = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, ncalls, _tt, cumtime, _callers) in entries.items():
        if f"{os.sep}devsync{os.sep}" not in filename:
            continue
        rel = filename.split(f"{os.sep}devsync{os.sep}", 1)[1]
        rows.append((cumtime, ncalls, f"devsync/{rel}:{line}:{func}"))
    print(f"cProfile of `python -m devsync sync --yes` ({wall:.2f} s wall, profiler on):")
    for cumtime, ncalls, where in sorted(rows, key=lambda r: -r[0])[:30]:
        print(f"  {cumtime * 1000:8.1f} ms  {ncalls:5d} calls  {where}")
    api = []
    for (filename, line, func), (_cc, ncalls, _tt, cumtime, _callers) in entries.items():
        sdk = func in ("inspect_image", "history", "inspect_distribution", "_get", "_post") \
            and f"{os.sep}docker{os.sep}" in filename
        socket_path = filename.endswith(f"{os.sep}enginesocket.py") and func in (
            "ping", "inspect_image", "image_history", "list_images", "tag_image", "pull",
            "build")
        if sdk or socket_path:
            api.append((cumtime, ncalls, f"{Path(filename).name}:{line}:{func}"))
    if api:
        print("Engine API calls (docker SDK, devsync.adapters.engine.socketapi):")
        for cumtime, ncalls, where in sorted(api, key=lambda r: -r[0]):
            print(f"  {cumtime * 1000:8.1f} ms  {ncalls:5d} calls  {where}")


# --------------------------------------------------------------------------- main


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt_phases(t: Timings) -> str:
    if not t.phases:
        return ""
    return "  (" + ", ".join(f"{k} {_median(v):.2f}" for k, v in t.phases.items()) + ")"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each scenario")
    ap.add_argument("--sleep", type=int, default=8,
                    help="seconds the dependency step takes (stands in for composer install)")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile runs")
    ap.add_argument("--base-mb", type=int, default=150,
                    help="size of the base image's runtime layer (a PHP base is ~400 MB)")
    ap.add_argument("--deps-mb", type=int, default=60,
                    help="size of the dependency layer (vendor/)")
    ap.add_argument("--base-local", action="store_true",
                    help="each run starts with the base image on the engine")
    ap.add_argument("--compare-src", type=Path,
                    help="also time (as D) the devsync of this checkout, e.g. a worktree of "
                    "an earlier commit")
    args = ap.parse_args(argv)
    global BASE_BYTES, VENDOR_BYTES, BASE_LOCAL
    BASE_BYTES, VENDOR_BYTES = args.base_mb * 1_000_000, args.deps_mb * 1_000_000
    BASE_LOCAL = args.base_local
    if args.compare_src is not None and not (args.compare_src / "devsync").is_dir():
        ap.error(f"--compare-src {args.compare_src} has no devsync package")
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    # SIGTERM too must stop the engine and registry (the finally blocks)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t_setup = time.perf_counter()
    with sandbox_setup(args.sleep) as s:
        print(f"set up engine, registry, team repo and deployed {s.deployed} in "
              f"{time.perf_counter() - t_setup:.1f} s", flush=True)
        expected = expected_hits(s)
        work = s.root / "runs"
        work.mkdir()
        timings = {"A": Timings(), "B": Timings(), "L": Timings(), "C": Timings(),
                   "D": Timings()}
        runners = {
            "A": lambda _d: run_plain(s),
            "B": lambda _d: run_by_hand(s),
            "L": lambda _d: run_by_hand(s, labelled=True),
            "C": lambda d: run_devsync(s, d),
            "D": lambda d: run_devsync(s, d, args.compare_src),
        }
        others = ["B", "L", "C"] + (["D"] if args.compare_src is not None else [])
        for round_ in range(args.runs + 1):  # round 0 warms caches up and is not counted
            # A first (it is long), then B, L, C (and D) in an order that rotates each round,
            # so that no one of them always follows the same run
            shift = round_ % len(others)
            rotated = others[shift:] + others[:shift]
            for kind in ["A", *rotated]:
                fresh_machine(s)
                os.sync()  # the previous run's deletions written out before the clock starts
                run_dir = work / f"{kind}{round_}"
                run_dir.mkdir()
                elapsed, phases, hits = runners[kind](run_dir)
                check_run(s, kind, hits, expected)
                label = "warm-up" if round_ == 0 else f"run {round_}"
                print(f"  {label} {kind}: {elapsed:6.2f} s", flush=True)
                if round_:
                    timings[kind].add(elapsed, phases)

        a, b, lab, c = (_median(timings[k].total) for k in ("A", "B", "L", "C"))
        print()
        machine = "machine with the base" if BASE_LOCAL else "fresh machine"
        print(f"{machine}, code change, dependency step sleeps {args.sleep} s; "
              f"medians of {args.runs} interleaved runs:")
        print(f"  A  docker build (no deployed image):              {a:6.2f} s"
              f"{_fmt_phases(timings['A'])}")
        print(f"  B  docker pull + docker build --cache-from:       {b:6.2f} s"
              f"{_fmt_phases(timings['B'])}")
        print(f"  L  B with the OCI labels (docker build --label):  {lab:6.2f} s"
              f"{_fmt_phases(timings['L'])}")
        print(f"  C  devsync sync --yes:                            {c:6.2f} s"
              f"{_fmt_phases(timings['C'])}")
        print(f"sync vs plain build: C/A = {c / a:.2f} ({a / c:.1f}x faster)")
        overhead = (c - b) / b
        rounds = list(zip(timings["B"].total, timings["C"].total, strict=True))
        paired = statistics.median((ci - bi) / bi for bi, ci in rounds)
        paired_s = statistics.median(ci - bi for bi, ci in rounds)
        verdict = "meets" if overhead <= TARGET_OVERHEAD else "misses"
        print(f"devsync overhead vs hand-done pull+build: (C-B)/B = {overhead * 100:+.1f}% "
              f"({verdict} the target <= {TARGET_OVERHEAD * 100:.0f}%); median of the "
              f"rounds' own (C-B)/B: {paired * 100:+.1f}%, C-B: {paired_s:+.2f} s")
        print(f"vs the same image by hand (labels included): (C-L)/L = "
              f"{(c - lab) / lab * 100:+.1f}%")
        if args.compare_src is not None:
            d = _median(timings["D"].total)
            pairs = list(zip(timings["D"].total, timings["C"].total, strict=True))
            print(f"  D  devsync sync --yes of {args.compare_src}: {d:6.2f} s"
                  f"{_fmt_phases(timings['D'])}")
            c_d = statistics.median(ci - di for di, ci in pairs)
            d_b = statistics.median(di - bi for bi, di in zip(
                timings["B"].total, timings["D"].total, strict=True))
            print(f"this devsync vs that one: (C-D)/D = {(c - d) / d * 100:+.1f}%; median of "
                  f"the rounds' own C-D: {c_d:+.3f} s, D-B: {d_b:+.2f} s")
        print("steps reused by B, L and C: every step before `COPY .`, as expected")
        if not args.no_profile:
            profile(s, work)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BenchError as exc:
        print(f"bench_sync: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
