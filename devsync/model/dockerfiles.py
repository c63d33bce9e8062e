"""Reading Dockerfiles: instructions with their lines, stages, and the `FROM` references.

Parsing is done by the `dockerfile` package, which wraps BuildKit's own Go parser, so line
continuations, heredocs, comments and directives are handled exactly as the engine does.
Variable expansion is not done here (see `devsync.model.classic`): it depends on build state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from devsync.errors import DockerfileError
from devsync.model.files import read_regular

_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*(\S)\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_CONFLICT_MARKER = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)


def mount_options(flag: str) -> dict[str, str] | None:
    """The options of a `RUN --mount=...` flag, its `type` filled in (a mount without one is
    a bind mount); None for any other flag."""
    name, _, value = flag.partition("=")
    if name != "--mount":
        return None
    options = dict(o.partition("=")[::2] for o in value.split(","))
    options.setdefault("type", "bind")
    return options


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case: "RUN", "COPY", ...
    line: int  # first line, 1-based
    end_line: int
    original: str
    value: tuple[str, ...]
    flags: tuple[str, ...] = ()
    json: bool = False
    sub_cmd: str | None = None

    def flag(self, name: str) -> str | None:
        """Value of `--name=value` (last one wins, as in BuildKit), or None."""
        found = None
        prefix = f"--{name}="
        for flag in self.flags:
            if flag.startswith(prefix):
                found = flag[len(prefix):]
            elif flag == f"--{name}":
                found = ""
        return found

    @property
    def text(self) -> str:
        """The instruction as written, on one line (for tables and reasons)."""
        return " ".join(self.original.split()) if not self.json else self.original


@dataclass
class Stage:
    index: int
    from_instruction: Instruction
    base: str  # as written (may contain $ARGs)
    name: str | None
    platform: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    escape: str
    meta_args: list[Instruction]  # ARGs before the first FROM
    stages: list[Stage]

    def buildkit_only(self) -> Instruction | None:
        """The first instruction that only BuildKit builds (the classic builder rejects it):
        a RUN with flags (--mount, --network, --security) or a COPY/ADD --chmod."""
        for ins in self.instructions:
            if (ins.cmd == "RUN" and ins.flags) or \
                    (ins.cmd in ("COPY", "ADD") and ins.flag("chmod") is not None):
                return ins
        return None

    @property
    def instructions(self) -> list[Instruction]:
        """Every instruction in file order, FROMs and meta ARGs included."""
        out = list(self.meta_args)
        for stage in self.stages:
            out.append(stage.from_instruction)
            out.extend(stage.instructions)
        return sorted(out, key=lambda i: i.line)

    def names_image(self, ref: str | None) -> bool:
        """Whether a FROM reference is an image to pull: not empty, not `scratch`, not one
        of this file's stages."""
        return bool(ref) and ref != "scratch" and self.stage_named(ref or "") is None

    def target_stage(self, target: str | None) -> Stage:
        """The stage a build of `target` ends with (the last one without a target)."""
        if target:
            stage = self.stage_named(target)
            if stage is None:
                raise DockerfileError(f"{self.path.name}: no stage named {target!r} to build")
            return stage
        return self.stages[-1]

    def stages_needed(self, target: str | None) -> list[Stage]:
        """The stages a build of `target` needs, in file order: the target's, and the ones
        it starts FROM or copies from (`COPY --from=NAME` or index), transitively. An image
        name that is not a stage (or a reference with variables) needs none."""
        wanted = {self.target_stage(target).index}
        todo = list(wanted)
        while todo:
            stage = self.stages[todo.pop()]
            sources = [stage.base] + [ins.flag("from") or "" for ins in stage.instructions
                                      if ins.cmd in ("COPY", "ADD")]
            for source in sources:
                found = self.stage_named(source) if source else None
                if found is None and source.isdigit() and int(source) < stage.index:
                    found = self.stages[int(source)]
                if found is not None and found.index < stage.index \
                        and found.index not in wanted:
                    wanted.add(found.index)
                    todo.append(found.index)
        return [s for s in self.stages if s.index in wanted]

    def stage_named(self, name: str) -> Stage | None:
        lowered = name.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        return None


def _escape_token(text: str) -> str:
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("#"):
            break
        m = _ESCAPE_DIRECTIVE.match(line)
        if m:
            if m.group(1) not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token {m.group(1)!r}: must be ` or \\")
            return m.group(1)
        if not _DIRECTIVE.match(line):
            break
    return "\\"


def parse_text(text: str, path: Path) -> Dockerfile:
    """Parse Dockerfile source; errors name the file and line."""
    import dockerfile as _parser  # a compiled extension; cheap, but only needed here

    display = path.name if not path.is_absolute() else str(path)
    marker = _CONFLICT_MARKER.search(text)
    if marker:
        line = text.count("\n", 0, marker.start()) + 1
        raise DockerfileError(
            f"{display}:{line}: unresolved merge conflict marker",
            hint="finish the merge (git status) and try again",
        )
    try:
        commands = _parser.parse_string(text)
    except _parser.GoParseError as exc:
        raise DockerfileError(f"{display}: does not parse: {exc}") from None
    escape = _escape_token(text)
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for c in commands:
        ins = Instruction(
            cmd=c.cmd.upper(),
            line=c.start_line,
            end_line=c.end_line,
            original=c.original,
            value=tuple(c.value),
            flags=tuple(c.flags),
            json=bool(c.json),
            sub_cmd=c.sub_cmd.upper() if c.sub_cmd else None,
        )
        if ins.cmd == "FROM":
            stages.append(_stage(ins, len(stages), display))
        elif not stages:
            if ins.cmd != "ARG":
                raise DockerfileError(
                    f"{display}:{ins.line}: {ins.cmd} before the first FROM "
                    "(only ARG may come before FROM)"
                )
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise DockerfileError(f"{display}: no FROM instruction")
    return Dockerfile(path=path, escape=escape, meta_args=meta, stages=stages)


def _stage(ins: Instruction, index: int, display: str) -> Stage:
    value = ins.value
    name: str | None = None
    if len(value) == 3 and value[1].lower() == "as":
        name = value[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9-_\.]*", name):
            raise DockerfileError(f"{display}:{ins.line}: invalid stage name {value[2]!r}")
    elif len(value) != 1:
        raise DockerfileError(
            f"{display}:{ins.line}: FROM requires one image (FROM image [AS name])")
    return Stage(index=index, from_instruction=ins, base=value[0], name=name,
                 platform=ins.flag("platform"))


def parse_file(path: Path, display: str | None = None) -> Dockerfile:
    shown = display or str(path)
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise DockerfileError(f"{shown}: no such Dockerfile") from None
    except OSError as exc:
        raise DockerfileError(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DockerfileError(f"{shown}: not UTF-8 text") from None
    df = parse_text(text, Path(shown))
    df.path = path
    return df


_DEPENDENCY_INSTALL = re.compile(
    r"\b(composer|npm|yarn|pnpm|pip3?|poetry|pipenv|bundle|go mod|cargo|mvn|gradle|mix)\b")


def cache_busting_order(df: Dockerfile, display: str) -> list[str]:
    """A dependency install placed after `COPY .` reruns on every code change: say where."""
    out = []
    for stage in df.stages:
        copied_all: int | None = None
        for ins in stage.instructions:
            if ins.cmd in ("COPY", "ADD") and not ins.flag("from") \
                    and any(v in (".", "./") for v in ins.value[:-1]):
                copied_all = ins.line
            elif ins.cmd == "RUN" and copied_all is not None \
                    and _DEPENDENCY_INSTALL.search(" ".join(ins.value)):
                out.append(
                    f"{display}:{ins.line}: this dependency install comes after `COPY .` "
                    f"(line {copied_all}), so every code change rebuilds it: copy the "
                    "dependency files first, install, then COPY the rest")
                break
    return out
