"""A faithful model of the Docker Engine's classic builder, run without building anything.

For every Dockerfile step it derives the exact `CreatedBy` string the builder will write (and
probe the cache with), then replays the builder's cache lookup for `--cache-from` sources
(moby `image/cache/cache.go`): a step is reused when some source image's history starts with
the current parent's history and layers, and that source's next history entry was created by
the same command. After the first hit the builder sticks to that source; after the first miss
in a stage every later step of the stage rebuilds.

The formats below are the classic builder's (moby `builder/dockerfile/dispatchers.go`,
Engine 20.10) and are checked against the real engine by the test suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from devsync.errors import DockerfileError, UnknownBaseError
from devsync.model.context import BuildContext, TarFlavor
from devsync.model.dockerfiles import Dockerfile, Instruction, Stage
from devsync.model.images import HistoryEntry, ImageInfo
from devsync.model.shellwords import Lexer

DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class StepKind:
    FROM = "from"
    NOP = "nop"  # metadata only (ENV, LABEL, ...): an empty layer
    RUN = "run"
    COPY = "copy"  # COPY/ADD from the build context
    COPY_STAGE = "copy-stage"  # COPY --from a stage or another image
    ADD_URL = "add-url"


@dataclass
class SimStep:
    """One Dockerfile instruction as the builder will see it."""

    instruction: Instruction
    stage: int
    kind: str
    created_by: str | None  # None: cannot be known before building
    sources: tuple[str, ...] = ()  # expanded COPY/ADD sources (context-relative)
    copy_from: str | None = None
    cached: bool = False
    assumed: bool = False  # cached on an assumption (COPY --from an unchanged stage)
    source_ref: str | None = None  # the cache source that supplied the hit
    # The closest cache source's history entry at this position, when there is one: what
    # the deployed image did here (used to explain a miss).
    counterpart: HistoryEntry | None = None
    counterpart_ref: str | None = None
    miss: str | None = None  # "busted", "no-source", "parent", "command", "unknown"
    # False when the outcome hangs on files another stage builds in this run: the engine
    # reuses the layer anyway if that stage reproduces byte-identical files
    certain: bool = True
    triggers: list[str] = field(default_factory=list)  # ONBUILD triggers run at this FROM


@dataclass
class _Parent:
    """The image a step runs on: what the builder compares with cache sources."""

    history: tuple[HistoryEntry, ...]
    diff_ids: tuple[str, ...]
    fresh: bool = False  # built in this run: no cache source can start with it
    ref: str | None = None


@dataclass
class _State:
    env: list[str]
    shell: tuple[str, ...]
    workdir: str
    parent: _Parent
    allowed_args: dict[str, str | None] = field(default_factory=dict)
    busted: bool = False
    fully_cached: bool = True
    uncertain: bool = False  # an earlier step's outcome could not be known


@dataclass
class SimResult:
    steps: list[SimStep]
    flavor: TarFlavor
    stage_bases: dict[int, str]  # stage index -> expanded base reference (or stage name)
    target_stage: int
    # the image the target stage ends on: its history length and layers (as the builder
    # would have them once the last step is done, before any label step)
    final_history_len: int = 0
    final_layers: tuple[str, ...] = ()

    @property
    def cached_count(self) -> int:
        return sum(1 for s in self.steps if s.cached and s.kind != StepKind.FROM)

    def whole_reuse(self, sources: Mapping[str, ImageInfo]) -> WholeReuse | None:
        """The image the builder would end on when every step is cached from it (a single
        stage, every step cached, certainly and not by assumption, from one of `sources`,
        by reference), else None: then the build's result is that image (plus any label
        step), as far as its layers and config go."""
        steps = self.steps
        if len(steps) < 2 or any(s.stage != self.target_stage or not s.cached
                                 or not s.certain or s.assumed for s in steps):
            return None
        ref = steps[-1].source_ref or ""
        source = sources.get(ref)
        if source is None or not source.image_id or self.final_history_len == 0:
            return None
        return WholeReuse(ref, source.image_id, self.final_history_len, self.final_layers,
                          source)

    @property
    def first_miss(self) -> SimStep | None:
        for s in self.steps:
            if s.stage == self.target_stage and not s.cached:
                return s
        return None


@dataclass(frozen=True)
class WholeReuse:
    """Every step of a classic build is reused from one cache source, on which the builder
    would end: its reference, its image ID, how much of its history and which of its layers
    the build's result has (before any label step)."""

    ref: str
    image_id: str
    history_len: int
    layers: tuple[str, ...]
    source: ImageInfo = field(repr=False, compare=False)


ImageLookup = Callable[[str], ImageInfo | None]


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's %q for a string (strconv.Quote)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_quote_list(items: Sequence[str]) -> str:
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def _go_quote_rune(value: int) -> str:
    ch = chr(value)
    if ch == "'":
        return "'\\''"
    if ch == "\\":
        return "'\\\\'"
    inner = go_quote(ch)[1:-1]
    if inner == '\\"':
        inner = '"'
    return f"'{inner}'"


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def _parse_go_duration(text: str) -> int:
    if text in ("0", ""):
        return 0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(text)
    return int(total)


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim_float(ns / size) + unit
    hours, rem = divmod(ns, 3_600_000_000_000)
    minutes, rem = divmod(rem, 60_000_000_000)
    seconds = _trim_float(rem / 1_000_000_000)
    out = ""
    if hours:
        out += f"{hours}h"
    if hours or minutes:
        out += f"{minutes}m"
    return sign + out + seconds + "s"


def _trim_float(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


class BuildSimulator:
    """Replays one `docker build` (classic builder) of a Dockerfile against cache sources."""

    def __init__(self, dockerfile: Dockerfile, *, context: BuildContext | None,
                 images: ImageLookup, sources: Sequence[ImageInfo],
                 build_args: Mapping[str, str] | None = None, target: str | None = None,
                 flavor: TarFlavor = TarFlavor.CLI_MODERN,
                 hash_after_miss: bool = True,
                 unchanged_stages: Sequence[str] = ()) -> None:
        """`unchanged_stages`: names (or indexes) of earlier stages whose inputs are known
        not to have changed since the cache source was built; a `COPY --from` one of them
        counts as that source's COPY (as for a stage whose every step was reused). Only the
        final stage is in an image, so this is how an earlier stage counts.

        With `hash_after_miss=False`, a COPY/ADD after its stage's first miss gets no
        `created_by` (None): the builder rebuilds it whatever its files hash to, so only its
        sources are checked (a missing one fails the build). A plan that tries several
        flavors saves hashing the whole context for every flavor that lost early."""
        self.df = dockerfile
        self.context = context
        self.images = images
        self.sources = list(sources)
        self.options = dict(build_args or {})
        self.target = target
        self.flavor = flavor
        self.hash_after_miss = hash_after_miss
        self.unchanged_stages = frozenset(str(n).lower() for n in unchanged_stages)
        self.lexer = Lexer(dockerfile.escape)
        self.display = dockerfile.path.name

    # -- public ---------------------------------------------------------------------------

    def run(self) -> SimResult:
        stages = self.df.stages
        target_index = len(stages) - 1
        if self.target:
            found = self.df.stage_named(self.target)
            if found is None:
                raise DockerfileError(f"{self.display}: no build stage named {self.target!r}")
            target_index = found.index
        meta = self._meta_args()
        steps: list[SimStep] = []
        results: dict[str, _State] = {}
        by_index: dict[int, _State] = {}
        bases: dict[int, str] = {}
        for stage in stages[: target_index + 1]:
            state, from_step, base = self._begin_stage(stage, meta, results)
            bases[stage.index] = base
            steps.append(from_step)
            for trigger in from_step.triggers:
                self._dispatch_trigger(trigger, stage, state, from_step)
            for ins in stage.instructions:
                steps.append(self._dispatch(ins, stage, state, by_index, results))
            by_index[stage.index] = state
            if stage.name:
                results[stage.name] = state
        final = by_index[target_index].parent
        return SimResult(steps=steps, flavor=self.flavor, stage_bases=bases,
                         target_stage=target_index, final_history_len=len(final.history),
                         final_layers=final.diff_ids)

    # -- stages ---------------------------------------------------------------------------

    def _meta_args(self) -> dict[str, str | None]:
        meta: dict[str, str | None] = {}
        for ins in self.df.meta_args:
            key, value = self._arg_parts(ins)
            env = [f"{k}={v}" for k, v in self._effective(meta).items()]
            key = self.lexer.process_word(key, env)
            if value is not None:
                value = self.lexer.process_word(value, env)
            meta[key] = value
        return meta

    def _effective(self, declared: Mapping[str, str | None]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, default in declared.items():
            if key in self.options:
                out[key] = self.options[key]
            elif default is not None:
                out[key] = default
        return out

    def _begin_stage(self, stage: Stage, meta: dict[str, str | None],
                     results: dict[str, _State]) -> tuple[_State, SimStep, str]:
        meta_env = [f"{k}={v}" for k, v in self._effective(meta).items()]
        base = self.lexer.process_word(stage.base, meta_env)
        from_step = SimStep(stage.from_instruction, stage.index, StepKind.FROM, None, cached=True)
        if base.lower() in results:
            prev = results[base.lower()]
            state = _State(env=list(prev.env), shell=prev.shell, workdir=prev.workdir,
                           parent=prev.parent, uncertain=prev.uncertain)
            from_step.source_ref = f"stage {base.lower()}"
        elif base == "scratch":
            state = _State(env=[], shell=DEFAULT_SHELL, workdir="", parent=_Parent((), ()))
        else:
            info = self.images(base)
            if info is None:
                raise UnknownBaseError(
                    f"{self.display}:{stage.from_instruction.line}: base image {base} is "
                    "neither local nor in its registry",
                    hint="check the FROM line, or build and push the base first "
                    "(devsync base build --push)",
                )
            state = _State(env=list(info.env), shell=tuple(info.shell or DEFAULT_SHELL),
                           workdir=info.workdir,
                           parent=_Parent(info.history, info.diff_ids, ref=base))
            from_step.source_ref = base
            from_step.triggers = list(info.onbuild)
        if not any(e.split("=", 1)[0] == "PATH" for e in state.env):
            state.env.append(f"PATH={DEFAULT_PATH}")
        # meta args are known to every stage, but only those it declares are "allowed"
        state.allowed_args = {}
        self._meta = meta
        return state, from_step, base

    def _dispatch_trigger(self, trigger: str, stage: Stage, state: _State,
                          from_step: SimStep) -> None:
        from devsync.model.dockerfiles import parse_text

        parsed = parse_text("FROM scratch\n" + trigger + "\n", self.df.path)
        for ins in parsed.stages[0].instructions:
            step = self._dispatch(ins, stage, state, {}, {})
            if not step.cached:
                from_step.cached = False
                from_step.miss = step.miss

    # -- instructions ---------------------------------------------------------------------

    def _expansion_env(self, state: _State) -> list[str]:
        return state.env + self._filter_allowed(state)

    def _filter_allowed(self, state: _State) -> list[str]:
        env_keys = {e.split("=", 1)[0] for e in state.env}
        out = []
        for key, value in self._allowed_values(state).items():
            if key not in env_keys:
                out.append(f"{key}={value}")
        return out

    def _allowed_values(self, state: _State) -> dict[str, str]:
        # moby BuildArgs.getBuildArg: --build-arg wins, then the ARG default, then the
        # default of the same-named ARG before FROM
        values: dict[str, str] = {}
        for key, default in state.allowed_args.items():
            if key in self.options:
                values[key] = self.options[key]
            elif default is not None:
                values[key] = default
            elif self._meta.get(key) is not None:
                values[key] = self._meta[key]  # type: ignore[assignment]
        for key in BUILTIN_ARGS:
            if key in self.options and key not in values:
                values[key] = self.options[key]
        return values

    def _word(self, word: str, state: _State) -> str:
        return self.lexer.process_word(word, self._expansion_env(state))

    def _nop(self, state: _State, comment: str) -> str:
        return " ".join([*state.shell, "#(nop) ", comment])

    def _nop_str(self, state: _State, comment: str) -> str:
        return " ".join([*state.shell, "#(nop) " + comment])

    def _arg_parts(self, ins: Instruction) -> tuple[str, str | None]:
        if len(ins.value) != 1:
            raise DockerfileError(
                f"{self.display}:{ins.line}: ARG requires exactly one argument with this engine"
            )
        raw = ins.value[0]
        if "=" in raw:
            key, value = raw.split("=", 1)
            return key, value
        return raw, None

    def _pairs(self, ins: Instruction, state: _State) -> list[tuple[str, str]]:
        vals = list(ins.value)
        if len(vals) % 2:
            raise DockerfileError(f"{self.display}:{ins.line}: {ins.cmd} needs key=value pairs")
        env = self._expansion_env(state)
        return [
            (self.lexer.process_word(vals[i], env), self.lexer.process_word(vals[i + 1], env))
            for i in range(0, len(vals), 2)
        ]

    def _dispatch(self, ins: Instruction, stage: Stage, state: _State,
                  by_index: dict[int, _State], results: dict[str, _State]) -> SimStep:
        cmd = ins.cmd
        kind = StepKind.NOP
        created_by: str | None
        sources: tuple[str, ...] = ()
        copy_from: str | None = None
        if cmd == "ENV":
            pairs = self._pairs(ins, state)
            parts = []
            for key, value in pairs:
                parts.append(f"{key}={value}")
            for key, value in pairs:
                for i, existing in enumerate(state.env):
                    if existing.split("=", 1)[0] == key:
                        state.env[i] = f"{key}={value}"
                        break
                else:
                    state.env.append(f"{key}={value}")
            created_by = self._nop(state, "ENV " + " ".join(parts))
        elif cmd == "LABEL":
            pairs = self._pairs(ins, state)
            created_by = self._nop(state, "LABEL" + "".join(f" {k}={v}" for k, v in pairs))
        elif cmd == "ARG":
            key, raw_value = self._arg_parts(ins)
            env = self._expansion_env(state)
            key = self.lexer.process_word(key, env)
            default = (self.lexer.process_word(raw_value, env) if raw_value is not None
                       else None)
            created_by = self._nop(state, f"ARG {key}"
                                   + (f"={default}" if default is not None else ""))
            state.allowed_args[key] = default
        elif cmd == "MAINTAINER":
            created_by = self._nop(state, "MAINTAINER " + " ".join(ins.value))
        elif cmd == "WORKDIR":
            requested = self._word(ins.value[0] if ins.value else "", state)
            if not requested:
                raise DockerfileError(f"{self.display}:{ins.line}: WORKDIR needs a path")
            if not requested.startswith("/"):
                import posixpath

                requested = posixpath.normpath(posixpath.join("/", state.workdir, requested))
            state.workdir = requested
            created_by = self._nop_str(state, "WORKDIR " + requested)
        elif cmd == "USER":
            created_by = self._nop(state, "USER " + self._word(ins.value[0], state))
        elif cmd == "STOPSIGNAL":
            created_by = self._nop(state, "STOPSIGNAL " + self._word(ins.value[0], state))
        elif cmd == "EXPOSE":
            env = self._expansion_env(state)
            ports: list[str] = []
            # the parser sorts the words as written, before any $VAR is expanded
            for p in sorted(ins.value):
                ports.extend(self.lexer.process_words(p, env))
            created_by = self._nop(state, "EXPOSE " + " ".join(ports))
        elif cmd == "VOLUME":
            vols = [self._word(v, state) for v in ins.value]
            created_by = self._nop(state, "VOLUME [" + " ".join(vols) + "]")
        elif cmd in ("CMD", "ENTRYPOINT"):
            args = list(ins.value) if ins.json else [*state.shell, " ".join(ins.value)]
            if not ins.json and not ins.value:
                args = []
            created_by = self._nop(state, f"{cmd} {_go_quote_list(args)}")
        elif cmd == "SHELL":
            if not ins.json:
                raise DockerfileError(f"{self.display}:{ins.line}: SHELL requires a JSON array")
            state.shell = tuple(ins.value)
            created_by = self._nop(state, "SHELL [" + " ".join(ins.value) + "]")
        elif cmd == "ONBUILD":
            expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", ins.original)
            created_by = self._nop(state, "ONBUILD " + expression)
        elif cmd == "HEALTHCHECK":
            created_by = self._nop(state, "HEALTHCHECK " + self._healthcheck(ins))
        elif cmd == "RUN":
            kind = StepKind.RUN
            if ins.flags:
                raise DockerfileError(
                    f"{self.display}:{ins.line}: RUN {' '.join(ins.flags)} needs BuildKit; "
                    "the Engine API's classic builder rejects it"
                )
            cmdline = list(ins.value) if ins.json else [*state.shell, " ".join(ins.value)]
            build_args = self._filter_allowed(state)
            referenced = [a for a in build_args
                          if a.split("=", 1)[0] in state.allowed_args
                          or a.split("=", 1)[0] not in BUILTIN_ARGS]
            if build_args:
                referenced.sort()
                cmdline = [f"|{len(referenced)}", *referenced, *cmdline]
            created_by = " ".join(cmdline)
        elif cmd in ("COPY", "ADD"):
            kind, created_by, sources, copy_from = self._copy(ins, state, by_index, results)
        else:
            raise DockerfileError(f"{self.display}:{ins.line}: unknown instruction {cmd}")
        step = SimStep(ins, stage.index, kind, created_by, sources=sources, copy_from=copy_from)
        self._probe(step, state, by_index, results)
        return step

    def _healthcheck(self, ins: Instruction) -> str:
        values = list(ins.value)
        if not values:
            raise DockerfileError(f"{self.display}:{ins.line}: HEALTHCHECK needs CMD or NONE")
        kind = values[0].upper()
        if kind == "NONE":
            test = ["NONE"]
        elif ins.json:
            test = ["CMD", *values[1:]]
        else:
            test = ["CMD-SHELL", " ".join(values[1:])]

        def duration(name: str) -> str:
            raw = ins.flag(name)
            return go_quote(go_duration(_parse_go_duration(raw) if raw else 0))

        retries = int(ins.flag("retries") or 0)
        if kind == "NONE":
            return f"&{{{_go_quote_list(test)} \"0s\" \"0s\" \"0s\" '\\x00'}}"
        return (f"&{{{_go_quote_list(test)} {duration('interval')} {duration('timeout')} "
                f"{duration('start-period')} {_go_quote_rune(retries)}}}")

    def _copy(self, ins: Instruction, state: _State, by_index: dict[int, _State],
              results: dict[str, _State]) -> tuple[str, str | None, tuple[str, ...], str | None]:
        env = self._expansion_env(state)
        words = [self.lexer.process_word(w, env) for w in ins.value]
        if len(words) < 2:
            raise DockerfileError(f"{self.display}:{ins.line}: {ins.cmd} needs a source and a "
                                  "destination")
        *srcs, dest = words
        if ins.flag("chmod") is not None:
            raise DockerfileError(
                f"{self.display}:{ins.line}: {ins.cmd} --chmod needs BuildKit; the Engine API's "
                "classic builder rejects it"
            )
        chown = ins.flag("chown")
        chown = self.lexer.process_word(chown, env) if chown else ""
        chown_comment = f"--chown={chown}" if chown else ""
        from_flag = ins.flag("from") if ins.cmd == "COPY" else None
        if from_flag:
            return StepKind.COPY_STAGE, None, tuple(srcs), from_flag
        if ins.cmd == "ADD" and any(_URL.match(s) for s in srcs):
            return StepKind.ADD_URL, None, tuple(srcs), None
        if self.context is None:
            return StepKind.COPY, None, tuple(srcs), None
        try:
            if state.busted and not self.hash_after_miss:
                self.context.check_sources(list(srcs))
                return StepKind.COPY, None, tuple(srcs), None
            src_hash = self.context.source_hash(list(srcs), self.flavor)
        except DockerfileError as exc:
            # the context's own words ("COPY failed: file not found ..."): say where
            if exc.message.startswith(f"{self.display}:"):
                raise
            raise type(exc)(f"{self.display}:{ins.line}: {exc.message}", hint=exc.hint) from None
        if src_hash is None:
            return StepKind.COPY, None, tuple(srcs), None
        comment = f"{ins.cmd} {chown_comment}{src_hash} in {dest} "
        return StepKind.COPY, self._nop_str(state, comment), tuple(srcs), None

    # -- the cache lookup (moby image/cache) ----------------------------------------------

    def _probe(self, step: SimStep, state: _State, by_index: dict[int, _State],
               results: dict[str, _State]) -> None:
        parent = state.parent
        n = len(parent.history)
        candidates = [s for s in self.sources if _valid_parent(s, parent)]
        closest = next((s for s in candidates if len(s.history) > n), None)
        if closest is not None:
            step.counterpart = closest.history[n]
            step.counterpart_ref = closest.reference
        hit: ImageInfo | None = None
        step.certain = not state.uncertain
        if state.busted:
            step.miss = "busted"
        elif not self.sources:
            step.miss = "no-source"
        elif not candidates:
            step.miss = "parent"
        elif closest is None:
            step.miss = "new-step"
        elif step.created_by is None:
            if step.kind == StepKind.COPY_STAGE:
                hit = self._copy_from_guess(step, closest, n, by_index, results)
            step.miss = None if hit else "unknown"
            if hit is None and step.kind == StepKind.COPY_STAGE:
                step.certain = False
                state.uncertain = True
        else:
            hit = next((s for s in candidates
                        if len(s.history) > n and s.history[n].created_by == step.created_by),
                       None)
            if hit is None:
                step.miss = "command"
        if hit is None:
            state.busted = True
            state.fully_cached = False
            state.parent = _Parent((*parent.history, HistoryEntry(0, step.created_by or "")),
                                   parent.diff_ids, fresh=True)
            return
        step.cached = True
        step.source_ref = hit.reference
        history = hit.history[: n + 1]
        state.parent = _Parent(history, hit.diff_ids[: hit.layers_in(n + 1)], ref=hit.reference)
        # the builder sticks to the first source that hit (moby: "avoid jumping")
        self.sources = [hit]

    def _copy_from_guess(self, step: SimStep, source: ImageInfo, n: int,
                         by_index: dict[int, _State],
                         results: dict[str, _State]) -> ImageInfo | None:
        """COPY --from: its hash depends on files the other stage produces. When that stage
        was entirely reused, its files are the deployed build's, so the step is assumed to
        match a COPY with the same destination."""
        name = (step.copy_from or "").lower()
        stage_state = results.get(name)
        if stage_state is None and name.isdigit():
            stage_state = by_index.get(int(name))
        known_same = name in self.unchanged_stages
        if not known_same and (stage_state is None or not stage_state.fully_cached):
            return None
        entry = source.history[n].created_by
        dest = step.instruction.value[-1] if step.instruction.value else ""
        if "#(nop) COPY " in entry and entry.rstrip().endswith(f" in {dest}"):
            step.assumed = True
            return source
        return None


def _valid_parent(img: ImageInfo, parent: _Parent) -> bool:
    """moby image/cache isValidParent: img's history and layers start with the parent's."""
    if parent.fresh:
        return False
    if not img.history:
        return False
    if not parent.history and not parent.diff_ids:
        return True
    if len(parent.history) >= len(img.history):
        return False
    if len(parent.diff_ids) > len(img.diff_ids):
        return False
    if img.history[: len(parent.history)] != parent.history:
        return False
    return img.diff_ids[: len(parent.diff_ids)] == parent.diff_ids
