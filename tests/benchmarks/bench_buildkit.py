"""Benchmark: a BuildKit `devsync sync` on a fresh developer machine after a code change.

    python tests/benchmarks/bench_buildkit.py [--runs N] [--sleep SECONDS] [--base-mb N]
                                              [--deps-mb N] [--assets-mb N]

Starts its own private engine (with a bridge of its own: BuildKit's RUN needs one) and
registry (access logs on, to count what is fetched), builds a busybox base, and a team
repository whose dependency step is slow (`RUN sleep N && ...` standing in for `composer
install`, with megabytes of vendor code). CI builds `base-1.0.0` and deploys app `1.0.0`
with the docker 20.10 CLI's BuildKit and inline cache (`DOCKER_BUILDKIT=1 docker build
--build-arg BUILDKIT_INLINE_CACHE=1`), and the same app as `shop-classic:1.0.0` with the
classic builder; then a developer commits a code change (not a dependency change).

Each run starts from an engine with no images and no build cache, as on a freshly set-up
machine, and times one of:
  K. the hand-made BuildKit build: `DOCKER_BUILDKIT=1 docker build --cache-from REPO:1.0.0`
     (docker 20.10's CLI, as CI built it);
  S. `devsync sync --yes`, a subprocess as a user types it (fresh DEVSYNC_STATE_DIR);
  C. the classic way, on the classic deployment: `docker pull` + `docker build --cache-from`.
Runs are interleaved, in an order that rotates from round to round after an untimed warm-up
round. Bytes fetched are the registry's own count (blob GETs in its access log). Every run is
checked: it built, K and S reuse the steps before `COPY .`, and S reuses at least what K
reuses. Printed: medians, S/K and S/C ratios of time and bytes, the median of the rounds' own
S/K, and where S's time goes (its phases, from its output lines).
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
from tests.support.teamrepo import git  # noqa: E402

LEGACY_CLI = "/usr/bin/docker"  # docker 20.10: BuildKit built in (DOCKER_BUILDKIT=1)
TARGET = 1.10  # S at most 1.10x K's time

BASE_DOCKERFILE = """\
FROM {busybox}
ENV LANG=C.UTF-8 APP_HOME=/var/www/html
RUN mkdir -p /opt/runtime && head -c {base_bytes} /dev/urandom > /opt/runtime/libs.bin
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
# BuildKit's numbered steps after FROM (which BuildKit reports done, and devsync reused):
# WORKDIR, COPY, RUN (reused) | COPY ., RUN (rebuilt)
EXPECTED = [True, True, True, False, False]

_PLAIN_STEP = re.compile(r"^#(\d+) \[\s*(\d+)/(\d+)\] ")
_PLAIN_STATE = re.compile(r"^#(\d+) (CACHED|DONE)")
_DEVSYNC_STEP = re.compile(r"^  step (\d+)/(\d+): (.*)$")
_DEVSYNC_RESULT = re.compile(r"^    -> (cached|rebuilt)(?: \(step (\d+)\))?$")
# distribution 2.8's access log: "response completed" with method, uri and bytes written
_BLOB_GET = re.compile(r'http\.request\.method=GET .*http\.request\.uri="/v2/[^"]+/blobs/'
                       r'(sha256:[0-9a-f]+)".*http\.response\.written=(\d+)')


class BenchError(RuntimeError):
    """A run did not do what the scenario says: the figures would be meaningless."""


@dataclass
class Setup:
    root: Path
    engine: sandbox.PrivateEngine
    registry: sandbox.PrivateRegistry
    app: Path  # the developer's checkout
    repo: str
    deployed: str
    classic: str  # the same app deployed with the classic builder
    pycache: Path


@dataclass
class Run:
    seconds: float
    blobs: int
    bytes: int
    hits: list[bool]
    phases: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- set-up


def docker(s_engine: sandbox.PrivateEngine, *args: str, cwd: Path | None = None,
           buildkit: bool = False) -> str:
    env = dict(s_engine.env(), DOCKER_BUILDKIT="1" if buildkit else "0")
    proc = subprocess.run([LEGACY_CLI, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=1200)
    if proc.returncode != 0:
        raise BenchError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def sandbox_setup(sleep: int, base_bytes: int, vendor_bytes: int,
                  assets_bytes: int) -> Iterator[Setup]:
    root = Path(tempfile.mkdtemp(prefix="dsk-", dir="/tmp"))  # short: socket path limits
    engine = sandbox.PrivateEngine(root / "engine")
    registry = sandbox.PrivateRegistry(root / "registry", log_level="info")
    try:
        sandbox.ensure_system_packages()
        engine.start()
        registry.start()
        busybox = f"{registry.host}/busybox:1"
        ctx = sandbox.busybox_context(root / "busybox-ctx")
        docker(engine, "build", "-q", "-t", busybox, str(ctx))
        docker(engine, "push", busybox)
        app = root / "shop"
        repo = f"{registry.host}/shop"
        _team_repo(app, busybox, repo, sleep, base_bytes, vendor_bytes, assets_bytes)
        # CI: the base and the app with BuildKit and inline cache, as `docker build` does
        for ref, dockerfile in ((f"{repo}:base-1.0.0", "Dockerfile.base"),
                                (f"{repo}:1.0.0", "Dockerfile")):
            docker(engine, "build", "-q", "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-f",
                   dockerfile, "-t", ref, ".", cwd=app, buildkit=True)
            docker(engine, "push", ref)
        classic = f"{registry.host}/shop-classic:1.0.0"
        docker(engine, "build", "-q", "-t", classic, ".", cwd=app)
        docker(engine, "push", classic)
        # the developer's week: a code change, not a dependency change
        (app / "src" / "index.php").write_text("<?php echo 'hello, world';\n")
        git(app, "commit", "-qam", "Say hello to the world")
        yield Setup(root, engine, registry, app, repo, f"{repo}:1.0.0", classic,
                    root / "pycache")
    finally:
        registry.stop()
        engine.stop()
        subprocess.run(["umount", "-R", str(root / "engine")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _team_repo(path: Path, busybox: str, repo: str, sleep: int, base_bytes: int,
               vendor_bytes: int, assets_bytes: int) -> None:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(BASE_DOCKERFILE.format(busybox=busybox,
                                                                 base_bytes=base_bytes))
    (path / "Dockerfile").write_text(APP_DOCKERFILE.format(repo=repo, sleep=sleep,
                                                           vendor_bytes=vendor_bytes))
    (path / "composer.json").write_text('{"require": {"php": "^8.2", "guzzle": "^7"}}\n')
    (path / "composer.lock").write_text('{"packages": ["guzzlehttp/guzzle"]}\n')
    for i in range(300):
        f = path / "src" / f"m{i // 30:02d}" / f"Class{i:03d}.php"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"<?php\nfinal class Class{i:03d}\n{{\n" + "    // code\n" * 150 + "}\n")
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / "public").mkdir()
    with open(path / "public" / "assets.bin", "wb") as f:
        f.write(os.urandom(assets_bytes))  # what `COPY .` brings: rebuilt after any change
    (path / ".dockerignore").write_text(".git\n*.log\n")
    (path / ".devsync.toml").write_text(f'[images.app]\ndockerfile = "Dockerfile"\n'
                                        f'tag = "{repo}:dev"\ndeployed = "{repo}"\n')
    git(path, "add", "-A")
    git(path, "commit", "-qm", "Initial commit")


def fresh_machine(s: Setup) -> None:
    """No images and no build cache: a freshly set-up developer machine."""
    docker(s.engine, "builder", "prune", "-af")
    # (`image prune -a` removes children before parents: an `rmi -f` of every ID at once
    # fails on the classic builder's intermediate images, "image has dependent child images")
    docker(s.engine, "image", "prune", "-af")
    if docker(s.engine, "images", "-aq").split():
        raise BenchError("the engine still has images after pruning")
    subprocess.run(["sync"], check=False)


# --------------------------------------------------------------------------- the runs


class RegistryLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def blobs_since(self) -> tuple[int, int]:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode("utf-8", "replace")
        blobs = total = 0
        for line in text.splitlines():
            if "response completed" not in line:
                continue
            m = _BLOB_GET.search(line)
            if m:
                blobs += 1
                total += int(m.group(2))
        return blobs, total


def _plain_hits(output: str) -> list[bool]:
    names: dict[str, int] = {}
    state: dict[str, bool] = {}
    for line in output.splitlines():
        m = _PLAIN_STEP.match(line)
        if m:
            names[m.group(1)] = int(m.group(2))
            continue
        m = _PLAIN_STATE.match(line)
        if m and m.group(1) in names:
            state[m.group(1)] = m.group(2) == "CACHED"  # the last word wins
    by_step = {names[n]: cached for n, cached in state.items()}
    return [by_step.get(i + 2, False) for i in range(len(EXPECTED))]


def run_handmade(s: Setup, log: RegistryLog) -> Run:
    log.mark()
    t0 = time.perf_counter()
    out = docker(s.engine, "build", "--progress=plain", "--cache-from", s.deployed, "-t",
                 f"{s.repo}:dev", ".", cwd=s.app, buildkit=True)
    elapsed = time.perf_counter() - t0
    blobs, fetched = log.blobs_since()
    return Run(elapsed, blobs, fetched, _plain_hits(out))


def run_classic(s: Setup, log: RegistryLog) -> Run:
    log.mark()
    t0 = time.perf_counter()
    docker(s.engine, "pull", s.classic)
    t1 = time.perf_counter()
    out = docker(s.engine, "build", "--cache-from", s.classic, "-t", f"{s.repo}:dev", ".",
                 cwd=s.app)
    elapsed = time.perf_counter() - t0
    blobs, fetched = log.blobs_since()
    hits = [" ---> Using cache" in part for part in out.split("\nStep ")[1:]]
    return Run(elapsed, blobs, fetched, hits, {"pull": t1 - t0, "build": elapsed - (t1 - t0)})


def run_devsync(s: Setup, log: RegistryLog, run_dir: Path) -> Run:
    env = dict(s.engine.env())
    env.pop("DOCKER_BUILDKIT", None)
    env["DEVSYNC_STATE_DIR"] = str(run_dir / "state")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(s.pycache)  # an installed devsync has .pyc files
    env["PYTHONUNBUFFERED"] = "1"  # line by line, as on a terminal: phases are timed
    log.mark()
    stamped: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "devsync", "sync", "--yes"], cwd=s.app,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        stamped.append((time.perf_counter() - t0, line.rstrip("\n")))
    code = proc.wait()
    elapsed = time.perf_counter() - t0
    blobs, fetched = log.blobs_since()
    out = "\n".join(line for _t, line in stamped)
    (run_dir / "output").write_text(out)
    if code != 0 or "differed from the plan" in out or "expected to" in out:
        raise BenchError(f"devsync sync exited {code} or went against its plan:\n{out}")
    return Run(elapsed, blobs, fetched, _devsync_hits(out), _devsync_phases(stamped, elapsed))


def _devsync_hits(out: str) -> list[bool]:
    steps: list[str] = []
    result: dict[int, bool] = {}
    last = -1
    for line in out.splitlines():
        m = _DEVSYNC_STEP.match(line)
        if m:
            steps.append(m.group(3))
            last = int(m.group(1)) - 1
            continue
        r = _DEVSYNC_RESULT.match(line)
        if r:
            index = int(r.group(2)) - 1 if r.group(2) else last
            result[index] = r.group(1) == "cached"
    # devsync numbers every Dockerfile step; BuildKit's vertices are FROM, WORKDIR, COPY, RUN
    numbered = [i for i, text in enumerate(_dockerfile_steps())
                if text.split()[0] in ("WORKDIR", "COPY", "RUN")]
    return [result.get(i, False) for i in numbered]


def _dockerfile_steps() -> list[str]:
    text = APP_DOCKERFILE.replace("\\\n", "")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _devsync_phases(stamped: list[tuple[float, str]], total: float) -> dict[str, float]:
    def first(prefix: str) -> float:
        return next((t for t, line in stamped if line.startswith(prefix)), total)

    build = first("==> app: build")
    first_step = first("  step ")
    done = first("done: ")
    return {"start+plan": build, "build start": first_step - build,
            "build": done - first_step, "record+exit": total - done}


def check(kind: str, run: Run, handmade: Run | None = None) -> None:
    if kind in ("K", "S") and run.hits != EXPECTED:
        raise BenchError(f"{kind} reused {run.hits}, expected {EXPECTED}")
    if kind == "S" and handmade is not None and any(
            k and not s for k, s in zip(handmade.hits, run.hits, strict=True)):
        raise BenchError(f"devsync reused less than the hand-made build: {run.hits} vs "
                         f"{handmade.hits}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3, help="timed rounds")
    ap.add_argument("--sleep", type=int, default=8, help="seconds the dependency step takes")
    ap.add_argument("--base-mb", type=int, default=60, help="the base's runtime layer")
    ap.add_argument("--deps-mb", type=int, default=40, help="the dependency layer (vendor/)")
    ap.add_argument("--assets-mb", type=int, default=20, help="what `COPY .` brings")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_setup = time.perf_counter()
    with sandbox_setup(args.sleep, args.base_mb * 1_000_000, args.deps_mb * 1_000_000,
                       args.assets_mb * 1_000_000) as s:
        print(f"set up engine, registry and deployed {s.deployed} (BuildKit, inline cache) "
              f"and {s.classic} (classic) in {time.perf_counter() - t_setup:.1f} s",
              flush=True)
        log = RegistryLog(s.registry.root / "registry.log")
        runs: dict[str, list[Run]] = {"K": [], "S": [], "C": []}
        orders = [("K", "S", "C"), ("S", "C", "K"), ("C", "K", "S")]
        for round_no in range(args.runs + 1):
            order = orders[round_no % len(orders)]
            this: dict[str, Run] = {}
            for kind in order:
                fresh_machine(s)
                run_dir = s.root / f"run-{round_no}-{kind}"
                run_dir.mkdir()
                if kind == "K":
                    this[kind] = run_handmade(s, log)
                elif kind == "S":
                    this[kind] = run_devsync(s, log, run_dir)
                else:
                    this[kind] = run_classic(s, log)
            check("K", this["K"])
            check("S", this["S"], this["K"])
            check("C", this["C"])
            label = "warm-up" if round_no == 0 else f"round {round_no}"
            print(f"{label} ({' '.join(order)}): " + ", ".join(
                f"{k} {r.seconds:.2f} s {r.bytes / 1e6:.1f} MB/{r.blobs} blobs"
                for k, r in sorted(this.items())), flush=True)
            if round_no:
                for kind, run in this.items():
                    runs[kind].append(run)
        _report(runs)
    return 0


def _report(runs: dict[str, list[Run]]) -> None:
    med = {k: statistics.median(r.seconds for r in v) for k, v in runs.items()}
    mb = {k: statistics.median(r.bytes for r in v) / 1e6 for k, v in runs.items()}
    blobs = {k: statistics.median(r.blobs for r in v) for k, v in runs.items()}
    names = {"K": "hand-made BuildKit (docker build --cache-from)",
             "S": "devsync sync --yes (BuildKit)",
             "C": "classic docker pull + docker build --cache-from"}
    print("\nmedians:")
    for kind in ("K", "S", "C"):
        print(f"  {kind} {names[kind]:50s} {med[kind]:6.2f} s  {mb[kind]:7.1f} MB fetched "
              f"({blobs[kind]:.0f} blobs)")
    per_round = [s.seconds / k.seconds for s, k in zip(runs["S"], runs["K"], strict=True)]
    ratio = med["S"] / med["K"]
    print(f"S/K time {ratio:.3f} (median of rounds {statistics.median(per_round):.3f}; "
          f"target <= {TARGET:.2f}: {'met' if ratio <= TARGET else 'NOT met'})")
    print(f"S/K bytes {mb['S'] / mb['K']:.3f}; S/C time {med['S'] / med['C']:.3f}, "
          f"bytes {mb['S'] / mb['C']:.3f}")
    print(f"S - K: {med['S'] - med['K']:+.2f} s; S's phases (medians): " + ", ".join(
        f"{name} {statistics.median(r.phases[name] for r in runs['S']):.2f} s"
        for name in runs["S"][0].phases))


if __name__ == "__main__":
    sys.exit(main())
