"""A team's repository and its CI, made for real: git history, Dockerfiles, and deployed images
built by the plain docker CLI (classic builder) and pushed to the private registry.

Used by the exactness tests, the sync tests, the benchmark and the screenshot script.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devsync.devtools import sandbox

MODERN_CLI = "/usr/local/bin/docker"
LEGACY_CLI = "/usr/bin/docker"

BASE_DOCKERFILE = """\
FROM {busybox}
ENV LANG=C.UTF-8 APP_HOME=/var/www/html
RUN mkdir -p /opt/runtime && echo "runtime 1" > /opt/runtime/version
RUN echo "system packages" > /opt/runtime/packages
"""

APP_DOCKERFILE = """\
ARG BASE_TAG=base-1.0.0
FROM {repo}:${{BASE_TAG}}
ARG COMPOSER_FLAGS=--no-dev
WORKDIR $APP_HOME
COPY composer.json composer.lock ./
RUN echo "install $COMPOSER_FLAGS" && cat composer.json composer.lock > /opt/vendor.txt
COPY . /var/www/html
RUN ls -la /var/www/html > /opt/files.txt
CMD ["sh", "-c", "cat /opt/vendor.txt"]
"""


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = dict(os.environ)
    full_env.update({
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Ana", "GIT_AUTHOR_EMAIL": "ana@example.com",
        "GIT_COMMITTER_NAME": "Ana", "GIT_COMMITTER_EMAIL": "ana@example.com",
    })
    full_env.update(env or {})
    return subprocess.run(["git", *args], cwd=repo, env=full_env, check=True,
                          capture_output=True, text=True).stdout


class CiSteps:
    """What a team's repository and its CI do, whichever docker CLI `docker` runs."""

    path: Path
    repo: str  # e.g. localhost:PORT/shop

    def docker(self, *args: str, check: bool = True, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def commit(self, message: str, author: str = "Ana") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message,
            env={"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.com"})
        return git(self.path, "rev-parse", "HEAD").strip()

    def ci_build_base(self, version: str) -> str:
        ref = f"{self.repo}:base-{version}"
        self.docker("build", "-q", "-f", "Dockerfile.base", "-t", ref, ".")
        self.docker("push", ref)
        return ref


@dataclass
class TeamRepo(CiSteps):
    path: Path
    engine: sandbox.PrivateEngine
    registry: sandbox.PrivateRegistry
    repo: str  # e.g. localhost:PORT/shop
    busybox: str
    cli: str = MODERN_CLI
    deployed: list[str] = field(default_factory=list)
    deployed_head: str = ""  # the commit the latest deployed image was built from

    def docker(self, *args: str, check: bool = True, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
        return sandbox.docker_cli(self.engine, *args, check=check, cwd=cwd or self.path,
                                  cli=self.cli)

    def ci_deploy(self, version: str, *, cli: str | None = None) -> str:
        """What the team's CI does on deploy: plain `docker build`, with the revision label."""
        ref = f"{self.repo}:{version}"
        head = git(self.path, "rev-parse", "HEAD").strip()
        sandbox.docker_cli(self.engine, "build", "-q", "--label",
                           f"org.opencontainers.image.revision={head}", "-t", ref, ".",
                           cwd=self.path, cli=cli or self.cli)
        self.docker("push", ref)
        self.deployed.append(ref)
        self.deployed_head = head
        return ref

    def forget_local_images(self) -> None:
        """Make the engine look like a fresh developer machine for this repo's images."""
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
        refs = [line.split()[0] for line in out.splitlines()
                if line.startswith(self.repo + ":")]
        if refs:
            self.docker("rmi", "-f", *refs, check=False)
        self.docker("image", "prune", "-f", check=False)

    def cli_build_with_cache(self, cache_from: list[str], tag: str) -> list[bool]:
        """A developer's `docker pull` + `docker build --cache-from`: which steps hit."""
        for ref in cache_from:
            self.docker("pull", ref)
        args = ["build"]
        for ref in cache_from:
            args += ["--cache-from", ref]
        proc = self.docker(*args, "-t", tag, ".")
        return parse_cache_hits(proc.stdout)


def parse_cache_hits(output: str) -> list[bool]:
    """Per `Step N/M` of a classic-builder log: True when it said `Using cache` (FROM: True)."""
    hits: list[bool] = []
    seen_from = False
    for block in re.split(r"^Step \d+/\d+ : ", output, flags=re.MULTILINE)[1:]:
        first = (block.splitlines()[0] if block else "").upper()
        # FROM and the ARGs before the first FROM make no layer: nothing to reuse or rebuild
        no_layer = first.startswith("FROM") or (first.startswith("ARG") and not seen_from)
        seen_from = seen_from or first.startswith("FROM")
        hits.append(no_layer or "---> Using cache" in block)
    return hits


def make_team_repo(root: Path, engine: sandbox.PrivateEngine,
                   registry: sandbox.PrivateRegistry, busybox: str, name: str,
                   cli: str = MODERN_CLI) -> TeamRepo:
    path = root / name
    path.mkdir(parents=True)
    repo = f"{registry.host}/{name}"
    team = TeamRepo(path=path, engine=engine, registry=registry, repo=repo, busybox=busybox,
                    cli=cli)
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile.base").write_text(BASE_DOCKERFILE.format(busybox=busybox))
    (path / "Dockerfile").write_text(APP_DOCKERFILE.format(repo=repo))
    (path / "composer.json").write_text('{"require": {"php": "^8.2"}}\n')
    (path / "composer.lock").write_text('{"packages": []}\n')
    (path / "src").mkdir()
    (path / "src" / "index.php").write_text("<?php echo 'hello';\n")
    (path / "src" / "lib.php").write_text("<?php function f() {}\n")
    (path / "README.md").write_text("# shop\n")
    (path / ".dockerignore").write_text(".git\n*.log\nnode_modules\n")
    (path / ".gitignore").write_text("*.log\n")
    team.commit("Initial commit")
    team.ci_build_base("1.0.0")
    team.ci_deploy("1.0.0")
    (path / "src" / "index.php").write_text("<?php echo 'hello, world';\n")
    team.commit("Say hello to the world", author="Ben")
    team.ci_deploy("1.0.1")
    return team
