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
  means the same op. The history leaves out a RUN's --mount/--network/--security and a COPY's
  --chown/--chmod: such a step is vouched for by the Dockerfile at the deployed revision
  (`revision_stage`, the target stage's lines there). The same line, after the same lines, is
  the same op; the same place with other flags is another op (a certain miss). Without that
  (no revision, other lines before it, a flag naming a variable or another stage), and for a
  cache without an image's history, the step is uncertain.

Metadata instructions (ENV, ARG, LABEL, CMD, ...) make no vertex: they keep their place and
say what the step before them said.

Other stages (multi-stage builds; measured on dockerd 20.10, tests/ops/
test_plan_exact_buildkit_stages.py). An inline cache holds the records of every stage the
build needed, but results (layers) of the final stage only; a registry cache composed per stage
(`devsync publish --registry-cache`) has them for each stage. A stage is walked down the
records like the target stage when the caller vouches that its ops are CI's (`same_stages`:
its text is the deployed revision's, it declares no ARG and starts FROM an image), since no
image history tells its ops. A `COPY --from=STAGE` record's second input links to the record
of the stage's last vertex: its key matches when that stage's chain matched. When it does
not, BuildKit builds the stage and compares the files it copies (a content key) - that is
known only after building (uncertain). Which vertices run is then decided over the whole graph
(`_decide`): the target's last vertex is needed; a needed vertex with a matching loadable
record is CACHED, otherwise it runs and needs its inputs (the step before it, and for `COPY
--from` the stage's last vertex); a vertex not needed is reported CACHED when its key matched.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from devsync.model.buildkit._cache import CacheGraph
from devsync.model.buildkit._keys import ContentHasher, SelectionError, from_key
from devsync.model.context import BuildContext
from devsync.model.dockerfiles import Dockerfile, Instruction, Stage, mount_options
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
    # why it rebuilds: no-metadata, base, base-env, changed, flags, new-step, files,
    # no-layers, busted, stage, stage-files, transport, unknown
    miss: str | None = None
    ours: str = ""  # the history entry this build writes here
    theirs: str = ""  # the cache source's entry at the same place
    sources: tuple[str, ...] = ()
    source_ref: str | None = None
    detail: str = ""
    depth: int = 0  # cached: how many of the cache source's layers its result is
    # the flags the history leaves out (RUN --mount=..., COPY --chown=...): "" when none
    flags: str = ""
    theirs_line: str = ""  # the line at the deployed revision, when only its flags differ
    env_pairs: tuple[tuple[str, str], ...] = ()  # ENV: what it sets


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
                 transport: str = "cli", same_stages: frozenset[int] = frozenset(),
                 revision_stage: Sequence[str] | None = None) -> None:
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
        self.same_stages = same_stages
        self.revision_stage = revision_stage
        # per stage walked: the records its last vertex matched (None: its chain broke)
        self._stage_out: dict[int, list[int] | None] = {}
        self._matched: set[int] = set()  # id() of the vertices whose key the cache has
        self._inputs: dict[int, list[BKStep]] = {}  # id(step) -> the vertices it needs
        self._stage_last: dict[int, BKStep | None] = {}
        self._copied: dict[int, int | None] = {}  # id(COPY --from step) -> its walked stage
        self._bases: dict[str, ImageInfo | None] = {}  # other stages' bases, as resolved

    def run(self) -> list[BKStep]:
        target = self.df.target_stage(self.target)
        needed = {s.index for s in self.df.stages_needed(self.target)}
        meta = self._meta_args()
        out = [BKStep(ins, -1, "meta", False, cached=True) for ins in self.df.meta_args]
        walked: list[list[BKStep]] = []
        for stage in self.df.stages:
            if stage.index not in needed:
                out.extend(BKStep(ins, stage.index, "skip", False, cached=True)
                           for ins in [stage.from_instruction, *stage.instructions])
            elif stage.index == target.index or self._walkable(stage, meta):
                steps = self._stage(stage, meta, stage.index == target.index)
                walked.append(steps)
                out.extend(steps)
            else:
                out.extend(self._other_stage(stage))
        last = self._stage_last.get(target.index)
        decided = _decide(last, self._matched, self._inputs) if last is not None else set()
        for steps in walked:
            if steps[0].stage != target.index:
                _undecided(steps, decided)
            _metadata_follows(steps)
        return sorted(out, key=lambda s: s.instruction.line)

    def _walkable(self, stage: Stage, meta: dict[str, str]) -> bool:
        """Another stage is walked down the records when its ops are known to be CI's, and it
        starts FROM an image."""
        if stage.index not in self.same_stages:
            return False
        base = self.lexer.process_word(stage.base, meta)
        if base == "scratch" or self.df.stage_named(base) is not None:
            return False
        try:
            info = self.images(base)
        except Exception:  # (a base devsync cannot read, e.g. a registry not reachable)
            return False
        self._bases[base] = info
        return info is not None

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

    def _stage(self, stage: Stage, meta: dict[str, str], is_target: bool) -> list[BKStep]:
        base = self.lexer.process_word(stage.base, meta)
        from_step = BKStep(stage.from_instruction, stage.index, "from", False, cached=True,
                           source_ref=base)
        steps = [from_step]
        if self.df.stage_named(base) is not None or base == "scratch":
            info = None
        else:
            info = self._bases[base] if base in self._bases else self.images(base)
            if info is None:
                raise SelectionError(f"base image {base} is neither local nor in its registry")
        if is_target:
            self.base_ref, self.base_info = base, info
        state = _State(env=list(info.env) if info else [],
                       shell=tuple(info.shell or _DEFAULT_SHELL) if info else _DEFAULT_SHELL,
                       workdir=info.workdir if info else "")
        if not any(e.split("=", 1)[0] == "PATH" for e in state.env):
            state.env.append(f"PATH={DEFAULT_PATH}")
        for ins in stage.instructions:
            steps.append(self._dispatch(ins, stage, state))
        vertices = [s for s in steps if s.vertex]
        for i, s in enumerate(vertices):
            self._inputs[id(s)] = vertices[i - 1:i]
        self._stage_last[stage.index] = vertices[-1] if vertices else None
        self._copied.update({id(s): self._from_stage(s) for s in vertices
                             if s.kind == "copy-stage"})
        self._stage_out[stage.index] = self._match(steps, base, info, own=not is_target)
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
            step.env_pairs = tuple(pairs)
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
                step.detail = step.flags = "RUN " + " ".join(ins.flags)
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
        if ins.flag("chown") is not None or ins.flag("chmod") is not None:
            step.certain = False
            step.detail = "--chown/--chmod"
            step.flags = " ".join(f for f in ins.flags if not f.startswith("--from"))

    def _pairs(self, ins: Instruction, env: Mapping[str, str]) -> list[tuple[str, str]]:
        vals = list(ins.value)
        return [(self.lexer.process_word(vals[i], env), self.lexer.process_word(vals[i + 1], env))
                for i in range(0, len(vals) - 1, 2)]

    # -- against the cache

    def _match(self, steps: list[BKStep], base: str, info: ImageInfo | None,
               own: bool) -> list[int] | None:
        """Walk the stage's vertices down the records; the records its last vertex matched
        (None when its chain broke or was not walked). `own`: a stage whose ops are vouched
        to be CI's (not the target: no image history to compare with)."""
        vertices = [s for s in steps if s.vertex]
        source = self.source
        if info is None:
            for s in vertices:
                s.cached, s.certain, s.miss = False, False, "unknown"
                s.detail = f"FROM {base}: devsync predicts a BuildKit build FROM an image only"
            return None
        if source is None or source.graph is None:
            for s in vertices:
                s.cached, s.miss = False, "no-metadata"
            return None
        graph = source.graph
        roots = graph.roots(from_key(info.diff_ids))
        if not roots:
            for s in vertices:
                s.cached, s.miss = False, "base"
            return None
        ours = _signatures([s.ours for s in steps[1:] if s.ours])
        theirs: list[tuple[str, ...]] = []
        theirs_entries: list[str] = []
        if own:
            theirs = ours  # (vouched by the caller: the same stage text as CI built)
        elif source.image is not None:
            # (its base is ours: the root record says it was built on the same layers)
            skip = source.base_history if source.base_history is not None \
                else len(info.history)
            theirs_entries = history_entries(source.image, skip)
            theirs = _signatures(theirs_entries)
        base_env = [] if own or source.image is None else \
            _base_env_differs(steps, info, source.image, theirs_entries)
        current: list[int] = roots
        broken: BKStep | None = None
        unsure = False
        for k, step in enumerate(vertices):
            step.source_ref = source.ref
            if k < len(theirs):
                step.theirs = theirs[k][0]
            flags_changed = False
            if step.flags:
                vouched = self._vouched(step, own)
                if vouched is not None:
                    step.certain, step.detail = True, ""
                    flags_changed = not vouched
            if broken is not None:
                # (its input's key is not in the cache, so neither is its own, whatever its
                # flags: certain unless an earlier step was not)
                step.cached, step.miss = False, "busted"
                step.certain = not unsure
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
            elif step.kind == "add-url" or (step.kind == "copy-stage"
                                            and self._copied.get(id(step)) is None):
                step.cached, step.certain, step.miss = False, False, "unknown"
                broken, unsure = step, True
                continue
            children = sorted({c for parent in current for c in graph.children(parent)})
            candidates = children if content is None else \
                [c for c in children if content in graph.content_keys(c)]
            if step.kind == "copy-stage":
                stage_out = self._stage_out.get(self._copied.get(id(step)) or 0)
                candidates = [c for c in children
                              if set(graph.input_links(c, 1)) & set(stage_out or ())]
                if not candidates and k < len(theirs) and theirs[k] == ours[k]:
                    # the stage's key differs (or the step's): BuildKit builds the stage and
                    # compares the files copied, known only then
                    step.cached, step.certain, step.miss = False, False, "stage-files"
                    broken, unsure = step, True
                    continue
            same_op = k < len(theirs) and k < len(ours) and theirs[k] == ours[k]
            if base_env and same_op and step.instruction.cmd == "RUN":
                # the same history, but the base's environment is not the one CI's RUN ran
                # with (a base rebuilt with the same layers and another ENV): another op
                step.cached, step.miss, step.detail = False, "base-env", ", ".join(base_env)
                broken = step
                unsure = len({graph.records[c].digest for c in children}) > 1
                step.certain = not unsure and (step.certain or bool(step.flags))
                continue
            if flags_changed and same_op:
                # the history is the same and the line is not: only what the history leaves
                # out (the flags) changed, and they are in the op's key
                step.cached, step.miss = False, "flags"
                broken = step
                unsure = len({graph.records[c].digest for c in children}) > 1
                step.certain = step.certain and not unsure
                continue
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
                # (several cache sources may hold one key: the same digest is one key)
                unsure = len({graph.records[c].digest for c in children}) > 1
                # (another history is another op, whatever flags it leaves out)
                step.certain = not unsure and (step.certain or bool(step.flags))
                continue
            if len({graph.records[c].digest for c in candidates}) > 1 and \
                    len({graph.records[c].has_layers for c in candidates}) > 1:
                step.certain = False
            # the key matches; whether the result is loaded or run is decided below
            step.cached = any(graph.records[c].has_layers for c in candidates)
            step.depth = max((d for c in candidates for d in graph.records[c].results), default=0)
            self._matched.add(id(step))
            current = candidates
            unsure = unsure or not step.certain
        return current if broken is None and vertices else None

    def _vouched(self, step: BKStep, own: bool) -> bool | None:
        """For a step whose flags the history leaves out: True when the Dockerfile at the
        deployed revision has the same line after the same lines (the same op as CI's), False
        when it has another line there (another op), None when that cannot be told: no
        revision, other lines before it, or flags whose value is not their text alone (a
        variable) or that bring in another stage or image (its key joins this one's).
        Another stage walked (`own`) is vouched for as a whole by the caller."""
        if "$" in step.flags or "from=" in step.flags or not all(
                _keyed_by_text(f) for f in step.instruction.flags):
            return None
        if own:
            return True
        stage = self.df.stages[step.stage]
        rev = self.revision_stage
        index = next((i for i, ins in enumerate(stage.instructions)
                      if ins is step.instruction), None)
        if rev is None or index is None or index >= len(rev):
            return None
        if [i.text for i in stage.instructions[:index]] != list(rev[:index]):
            return None
        if step.instruction.text == rev[index]:
            return True
        step.theirs_line = rev[index]
        return False

    def _from_stage(self, step: BKStep) -> int | None:
        """The walked stage a `COPY --from` copies from (None: an image, or a stage that was
        not walked); the step then also needs that stage's last vertex."""
        name = step.instruction.flag("from") or ""
        stage = self.df.stage_named(name)
        if stage is None and name.isdigit() and int(name) < len(self.df.stages):
            stage = self.df.stages[int(name)]
        if stage is None or stage.index not in self._stage_out:
            return None
        last = self._stage_last.get(stage.index)
        if last is None:
            return None
        if last not in self._inputs[id(step)]:
            self._inputs[id(step)].append(last)
        return stage.index

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


def _undecided(steps: list[BKStep], decided: set[int]) -> None:
    """A walked stage that the target's graph does not reach directly (copied by a stage
    devsync does not walk): whether BuildKit needs it is not known."""
    for s in steps:
        if s.vertex and id(s) not in decided:
            s.cached, s.certain, s.miss = False, False, "stage"
            s.detail = f"stage {s.stage}"


def _decide(last: BKStep, matched: set[int], inputs: Mapping[int, list[BKStep]]) -> set[int]:
    """Which vertices run: BuildKit needs the target's last vertex; a needed vertex whose key
    matched a record with layers is loaded (CACHED), and its inputs are not needed; any other
    needed vertex runs and needs its inputs. A vertex never needed is reported CACHED when
    its key matched (with no layers at all). Where `step.cached` says, on entry, whether a
    matched record has layers. (Measured: an image built from an imported cache re-exports
    the imported steps without layers; built unchanged it is all CACHED, and after an edit
    further down every such step runs again, moby/buildkit#1981. An inline cache's other
    stages: CACHED when the final stage's `COPY --from` loads, run when they are needed.)
    Returns the vertices it decided (id())."""
    order: list[BKStep] = []
    seen: set[int] = set()

    def visit(step: BKStep) -> None:  # inputs first
        if id(step) in seen:
            return
        seen.add(id(step))
        for dep in inputs.get(id(step), ()):
            visit(dep)
        order.append(step)

    visit(last)
    needed = {id(last)}
    for step in reversed(order):
        hit = id(step) in matched
        if id(step) in needed:
            if hit and step.cached:
                step.miss = None
                continue
            step.cached = False
            if hit:
                step.miss = "no-layers"
            needed.update(id(d) for d in inputs.get(id(step), ()))
        elif hit:
            step.cached, step.miss = True, None
    return seen


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


def _base_env_differs(steps: Sequence[BKStep], base: ImageInfo, image: ImageInfo,
                      theirs_entries: Sequence[str]) -> list[str]:
    """The variables whose value in the cache source's config is not what this build's base
    and ENV lines give, when its ENV lines are this build's (else the per-step comparison
    tells). The FROM key is the base's layers alone, so a base rebuilt with another ENV on the
    same layers keeps it; a RUN's op has the environment, so its key does not. [] when equal."""
    ours_env = [s.ours for s in steps if s.instruction.cmd == "ENV" and s.ours]
    if not image.env:  # (no environment recorded at all: nothing to compare; BuildKit
        return []      # always writes at least PATH)
    if ours_env != [e for e in theirs_entries if e.split(" ", 1)[0] == "ENV"]:
        return []
    expected = list(base.env)
    for s in steps:
        for key, value in s.env_pairs:
            _set_env(expected, key, value)
    want, found = _env_map(expected), _env_map(image.env)
    for env in (want, found):  # (BuildKit sets PATH when the base has none)
        env.setdefault("PATH", DEFAULT_PATH)
    return sorted(k for k in set(want) | set(found) if want.get(k) != found.get(k))


def _keyed_by_text(flag: str) -> bool:
    """A flag whose whole effect on the op's key is its text. Not a bind mount (its key takes
    the content it mounts; a mount without a type is one), nor a flag it does not know."""
    name = flag.partition("=")[0]
    if name in ("--chown", "--chmod", "--network", "--security", "--from"):
        return True
    options = mount_options(flag)
    return options is not None and options["type"] in ("cache", "secret", "ssh", "tmpfs")


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
