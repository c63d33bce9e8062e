"""Fault fixtures, the case list and the generated table (`tests/FAULTS.md`).

Each test is marked `@pytest.mark.fault("case-id")` and records what it observed through the
`fault` fixture (what devsync said, its exit code, whether data stayed intact, whether the
next run recovered). At the end of the session the table is written, but only when every case
of CASES was selected and ran: a partial run (`-k`, one file) leaves the file alone (set
DEVSYNC_FAULTS_PARTIAL=PATH to get the partial table written there instead).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsync import sandbox
from tests.teamrepo import TeamRepo, git, make_team_repo

FAULTS_MD = Path(__file__).resolve().parents[1] / "FAULTS.md"

# (case id, group, how it is injected), in the table's order
CASES: list[tuple[str, str, str]] = [
    ("engine-not-running", "Engine",
     "`DOCKER_HOST` names a socket no daemon listens on; `devsync sync`"),
    ("engine-killed-mid-pull", "Engine",
     "a dockerd of the test's own is SIGKILLed as it asks the registry for the deployed "
     "image's 24 MB layer during `devsync sync`; restarted for the next run"),
    ("engine-killed-mid-build", "Engine",
     "the same dockerd is SIGKILLed when `devsync sync` starts the rebuilt `RUN` step"),
    ("engine-out-of-disk", "Engine",
     "dockerd whose `--data-root` is a 20 MB tmpfs; the deployed image has a 24 MB layer; "
     "the next run has the tmpfs grown to 300 MB"),
    ("engine-socket-silent", "Engine",
     "`DOCKER_HOST` is a unix socket that accepts and never answers; `devsync sync`"),
    ("registry-down", "Registry",
     "the registry of the deployed images is stopped, then restarted on its port; "
     "`devsync plan`"),
    ("registry-500", "Registry",
     "a stdlib HTTP server in front of the registry answers HTTP 500 to everything; "
     "`devsync plan`"),
    ("registry-slow", "Registry",
     "that server accepts and answers nothing for 120 s; `devsync plan`"),
    ("registry-wrong-credentials", "Registry",
     "htpasswd registry; Docker's `config.json` holds a wrong password; `devsync plan`"),
    ("registry-token-expiry", "Registry",
     "token-auth registry whose token service issues 1-second tokens, behind a server that "
     "answers 1.2 s late (every token expires mid-run); `devsync plan`"),
    ("registry-missing-manifest", "Registry",
     "the latest deployed tag is listed but its manifest's revision link is deleted from the "
     "registry's storage; `devsync sync`"),
    ("registry-tag-deleted", "Registry",
     "`devsync sync` plans with the latest tag, which is deleted through the registry API "
     "(`DELETE /v2/.../manifests/DIGEST`) as the engine asks for it"),
    ("registry-other-arch", "Registry",
     "the latest deployed tag is a manifest list with only linux/s390x "
     "(`docker manifest create/annotate/push`); `devsync plan`"),
    ("repo-not-git", "Repository", "a directory with a Dockerfile, no `.git`; `devsync plan`"),
    ("repo-detached-head", "Repository", "`git checkout --detach HEAD~1`; `devsync status`"),
    ("repo-shallow-clone", "Repository",
     "`git clone --depth 1` two commits past the deployed revision; `devsync plan`"),
    ("repo-no-commits", "Repository", "`git init` and files, no commit; `devsync status`"),
    ("repo-conflict-markers", "Repository",
     "a real `git merge` conflict left in the Dockerfile; `devsync plan`"),
    ("repo-dockerfile-deleted", "Repository",
     "the Dockerfile named by `.devsync.toml` is deleted from the checkout; `devsync sync`"),
    ("repo-symlink-outside", "Repository",
     "symlinks in the context to a FIFO outside it and to `/etc/shadow`; `devsync plan`"),
    ("repo-unreadable-file", "Repository",
     "a mode-000 file in the context; devsync run without the capabilities that let root "
     "read it (`setpriv` drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH); `devsync plan`"),
    ("repo-50k-files", "Repository",
     "50,000 untracked files in the build context; `devsync plan`"),
    ("config-malformed", "Config and state", "`.devsync.toml` with a broken table header"),
    ("config-unknown-keys", "Config and state",
     "`.devsync.toml` with misspelt and unknown keys; `devsync plan`"),
    ("state-corrupt", "Config and state",
     "the repository's state file overwritten with garbage; `devsync status`"),
    ("state-future-version", "Config and state",
     "a state file with `\"version\": 99`; `devsync status`"),
    ("state-dir-unwritable", "Config and state",
     "`DEVSYNC_STATE_DIR` is a regular file; `devsync status`, then `devsync sync`"),
    ("state-concurrent-sync", "Config and state",
     "a second `devsync sync` of the same repository while the first one is at work"),
    ("hostile-git-config", "Hostile input",
     "`.git/config` with `core.fsmonitor`, a clean filter, `diff.external`, `core.pager`, "
     "signature, an included config and hooks that each touch a marker; status, plan, "
     "sync, `--check`; nothing written outside the state dir"),
    ("hostile-dockerfile", "Hostile input",
     "Dockerfile `RUN`, `$(...)` and backticks in `ARG` (before and after `FROM`), `ENV`, "
     "`LABEL` and in `.devsync.toml` "
     "build args, each touching a marker; status, plan, `--check` (none may build or run "
     "anything); nothing written outside the state dir"),
    ("hostile-escapes", "Hostile input",
     "ESC/OSC/C1 sequences in commit messages, author names, file names, Dockerfile lines, "
     "build output and config keys; status, plan, sync, `--check`, on a pipe and on a pty"),
    ("hostile-credentials", "Hostile input",
     "a known password in an htpasswd registry and a token in the git remote's URL; every "
     "output (status, plan, sync, `--check`, a refused login), the state dir and the built "
     "image's labels are searched for them, plain and base64"),
]
_CASE_IDS = [c[0] for c in CASES]


# --------------------------------------------------------------------------- the table


@dataclass
class Observation:
    said: str = "(not observed)"
    exit_code: str = ""
    intact: str = ""
    recovers: str = ""
    result: str = "not run"


class FaultTable:
    def __init__(self) -> None:
        self.observed: dict[str, Observation] = {}
        self.selected: set[str] = set()

    def write_if_complete(self, path: Path) -> bool:
        if self.selected != set(_CASE_IDS):
            return False
        if any(self.observed.get(c, Observation()).result in ("not run", "skipped")
               for c in _CASE_IDS):
            return False
        path.write_text(self.render())
        return True

    def render(self) -> str:
        out = [
            "# Fault suite: cases and outcomes",
            "",
            "Generated by `python -m pytest tests/faults` (tests/faults/conftest.py); do not edit.",
            "Each case injects its fault for real (real engine, registry and git repositories)",
            "and runs the `devsync` CLI as a user would. *Data intact*: the state file is intact",
            "and valid, and the engine's tagged images are what they were before the fault.",
            "*Recovers*: the same command succeeds once the fault is removed. Paths, ports and",
            "pids are normalised.",
            "",
        ]
        group = ""
        for case, grp, how in CASES:
            if grp != group:
                group = grp
                out += [f"## {grp}", "",
                        "| case | injected | devsync says | exit | data intact | recovers "
                        "| result |",
                        "| --- | --- | --- | --- | --- | --- | --- |"]
            o = self.observed.get(case, Observation())
            cells = [case, how, o.said, o.exit_code, o.intact, o.recovers, o.result]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            nxt = _CASE_IDS.index(case) + 1
            if nxt == len(CASES) or CASES[nxt][1] != grp:
                out.append("")
        return "\n".join(out)


def _cell(text: str) -> str:
    return (text or "—").replace("|", "\\|").replace("\n", " ")


_TABLE = FaultTable()


_NORMALISE = [
    (re.compile(r"(?:/tmp|/var/tmp)/[^\s:,;'\"()]*/([^\s:,;'\"()/]+)"), r"<tmp>/\1"),
    (re.compile(r"\b(localhost|127\.0\.0\.1):\d{2,5}\b"), r"\1:PORT"),
    (re.compile(r"sha256:[0-9a-f]{64}"), "sha256:…"),
    (re.compile(r"\bpid \d+"), "pid N"),
    (re.compile(r"\bkill \d+"), "kill N"),
    (re.compile(r"started \d\d:\d\d"), "started HH:MM"),
    (re.compile(r"\.corrupt-[0-9T]+(?:-\d+)?"), ".corrupt-TIMESTAMP"),
    (re.compile(r"GetImageBlob\d+"), "GetImageBlobNNN"),
    (re.compile(r"\b[0-9a-f]{16}\.json\b"), "KEY.json"),  # state file names (hash of a path)
    (re.compile(r"(@|revision|\bin) [0-9a-f]{7,40}\b"), r"\1 SHA"),  # commits of this run
]


def normalise(text: str) -> str:
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text.strip()


class FaultRecorder:
    """What one case observed, for the table. Record before asserting: a failing case still
    shows what devsync actually did."""

    def __init__(self, case: str) -> None:
        if case not in _CASE_IDS:
            raise KeyError(f"unknown fault case {case!r}: add it to CASES")
        self.case = case
        self.obs = _TABLE.observed.setdefault(case, Observation())

    def saw(self, result: Any, *, said: str | None = None) -> None:
        """devsync's answer: the error line, else the first line of its output."""
        if said is None:
            said = _first_words(result)
        self.obs.said = normalise(said)
        self.obs.exit_code = str(result.returncode)

    def intact(self, ok: bool) -> bool:
        self.obs.intact = "yes" if ok else "NO"
        return ok

    def recovered(self, ok: bool | None, note: str = "") -> bool | None:
        self.obs.recovers = ("n/a" if ok is None else "yes" if ok else "NO") + (
            f" ({note})" if note else "")
        return ok


def _first_words(result: Any) -> str:
    err = [ln for ln in result.stderr.splitlines() if ln.strip()]
    for ln in err:
        if ln.startswith("devsync: error:"):
            return str(ln)
    if result.returncode != 0 and err:
        return str(err[0])
    out = [ln for ln in result.stdout.splitlines() if ln.strip()]
    if out:
        return "(stdout) " + str(out[0])
    return "(says nothing)"


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


BIG_DOCKERFILE = """\
FROM {busybox}
RUN head -c 24000000 /dev/urandom > /big
WORKDIR /app
COPY . /app
RUN sleep 2 && ls -R /app > /files.txt
"""

BIG_CONFIG = """\
[images.app]
dockerfile = "Dockerfile"
deployed = "{repo}"
tag = "{repo}:dev"
"""


@dataclass
class BigShop:
    path: Path
    repo: str  # localhost:PORT/bigshop
    deployed: str  # repo:1.0.0


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


SMALL_DOCKERFILE = """\
FROM {busybox}
WORKDIR /app
COPY . /app
RUN ls -R /app > /files.txt
"""


def small_repo(path: Path, busybox: str, deployed_repo: str) -> Path:
    """A one-image repository whose deployed images live in `deployed_repo` (.devsync.toml)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "Dockerfile").write_text(SMALL_DOCKERFILE.format(busybox=busybox))
    (path / ".devsync.toml").write_text(BIG_CONFIG.format(repo=deployed_repo))
    (path / ".dockerignore").write_text(".git\n")
    (path / "main.sh").write_text("echo hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Initial commit")
    return path


def ci_deploy(engine: sandbox.PrivateEngine, path: Path, ref: str,
              docker_config: Path | None = None) -> str:
    """The team's CI: plain `docker build` with the revision label, then `docker push`."""
    head = git(path, "rev-parse", "HEAD").strip()
    sandbox.docker_cli(engine, "build", "-q", "--label",
                       f"org.opencontainers.image.revision={head}", "-t", ref, ".", cwd=path)
    config = ["--config", str(docker_config)] if docker_config else []
    sandbox.docker_cli(engine, *config, "push", ref)
    return ref


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A Docker client config dir (`DOCKER_CONFIG`) holding a login for `host`."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


AUTH_USER = "alice"
AUTH_PASSWORD = "Zq7-known-password-for-devsync-faults"
AUTH_WRONG = "Wr0ng-password-for-devsync-faults"


@dataclass
class AuthShop:
    registry: sandbox.PrivateRegistry
    path: Path
    repo: str
    right: Path  # DOCKER_CONFIG with the right password
    wrong: Path  # ... with a wrong one


@pytest.fixture(scope="package")
def authshop(engine: sandbox.PrivateEngine, busybox_image: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthShop]:
    """An htpasswd registry (a known password) holding the deployed image of a small repo."""
    from tests.test_registry import bcrypt_hash

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
