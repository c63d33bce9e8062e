"""`devsync demo`: a small sample project to try every screen in a minute.

`create_demo` makes a git repository in a temporary directory that follows the team workflow
devsync serves: `Dockerfile.base` (built FROM scratch with busybox, so no Docker Hub is needed)
pushed as `REPO:base-1.0.0`, a thin `Dockerfile` starting `FROM REPO:base-1.0.0`, a
composer.json-like dependency file, some code, and commits by several authors. Like CI, it
builds with the plain docker CLI (classic builder) and pushes `REPO:1.0.0` and `REPO:1.0.1`.
The developer on this machine synced at 1.0.0 and has pulled two commits since, so the app is
stale: 1.0.1 is deployed and a code change is not. With `fresh=True` nothing is local at all,
as on a new machine (the TUI then opens its onboarding checklist).

Images go to the engine the docker CLI and devsync would use (DOCKER_HOST or the current
context). Without a registry (`DEVSYNC_DEMO_REGISTRY=host:port`) a throwaway one is started on
loopback with `devsync.devtools.sandbox.PrivateRegistry`. `Demo.cleanup()` removes what was made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from devsync.errors import DevsyncError, EngineError

REGISTRY_ENV = "DEVSYNC_DEMO_REGISTRY"
REPOSITORY = "devsync-demo/app"

AUTHORS = {
    "ana": ("Ana Lima", "ana@example.com"),
    "ben": ("Ben Okafor", "ben@example.com"),
    "chen": ("Chen Wu", "chen@example.com"),
    "dana": ("Dana Ruiz", "dana@example.com"),
}

DOCKERFILE_BASE = """\
# The team's runtime image: slow to build, rebuilt rarely, pushed as REPO:base-X.Y.Z
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV RUNTIME=php-8.2
RUN mkdir -p /app /var/cache/app && echo "$RUNTIME" > /etc/runtime-version
WORKDIR /app
"""

DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY composer.json composer.lock ./
# the slow step: reused from the deployed image unless composer.* changed
RUN echo "installing dependencies" && sleep 2 && mkdir -p vendor \\
    && cp composer.lock vendor/installed.json \\
    && head -c 6000000 /dev/urandom > vendor/packages.bin
COPY src/ ./src/
CMD ["sh", "-c", "cat src/index.php"]
"""

COMPOSER_JSON = """\
{{
    "name": "devsync/demo-app",
    "require": {{
{requires}
    }}
}}
"""


@dataclass
class Demo:
    """A sample project and what was made for it."""

    root: Path
    repository: str  # e.g. "localhost:5000/devsync-demo/app"
    env: dict[str, str]  # environment for the docker CLI and devsync against this demo
    workdir: Path
    registry: object | None = None  # a sandbox.PrivateRegistry we started
    images: list[str] = field(default_factory=list)  # tags we made in the engine

    @property
    def base_tag(self) -> str:
        return f"{self.repository}:base-1.0.0"

    def cleanup(self) -> None:
        for ref in [*self.images, f"{self.repository}:dev"]:
            _docker(self.env, "rmi", "-f", ref, check=False)
        stop = getattr(self.registry, "stop", None)
        if stop is not None:
            stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def create_demo(*, registry: str | None = None, env: dict[str, str] | None = None,
                fresh: bool = False, parent: Path | None = None,
                repository: str = REPOSITORY) -> Demo:
    """Make the sample project (see the module doc). Raises DevsyncError with a hint when
    the docker CLI, the engine, busybox or a registry is not available."""
    from devsync.devtools import sandbox

    env = dict(env if env is not None else os.environ)
    env["DOCKER_BUILDKIT"] = "0"  # CI's classic builder: its layers are what devsync reuses
    if shutil.which("docker", path=env.get("PATH")) is None:
        raise DevsyncError("the demo needs the docker CLI", hint="install Docker, then rerun")
    if shutil.which("git", path=env.get("PATH")) is None:
        raise DevsyncError("the demo needs git", hint="install git, then rerun")
    workdir = Path(tempfile.mkdtemp(prefix="devsync-demo-", dir=parent))
    demo = Demo(root=workdir / "demo-app", repository="", env=env, workdir=workdir)
    try:
        host = registry or os.environ.get(REGISTRY_ENV, "")
        if not host:
            try:
                started = sandbox.PrivateRegistry(workdir / "registry").start()
            except sandbox.SandboxUnavailable as exc:
                raise DevsyncError(
                    f"cannot start a throwaway registry for the demo: {exc}",
                    hint=f"point the demo at a registry you can push to: {REGISTRY_ENV}=HOST:PORT",
                ) from None
            demo.registry = started
            host = started.host
        demo.repository = f"{host}/{repository}"
        _make_history(demo, sandbox)
        if fresh:
            for ref in (f"{demo.repository}:dev", demo.base_tag):
                _docker(env, "rmi", ref, check=False)
    except BaseException:
        demo.cleanup()
        raise
    return demo


def _make_history(demo: Demo, sandbox: object) -> None:
    root, repo, env = demo.root, demo.repository, demo.env
    root.mkdir(parents=True)
    bb = sandbox.busybox_context(demo.workdir / "busybox")  # type: ignore[attr-defined]
    (root / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy2(bb / "busybox", root / "rootfs" / "bin" / "busybox")
    _git(root, "init", "-q", "-b", "main")
    _write(root, ".dockerignore", ".git\n")
    _write(root, "Dockerfile.base", DOCKERFILE_BASE)
    _commit(root, "ana", "base image: busybox runtime", day=1)

    _write(root, "Dockerfile", DOCKERFILE.format(base=demo.base_tag))
    _write(root, "composer.json", _composer(["php: >=8.2", "guzzlehttp/guzzle: ^7.8"]))
    _write(root, "composer.lock", "guzzlehttp/guzzle 7.8.1\n")
    _write(root, "src/index.php", "<?php\nrequire 'lib.php';\necho hello();\n")
    _write(root, "src/lib.php", "<?php\nfunction hello() { return 'hello from devsync demo'; }\n")
    _commit(root, "ben", "app skeleton: composer deps and index page", day=2)

    _write(root, "src/lib.php", "<?php\nfunction hello() { return 'hello, team'; }\n")
    _commit(root, "chen", "friendlier greeting", day=3)

    # CI: build and push the base, then deploy 1.0.0
    _build(demo, "Dockerfile.base", demo.base_tag)
    _docker(env, "push", demo.base_tag)
    _build(demo, "Dockerfile", f"{repo}:1.0.0")
    _docker(env, "push", f"{repo}:1.0.0")
    # this developer synced then: the local dev image is what 1.0.0 is
    _docker(env, "tag", f"{repo}:1.0.0", f"{repo}:dev")
    _docker(env, "rmi", f"{repo}:1.0.0")

    _write(root, "composer.json", _composer(["php: >=8.2", "guzzlehttp/guzzle: ^7.8",
                                             "monolog/monolog: ^3.5"]))
    _write(root, "composer.lock", "guzzlehttp/guzzle 7.8.1\nmonolog/monolog 3.5.0\n")
    _commit(root, "dana", "require monolog 3.5 for structured logs", day=4)
    # CI deploys 1.0.1; this machine has not pulled it (its layers are not here)
    _build(demo, "Dockerfile", f"{repo}:1.0.1")
    _docker(env, "push", f"{repo}:1.0.1")
    _docker(env, "rmi", f"{repo}:1.0.1")

    _write(root, "src/health.php", "<?php\nhttp_response_code(200);\necho 'ok';\n")
    _commit(root, "chen", "add /health route", day=5)
    demo.images += [demo.base_tag, f"{repo}:1.0.0", f"{repo}:1.0.1"]


def _composer(requires: list[str]) -> str:
    lines = []
    for i, req in enumerate(requires):
        name, _, version = req.partition(": ")
        comma = "," if i < len(requires) - 1 else ""
        lines.append(f'        "{name}": "{version}"{comma}')
    return COMPOSER_JSON.format(requires="\n".join(lines))


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _commit(root: Path, who: str, message: str, *, day: int) -> None:
    name, email = AUTHORS[who]
    # fixed dates: the same demo gets the same commit ids, so screenshots stay comparable
    date = f"2025-06-{day:02d}T10:00:00+00:00"
    env = dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email,
               GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email, GIT_AUTHOR_DATE=date,
               GIT_COMMITTER_DATE=date)
    _git(root, "add", "-A", env=env)
    _git(root, "commit", "-q", "--no-gpg-sign", "-m", message, env=env)


def commit_as(root: Path, who: str, message: str, day: int = 6) -> None:
    """Commit everything in the demo as one of its authors (for tests and tours)."""
    _commit(root, who, message, day=day)


def _git(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DevsyncError(f"git {args[0]} failed in the demo: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _build(demo: Demo, dockerfile: str, tag: str) -> None:
    revision = _git(demo.root, "rev-parse", "HEAD")
    _docker(demo.env, "build", "-q", "-f", dockerfile, "-t", tag,
            "--label", f"org.opencontainers.image.revision={revision}",
            "--label", f"org.opencontainers.image.version={tag.rsplit(':', 1)[-1]}", ".",
            cwd=demo.root)


def _docker(env: dict[str, str], *args: str, cwd: Path | None = None,
            check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], env=env, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"docker {args[0]} failed while setting up the demo: {detail}",
                          hint="is the Docker engine running? `docker info` says")
    return proc.stdout


def run_demo() -> int:
    """`devsync demo`: make the sample project, open the TUI on it, clean up afterwards."""
    print("devsync demo: building a sample project (base and app images, a few commits)...",
          flush=True)
    demo = create_demo()
    print(f"devsync demo: project in {demo.root}, images in {demo.repository}", flush=True)
    try:
        return subprocess.call([sys.executable, "-m", "devsync", "-C", str(demo.root)],
                               env=demo.env)
    finally:
        with contextlib.suppress(DevsyncError):
            demo.cleanup()
