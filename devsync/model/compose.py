"""Docker Compose files: which services `build:` an image, how, and under which image name
Compose will look for it.

Read the way Compose reads them, for the fields devsync uses:
- the files: `COMPOSE_FILE` (environment, then `.env`) when set, else the first of
  `compose.yaml`, `compose.yml`, `docker-compose.yml`, `docker-compose.yaml` in the
  repository root, with the first `compose.override.yml`/`.yaml`/`docker-compose.override.yml`
  /`.yaml` after it; later files override earlier ones (scalars replaced, `args` merged by
  name, `cache_from` joined);
- a service's `build:` as a string (the context) or a mapping (`context`, `dockerfile`,
  `args` as a mapping or a `NAME=value` list, `target`, `cache_from`), paths relative to the
  repository root, the Dockerfile relative to the context;
- `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
  `${VAR:+alternative}`, `$VAR` and `$$` in those fields and in `name:` and `image:`, from the
  environment and then the `.env` file beside the Compose file (the environment wins);
- the image Compose runs for a service that builds: its `image:` when set, else
  `<project>-<service>` (Compose v2) and `<project>_<service>` (Compose v1), the project name
  from `COMPOSE_PROJECT_NAME`, else (v2 only) the top-level `name:`, else the directory's name,
  normalised as each version does.

YAML is parsed by PyYAML; scalars are taken as written (`8.10` stays `8.10`, `yes` stays
`yes`), as strings. A file that does not parse, or whose `build:` has the wrong shape, is a
ConfigError naming the file, the line and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devsync.errors import ConfigError
from devsync.model.files import read_regular
from devsync.model.versions import InvalidReferenceError, split_reference

if TYPE_CHECKING:
    import yaml

__all__ = [
    "COMPOSE_FILES",
    "OVERRIDE_FILES",
    "ComposeBuild",
    "ComposeProject",
    "find_compose_files",
    "interpolate",
    "load_compose",
]

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml",
                  "docker-compose.override.yml", "docker-compose.override.yaml")
ENV_FILE = ".env"

_NAME = r"[_a-zA-Z][_a-zA-Z0-9]*"
_BRACED = re.compile(rf"(?P<name>{_NAME})(?:(?P<op>:?[-+?])(?P<arg>.*))?", re.DOTALL)
_V2_PROJECT_CHARS = re.compile(r"[a-z0-9_-]")
_URL_CONTEXT = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)")


@dataclass(frozen=True)
class ComposeBuild:
    """One service that builds an image."""

    service: str
    context: Path  # absolute
    dockerfile: Path  # absolute
    args: dict[str, str]
    target: str | None
    cache_from: tuple[str, ...]
    image: str | None  # the service's `image:`, the name the build is tagged with
    where: str  # `docker-compose.yml:4`, where the service is defined

    def same_build(self, other: ComposeBuild) -> bool:
        return (self.context, self.dockerfile, self.args, self.target) == (
            other.context, other.dockerfile, other.args, other.target)


@dataclass
class ComposeProject:
    files: list[Path]
    name: str  # the project name Compose v2 uses
    legacy_name: str  # the project name Compose v1 uses (it knows no `name:`)
    builds: list[ComposeBuild] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def image_names(self, build: ComposeBuild) -> list[str]:
        """The names Compose looks for when it runs `build.service` (`up --no-build`)."""
        if build.image:
            names = [build.image]
        else:
            names = [f"{self.name}-{build.service}", f"{self.legacy_name}_{build.service}"]
        usable: list[str] = []
        for name in names:
            try:
                _repo, _tag, digest = split_reference(name)
            except InvalidReferenceError as exc:
                self.warnings.append(f"{build.where}: services.{build.service}: Compose's "
                                     f"image name is not usable: {exc.message}")
                continue
            if digest is None and name not in usable:
                usable.append(name)
        return usable


def find_compose_files(root: Path, env: Mapping[str, str]) -> list[Path]:
    """The Compose files of the project at `root`, in merge order (see the docstring)."""
    listed = env.get("COMPOSE_FILE")
    if listed:
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        return [root / part for part in listed.split(separator) if part]
    found = [root / name for name in COMPOSE_FILES if (root / name).is_file()]
    if not found:
        return []
    overrides = [root / name for name in OVERRIDE_FILES if (root / name).is_file()]
    return found[:1] + overrides[:1]


def load_compose(root: Path, files: list[str] | None = None,
                 environ: Mapping[str, str] | None = None) -> ComposeProject | None:
    """The Compose project at `root` (None when it has no Compose file). `files`: the files
    to read instead of Compose's own choice (relative to `root`); `environ`: the
    environment (default: this process's)."""
    dotenv, warnings = _read_env_file(root / ENV_FILE)
    env = {**dotenv, **(os.environ if environ is None else environ)}
    if files is not None:
        paths = [root / f for f in files]
    else:
        paths = []
        for path in find_compose_files(root, env):
            if path.is_file():
                paths.append(path)
            else:
                warnings.append(f"COMPOSE_FILE names {_rel(path, root)}, which is not a file; "
                                "ignored")
    if not paths:
        return None
    merged: dict[str, dict[str, Any]] = {}
    top_name: str | None = None
    for path in paths:
        doc = _ComposeFile(path, root, env, warnings)
        if doc.name is not None:
            top_name = doc.name
        for service, entry in doc.services().items():
            merged[service] = _merge_service(merged.get(service), entry)
    v2_name = _v2_project_name(env.get("COMPOSE_PROJECT_NAME") or top_name or root.name)
    legacy = _v1_project_name(env.get("COMPOSE_PROJECT_NAME") or root.name)
    project = ComposeProject(files=paths, name=v2_name, legacy_name=legacy, warnings=warnings)
    for service, entry in merged.items():
        build = _build_of(root, service, entry, env, warnings)
        if build is not None:
            project.builds.append(build)
    return project


# -- one file -------------------------------------------------------------------------------


class _ComposeFile:
    """One Compose file: its top-level `name:` and each service's `build:` and `image:`,
    interpolated, with where each came from."""

    def __init__(self, path: Path, root: Path, env: Mapping[str, str],
                 warnings: list[str]) -> None:
        self.display = _rel(path, root)
        self.env = env
        self.warnings = warnings
        self.top = self._parse(path)
        self.name: str | None = None
        name = self.top.get("name")
        if name is not None:
            self.name = self.text(name, "name")

    def _parse(self, path: Path) -> dict[str, yaml.Node]:
        import yaml

        try:
            text = read_regular(path).decode("utf-8-sig")
        except FileNotFoundError:
            raise ConfigError(f"{self.display}: no such Compose file",
                              hint="check COMPOSE_FILE, or compose_files in .devsync.toml"
                              ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{self.display}: not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"{self.display}: cannot be read: {exc.strerror or exc}"
                              ) from None
        self.loader = yaml.SafeLoader(text)
        try:
            node = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            column = f" (column {mark.column + 1})" if mark is not None else ""
            problem = ", ".join(p for p in (exc.context, exc.problem) if p)
            raise ConfigError(f"{self.display}{line}: {problem}{column}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.display}: {exc}") from None
        finally:
            self.loader.dispose()
        if node is None:
            return {}
        return self.mapping(node, "", top=True)

    # -- shapes --

    def where(self, node: yaml.Node) -> str:
        return f"{self.display}:{node.start_mark.line + 1}"

    def fail(self, node: yaml.Node, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where(node)}: {key}: {problem}" if key
                           else f"{self.where(node)}: {problem}")

    def mapping(self, node: yaml.Node, key: str, *, top: bool = False) -> dict[str, yaml.Node]:
        return {name: value for name, (_key, value) in self.entries(node, key, top=top).items()}

    def entries(self, node: yaml.Node, key: str, *,
                top: bool = False) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping's (key node, value node) by key."""
        import yaml

        if not isinstance(node, yaml.MappingNode):
            what = "the top level" if top else key
            raise ConfigError(f"{self.where(node)}: {what}: expected a mapping, got "
                              f"{_describe(node)}")
        self.loader.flatten_mapping(node)  # `<<: *defaults`
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, key, "expected a plain key")
            out[str(key_node.value)] = (key_node, value)
        return out

    def is_null(self, node: yaml.Node) -> bool:
        return node.tag == "tag:yaml.org,2002:null"

    def text(self, node: yaml.Node, key: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            raise self.fail(node, key, f"expected a string, got {_describe(node)}")
        try:
            return interpolate(str(node.value), self.env, self.warnings, where=self.where(node))
        except ValueError as exc:
            raise self.fail(node, key, str(exc)) from None

    def services(self) -> dict[str, dict[str, Any]]:
        """Per service: what devsync uses of it, as plain values with their locations."""
        services = self.top.get("services")
        if services is None or self.is_null(services):
            return {}
        out: dict[str, dict[str, Any]] = {}
        for name, (name_node, node) in self.entries(services, "services").items():
            key = f"services.{name}"
            if self.is_null(node):
                continue
            service = self.mapping(node, key)
            entry: dict[str, Any] = {"where": self.where(name_node)}
            if "image" in service and not self.is_null(service["image"]):
                entry["image"] = self.text(service["image"], f"{key}.image")
            if "build" in service and not self.is_null(service["build"]):
                entry["build"] = self.build(service["build"], f"{key}.build")
            out[name] = entry
        return out

    def build(self, node: yaml.Node, key: str) -> dict[str, Any]:
        import yaml

        if isinstance(node, yaml.ScalarNode):
            return {"context": self.text(node, key)}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a string or a mapping, got {_describe(node)}")
        out: dict[str, Any] = {}
        for field_name, value in self.mapping(node, key).items():
            where = f"{key}.{field_name}"
            if self.is_null(value):
                continue
            if field_name in ("context", "dockerfile", "target", "dockerfile_inline"):
                out[field_name] = self.text(value, where)
            elif field_name == "args":
                out["args"] = self.args(value, where)
            elif field_name == "cache_from":
                if not isinstance(value, yaml.SequenceNode):
                    raise self.fail(value, where, f"expected a list, got {_describe(value)}")
                out["cache_from"] = [self.text(item, where) for item in value.value]
        return out

    def args(self, node: yaml.Node, key: str) -> dict[str, str | None]:
        """Build args; None for one named without a value (Compose then takes it from the
        environment, or leaves it unset)."""
        import yaml

        args: dict[str, str | None] = {}
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                name, eq, text = self.text(item, key).partition("=")
                args[name] = text if eq else None
            return args
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a mapping or a list, got {_describe(node)}")
        for name, value_node in self.mapping(node, key).items():
            if self.is_null(value_node):
                args[name] = None
            else:
                args[name] = self.text(value_node, f"{key}.{name}")
        return args


def _describe(node: yaml.Node) -> str:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing"
    return f"{node.value!r}"


# -- merging files, and the result ----------------------------------------------------------


def _merge_service(base: dict[str, Any] | None, override: dict[str, Any]) -> dict[str, Any]:
    if base is None:
        return override
    merged = {**base, **{k: v for k, v in override.items() if k != "build"}}
    if "build" in override:
        build = {**base.get("build", {}), **override["build"]}
        if "args" in base.get("build", {}) and "args" in override["build"]:
            build["args"] = {**base["build"]["args"], **override["build"]["args"]}
        old_cache, new_cache = base.get("build", {}).get("cache_from", []), \
            override["build"].get("cache_from", [])
        if old_cache or new_cache:
            build["cache_from"] = list(dict.fromkeys([*old_cache, *new_cache]))
        merged["build"] = build
    return merged


def _build_of(root: Path, service: str, spec: dict[str, Any], env: Mapping[str, str],
              warnings: list[str]) -> ComposeBuild | None:
    build = spec.get("build")
    if build is None:
        return None
    where = spec["where"]
    key = f"services.{service}.build"
    context_text = build.get("context", ".")
    if _URL_CONTEXT.match(context_text):
        warnings.append(f"{where}: {key}: a remote context ({context_text}) is not synced")
        return None
    if "dockerfile_inline" in build:
        warnings.append(f"{where}: {key}: an inline Dockerfile is not synced")
        return None
    context = Path(os.path.normpath(root / context_text))
    if context != root and root not in context.parents:
        warnings.append(f"{where}: {key}.context: {context_text} is outside the repository; "
                        "not synced")
        return None
    dockerfile = Path(os.path.normpath(context / build.get("dockerfile", "Dockerfile")))
    if not dockerfile.is_file():
        warnings.append(f"{where}: {key}: no Dockerfile at {_rel(dockerfile, root)}; "
                        "not synced")
        return None
    args: dict[str, str] = {}
    for name, value in build.get("args", {}).items():
        if value is None:
            value = env.get(name)
        if value is not None:
            args[name] = value
    return ComposeBuild(service=service, context=context, dockerfile=dockerfile, args=args,
                        target=build.get("target"),
                        cache_from=tuple(build.get("cache_from", ())),
                        image=spec.get("image"), where=where)


def _v2_project_name(name: str) -> str:
    """compose-go's NormalizeProjectName: lowercase, keep [a-z0-9_-], no leading `_`/`-`."""
    return "".join(_V2_PROJECT_CHARS.findall(name.lower())).lstrip("_-")


def _v1_project_name(name: str) -> str:
    """docker-compose 1.x: lowercase, keep [-_a-z0-9]; its image names drop a leading `_`/`-`
    (an empty name is `default`)."""
    return (re.sub(r"[^-_a-z0-9]", "", name.lower()) or "default").lstrip("_-")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# -- .env and interpolation -----------------------------------------------------------------


def _read_env_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """The variables of a `.env` file (python-dotenv, as docker-compose 1.x reads it), and a
    warning per line it could not read."""
    if not path.is_file():
        return {}, []
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = read_regular(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{ENV_FILE}: cannot be read ({exc}); Compose variables from it are "
                    "not known"]
    warnings = [f"{ENV_FILE}:{binding.original.line}: not a NAME=value line; ignored"
                for binding in parse_stream(io.StringIO(text)) if binding.error]
    import logging

    dotenv_log = logging.getLogger("dotenv.main")
    previous = dotenv_log.disabled
    dotenv_log.disabled = True  # its own warnings about those lines: said above
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    finally:
        dotenv_log.disabled = previous
    return {k: v for k, v in values.items() if v is not None}, warnings


def interpolate(text: str, env: Mapping[str, str], warnings: list[str] | None = None, *,
                where: str = "") -> str:
    """`text` with Compose's variable syntax replaced from `env`. Raises ValueError for a
    malformed expression or a required variable that is missing (`${VAR:?message}`); an
    unset variable without a default is empty, with a warning, as Compose does."""
    out: list[str] = []
    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        nxt = text[dollar + 1:dollar + 2]
        if nxt == "$":
            out.append("$")
            i = dollar + 2
        elif nxt == "{":
            end = _closing_brace(text, dollar + 2)
            if end < 0:
                raise ValueError(f"invalid interpolation: {text[dollar:]!r} has no closing }}")
            out.append(_braced(text[dollar + 2:end], env, warnings, where))
            i = end + 1
        else:
            match = re.compile(_NAME).match(text, dollar + 1)
            if match is None:  # a `$` that starts no variable stays as it is
                out.append("$")
                i = dollar + 1
                continue
            out.append(_lookup(match[0], env, warnings, where))
            i = match.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for pos in range(start, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return pos
    return -1


def _braced(body: str, env: Mapping[str, str], warnings: list[str] | None, where: str) -> str:
    match = _BRACED.fullmatch(body)
    if match is None:
        raise ValueError(f"invalid interpolation: ${{{body}}}")
    name, op, arg = match["name"], match["op"], match["arg"] or ""
    value = env.get(name)
    if op is None:
        return _lookup(name, env, warnings, where)
    empty_counts = op.startswith(":")  # `:-`, `:?`, `:+` treat an empty value as unset
    present = value is not None and (value != "" or not empty_counts)
    kind = op[-1]
    if kind == "-":
        return value if present and value is not None else interpolate(arg, env, warnings,
                                                                        where=where)
    if kind == "+":
        return interpolate(arg, env, warnings, where=where) if present else ""
    if not present or value is None:  # `?`
        message = interpolate(arg, env, warnings, where=where) or "is not set"
        raise ValueError(f"required variable {name} is missing a value: {message}")
    return value


def _lookup(name: str, env: Mapping[str, str], warnings: list[str] | None, where: str) -> str:
    value = env.get(name)
    if value is None:
        if warnings is not None:
            warnings.append(f"{where}: the {name} variable is not set; an empty string is used "
                            "(as Compose does)")
        return ""
    return value
