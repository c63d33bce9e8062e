"""The OCI labels as one `LABEL` step of the build itself.

The classic builder's own `labels` option (engine 20.10) commits one container per label:
four OCI labels cost ~0.3 s on every sync. One `LABEL` line costs one commit, sent the way the
docker CLI sends a Dockerfile read from stdin: the Dockerfile with the line added, under a
name the daemon deletes from the context before any `COPY` sees it.

The daemon (`removeDockerfile`, all engine versions) reads `.dockerignore` from the context and
deletes `.dockerignore` itself and the Dockerfile it built from when the patterns list them.
So the added file is invisible to `COPY .` when it is named by `.dockerignore`:

- the Dockerfile is ignored already: its own path carries the new content;
- there is no `.dockerignore`: one that lists itself and the added file is sent, and both go;
- `.dockerignore` lists itself: the added file's name is appended to it, and both go;
- otherwise `.dockerignore` is copied by `COPY .` and must stay as it is: the added file takes
  a name an existing pattern already ignores (`*.log` gives `devsync-labels.log`), and when
  no pattern yields one, there is no such name and the caller falls back to the builder's
  own option.

Every `COPY` therefore hashes exactly what it would for the unmodified build, and the cache of
every Dockerfile step is untouched: the `LABEL` comes after the last of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from devsync.errors import DevsyncError
from devsync.model.context import FILE, HARDLINK, BuildContext, daemon_removes
from devsync.model.dockerfiles import Dockerfile, parse_text
from devsync.model.dockerignore import DOCKERIGNORE, clean_path
from devsync.model.files import read_regular

# What a LABEL key or value may be written as without quotes in a Dockerfile; anything
# else is double-quoted with \\, " and $ escaped (the builder expands variables in LABEL).
_BARE_LABEL_WORD = re.compile(r"[A-Za-z0-9_.:/@+%,~-]+")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_.-]+")

ADDED_NAME = ".devsync-labels.Dockerfile"
_PATTERN_FILLER = "devsync-labels"


def label_instruction(labels: Mapping[str, str]) -> str:
    """One Dockerfile `LABEL` line that sets exactly `labels`, or "" when a value cannot be
    written on one line (a control character) or a key is unusual: then the builder's own
    `labels` option has to be used."""
    words = []
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or any(ord(c) < 0x20 or c == "\x7f" for c in value):
            return ""
        if not _BARE_LABEL_WORD.fullmatch(value):
            value = '"' + re.sub(r'(["$\\])', r"\\\1", value) + '"'
        words.append(f"{key}={value}")
    return "LABEL " + " ".join(words) if words else ""


def labelled_context_files(context: BuildContext, dockerfile: Dockerfile, *,
                           target: str | None, labels: Mapping[str, str]
                           ) -> tuple[str, dict[str, bytes]] | None:
    """(the Dockerfile name to build, the files to send instead of or besides the context's
    own) for a build whose target stage ends with `labels`; None when that cannot be done
    without changing what a `COPY` sees, or the Dockerfile cannot take the line safely."""
    line = label_instruction(labels)
    if not line:
        return None
    entry = context.entry(context.dockerfile)
    if entry is None:
        return None
    try:
        text = read_regular(entry.path).decode("utf-8", "surrogateescape")
    except OSError:
        return None
    labelled = _with_line_after_stage(text, dockerfile, target, line)
    if labelled is None:
        return None
    slot = _removable_name(context)
    if slot is None:
        return None
    name, dockerignore = slot
    files = {name: labelled.encode("utf-8", "surrogateescape")}
    if dockerignore is not None:
        files[DOCKERIGNORE] = dockerignore
    return name, files


def _with_line_after_stage(text: str, dockerfile: Dockerfile, target: str | None,
                           line: str) -> str | None:
    """`text` with `line` after the last instruction of the target stage (the last stage
    without a target), checked by parsing the result; None when that is not safe."""
    if dockerfile.escape != "\\":
        return None  # label_instruction escapes with a backslash
    stage = dockerfile.stages[-1] if not target else dockerfile.stage_named(target)
    if stage is None:
        return None
    last = stage.instructions[-1] if stage.instructions else stage.from_instruction
    lines = text.splitlines(keepends=True)
    if last.end_line > len(lines) or lines[last.end_line - 1].rstrip().endswith("\\"):
        return None  # a continuation running into the end of the file would swallow it
    before = "".join(lines[:last.end_line])
    if not before.endswith(("\n", "\r")):
        before += "\n"
    labelled = before + line + "\n" + "".join(lines[last.end_line:])
    try:
        parsed = parse_text(labelled, dockerfile.path)
    except DevsyncError:
        return None
    got = parsed.stages[stage.index].instructions
    if len(got) != len(stage.instructions) + 1 or got[-1].cmd != "LABEL" \
            or len(parsed.stages) != len(dockerfile.stages):
        return None
    return labelled


def _removable_name(context: BuildContext) -> tuple[str, bytes | None] | None:
    """A name for the added Dockerfile that the daemon deletes from the context, and the new
    `.dockerignore` content that makes it so (None: the sent one already does)."""
    excludes = context.excludes
    ignore_sent = context.entry(DOCKERIGNORE) is not None

    def ignored(name: str) -> bool:
        return daemon_removes(name, excludes)

    if ignore_sent and ignored(context.dockerfile):
        if _not_replaceable(context, context.dockerfile):
            return None
        return context.dockerfile, None
    if ignore_sent and ignored(DOCKERIGNORE) and _not_replaceable(context, DOCKERIGNORE):
        return None
    if not ignore_sent or ignored(DOCKERIGNORE):
        name = _free_name(context, ADDED_NAME)
        if not ignore_sent:
            return name, f"{DOCKERIGNORE}\n{name}\n".encode()
        try:
            current = read_regular(context.context_dir / DOCKERIGNORE)
        except OSError:
            return None
        if current and not current.endswith(b"\n"):
            current += b"\n"
        return name, current + name.encode() + b"\n"
    # .dockerignore stays (COPY . copies it): a name one of its patterns ignores already
    for name in _names_from_patterns(excludes):
        if ignored(name) and not _taken(context, name):
            return name, None
    return None


def _names_from_patterns(excludes: list[str]) -> list[str]:
    """Top-level names the exclude patterns might match, wildcard patterns first."""
    wild, literal = [], []
    for raw in excludes:
        if raw.startswith("!"):
            continue
        pattern = clean_path(raw.lstrip("/"))
        if "/" in pattern or pattern in (".", "..") or "[" in pattern or "\\" in pattern:
            continue
        if "*" in pattern or "?" in pattern:
            wild.append(pattern.replace("**", "*").replace("*", _PATTERN_FILLER, 1)
                        .replace("*", "").replace("?", "x"))
        else:
            literal.append(pattern)
    return wild + literal


def _taken(context: BuildContext, name: str) -> bool:
    prefix = name + "/"
    return context.entry(name) is not None or any(e.rel.startswith(prefix)
                                                  for e in context.entries)


def _not_replaceable(context: BuildContext, name: str) -> bool:
    """Whether the sent entry `name` cannot simply get new content: it is no regular file
    (a symlink's target would be read instead), or another entry is a hard link to it."""
    entry = context.entry(name)
    return entry is None or entry.kind != FILE or any(
        e.kind == HARDLINK and clean_path(e.linkname) == name for e in context.entries)


def _free_name(context: BuildContext, name: str) -> str:
    candidate, n = name, 1
    while _taken(context, candidate):
        n += 1
        candidate = f"{name}.{n}"
    return candidate
