"""The fault suite's case list and the table it writes (`tests/FAULTS.md`): see
`tests/faults/conftest.py` for the hooks that fill it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
     "the registry of the deployed images is stopped, then restarted on its port; none of "
     "those images is on this machine (nothing local to use); `devsync plan`"),
    ("registry-down-offline", "Registry",
     "the same registry stopped while the deployed image and the base are on this machine; "
     "`devsync plan`, then `devsync sync --yes` of a code edit"),
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
    ("tree-symlink-loop", "Hostile trees",
     "self-loops (`src/loop -> loop`, a link named `Dockerfile.loop` to itself), a two-link "
     "loop; status, plan, sync against `docker build` of the same tree; then the watched "
     "`composer.lock` made a self-loop; `--check`"),
    ("tree-symlink-parent", "Hostile trees",
     "`src/up -> ..`, `src/a/b/top -> ../../..`, `src/here -> .`; status, plan, sync against "
     "`docker build`; then `composer.lock -> ..` (a directory); `--check`"),
    ("tree-symlink-dangling", "Hostile trees",
     "`src/gone -> nowhere`, `docker/Dockerfile` dangling; status, plan, sync against `docker "
     "build`; then a dangling `composer.lock`; `--check`"),
    ("tree-symlink-out", "Hostile trees",
     "`src/etc -> /etc`, `images ->` a directory of Dockerfiles out of the repository, "
     "`Dockerfile.host -> /etc/hostname`; status, plan, sync against `docker build`; then "
     "`composer.lock ->` a file out of the repository; `--check`"),
    ("tree-fifo", "Hostile trees",
     "a FIFO in the context and one named `docker/Dockerfile`; status, plan, sync against "
     "`docker build`; then a FIFO for the watched `composer.json`; `--check`"),
    ("tree-unreadable-dir", "Hostile trees",
     "a mode-000 directory holding a Dockerfile, and a mode-000 watched `composer.lock`; "
     "devsync and `docker build` run without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH; status, "
     "plan, `--check`; then the directory in `.dockerignore` (the docker CLI still refuses "
     "the context); sync"),
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
