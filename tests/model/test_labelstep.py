"""The OCI labels as one LABEL step of the build itself (devsync.model.labelstep).

Unit tests choose the name of the added Dockerfile for each kind of .dockerignore; the engine
tests check, against a `docker build` of the same directory, that every Dockerfile step is
still reused (the added file and the changed .dockerignore never reach a COPY) and that the
image carries exactly the labels.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devsync.adapters.engine import Engine
from devsync.devtools import sandbox
from devsync.events import Event, ImageBuilt, StepFinished, StepStarted
from devsync.model.context import TarFlavor, scan_context
from devsync.model.dockerfiles import parse_text
from devsync.model.labelstep import ADDED_NAME, label_instruction, labelled_context_files

OCI = {
    "org.opencontainers.image.created": "2026-11-29T13:00:00Z",
    "org.opencontainers.image.revision": "4279746d0c6f8b5c2a1e9f7d3b6a8c0e2f4a6b8d",
    "org.opencontainers.image.source": "https://git.example.com/team/shop.git",
    "org.opencontainers.image.version": "dev",
}


def _project(root: Path, dockerfile: str, dockerignore: str | None,
             files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    for name, text in {"app.txt": "hello\n", "notes.log": "noise\n", **(files or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _labelled(root: Path, target: str | None = None) -> tuple[str, dict[str, bytes]] | None:
    context = scan_context(root, "Dockerfile")
    parsed = parse_text((root / "Dockerfile").read_text(), root / "Dockerfile")
    return labelled_context_files(context, parsed, target=target, labels=OCI)


SIMPLE = "FROM scratch\nCOPY . /ctx\n"


# --------------------------------------------------------------------------- the name


def test_no_dockerignore_sends_one_that_removes_itself_and_the_added_file(
        tmp_path: Path) -> None:
    got = _labelled(_project(tmp_path, SIMPLE, None))
    assert got is not None
    name, files = got
    assert name == ADDED_NAME
    assert files[".dockerignore"] == f".dockerignore\n{ADDED_NAME}\n".encode()
    assert files[name].decode() == SIMPLE + label_instruction(OCI) + "\n"


def test_a_dockerignore_that_lists_itself_gets_the_added_name_appended(tmp_path: Path) -> None:
    name, files = _labelled(_project(tmp_path, SIMPLE, "*.log\n.dockerignore")) or ("", {})
    assert name == ADDED_NAME
    assert files[".dockerignore"] == f"*.log\n.dockerignore\n{ADDED_NAME}\n".encode()


def test_a_dockerignore_copied_by_copy_stays_and_a_pattern_names_the_added_file(
        tmp_path: Path) -> None:
    name, files = _labelled(_project(tmp_path, SIMPLE, ".git\n*.log\n")) or ("", {})
    assert name == "devsync-labels.log"
    assert set(files) == {name}  # .dockerignore untouched


def test_an_ignored_dockerfile_carries_the_label_itself(tmp_path: Path) -> None:
    name, files = _labelled(_project(tmp_path, SIMPLE, "Dockerfile\n")) or ("", {})
    assert name == "Dockerfile" and set(files) == {"Dockerfile"}


@pytest.mark.parametrize("dockerignore", [
    "",  # empty: nothing is removed by the daemon
    "build/cache\n",  # no top-level pattern
    "*.log\n!devsync-labels.log\n",  # the candidate is re-included
    "[a-z]*.log\n",  # character classes are not guessed at
])
def test_no_name_the_daemon_would_remove_means_no_fold(tmp_path: Path,
                                                       dockerignore: str) -> None:
    assert _labelled(_project(tmp_path, SIMPLE, dockerignore)) is None


def test_a_name_already_in_the_context_is_not_taken(tmp_path: Path) -> None:
    root = _project(tmp_path, SIMPLE, None, {ADDED_NAME: "mine\n"})
    name, _files = _labelled(root) or ("", {})
    assert name == f"{ADDED_NAME}.2"


def test_the_label_goes_at_the_end_of_the_target_stage(tmp_path: Path) -> None:
    dockerfile = ("FROM scratch AS build\nCOPY app.txt /a\n\n# the runtime\n"
                  "FROM scratch AS run\nCOPY --from=build /a /a\n")
    name, files = _labelled(_project(tmp_path, dockerfile, None), target="build") or ("", {})
    text = files[name].decode()
    assert text == ("FROM scratch AS build\nCOPY app.txt /a\n" + label_instruction(OCI)
                    + "\n\n# the runtime\nFROM scratch AS run\nCOPY --from=build /a /a\n")
    name, files = _labelled(_project(tmp_path, dockerfile, None)) or ("", {})
    assert files[name].decode().endswith("COPY --from=build /a /a\n" + label_instruction(OCI)
                                         + "\n")


@pytest.mark.parametrize("dockerfile", [
    "# escape=`\nFROM scratch\nCOPY . /ctx\n",  # the LABEL's quoting escapes with \
    "FROM scratch\nCOPY . /ctx \\",  # a continuation into the end of the file
])
def test_a_dockerfile_that_cannot_take_the_line_means_no_fold(tmp_path: Path,
                                                              dockerfile: str) -> None:
    assert _labelled(_project(tmp_path, dockerfile, None)) is None


def test_no_final_newline(tmp_path: Path) -> None:
    name, files = _labelled(_project(tmp_path, "FROM scratch\nCOPY . /ctx", None)) or ("", {})
    assert files[name].decode() == "FROM scratch\nCOPY . /ctx\n" + label_instruction(OCI) + "\n"


def test_labels_that_cannot_be_one_line_mean_no_fold(tmp_path: Path) -> None:
    root = _project(tmp_path, SIMPLE, None)
    context = scan_context(root, "Dockerfile")
    parsed = parse_text(SIMPLE, root / "Dockerfile")
    assert labelled_context_files(context, parsed, target=None,
                                  labels={"a": "two\nlines"}) is None


# --------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def eng(engine: sandbox.PrivateEngine) -> Iterator[Engine]:
    with Engine.connect(engine.url) as connected:
        yield connected


@pytest.mark.engine
@pytest.mark.parametrize("dockerignore", [
    None,
    ".dockerignore\n*.tmp\n",
    ".git\n*.log\n",
    "Dockerfile\n*.log\n",
])
def test_every_dockerfile_step_stays_cached_and_the_labels_arrive(
        eng: Engine, engine: sandbox.PrivateEngine, busybox_image: str, tmp_path: Path,
        dockerignore: str | None) -> None:
    dockerfile = (f"FROM {busybox_image}\nCOPY . /ctx\n"
                  "RUN find /ctx | sort > /files.txt\n")
    root = _project(tmp_path / "ctx", dockerfile, dockerignore, {"sub/b.txt": "b\n"})
    # what CI built with the plain docker CLI: the cache to hit
    deployed = f"labelstep-{tmp_path.name.lower()}:ci"
    sandbox.docker_cli(engine, "build", "-q", "-t", deployed, str(root))

    context = scan_context(root, "Dockerfile")
    labelled = _labelled(root)
    assert labelled is not None
    name, files = labelled
    with tempfile.TemporaryFile() as tar:
        context.write_tar(tar, TarFlavor.CLI_MODERN, files=files)
        tar.seek(0)
        events = list(eng.build(tar, dockerfile=name, cache_from=[deployed],
                                tag=f"labelstep-{tmp_path.name.lower()}:dev"))
    starts = [e.instruction.split()[0] for e in events if isinstance(e, StepStarted)]
    assert starts == ["FROM", "COPY", "RUN", "LABEL"]
    finished = [e.cached for e in events if isinstance(e, StepFinished)]
    assert finished == [True, True, True, False]  # COPY saw exactly CI's context
    built = events[-1]
    assert isinstance(built, ImageBuilt)
    info = json.loads(sandbox.docker_cli(engine, "image", "inspect", built.image_id).stdout)[0]
    assert info["Config"]["Labels"] == OCI
    ci = json.loads(sandbox.docker_cli(engine, "image", "inspect", deployed).stdout)[0]
    assert info["RootFS"] == ci["RootFS"]  # the same layers, none added
    sandbox.docker_cli(engine, "rmi", built.tag, deployed)


def test_a_symlinked_dockerignore_is_not_rewritten(tmp_path: Path) -> None:
    root = _project(tmp_path, SIMPLE, None, {"ignore-rules": ".dockerignore\n*.log\n"})
    (root / ".dockerignore").symlink_to("ignore-rules")
    assert _labelled(root) is None  # the daemon would read the link's target, unchanged


def _fold_build(eng: Engine, root: Path, dockerfile: str, labels: dict[str, str], *,
                tag: str = "") -> list[Event]:
    """Build `dockerfile` in `root` with `labels` in one LABEL step, as a sync sends it."""
    _project(root, dockerfile, None)
    context = scan_context(root, "Dockerfile")
    labelled = labelled_context_files(context, parse_text(dockerfile, root / "Dockerfile"),
                                      target=None, labels=labels)
    assert labelled is not None
    name, files = labelled
    with tempfile.TemporaryFile() as tar:
        context.write_tar(tar, TarFlavor.CLI_MODERN, files=files)
        tar.seek(0)
        return list(eng.build(tar, dockerfile=name, tag=tag))


def _image_json(engine: sandbox.PrivateEngine, ref: str) -> dict:  # type: ignore[type-arg]
    out = sandbox.docker_cli(engine, "image", "inspect", ref)
    return dict(json.loads(out.stdout)[0])


@pytest.mark.engine
def test_labels_cost_one_step_and_match_the_builders_own_labels(
        eng: Engine, engine: sandbox.PrivateEngine, busybox_image: str, tmp_path: Path) -> None:
    """Four OCI labels: one LABEL step (the builder's `labels` option commits one container
    per label), and an image whose config is what that option gives."""
    dockerfile = (f"FROM {busybox_image}\nENV X=1\nWORKDIR /srv\nEXPOSE 8080\n"
                  "USER 1000\nCMD [\"sh\", \"-c\", \"echo hi\"]\n")
    ours = f"labelstep-one-{uuid.uuid4().hex[:6]}:1"
    events = _fold_build(eng, tmp_path / "ours", dockerfile, OCI, tag=ours)
    starts = [e for e in events if isinstance(e, StepStarted)]
    assert [s.instruction.split()[0] for s in starts] == [
        "FROM", "ENV", "WORKDIR", "EXPOSE", "USER", "CMD", "LABEL"]
    assert [s.index for s in starts] == list(range(7)) and {s.total for s in starts} == {7}
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [e.index for e in finished] == list(range(7)) and not finished[-1].cached
    built = events[-1]
    assert isinstance(built, ImageBuilt) and built.steps_total == 7 and built.tag == ours

    # the reference: the builder's own option
    theirs = f"labelstep-builder-{uuid.uuid4().hex[:6]}:1"
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "Dockerfile").write_text(dockerfile)
    sandbox.docker_cli(engine, "build", "-q", "-t", theirs,
                       *[a for k, v in OCI.items() for a in ("--label", f"{k}={v}")],
                       str(tmp_path / "theirs"))
    mine, ref = _image_json(engine, ours), _image_json(engine, theirs)
    assert mine["Config"]["Labels"] == ref["Config"]["Labels"] == OCI
    for key in ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes",
                "OnBuild", "Shell", "StopSignal", "Healthcheck"):
        assert mine["Config"].get(key) == ref["Config"].get(key), key
    assert mine["RootFS"] == ref["RootFS"]  # no layer added
    history = sandbox.docker_cli(engine, "history", "--no-trunc", "--format",
                                 "{{.CreatedBy}}", ours).stdout.splitlines()
    assert [row for row in history if "LABEL" in row] == [history[0]]  # newest first
    sandbox.docker_cli(engine, "rmi", ours, theirs)


@pytest.mark.engine
def test_the_label_step_asks_no_credential_helper(
        engine: sandbox.PrivateEngine, busybox_image: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A build sends every login Docker's config knows (asking each credential helper), as
    `docker build` does; the labels must not cost another round of that."""
    log = tmp_path / "helper.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-devsynctest"
    helper.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {log}\n'
        'if [ "$1" = get ]; then read url; '
        'printf \'{"ServerURL":"%s","Username":"u","Secret":"s"}\' "$url"; fi\n')
    helper.chmod(0o755)
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(json.dumps(
        {"credHelpers": {"registry.devsync.invalid": "devsynctest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def helper_calls(labels: dict[str, str] | None) -> int:
        log.write_text("")
        dockerfile = f"FROM {busybox_image}\nENV N={uuid.uuid4()}\n"
        root = tmp_path / uuid.uuid4().hex
        with Engine.connect(engine.url) as fresh:
            if labels:
                built = _fold_build(fresh, root, dockerfile, labels)[-1]
            else:
                _project(root, dockerfile, None)
                with tempfile.TemporaryFile() as tar:
                    scan_context(root, "Dockerfile").write_tar(tar, TarFlavor.CLI_MODERN)
                    tar.seek(0)
                    built = list(fresh.build(tar))[-1]
        assert isinstance(built, ImageBuilt)
        return log.read_text().count("get")

    without = helper_calls(None)
    assert without >= 1  # the build did ask: the helper is really in play
    assert helper_calls(OCI) == without


@pytest.mark.engine
def test_label_values_that_need_quoting_arrive_verbatim(
        eng: Engine, busybox_image: str, tmp_path: Path) -> None:
    labels = {
        "org.example.quotes": 'he said "hi" and \'bye\'',
        "org.example.dollar": "$HOME ${PATH} $$ \\$X",
        "org.example.backslash": "C:\\path\\ end\\",
        "org.example.spaces": "  two  spaces = and equals  ",
        "org.example.unicode": "Zoë — 東京",
        "org.example.empty": "",
        "org.example.hash": "# not a comment",
    }
    tag = f"labelstep-quoting-{uuid.uuid4().hex[:6]}:1"
    events = _fold_build(eng, tmp_path / "ctx", f"FROM {busybox_image}\nENV HOME=/root\n",
                         labels, tag=tag)
    assert sum(isinstance(e, StepStarted) and e.instruction.startswith("LABEL ")
               for e in events) == 1
    img = eng.image(tag)
    assert img is not None and img.labels == labels
    eng.client.api.remove_image(tag)
