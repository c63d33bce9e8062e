"""Hostile input from an untrusted clone: git metadata, a Dockerfile and a config that try to
run commands or write outside the state directory, terminal escape sequences everywhere the
repository's text is shown, and credentials that must never be printed or stored.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from devsync.devtools import sandbox
from tests.support.faultcases import FaultRecorder
from tests.support.faults import (
    AUTH_PASSWORD,
    AUTH_USER,
    AUTH_WRONG,
    DEVSYNC_TIMEOUT,
    AuthShop,
    StateDir,
    clone,
    devsync,
    devsync_env,
    expect_error,
    expect_ok,
    foreign_escapes,
    git,
    tagged_images,
    tree_snapshot,
)
from tests.support.teamrepo import TeamRepo

pytestmark = pytest.mark.engine

HOOKS = ("pre-commit", "post-checkout", "post-index-change", "reference-transaction",
         "pre-auto-gc", "post-rewrite", "fsmonitor-watchman", "pre-push", "post-merge")


def _containers_and_images(engine: sandbox.PrivateEngine) -> tuple[str, str]:
    ps = sandbox.docker_cli(engine, "ps", "-a", "-q", "--no-trunc").stdout
    images = sandbox.docker_cli(engine, "images", "-a", "-q", "--no-trunc").stdout
    return ps, "\n".join(sorted(images.split()))


@pytest.mark.fault("hostile-git-config")
def test_git_metadata_never_runs_a_command(fault: FaultRecorder, shop: TeamRepo,
                                           engine: sandbox.PrivateEngine,
                                           tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    markers = tmp_path / "markers"
    markers.mkdir()
    home = tmp_path / "home"
    home.mkdir()

    def touch(name: str) -> str:
        return f"touch {markers}/{name}"

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in HOOKS:
        for where in (hooks, repo / ".git" / "hooks"):
            script = where / name
            script.write_text(f"#!/bin/sh\n{touch('hook-' + name)}\n")
            script.chmod(0o755)
    gpg = tmp_path / "gpg.sh"
    gpg.write_text(f"#!/bin/sh\n{touch('gpg')}\n")
    gpg.chmod(0o755)
    (repo / ".git" / "evil.config").write_text(
        f'[filter "included"]\n\tclean = "{touch("included-clean")}; cat"\n')
    for key, value in {
        "core.fsmonitor": f"{touch('fsmonitor')}; echo",
        "core.hooksPath": str(hooks),
        "core.pager": f"{touch('pager')}; cat",
        "pager.log": f"{touch('pager-log')}; cat",
        "diff.external": touch("diff-external"),
        "diff.evil.textconv": f"{touch('textconv')}; cat",
        "diff.evil.command": touch("diff-command"),
        "filter.evil.clean": f"{touch('clean')}; cat",
        "filter.evil.smudge": f"{touch('smudge')}; cat",
        "filter.evil.required": "true",
        "log.showSignature": "true",
        "gpg.program": str(gpg),
        "core.sshCommand": touch("ssh"),
        "credential.helper": f"!{touch('credential')}",
        "include.path": "evil.config",
    }.items():
        git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n*.php filter=included\n")
    # modified tracked files: status and diff must look at their content (where filters run)
    (repo / "src" / "index.php").write_text("<?php echo 'edited';\n")
    (repo / "composer.json").write_text('{"require": {"php": "^8.3"}}\n')
    state = StateDir(tmp_path / "state")
    env = {"HOME": str(home)}
    before_tree = tree_snapshot(tmp_path, exclude=(state.path,))

    outs = [
        devsync(repo, "status", engine=engine, state=state.path, env=env),
        devsync(repo, "status", "--json", engine=engine, state=state.path, env=env),
        devsync(repo, "plan", engine=engine, state=state.path, env=env),
        devsync(repo, "plan", "--json", engine=engine, state=state.path, env=env),
        devsync(repo, "--check", engine=engine, state=state.path, env=env),
        devsync(repo, "sync", "app", "--yes", engine=engine, state=state.path, env=env),
        devsync(repo, "--check", engine=engine, state=state.path, env=env),
    ]
    ran = sorted(p.name for p in markers.iterdir())
    fault.saw(outs[2], said=f"(no command ran: markers {ran or 'none'})")
    for out in outs:
        expect_ok(out)
    assert ran == [], ran
    # nothing written outside the state directory (the repository and .git included)
    after_tree = tree_snapshot(tmp_path, exclude=(state.path,))
    changed = sorted(k for k in before_tree.keys() | after_tree.keys()
                     if before_tree.get(k) != after_tree.get(k))
    assert fault.intact(changed == [] and state.valid()), changed
    fault.recovered(None, "nothing to recover from: every command worked")


HOSTILE_DOCKERFILE = """\
ARG BASE_TAG=base-1.0.0
ARG SNEAKY="$({touch}/meta-arg)"
FROM {repo}:${{BASE_TAG}}
ARG COMPOSER_FLAGS="--no-dev $({touch}/arg) `{touch}/arg-backtick`"
ENV DANGER="$({touch}/env)" OTHER="`{touch}/env-backtick`" LATER="${{SNEAKY:-$({touch}/default)}}"
WORKDIR $APP_HOME
COPY composer.json composer.lock ./
RUN {touch}/run && echo "install $COMPOSER_FLAGS" > /opt/vendor.txt
COPY . /var/www/html
RUN ls -la /var/www/html > /opt/files.txt
LABEL note="$({touch}/label)"
ONBUILD RUN {touch}/onbuild
HEALTHCHECK CMD {touch}/healthcheck
CMD {touch}/cmd
"""


@pytest.mark.fault("hostile-dockerfile")
def test_dockerfile_and_config_never_run_a_command(fault: FaultRecorder, shop: TeamRepo,
                                                   engine: sandbox.PrivateEngine,
                                                   tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    markers = tmp_path / "markers"
    markers.mkdir()
    touch = f"touch {markers}"
    (repo / "Dockerfile").write_text(HOSTILE_DOCKERFILE.format(touch=touch, repo=shop.repo))
    (repo / ".devsync.toml").write_text(
        f'[images.app]\ndockerfile = "Dockerfile"\ndeployed = "{shop.repo}"\n'
        f'tag = "{shop.repo}:hostile"\n'
        f'build_args = {{ COMPOSER_FLAGS = "$({touch}/config-arg) `{touch}/config-tick`" }}\n')
    state = StateDir(tmp_path / "state")
    before_engine = _containers_and_images(engine)
    before_tree = tree_snapshot(tmp_path, exclude=(state.path,))

    outs = [
        devsync(repo, "status", engine=engine, state=state.path),
        devsync(repo, "plan", engine=engine, state=state.path),
        devsync(repo, "plan", "--json", engine=engine, state=state.path),
        devsync(repo, "--check", engine=engine, state=state.path),
    ]
    ran = sorted(p.name for p in markers.iterdir())
    fault.saw(outs[1], said=f"(no command ran: markers {ran or 'none'}; no container, no "
                            "build)")
    for out in outs:
        expect_ok(out)
    assert ran == [], ran
    plan = json.loads(outs[2].stdout)["images"][0]
    # the $(...) stays text: it is what the builder will see, and what the plan compares
    run = next(s for s in plan["steps"] if s["instruction"].startswith("RUN"))
    assert not run["cached"]
    # plan, status and --check never build, run or create anything in the engine
    assert _containers_and_images(engine) == before_engine
    after_tree = tree_snapshot(tmp_path, exclude=(state.path,))
    assert fault.intact(after_tree == before_tree and state.valid())
    fault.recovered(None, "nothing to recover from: every command worked")


# --------------------------------------------------------------------------- escapes

ESC_AUTHOR = "Eve \x1b[2J\x1b]0;owned-title\x07Mallory"
ESC_SUMMARY = "Fix \x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 \x1b[5mnow\x9b31m"
ESC_FILE = "\x1b[31mred\x1b[0m.php"


def _on_pty(cwd: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run devsync with a terminal on stdin, stdout and stderr (colours on)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "devsync", *args], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=DEVSYNC_TIMEOUT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.fault("hostile-escapes")
def test_no_escape_sequence_from_the_repository_reaches_the_terminal(
        fault: FaultRecorder, shop: TeamRepo, engine: sandbox.PrivateEngine,
        tmp_path: Path) -> None:
    repo = clone(shop.path, tmp_path / "repo")
    (repo / "src" / "index.php").write_text("<?php echo 'escaped';\n")
    (repo / "src" / ESC_FILE).write_text("<?php // red\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", ESC_SUMMARY,
        env={"GIT_AUTHOR_NAME": ESC_AUTHOR, "GIT_AUTHOR_EMAIL": "eve@example.com"})
    (repo / "Dockerfile").write_text(
        (repo / "Dockerfile").read_text()
        + 'ENV MOTD="\x1b[2J\x1b[5mhello\x1b]0;title\x07"\n'
        + "RUN printf '\\033]0;build-title\\007\\033[2J\\033[5mbuild output\\233m\\n'\n")
    (repo / ".devsync.toml").write_text(
        '[devsync]\n"\\u001b[2J\\u001b]0;key\\u0007colour" = 1\n\n'
        f'[images.app]\ndeployed = "{shop.repo}"\ntag = "{shop.repo}:dev"\n')
    state = StateDir(tmp_path / "state")
    before_images = tagged_images(engine)

    piped = [
        devsync(repo, "status", engine=engine, state=state.path),
        devsync(repo, "plan", engine=engine, state=state.path),
        devsync(repo, "plan", "--json", engine=engine, state=state.path),
        devsync(repo, "sync", "--yes", engine=engine, state=state.path),
        devsync(repo, "status", engine=engine, state=state.path),
        devsync(repo, "--check", engine=engine, state=state.path),
    ]
    for out in piped:
        expect_ok(out)
    text = "".join(o.stdout + o.stderr for o in piped)
    assert "build output" in text and "Mallory" in text and "red" in text  # shown, defused
    tty_env = devsync_env(engine=engine, state=state.path, colour=True,
                          env={"TERM": "xterm-256color"})
    on_tty = [_on_pty(repo, *args, env=tty_env)
              for args in (("status",), ("plan",), ("sync", "--yes"))]
    assert all(code == 0 for code, _ in on_tty), on_tty
    tty_text = "".join(t for _, t in on_tty)
    assert "\x1b[1m" in tty_text  # the terminal path did colour its output

    bad = [c for c in text if c == "\x1b" or c == "\x07" or "\x80" <= c <= "\x9f"]
    foreign = foreign_escapes(tty_text)
    fault.saw(piped[1], said=f"(escape and control characters shown from the repository: "
                             f"{len(bad)} on a pipe, {len(foreign)} on a terminal)")
    assert bad == [], repr(bad)
    assert foreign == [], foreign
    # for people, whole sequences are dropped, not just their ESC: no "]0;title" litter
    # either (JSON keeps the text, escaped as \u001b, for scripts)
    remnants = ["]0;owned-title", "]8;;http://evil", "[31mred", "]0;key", "]0;title",
                "[5mhello", "[5mnow", "31mred"]
    human = [o.stdout + o.stderr for o in piped if "--json" not in o.args] + [tty_text]
    found = [(r, i) for i, o in enumerate(human) for r in remnants if r in o]
    assert found == [], found
    assert fault.intact(state.valid() and all(
        tagged_images(engine).get(k) == v for k, v in before_images.items()
        if k != f"{shop.repo}:dev"))
    fault.recovered(None, "nothing to recover from")


# --------------------------------------------------------------------------- credentials

GIT_TOKEN = "ghp_knownGitToken4devsyncFaults"


@pytest.mark.fault("hostile-credentials")
def test_credentials_never_appear(fault: FaultRecorder, authshop: AuthShop,
                                  engine: sandbox.PrivateEngine, tmp_path: Path) -> None:
    repo = clone(authshop.path, tmp_path / "repo")
    git(repo, "remote", "set-url", "origin",
        f"https://{AUTH_USER}:{GIT_TOKEN}@git.example.com/team/authshop.git")
    state = StateDir(tmp_path / "state")
    right = {"DOCKER_CONFIG": str(authshop.right)}
    wrong = {"DOCKER_CONFIG": str(authshop.wrong)}

    outs = [
        devsync(repo, "status", engine=engine, state=state.path, env=right),
        devsync(repo, "status", "--json", engine=engine, state=state.path, env=right),
        devsync(repo, "plan", engine=engine, state=state.path, env=right),
        devsync(repo, "plan", "--json", engine=engine, state=state.path, env=right),
        devsync(repo, "sync", "--yes", "--json", engine=engine, state=state.path, env=right),
        devsync(repo, "sync", "--yes", engine=engine, state=state.path, env=right),
        devsync(repo, "--check", engine=engine, state=state.path, env=right),
        devsync(repo, "status", engine=engine, state=state.path, env=wrong),
    ]
    failed = devsync(repo, "plan", engine=engine, state=state.path, env=wrong)
    for out in outs:
        expect_ok(out)
    expect_error(failed, 9, contains="refused the credentials")
    labels = sandbox.docker_cli(engine, "image", "inspect", "--format",
                                "{{json .Config.Labels}}", f"{authshop.repo}:dev").stdout
    assert json.loads(labels)["org.opencontainers.image.source"] == \
        "https://git.example.com/team/authshop.git"

    secrets = [AUTH_PASSWORD, AUTH_WRONG, GIT_TOKEN]
    for user, password in ((AUTH_USER, AUTH_PASSWORD), (AUTH_USER, AUTH_WRONG)):
        secrets.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    places = {f"output {i}": o.stdout + o.stderr for i, o in enumerate([*outs, failed])}
    places["image labels"] = labels
    places.update({f"state {k}": v.decode("utf-8", "replace")
                   for k, v in state.files().items()})
    leaks = [(where, s) for where, text in places.items() for s in secrets if s in text]
    fault.saw(outs[4], said=f"(no password, token or auth string in {len(secrets)} forms in any "
                           "output, the state directory or the image's labels)")
    assert leaks == []
    assert fault.intact(state.valid())
    fault.recovered(None, "nothing to recover from")
