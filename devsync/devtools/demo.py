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
REVISION_LABEL = "org.opencontainers.image.revision"

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
        """Remove the demo's images (the ones made for it, and those syncs and base builds
        made meanwhile: a sync's new `:dev` leaves the old one untagged), its registry and
        its project."""
        if self.repository:
            made = self._made_here() if self.root.is_dir() else []
            tags = _docker(self.env, "images", self.repository, "--format",
                           "{{.Repository}}:{{.Tag}}", check=False).split()
            refs = {*self.images, f"{self.repository}:dev",
                    *(t for t in tags if not t.endswith(":<none>"))}
            for ref in sorted(refs):
                _docker(self.env, "rmi", "-f", ref, check=False)
            _remove_images(self.env, made)
        stop = getattr(self.registry, "stop", None)
        if stop is not None:
            stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


    def _made_here(self) -> list[str]:
        """The IDs of every image built from one of the demo's commits (the OCI revision
        label that CI and devsync put on their builds), newest first."""
        try:
            commits = set(_git(self.root, "rev-list", "--all", "--reflog").split())
        except DevsyncError:  # (a demo that failed before its first commit)
            return []
        labelled = _docker(self.env, "images", "-a", "-q", "--no-trunc", "--filter",
                           f"label={REVISION_LABEL}", check=False).split()
        if not commits or not labelled:
            return []
        found = _docker(self.env, "image", "inspect", "--format",
                        f'{{{{.Id}}}} {{{{.Created}}}} '
                        f'{{{{index .Config.Labels "{REVISION_LABEL}"}}}}',
                        *sorted(set(labelled)), check=False)
        rows = [line.split() for line in found.splitlines()]
        return [row[0] for row in sorted((r for r in rows if len(r) == 3 and r[2] in commits),
                                         key=lambda r: r[1], reverse=True)]


def _remove_images(env: dict[str, str], ids: list[str]) -> None:
    """`docker rmi` each image, children before parents (its untagged parents, the build's
    intermediate images, go with it). No `-f`: an image another repository also names (a
    second demo's identical base) stays."""
    left = list(ids)
    for _round in range(3):  # (an image whose child was listed after it goes next round)
        left = [i for i in left if _docker_ok(env, "image", "inspect", i)
                and not _docker_ok(env, "rmi", i)]
        if not left:
            return


def _docker_ok(env: dict[str, str], *args: str) -> bool:
    return subprocess.run(["docker", *args], env=env, capture_output=True).returncode == 0


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
    # (the path, for a second terminal while the TUI runs: it is gone after)
    print(f"devsync demo: a throwaway project in {demo.root}, images in {demo.repository}; "
          "both are removed when you quit", flush=True)
    try:
        return subprocess.call([sys.executable, "-m", "devsync", "-C", str(demo.root)],
                               env=demo.env)
    finally:
        with contextlib.suppress(DevsyncError):
            demo.cleanup()
        print("devsync demo: removed the sample project and its images", flush=True)
