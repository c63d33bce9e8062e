"""Which vertices of a Dockerfile build dockerd 20.10's BuildKit (v0.8) reuses from a cache source.

BuildKit reuses a vertex when a record of the imported cache has the vertex's cache key and a
loadable result (layers). The key of a vertex is computed from its op and from the keys of its
inputs, so a chain of records from the `FROM` root down to the vertex must match:

* `FROM`: the root record, computed exactly from the base's layers (`_keys.from_key`);
* `COPY`/`ADD` from the context: the op, and the content key of the files it selects (computed
  exactly, `_keys.ContentHasher`), which the record's second input links to;
* `RUN` and `WORKDIR`: the op only. Its digest is a hash of the marshalled LLB op, which is
  decided by what the Dockerfile says there and the state it runs in: the command (with the
  build arguments in effect, as BuildKit's history writes them: `RUN |1 A=b /bin/sh -c ...`),
  the environment (ENV), the user, the working directory. Those are compared with the cache
  source image's own history, entry by entry, which BuildKit wrote from the same state: equal
  means the same op. Where the history cannot tell (RUN with --mount/--network/--security, a
  COPY with --chown/--chmod, a cache without an image's history), the step is uncertain.

Metadata instructions (ENV, ARG, LABEL, CMD, ...) make no vertex: they keep their place and
say what the step before them said. Only the target stage's chain is predicted exactly: an
inline cache holds loadable results of the final stage only, and a `COPY --from` another stage
hangs on files that stage builds (uncertain).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from devsync.model.buildkit._cache import CacheGraph
from devsync.model.buildkit._keys import ContentHasher, SelectionError, from_key
from devsync.model.context import BuildContext
from devsync.model.dockerfiles import Dockerfile, Instruction, Stage
from devsync.model.images import ImageInfo
from devsync.model.shellwords import Lexer

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEFAULT_SHELL = ("/bin/sh", "-c")
_VERTEX = ("RUN", "COPY", "ADD", "WORKDIR")
_STATEFUL = ("ENV", "USER", "WORKDIR", "SHELL", "ARG", "RUN", "COPY", "ADD")


@dataclass
class CacheSource:
    """One cache source: its records and, when it is an image, that image (its history says
    which op each of its own records is)."""

    ref: str
    graph: CacheGraph | None
    image: ImageInfo | None = None
    # entries of the image's history that are its base's (None: as many as our base has)
    base_history: int | None = None


@dataclass
class BKStep:
    instruction: Instruction
    stage: int
    kind: str  # from, nop, run, copy, copy-stage, add-url, meta (ARG before FROM), skip
    vertex: bool
    cached: bool = False
    certain: bool = True
    # why it rebuilds: no-metadata, base, changed, new-step, files, no-layers, busted, stage,
    # transport, unknown
    miss: str | None = None
    ours: str = ""  # the history entry this build writes here
    theirs: str = ""  # the cache source's entry at the same place
    sources: tuple[str, ...] = ()
    source_ref: str | None = None
    detail: str = ""
    depth: int = 0  # cached: how many of the cache source's layers its result is


@dataclass
class _State:
    env: list[str]
    shell: tuple[str, ...]
    workdir: str
    user: str = ""
    args: list[tuple[str, str | None]] = field(default_factory=list)  # declared, in order


def history_entries(image: ImageInfo, skip: int) -> list[str]:
    """The image's own history entries that decide ops (ENV, USER, WORKDIR, SHELL, ARG, RUN,
    COPY, ADD), without the ` # buildkit` suffix, after the first `skip` (its base's)."""
    out = []
    for h in image.history[skip:]:
        text = h.created_by.strip()
        if text.endswith("# buildkit"):
            text = text[: -len("# buildkit")].rstrip()
        if text.split(" ", 1)[0] in _STATEFUL:
            out.append(text)
    return out


def _signatures(entries: Sequence[str]) -> list[tuple[str, ...]]:
    """Per vertex entry, what decides its op: the entry, and the state it ran in."""
    env: list[str] = []
    user = ""
    workdir = ""
    out: list[tuple[str, ...]] = []
    for text in entries:
        word = text.split(" ", 1)[0]
        if word == "ENV":
            env.append(text)
        elif word == "USER":
            user = text
        if word == "WORKDIR":
            if text != "WORKDIR /":
                out.append((text, user))
            workdir = text
        elif word == "RUN":
            out.append((text, "\n".join(env), user, workdir))
        elif word in ("COPY", "ADD"):
            out.append((text, workdir))
    return out


class BuildKitPredictor:
    def __init__(self, dockerfile: Dockerfile, *, context: BuildContext | None,
                 images: Callable[[str], ImageInfo | None], source: CacheSource | None,
                 build_args: Mapping[str, str] | None = None, target: str | None = None,
                 transport: str = "cli") -> None:
        self.df = dockerfile
        self.context = context
        self.images = images
        self.source = source
        self.options = dict(build_args or {})
        self.target = target
        self.transport = transport
        self.lexer = Lexer(dockerfile.escape)
        self._hasher: ContentHasher | None = None
        self.base_info: ImageInfo | None = None
        self.base_ref = ""

    def run(self) -> list[BKStep]:
        target = self.df.target_stage(self.target)
        needed = {s.index for s in self.df.stages_needed(self.target)}
        meta = self._meta_args()
        out = [BKStep(ins, -1, "meta", False, cached=True) for ins in self.df.meta_args]
        for stage in self.df.stages:
            if stage.index not in needed:
                out.extend(BKStep(ins, stage.index, "skip", False, cached=True)
                           for ins in [stage.from_instruction, *stage.instructions])
            elif stage.index == target.index:
                out.extend(self._target_stage(stage, meta))
            else:
                out.extend(self._other_stage(stage))
        return sorted(out, key=lambda s: s.instruction.line)

    # -- stages

    def _meta_args(self) -> dict[str, str]:
        meta: dict[str, str] = {}
        for ins in self.df.meta_args:
            key, value = _arg_parts(ins)
            if key in self.options:
                meta[key] = self.options[key]
            elif value is not None:
                meta[key] = self.lexer.process_word(value, meta)
        return meta

    def _other_stage(self, stage: Stage) -> list[BKStep]:
        name = f"stage {stage.name}" if stage.name else f"stage {stage.index}"
        out = [BKStep(stage.from_instruction, stage.index, "from", False, cached=True)]
        for ins in stage.instructions:
            vertex = ins.cmd in _VERTEX
            out.append(BKStep(ins, stage.index, "run" if vertex else "nop", vertex,
                              cached=not vertex, certain=not vertex,
                              miss="stage" if vertex else None, detail=name))
        return out

    def _target_stage(self, stage: Stage, meta: dict[str, str]) -> list[BKStep]:
        base = self.lexer.process_word(stage.base, meta)
        self.base_ref = base
        from_step = BKStep(stage.from_instruction, stage.index, "from", False, cached=True,
                           source_ref=base)
        steps = [from_step]
        if self.df.stage_named(base) is not None or base == "scratch":
            info = None
        else:
            info = self.images(base)
            if info is None:
                raise SelectionError(f"base image {base} is neither local nor in its registry")
        self.base_info = info
        state = _State(env=list(info.env) if info else [],
                       shell=tuple(info.shell or _DEFAULT_SHELL) if info else _DEFAULT_SHELL,
                       workdir=info.workdir if info else "")
        if not any(e.split("=", 1)[0] == "PATH" for e in state.env):
            state.env.append(f"PATH={DEFAULT_PATH}")
        for ins in stage.instructions:
            steps.append(self._dispatch(ins, stage, state))
        self._match(steps, stage, base, info)
        _metadata_follows(steps)
        return steps

    # -- what this build writes

    def _dispatch(self, ins: Instruction, stage: Stage, state: _State) -> BKStep:
        cmd = ins.cmd
        env = _env_map(state.env)
        step = BKStep(ins, stage.index, "nop", False)
        if cmd == "ENV":
            pairs = self._pairs(ins, env)
            for key, value in pairs:
                _set_env(state.env, key, value)
            step.ours = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif cmd == "ARG":
            name, raw = _arg_parts(ins)
            name = self.lexer.process_word(name, env)
            default = self.lexer.process_word(raw, env) if raw is not None else None
            step.ours = "ARG " + name + (f"={default}" if default is not None else "")
            arg_value = self.options.get(name, default)
            if arg_value is None:
                arg_value = self._meta_args().get(name)
            state.args = [a for a in state.args if a[0] != name] + [(name, arg_value)]
            if arg_value is not None:
                _set_env(state.env, name, arg_value)
        elif cmd == "USER":
            step.ours = "USER " + self.lexer.process_word(ins.value[0], env)
            state.user = step.ours
        elif cmd == "SHELL":
            state.shell = tuple(ins.value)
            step.ours = "SHELL [" + " ".join(ins.value) + "]"
        elif cmd == "WORKDIR":
            wd = self.lexer.process_word(ins.value[0] if ins.value else "", env)
            if not wd.startswith("/"):
                wd = posixpath.join("/", state.workdir or "/", wd)
            wd = posixpath.normpath(wd)
            wd = "/" + wd.lstrip("/")
            state.workdir = wd
            step.ours = "WORKDIR " + wd
            step.vertex = wd != "/"
            step.kind = "run" if step.vertex else "nop"
        elif cmd == "RUN":
            step.kind, step.vertex = "run", True
            args = list(ins.value) if ins.json else [*state.shell, " ".join(ins.value)]
            build_env = []
            for name, declared in state.args:
                found = env.get(name)
                build_env.append(f"{name}={found if found is not None else (declared or '')}")
            prefix = [f"|{len(build_env)}", *build_env] if build_env else []
            step.ours = "RUN " + " ".join([*prefix, *args])
            if ins.flags:
                step.certain = False
                step.detail = "RUN " + " ".join(ins.flags)
        elif cmd in ("COPY", "ADD"):
            self._copy(ins, step, env)
        return step

    def _copy(self, ins: Instruction, step: BKStep, env: Mapping[str, str]) -> None:
        words = [self.lexer.process_word(w, env) for w in ins.value]
        *srcs, dest = words if len(words) >= 2 else ["", ""]
        step.vertex, step.sources = True, tuple(srcs)
        step.ours = " ".join([ins.cmd, *srcs, dest])
        step.kind = "copy"
        if ins.flag("from") is not None:
            step.kind = "copy-stage"
        elif ins.cmd == "ADD" and any("://" in s for s in srcs):
            step.kind = "add-url"
        elif ins.flag("chown") is not None or ins.flag("chmod") is not None:
            step.certain = False
            step.detail = "--chown/--chmod"

    def _pairs(self, ins: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
        vals = list(ins.value)
        return [(self.lexer.process_word(vals[i], env), self.lexer.process_word(vals[i + 1], env))
                for i in range(0, len(vals) - 1, 2)]

    # -- against the cache

    def _match(self, steps: list[BKStep], stage: Stage, base: str,
               info: ImageInfo | None) -> None:
        vertices = [s for s in steps if s.vertex]
        source = self.source
        if info is None:
            for s in vertices:
                s.cached, s.certain, s.miss = False, False, "unknown"
                s.detail = f"FROM {base}: devsync predicts a BuildKit build FROM an image only"
            return
        if source is None or source.graph is None:
            for s in vertices:
                s.cached, s.miss = False, "no-metadata"
            return
        graph = source.graph
        roots = graph.roots(from_key(info.diff_ids))
        if not roots:
            for s in vertices:
                s.cached, s.miss = False, "base"
            return
        theirs: list[tuple[str, ...]] = []
        if source.image is not None:
            # (its base is ours: the root record says it was built on the same layers)
            skip = source.base_history if source.base_history is not None \
                else len(info.history)
            theirs = _signatures(history_entries(source.image, skip))
        ours = _signatures([s.ours for s in steps[1:] if s.ours])
        current: list[int] = roots
        matched: list[BKStep] = []  # the vertices whose key the cache has, in order
        broken: BKStep | None = None
        unsure = False
        for k, step in enumerate(vertices):
            step.source_ref = source.ref
            if k < len(theirs):
                step.theirs = theirs[k][0]
            if broken is not None:
                step.cached, step.miss = False, "busted"
                step.certain = step.certain and not unsure
                step.detail = str(broken.instruction.line)
                continue
            if unsure and step.certain:
                step.certain = False  # (its key hangs on an uncertain step before it)
                step.detail = step.detail or "after uncertain"
            content = None
            if step.kind == "copy":
                content = self._content(step)
                if content is None:
                    broken, unsure = step, True
                    continue
                if step.miss == "transport":
                    step.cached = False
                    broken = step
                    continue
            elif step.kind in ("copy-stage", "add-url"):
                step.cached, step.certain, step.miss = False, False, "unknown"
                broken, unsure = step, True
                continue
            children = sorted({c for parent in current for c in graph.children(parent)})
            candidates = children if content is None else \
                [c for c in children if content in graph.content_keys(c)]
            same_op = k < len(theirs) and k < len(ours) and theirs[k] == ours[k]
            if not theirs:
                # no history to tell the ops apart: the structure only
                step.certain = False
            if not candidates:
                step.cached = False
                step.miss = "files" if content is not None and children and same_op \
                    else ("new-step" if k >= len(theirs) and theirs else "changed")
                broken = step
                continue
            if theirs and not same_op:
                step.cached, step.miss = False, "changed" if k < len(theirs) else "new-step"
                broken = step
                # another generation's records may hold this op: cannot tell
                unsure = len(children) > 1
                step.certain = step.certain and not unsure
                continue
            if len(candidates) > 1 and len({graph.records[c].has_layers
                                            for c in candidates}) > 1:
                step.certain = False
            # the key matches; whether the result is loaded or run is decided below
            step.cached = any(graph.records[c].has_layers for c in candidates)
            step.depth = max((d for c in candidates for d in graph.records[c].results), default=0)
            matched.append(step)
            current = candidates
            unsure = unsure or not step.certain
        _loaded_or_run(matched)

    @property
    def hasher(self) -> ContentHasher | None:
        """The context's checksums, made when a COPY first needs one (the context is walked
        then, not before)."""
        if self._hasher is None and self.context is not None:
            self._hasher = ContentHasher(self.context)
        return self._hasher

    def _content(self, step: BKStep) -> str | None:
        if self.hasher is None:
            step.cached, step.certain, step.miss = False, False, "unknown"
            return None
        try:
            selection = self.hasher.select(step.sources)
        except SelectionError as exc:
            step.cached, step.certain, step.miss, step.detail = False, False, "unknown", str(exc)
            return None
        if not selection.exact:
            step.certain = False
        if self.transport != "cli" and "/" in selection.paths:
            # the Engine API's BuildKit unpacks the context tar itself and hashes the root as
            # unpacked, never as a session sends it: a CI-built `COPY .` does not match
            # (measured, tests/ops/test_plan_exact_buildkit.py)
            step.miss = "transport"
        return selection.key


def _loaded_or_run(matched: list[BKStep]) -> None:
    """Of the vertices whose keys match (a chain from FROM), BuildKit loads the last one
    whose record has layers, if the build needs anything of them: what comes after that one
    in the chain runs (its record has no result to load); what comes before is never needed
    and is reported CACHED with no layers at all. (Measured: an image built from an imported
    cache re-exports the imported steps without layers; built unchanged it is all CACHED,
    and after an edit further down every such step runs again, moby/buildkit#1981.)"""
    last_loadable = max((i for i, s in enumerate(matched) if s.cached), default=-1)
    for i, step in enumerate(matched):
        if i <= last_loadable:
            step.cached, step.miss = True, None
        else:
            step.cached, step.miss = False, "no-layers"


def _metadata_follows(steps: list[BKStep]) -> None:
    """Steps without a vertex say what the vertex before them in the stage said (before the
    first one: nothing to build, so cached)."""
    last: BKStep | None = None
    for s in steps[1:]:
        if s.vertex:
            last = s
        elif last is not None and not last.cached:
            s.cached, s.miss, s.detail = False, "busted", str(last.instruction.line)
        else:
            s.cached = True


def _arg_parts(ins: Instruction) -> tuple[str, str | None]:
    raw = ins.value[0] if ins.value else ""
    if "=" in raw:
        key, value = raw.split("=", 1)
        return key, value
    return raw, None


def _env_map(env: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _set_env(env: list[str], key: str, value: str) -> None:
    for i, existing in enumerate(env):
        if existing.split("=", 1)[0] == key:
            env[i] = f"{key}={value}"
            return
    env.append(f"{key}={value}")
