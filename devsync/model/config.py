"""`.devsync.toml`: the per-repository settings and the images devsync keeps in sync.

Everything is optional; a repository without the file gets the defaults. Mistakes are
reported as `ConfigError`s that name the file, the line and the key
(`.devsync.toml:7: images.app.build_args: expected a table of strings, got an integer`);
unknown keys only produce warnings, so a newer file still loads in an older devsync.

    [devsync]
    registry_check_minutes = 30          # background registry refresh for `--check`
    insecure_registries = ["reg:5000"]   # host[:port] reached over plain HTTP
    base_drift_threshold = 0.5           # `base advice`: a new base pays off when the app's
                                         # dependency layers reach this fraction of the base
    layer_warning = 100                  # warn when an image's layer count reaches this
    docker_cli = "/usr/bin/docker"       # the docker CLI for BuildKit builds that need one
    builder = "auto"                     # "classic", "buildkit", or "auto": the deployed
                                         # image's own builder
    compose_files = ["docker-compose.yml"]  # the Compose files to read ([]: none); default:
                                         # the ones Compose itself reads (see model.compose)

    [images.NAME]                        # NAME: [a-z0-9][a-z0-9._-]*
    dockerfile = "Dockerfile"            # relative to the repository root
    context = "."                        # relative to the repository root
    tag = "registry.example.com/app:dev" # the local tag devsync builds
    deployed = "registry.example.com/app"  # highest semver tag wins; "repo:tag" pins one
    role = "app"                         # "app" or "base"
    target = "prod"                      # build stage
    build_args = { PHP_VERSION = "8.3" }
    builder = "buildkit"                 # this image's builder (default: [devsync] builder)
    compose_services = ["web"]           # the Compose services this image serves ([]: none);
                                         # default: those that build its Dockerfile
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from devsync.errors import ConfigError
from devsync.model.files import read_regular
from devsync.model.states import ROLES
from devsync.model.versions import InvalidReferenceError, split_reference

__all__ = ["CONFIG_NAME", "DevsyncConfig", "ImageConfig", "load_config"]

CONFIG_NAME = ".devsync.toml"

DEFAULT_REGISTRY_CHECK_MINUTES = 30
DEFAULT_BASE_DRIFT_THRESHOLD = 0.5
DEFAULT_LAYER_WARNING = 100
# overlay2 refuses images more than 128 layers deep; 127 is the practical ceiling
OVERLAY2_MAX_LAYERS = 127

_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_HOST_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST_PORT = re.compile(rf"(?P<host>{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9A-Fa-f:.]+\])"
                        r"(?::(?P<port>[0-9]{1,5}))?")
_ROLES = ROLES
_SETTINGS = ("registry_check_minutes", "insecure_registries", "base_drift_threshold",
             "layer_warning", "docker_cli", "compose_files", "builder")
BUILDERS = ("auto", "classic", "buildkit")
_IMAGE_KEYS = ("dockerfile", "context", "tag", "deployed", "role", "target", "build_args",
               "compose_services", "builder")


@dataclass
class ImageConfig:
    """One `[images.NAME]` table; a field left out of the file is None (the caller's default)."""

    name: str
    dockerfile: str | None = None
    context: str | None = None
    tag: str | None = None
    deployed: str | None = None
    role: str | None = None
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    compose_services: list[str] | None = None
    builder: str | None = None  # None: [devsync] builder


@dataclass
class DevsyncConfig:
    registry_check_minutes: int = DEFAULT_REGISTRY_CHECK_MINUTES
    insecure_registries: list[str] = field(default_factory=list)
    base_drift_threshold: float = DEFAULT_BASE_DRIFT_THRESHOLD
    layer_warning: int = DEFAULT_LAYER_WARNING
    # the docker CLI BuildKit builds go through (a name on PATH or a path; "none": never);
    # None: the first on PATH that can (DEVSYNC_DOCKER_CLI wins over both)
    docker_cli: str | None = None
    compose_files: list[str] | None = None  # None: the files Compose itself would read
    # which builder devsync builds (and predicts) with: "auto" follows the deployed image
    builder: str = "auto"
    images: dict[str, ImageConfig] = field(default_factory=dict)
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    # dotted key -> line in the file, for messages about keys
    _lines: dict[tuple[str, ...], int] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def where(self, key: str) -> str:
        """`FILE:LINE` of a dotted key (`images.app.dockerfile`), for errors the caller finds
        (a Dockerfile that does not exist); just `FILE` when the key is not in the file."""
        return _where(self._lines, tuple(key.split(".")))

    def error(self, key: str, problem: str, *, hint: str | None = None) -> ConfigError:
        """A ConfigError about `key` in the house format, for checks done outside this module."""
        return ConfigError(f"{self.where(key)}: {key}: {problem}", hint=hint)


def load_config(repo_root: Path) -> DevsyncConfig:
    """Read `.devsync.toml` at `repo_root`; defaults when there is none."""
    path = repo_root / CONFIG_NAME
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return DevsyncConfig()
    except IsADirectoryError:
        raise ConfigError(f"{CONFIG_NAME}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{CONFIG_NAME}: cannot be read: {exc.strerror or exc}") from None
    try:
        # an editor's byte-order mark is harmless; tomllib itself would reject it
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{CONFIG_NAME}:{line}: not UTF-8 text (TOML files must be)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_message(str(exc), text)) from None

    config = DevsyncConfig(path=path)
    config._lines = _key_lines(text)
    _Loader(config).load(data)
    return config


# -- validation -------------------------------------------------------------------------------


class _Loader:
    def __init__(self, config: DevsyncConfig) -> None:
        self.config = config
        self.lines = config._lines

    def fail(self, path: tuple[str, ...], problem: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{_where(self.lines, path)}: {'.'.join(path)}: {problem}", hint=hint)

    def warn(self, path: tuple[str, ...], problem: str) -> None:
        self.config.warnings.append(f"{_where(self.lines, path)}: {'.'.join(path)}: {problem}")

    def unknown(self, path: tuple[str, ...], known: tuple[str, ...]) -> None:
        close = difflib.get_close_matches(path[-1], known, n=1)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
        self.warn(path, f"unknown key, ignored{suggestion}")

    def table(self, value: object, path: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {_describe(value)}")
        return value

    def load(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key == "devsync":
                self.settings(self.table(value, (key,)))
            elif key == "images":
                for name, image in self.table(value, (key,)).items():
                    self.image(name, self.table(image, (key, name)))
            else:
                self.unknown((key,), ("devsync", "images"))

    def settings(self, table: dict[str, Any]) -> None:
        config = self.config
        for key, value in table.items():
            path = ("devsync", key)
            if key == "registry_check_minutes":
                config.registry_check_minutes = self.integer(value, path, minimum=1)
            elif key == "insecure_registries":
                config.insecure_registries = self.registries(value, path)
            elif key == "base_drift_threshold":
                config.base_drift_threshold = self.positive_number(value, path)
            elif key == "layer_warning":
                config.layer_warning = self.integer(value, path, minimum=1)
                if config.layer_warning > OVERLAY2_MAX_LAYERS:
                    self.warn(path, f"{config.layer_warning} is above overlay2's limit of "
                                    f"{OVERLAY2_MAX_LAYERS} layers: builds fail before it warns")
            elif key == "docker_cli":
                config.docker_cli = self.string(value, path)
            elif key == "builder":
                config.builder = self.builder(value, path)
            elif key == "compose_files":
                config.compose_files = [self.relative_path(item, path)
                                        for item in self.string_list(value, path)]
            else:
                self.unknown(path, _SETTINGS)

    def image(self, name: str, table: dict[str, Any]) -> None:
        base = ("images", name)
        if not _IMAGE_NAME.fullmatch(name):
            raise self.fail(base, "image names must match [a-z0-9][a-z0-9._-]*",
                            hint="use lowercase letters, digits, '.', '_' and '-'")
        image = ImageConfig(name=name)
        for key, value in table.items():
            path = (*base, key)
            if key in ("dockerfile", "context"):
                setattr(image, key, self.relative_path(value, path))
            elif key == "tag":
                image.tag = self.reference(value, path, allow_digest=False)
            elif key == "deployed":
                image.deployed = self.reference(value, path, allow_digest=True)
            elif key == "role":
                role = self.string(value, path)
                if role not in _ROLES:
                    raise self.fail(path, f'expected "app" or "base", got {role!r}')
                image.role = role
            elif key == "target":
                image.target = self.string(value, path)
            elif key == "build_args":
                image.build_args = self.build_args(value, path)
            elif key == "compose_services":
                image.compose_services = self.string_list(value, path)
            elif key == "builder":
                image.builder = self.builder(value, path)
            else:
                self.unknown(path, _IMAGE_KEYS)
        self.config.images[name] = image

    # -- value checks --

    def string(self, value: object, path: tuple[str, ...]) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_describe(value)}")
        if not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def builder(self, value: object, path: tuple[str, ...]) -> str:
        builder = self.string(value, path)
        if builder not in BUILDERS:
            raise self.fail(path, f'expected "auto", "classic" or "buildkit", got {builder!r}',
                            hint='"auto" (the default) builds with the builder the deployed '
                                 "image was built with")
        return builder

    def integer(self, value: object, path: tuple[str, ...], minimum: int) -> int:
        # TOML booleans arrive as Python bools, which are ints
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, f"expected an integer, got {_describe(value)}")
        if value < minimum:
            raise self.fail(path, f"expected an integer of at least {minimum}, got {value}")
        return value

    def positive_number(self, value: object, path: tuple[str, ...]) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(path, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value) or value <= 0:
            raise self.fail(path, f"expected a number greater than 0, got {value}")
        return float(value)

    def string_list(self, value: object, path: tuple[str, ...]) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array of strings, got {_describe(value)}")
        for item in value:
            if not isinstance(item, str) or not item.strip():
                got = "an empty string" if isinstance(item, str) else _describe(item)
                raise self.fail(path, f"expected an array of strings, got {got} in it")
        return list(value)

    def registries(self, value: object, path: tuple[str, ...]) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected an array of strings, got {_describe(value)}")
        hosts = []
        for item in value:
            if not isinstance(item, str):
                raise self.fail(path, f"expected an array of strings, got {_describe(item)} "
                                      "in it")
            match = _HOST_PORT.fullmatch(item)
            port = match["port"] if match else None
            if match is None or (port is not None and not 0 < int(port) < 65536):
                hint = None
                if "://" in item:
                    hint = f"write the host without a scheme, e.g. {item.split('://', 1)[1]!r}"
                raise self.fail(path, f"expected host[:port], got {item!r}", hint=hint)
            hosts.append(item)
        return hosts

    def relative_path(self, value: object, path: tuple[str, ...]) -> str:
        text = self.string(value, path)
        posix, windows = PurePosixPath(text), PureWindowsPath(text)
        if posix.is_absolute() or windows.is_absolute() or windows.drive:
            raise self.fail(path, f"expected a path relative to the repository root, "
                                  f"got {text!r}")
        depth = 0
        for part in posix.parts:
            depth += -1 if part == ".." else 0 if part == "." else 1
            if depth < 0:
                raise self.fail(path, f"{text!r} points outside the repository")
        return text

    def reference(self, value: object, path: tuple[str, ...], *, allow_digest: bool) -> str:
        text = self.string(value, path)
        try:
            _, _, digest = split_reference(text)
        except InvalidReferenceError as exc:
            raise self.fail(path, exc.message) from None
        if digest is not None and not allow_digest:
            raise self.fail(path, f"{text!r}: a build cannot be tagged with a digest")
        return text

    def build_args(self, value: object, path: tuple[str, ...]) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table of strings, got {_describe(value)}")
        args: dict[str, str] = {}
        for name, arg in value.items():
            if not isinstance(arg, str):
                hint = None
                if isinstance(arg, int | float) and not isinstance(arg, bool):
                    hint = f'quote the value: {name} = "{arg}"'
                raise self.fail((*path, name), f"expected a string, got {_describe(arg)}",
                                hint=hint)
            args[name] = arg
        return args


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return type(value).__name__


# -- locating keys and errors in the text -----------------------------------------------------

_TOML_LOCATION = re.compile(r" \(at line (\d+), column (\d+)\)$")
_TOML_AT_END = " (at end of document)"


def _syntax_message(message: str, text: str) -> str:
    match = _TOML_LOCATION.search(message)
    if match:
        reason = message[: match.start()]
        return f"{CONFIG_NAME}:{match[1]}: {reason} (column {match[2]})"
    if message.endswith(_TOML_AT_END):
        last = max(len(text.splitlines()), 1)
        return f"{CONFIG_NAME}:{last}: {message[: -len(_TOML_AT_END)]} (at the end of the file)"
    return f"{CONFIG_NAME}: {message}"


def _where(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> str:
    # a key not found (say, inside a multi-line inline table) takes its nearest parent's line
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return f"{CONFIG_NAME}:{line}"
    return CONFIG_NAME


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_LITERAL_STRING = re.compile(r"'([^'\n]*)'")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table header and key is, by dotted path (first occurrence wins).

    Only used once tomllib has accepted the file, so this can be a forgiving scanner: it skips
    multi-line strings and arrays, and reads keys of inline tables on their first line.
    """
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    depth = 0  # open [ and { of values spanning lines
    string_end: str | None = None  # the closing delimiter of a multi-line string we are in
    for number, line in enumerate(text.splitlines(), start=1):
        pos = 0
        if string_end is not None:
            close = line.find(string_end)
            if close < 0:
                continue
            string_end, pos = None, close + 3
        elif depth == 0:
            stripped = line.lstrip()
            pos = len(line) - len(stripped)
            if stripped.startswith("["):
                array = stripped.startswith("[[")
                key, after = _parse_key(line, pos + (2 if array else 1))
                if key:
                    table = key
                    # `[images.app]` also brings `images` into being, if nothing did before
                    for end in range(1, len(table) + 1):
                        lines.setdefault(table[:end], number)
                continue
            key, after = _parse_key(line, pos)
            if key and after < len(line) and line[after] == "=":
                full = (*table, *key)
                # `build_args.A = "1"` also defines `build_args` here
                for end in range(len(table) + 1, len(full) + 1):
                    lines.setdefault(full[:end], number)
                pos = after + 1
                _inline_keys(line, pos, full, number, lines)
        depth, string_end = _scan_value(line, pos, depth)
    return lines


def _parse_key(line: str, pos: int) -> tuple[tuple[str, ...], int]:
    """A possibly dotted, possibly quoted key at `pos`; the position after it (and spaces)."""
    parts: list[str] = []
    while True:
        pos = _skip_spaces(line, pos)
        for pattern in (_BARE_KEY, _BASIC_STRING, _LITERAL_STRING):
            match = pattern.match(line, pos)
            if match:
                part = match[1] if pattern is not _BARE_KEY else match[0]
                if pattern is _BASIC_STRING:
                    part = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), part)
                parts.append(part)
                pos = _skip_spaces(line, match.end())
                break
        else:
            return (), pos
        if pos < len(line) and line[pos] == ".":
            pos += 1
            continue
        return tuple(parts), pos


def _inline_keys(line: str, pos: int, owner: tuple[str, ...], number: int,
                 lines: dict[tuple[str, ...], int]) -> None:
    # `build_args = { A = "1", B.C = "2" }`: one level of inline table is enough for the schema
    pos = _skip_spaces(line, pos)
    if pos >= len(line) or line[pos] != "{":
        return
    pos += 1
    while pos < len(line):
        key, after = _parse_key(line, pos)
        if not key or after >= len(line) or line[after] != "=":
            return
        lines.setdefault((*owner, *key), number)
        # skip the value: to the next comma outside strings and brackets
        depth = 0
        pos = after + 1
        while pos < len(line):
            ch = line[pos]
            if ch in "\"'":
                match = (_BASIC_STRING if ch == '"' else _LITERAL_STRING).match(line, pos)
                pos = match.end() if match else len(line)
                continue
            if ch in "[{":
                depth += 1
            elif ch in "]}":
                if depth == 0:
                    return
                depth -= 1
            elif ch == "," and depth == 0:
                pos += 1
                break
            pos += 1


def _scan_value(line: str, pos: int, depth: int) -> tuple[int, str | None]:
    """Bracket depth after the rest of `line`, and the delimiter of a string left open."""
    while pos < len(line):
        ch = line[pos]
        if ch == "#":
            break
        if ch in "\"'":
            triple = ch * 3
            if line.startswith(triple, pos):
                close = line.find(triple, pos + 3)
                if close < 0:
                    return depth, triple
                pos = close + 3
                continue
            match = (_BASIC_STRING if ch == '"' else _LITERAL_STRING).match(line, pos)
            pos = match.end() if match else len(line)
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(depth - 1, 0)
        pos += 1
    return depth, None


def _skip_spaces(line: str, pos: int) -> int:
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    return pos
