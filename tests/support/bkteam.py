"""A team repository whose CI builds with BuildKit (the docker 20.10 CLI with its built-in
BuildKit client, as on Debian 12), and the developer's build on a fresh machine that the
BuildKit exactness suites compare devsync's plan with, vertex by vertex."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devsync.adapters.engine._buildkit_progress import parse_plain_progress
from devsync.devtools import sandbox
from devsync.model.dockerfiles import parse_file
from devsync.ops.buildkit import step_refs
from devsync.ops.plan import ImagePlan
from tests.support.teamrepo import CiSteps, git

LEGACY_CLI = "/usr/bin/docker"  # Debian's docker 20.10 CLI: BuildKit built in


@dataclass
class BKTeam(CiSteps):
    path: Path
    engine: sandbox.PrivateEngine
    repo: str
    deployed_head: str = ""
    deployed: list[str] = field(default_factory=list)

    def docker(self, *args: str, cwd: Path | None = None, check: bool = True,
               buildkit: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(self.engine.env(), DOCKER_BUILDKIT="1" if buildkit else "0")
        proc = subprocess.run([LEGACY_CLI, *args], env=env, cwd=cwd or self.path,
                              capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def ci_deploy(self, version: str, *, inline_cache: bool = True,
                  cache_from: str | None = None, repo: str | None = None) -> str:
        """CI's release build: BuildKit, the inline cache, the revision label."""
        ref = f"{repo or self.repo}:{version}"
        head = git(self.path, "rev-parse", "HEAD").strip()
        args = ["build", "-q", "--label", f"org.opencontainers.image.revision={head}"]
        if inline_cache:
            args += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        if cache_from:
            args += ["--cache-from", cache_from]
        self.docker(*args, "-t", ref, ".")
        self.docker("push", ref)
        if repo is None:
            self.deployed.append(ref)
            self.deployed_head = head
        return ref

    def fresh_machine(self) -> None:
        """No image of this team's repositories and no BuildKit cache on the engine."""
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        refs = [r for r in out.split() if r.startswith(self.repo)]
        if refs:
            self.docker("rmi", "-f", *refs, check=False)
        self.docker("image", "prune", "-f", check=False)
        self.docker("builder", "prune", "-af")

    def developer_build(self, cache_from: list[str]) -> dict[int, bool]:
        """The developer's BuildKit build on a fresh machine: CACHED per Dockerfile line."""
        self.fresh_machine()
        args = ["build", "--progress=plain"]
        for ref in cache_from:
            args += ["--cache-from", ref]
        proc = self.docker(*args, "-t", f"{self.repo}:dev-check", ".")
        progress = parse_plain_progress(proc.stderr + proc.stdout)
        by_ref = {ref: line for line, ref in step_refs(parse_file(self.path / "Dockerfile"))
                  .items()}
        out: dict[int, bool] = {}
        for ref, vertex in progress.steps().items():
            if ref in by_ref:
                out[by_ref[ref]] = vertex.cached
        return out


def buildkit_env(engine: sandbox.PrivateEngine, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """devsync as a developer runs it against the test engine, with the docker 20.10 CLI (its
    BuildKit client) as the one it finds; for tests/ops/conftest.py's fixture."""
    from devsync.adapters.engine._dockercli import forget_found

    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("DEVSYNC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DEVSYNC_DOCKER_CLI", LEGACY_CLI)
    forget_found()
    yield
    forget_found()


def normal_modes(path: Path) -> None:
    for p in path.rglob("*"):
        if ".git" in p.parts:
            continue
        os.chown(p, 0, 0)
        p.chmod(0o755 if p.is_dir() else 0o644)
    path.chmod(0o755)


def plan_app(path: Path) -> ImagePlan:
    from devsync.adapters.engine import Engine
    from devsync.adapters.gitrepo import open_repo
    from devsync.adapters.resolver import Resolver
    from devsync.model.project import load_project
    from devsync.ops.plan import plan_image

    project = load_project(path)
    return plan_image(project, project.image("app"), Resolver(Engine.connect()),
                      open_repo(path))


def reset(team: BKTeam) -> None:
    git(team.path, "checkout", "-q", "main")
    git(team.path, "reset", "-q", "--hard", team.deployed_head)
    git(team.path, "clean", "-qfdx")
    normal_modes(team.path)


def vertex_steps(plan: ImagePlan) -> dict[int, tuple[bool, bool]]:
    """(cached, certain) by line, for the steps BuildKit runs as vertices (FROM left out:
    BuildKit reports it resolved, never CACHED)."""
    return {s.line: (s.cached, s.certain) for s in plan.steps
            if s.kind in ("run", "copy", "copy-stage", "add-url")}


def assert_exact(team: BKTeam, plan: ImagePlan, what: str) -> dict[int, bool]:
    predicted = vertex_steps(plan)
    real = team.developer_build(plan.cache_from)
    for step in plan.steps:
        if step.kind == "from":
            real.pop(step.line, None)
    assert sorted(real) == sorted(predicted), (what, real, predicted)
    for line, (cached, certain) in predicted.items():
        assert certain, (what, line, plan.summary)
        assert real[line] == cached, (what, line, "plan", predicted, "engine", real,
                                      plan.summary)
    return real


