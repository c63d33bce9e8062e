"""Fault fixtures, the case list and the generated table (`tests/FAULTS.md`).

Each test is marked `@pytest.mark.fault("case-id")` and records what it observed through the
`fault` fixture (what devsync said, its exit code, whether data stayed intact, whether the
next run recovered). At the end of the session the table is written, but only when every case
of CASES was selected and ran: a partial run (`-k`, one file) leaves the file alone (set
DEVSYNC_FAULTS_PARTIAL=PATH to get the partial table written there instead).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.faultcases import _TABLE, FAULTS_MD, FaultRecorder, Observation
from tests.support.faults import (
    AUTH_PASSWORD,
    AUTH_USER,
    AUTH_WRONG,
    BIG_CONFIG,
    BIG_DOCKERFILE,
    AuthShop,
    BigShop,
    ci_deploy,
    docker_config,
    small_repo,
)
from tests.support.teamrepo import TeamRepo, git, make_team_repo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(case): a case of the fault suite (tests/faults)")


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        marker = item.get_closest_marker("fault")
        if marker is not None:
            _TABLE.selected.add(str(marker.args[0]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    marker = item.get_closest_marker("fault")
    if marker is None:
        return
    report = outcome.get_result()  # type: ignore[attr-defined]
    obs = _TABLE.observed.setdefault(str(marker.args[0]), Observation())
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            obs.result = "xfail (known bug, see test)" if report.skipped else "XPASS"
        elif report.passed:
            obs.result = "pass"
        elif report.skipped:
            obs.result = "skipped"
        else:
            obs.result = "FAIL"
    elif report.when == "teardown" and report.failed and obs.result == "pass":
        obs.result = "FAIL (teardown)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _TABLE.write_if_complete(FAULTS_MD)
    partial = os.environ.get("DEVSYNC_FAULTS_PARTIAL", "")
    if partial:  # for working on a few cases: the table so far, written elsewhere
        Path(partial).write_text(_TABLE.render())


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> FaultRecorder:
    marker = request.node.get_closest_marker("fault")
    if marker is None:
        raise pytest.UsageError("the fault fixture needs @pytest.mark.fault('case-id')")
    return FaultRecorder(str(marker.args[0]))


# --------------------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="package")
def fault_registry(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[sandbox.PrivateRegistry]:
    """The faults' own registry (delete enabled): cases stop it and damage it, so never the
    session's."""
    try:
        reg = sandbox.PrivateRegistry(tmp_path_factory.mktemp("fault-registry")).start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    yield reg
    reg.stop()


@pytest.fixture(scope="package")
def shop(engine: sandbox.PrivateEngine, fault_registry: sandbox.PrivateRegistry,
         busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> TeamRepo:
    """The team's repository (base + app, deployed 1.0.0 and 1.0.1 by CI with the docker CLI),
    pushed to the faults' registry. Cases work in clones of it."""
    return make_team_repo(tmp_path_factory.mktemp("faults"), engine, fault_registry,
                          busybox_image, "shop")


@pytest.fixture(scope="package")
def bigshop(engine: sandbox.PrivateEngine, fault_registry: sandbox.PrivateRegistry,
            busybox_image: str, tmp_path_factory: pytest.TempPathFactory) -> BigShop:
    """A repository whose deployed image has a 24 MB layer (a pull lasts long enough to be
    interrupted) and whose last step sleeps (so does a build)."""
    path = tmp_path_factory.mktemp("bigshop") / "bigshop"
    path.mkdir()
    repo = f"{fault_registry.host}/bigshop"
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile").write_text(BIG_DOCKERFILE.format(busybox=busybox_image))
    (path / ".devsync.toml").write_text(BIG_CONFIG.format(repo=repo))
    (path / ".dockerignore").write_text(".git\n")
    (path / "main.sh").write_text("echo hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Initial commit")
    head = git(path, "rev-parse", "HEAD").strip()
    deployed = f"{repo}:1.0.0"
    sandbox.docker_cli(engine, "build", "-q", "--label",
                       f"org.opencontainers.image.revision={head}", "-t", deployed, ".",
                       cwd=path)
    sandbox.docker_cli(engine, "push", deployed)
    return BigShop(path, repo, deployed)


@pytest.fixture(scope="package")
def authshop(engine: sandbox.PrivateEngine, busybox_image: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthShop]:
    """An htpasswd registry (a known password) holding the deployed image of a small repo."""
    from tests.support.registry import bcrypt_hash

    root = tmp_path_factory.mktemp("authreg")
    hashed, _tool = bcrypt_hash(AUTH_PASSWORD)
    (root / "htpasswd").write_text(f"{AUTH_USER}:{hashed}\n")
    try:
        reg = sandbox.PrivateRegistry(root / "reg", htpasswd=root / "htpasswd").start()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(str(exc))
    try:
        right = docker_config(root / "right", reg.host, AUTH_USER, AUTH_PASSWORD)
        wrong = docker_config(root / "wrong", reg.host, AUTH_USER, AUTH_WRONG)
        repo = f"{reg.host}/authshop"
        path = small_repo(root / "authshop", busybox_image, repo)
        ci_deploy(engine, path, f"{repo}:1.0.0", right)
        yield AuthShop(reg, path, repo, right, wrong)
    finally:
        reg.stop()
