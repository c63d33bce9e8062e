"""The words of a plan step's reason, where the plan names a changed line: old line against
new line, each cut around the part that differs; a FROM that changed since the image a step
is compared with was built; a step whose stage is built on another stage that rebuilds; the
build arguments of a RUN; the files, commits and mode-only edits behind a COPY's miss (both
builders' plans say them the same way)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from devsync.errors import DevsyncError
from devsync.model.files import read_regular

if TYPE_CHECKING:
    from devsync.adapters.gitrepo import GitRepo
    from devsync.model.context import BuildContext
    from devsync.model.dockerfiles import Dockerfile
    from devsync.model.images import ImageInfo

REVISION_LABEL = "org.opencontainers.image.revision"
_BUILD_ARGS = re.compile(r"^\|(\d+) ")


def where_they_differ(old: str, new: str, *, context: int = 12,
                      width: int = 50) -> tuple[str, str]:
    """Both sides of a changed line, `quoted`, each cut around the part that differs (from
    a little before its first difference to a little after its last), so the difference is
    what shows: `...php7-intl" > /etc/packages` and `...php7-intl php7-apcu" > /etc/...`."""
    if max(len(old), len(new)) <= width:  # short enough to read whole
        return f"`{old}`", f"`{new}`"
    limit = min(len(old), len(new))
    start = 0
    while start < limit and old[start] == new[start]:
        start += 1
    end = 0  # the common tail, not overlapping the common head
    while end < limit - start and old[-1 - end] == new[-1 - end]:
        end += 1
    begin = max(0, start - context)
    space = old.rfind(" ", 0, begin + 1)  # (on a word boundary, when one is near)
    if begin and space >= 0 and begin - space < context:
        begin = space + 1
    if begin <= 8:  # (cutting a few characters hides more than it saves)
        begin = 0

    def window(text: str) -> str:
        stop = min(len(text), len(text) - end + context)
        stop = min(stop, begin + max(width, len(text) - end - begin + 4))
        if len(text) - stop <= 8:
            stop = len(text)
        part = text[begin:stop]
        if len(part) > 2 * width:  # a long difference: its start and its end
            part = part[:width] + "..." + part[-width // 2:]
        return ("..." if begin else "") + part + ("..." if stop < len(text) else "")

    return f"`{window(old)}`", f"`{window(new)}`"


def compared_with(image: ImageInfo | None) -> str:
    """The image a step is compared with, as a reader knows it."""
    if image is None or image.origin == "registry":
        return "the deployed image"
    return image.reference or "the deployed image"


def changed_line(before: str, after: str, image: ImageInfo | None) -> str:
    """`instruction changed: was `...` in the deployed image, now `...``."""
    old, new = where_they_differ(before, after)
    return f"instruction changed: was {old} in {compared_with(image)}, now {new}"


def from_changed(df: Dockerfile, stage: int, image: ImageInfo | None, git: GitRepo | None,
                 dockerfile: str) -> str | None:
    """When the FROM line of `stage` is not what it was when `image` was built (its
    revision's Dockerfile, from git): `FROM changed (line 5): was `...:base-1.0` in the
    deployed image, now `...:base-1.1``. None when git cannot tell, or the line is the same
    (then the image its FROM names moved)."""
    from devsync.model.dockerfiles import parse_text

    revision = image.labels.get(REVISION_LABEL) if image is not None else None
    if git is None or not revision or stage >= len(df.stages):
        return None
    try:
        raw = git.file_at(revision, dockerfile)
        then = parse_text(raw.decode(), df.path) if raw is not None else None
    except (DevsyncError, UnicodeDecodeError):
        return None
    if then is None or stage >= len(then.stages):
        return None
    now_from = df.stages[stage].from_instruction
    was = then.stages[stage].from_instruction.text
    if was == now_from.text:
        return None
    old, new = where_they_differ(was, now_from.text)
    return (f"FROM changed (line {now_from.line}): was {old} in {compared_with(image)}, "
            f"now {new}")


def built_on_stage(df: Dockerfile, stage_bases: dict[int, str], stage: int,
                   first_misses: dict[int, int]) -> str | None:
    """A step whose own stage has not missed yet, in a stage built FROM another stage that
    rebuilds: `rebuilds with stage build (from line 3), which this stage is built on`."""
    seen = {stage}
    index = stage
    while True:
        found = df.stage_named(stage_bases.get(index, ""))
        if found is None or found.index in seen:
            return None
        line = first_misses.get(found.index)
        name = found.name or str(found.index)
        if line is not None:
            return f"rebuilds with stage {name} (from line {line}), which this stage is built on"
        seen.add(found.index)
        index = found.index


def split_args(created_by: str) -> tuple[dict[str, str], str]:
    m = _BUILD_ARGS.match(created_by)
    if not m:
        return {}, created_by
    n = int(m.group(1))
    parts = created_by[m.end():].split(" ")
    args = dict(p.split("=", 1) for p in parts[:n] if "=" in p)
    return args, " ".join(parts[n:])


def changed_files(git: GitRepo, repo_files: list[str], revision: str | None
                   ) -> tuple[list[str], list[dict[str, str]], list[str]]:
    wanted = set(repo_files)
    changes = git.changes()
    uncommitted = sorted(wanted & (set(changes.modified) | set(changes.untracked)))
    changed = list(uncommitted)
    commits: list[dict[str, str]] = []
    if revision and git.resolve(revision):
        committed = [p for p in git.changed_since(revision, repo_files) if p in wanted]
        for path in committed:
            if path not in changed:
                changed.append(path)
        touched = [p for p in committed if p not in uncommitted]
        if touched:
            commits = [_commit_json(c) for c in git.commits_touching(touched, revision,
                                                                      limit=20)]
    return sorted(changed), commits, uncommitted


def _commit_json(c: Any) -> dict[str, str]:
    return {"sha": c.sha, "short": c.short, "author": c.author, "summary": c.summary,
            "date": c.date.isoformat() if hasattr(c.date, "isoformat") else str(c.date)}


def mode_only_changes(git: GitRepo, context: BuildContext, paths: list[str],
                       prefix: str) -> list[str]:
    """`path 0644 -> 0755` for uncommitted changes that touched only the file mode."""
    out = []
    for path in paths[:10]:
        committed = git.file_at("HEAD", path)
        rel = path if prefix in ("", ".") else path[len(prefix) + 1:]
        entry = context.entry(rel)
        if committed is None or entry is None or entry.kind != "file":
            continue
        try:
            if read_regular(entry.path) != committed:
                continue
        except OSError:
            continue
        now = entry.mode & 0o777
        was = 0o755 if now & 0o111 == 0 else 0o644
        out.append(f"{path} {was:04o} -> {now:04o}")
    return out
