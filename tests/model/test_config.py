"""Tests for devsync.model.config: real `.devsync.toml` files in tmp_path, loaded with
load_config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devsync.errors import ConfigError
from devsync.model.config import CONFIG_NAME, DevsyncConfig, ImageConfig, load_config


def _write(root: Path, text: str) -> Path:
    path = root / CONFIG_NAME
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _error(root: Path, text: str) -> ConfigError:
    _write(root, text)
    with pytest.raises(ConfigError) as info:
        load_config(root)
    error = info.value
    assert "\n" not in error.message
    assert error.exit_code == 3
    return error


def test_absent_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == DevsyncConfig()
    assert config.registry_check_minutes == 30
    assert config.insecure_registries == []
    assert config.base_drift_threshold == 0.5
    assert config.layer_warning == 100
    assert config.images == {}
    assert config.path is None
    assert config.warnings == []


def test_empty_file_gives_defaults_with_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "# nothing yet\n")
    config = load_config(tmp_path)
    assert config.path == path
    assert config.images == {}
    assert config.warnings == []


def test_full_file(tmp_path: Path) -> None:
    _write(tmp_path, """
        [devsync]
        registry_check_minutes = 5
        insecure_registries = ["reg:5000", "localhost", "10.0.0.7:5000", "[::1]:5000"]
        base_drift_threshold = 1
        layer_warning = 120

        [images.app]
        dockerfile = "docker/app/Dockerfile"
        context = "."
        tag = "registry.example.com/app:dev"
        deployed = "registry.example.com/app"
        role = "app"
        target = "prod"
        build_args = { PHP_VERSION = "8.3", EMPTY = "" }

        [images.php-base]
        dockerfile = "docker/base/Dockerfile"
        context = "docker/base"
        role = "base"
        deployed = "registry.example.com/php:base-1.2.0"

        [images."cli.tools_2"]
        deployed = "localhost:5000/tools@sha256:0123456789abcdef0123456789abcdef"
    """)
    config = load_config(tmp_path)
    assert config.registry_check_minutes == 5
    assert config.insecure_registries == ["reg:5000", "localhost", "10.0.0.7:5000", "[::1]:5000"]
    assert config.base_drift_threshold == 1.0
    assert isinstance(config.base_drift_threshold, float)
    assert config.layer_warning == 120
    assert list(config.images) == ["app", "php-base", "cli.tools_2"]  # file order
    assert config.images["app"] == ImageConfig(
        name="app", dockerfile="docker/app/Dockerfile", context=".",
        tag="registry.example.com/app:dev", deployed="registry.example.com/app", role="app",
        target="prod", build_args={"PHP_VERSION": "8.3", "EMPTY": ""},
    )
    base = config.images["php-base"]
    assert (base.role, base.context, base.tag, base.target) == ("base", "docker/base", None, None)
    assert base.build_args == {}
    assert config.images["cli.tools_2"].deployed.endswith("0123456789abcdef")  # type: ignore[union-attr]
    assert config.warnings == []


def test_brief_example_message(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [devsync]
        registry_check_minutes = 30

        [images.app]
        dockerfile = "Dockerfile"
        # build arguments
        build_args = 8
    """)
    assert error.message == (
        ".devsync.toml:7: images.app.build_args: expected a table of strings, got an integer"
    )


@pytest.mark.parametrize(("text", "message"), [
    ("[devsync]\nregistry_check_minutes = 0\n",
     ".devsync.toml:2: devsync.registry_check_minutes: expected an integer of at least 1, got 0"),
    ('[devsync]\nregistry_check_minutes = "30"\n',
     ".devsync.toml:2: devsync.registry_check_minutes: expected an integer, got a string"),
    ("[devsync]\nregistry_check_minutes = true\n",
     ".devsync.toml:2: devsync.registry_check_minutes: expected an integer, got a boolean"),
    ("[devsync]\n\nregistry_check_minutes = 1.5\n",
     ".devsync.toml:3: devsync.registry_check_minutes: expected an integer, got a float"),
    ("[devsync]\nlayer_warning = 0\n",
     ".devsync.toml:2: devsync.layer_warning: expected an integer of at least 1, got 0"),
    ("[devsync]\nbase_drift_threshold = 0\n",
     ".devsync.toml:2: devsync.base_drift_threshold: expected a number greater than 0, got 0"),
    ("[devsync]\nbase_drift_threshold = -0.5\n",
     ".devsync.toml:2: devsync.base_drift_threshold: expected a number greater than 0, got -0.5"),
    ("[devsync]\nbase_drift_threshold = nan\n",
     ".devsync.toml:2: devsync.base_drift_threshold: expected a number greater than 0, got nan"),
    ("[devsync]\nbase_drift_threshold = inf\n",
     ".devsync.toml:2: devsync.base_drift_threshold: expected a number greater than 0, got inf"),
    ("[devsync]\nbase_drift_threshold = false\n",
     ".devsync.toml:2: devsync.base_drift_threshold: expected a number, got a boolean"),
    ('[devsync]\ninsecure_registries = "reg:5000"\n',
     ".devsync.toml:2: devsync.insecure_registries: expected an array of strings, got a string"),
    ("[devsync]\ninsecure_registries = [5000]\n",
     ".devsync.toml:2: devsync.insecure_registries: expected an array of strings, got an "
     "integer in it"),
    ('[devsync]\ninsecure_registries = ["reg:99999"]\n',
     ".devsync.toml:2: devsync.insecure_registries: expected host[:port], got 'reg:99999'"),
    ('[devsync]\ninsecure_registries = ["reg:5000/v2"]\n',
     ".devsync.toml:2: devsync.insecure_registries: expected host[:port], got 'reg:5000/v2'"),
    ('[devsync]\ninsecure_registries = [""]\n',
     ".devsync.toml:2: devsync.insecure_registries: expected host[:port], got ''"),
    ("devsync = 1\n", ".devsync.toml:1: devsync: expected a table, got an integer"),
    ('images = ["app"]\n', ".devsync.toml:1: images: expected a table, got an array"),
    ('[images]\napp = "Dockerfile"\n',
     ".devsync.toml:2: images.app: expected a table, got a string"),
    ('[images.App]\nrole = "app"\n',
     ".devsync.toml:1: images.App: image names must match [a-z0-9][a-z0-9._-]*"),
    ('[images."my app"]\nrole = "app"\n',
     ".devsync.toml:1: images.my app: image names must match [a-z0-9][a-z0-9._-]*"),
    ('[images._app]\nrole = "app"\n',
     ".devsync.toml:1: images._app: image names must match [a-z0-9][a-z0-9._-]*"),
    ('[images.app]\nrole = "web"\n',
     """.devsync.toml:2: images.app.role: expected "app" or "base", got 'web'"""),
    ("[images.app]\nrole = 1\n",
     ".devsync.toml:2: images.app.role: expected a string, got an integer"),
    ('[images.app]\ntarget = ""\n',
     ".devsync.toml:2: images.app.target: expected a non-empty string"),
    ('[images.app]\ndockerfile = "/srv/app/Dockerfile"\n',
     ".devsync.toml:2: images.app.dockerfile: expected a path relative to the repository root, "
     "got '/srv/app/Dockerfile'"),
    ("[images.app]\ncontext = 'C:\\src'\n",
     ".devsync.toml:2: images.app.context: expected a path relative to the repository root, "
     "got 'C:\\\\src'"),
    ('[images.app]\ncontext = "../other"\n',
     ".devsync.toml:2: images.app.context: '../other' points outside the repository"),
    ('[images.app]\ncontext = "a/../../other"\n',
     ".devsync.toml:2: images.app.context: 'a/../../other' points outside the repository"),
    ('[images.app]\ntag = "Registry.example.com/App:dev"\n',
     ".devsync.toml:2: images.app.tag: 'Registry.example.com/App:dev': repository name must "
     "be lowercase"),
    ('[images.app]\ntag = "app:dev@sha256:0123456789abcdef0123456789abcdef"\n',
     ".devsync.toml:2: images.app.tag: 'app:dev@sha256:0123456789abcdef0123456789abcdef': "
     "a build cannot be tagged with a digest"),
    ('[images.app]\ndeployed = "registry.example.com/app:"\n',
     ".devsync.toml:2: images.app.deployed: 'registry.example.com/app:': invalid reference "
     "format"),
])
def test_semantic_errors_name_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    assert _error(tmp_path, text).message == message


def test_build_arg_value_must_be_a_string(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [images.app]
        build_args = { PHP_VERSION = 8.3, OK = "1" }
    """)
    assert error.message == (
        ".devsync.toml:2: images.app.build_args.PHP_VERSION: expected a string, got a float"
    )
    assert error.hint == 'quote the value: PHP_VERSION = "8.3"'


def test_build_args_as_a_table_of_their_own(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [images.app]
        role = "app"

        [images.app.build_args]
        A = "1"
        B = true
    """)
    assert error.message == (
        ".devsync.toml:6: images.app.build_args.B: expected a string, got a boolean"
    )
    assert error.hint is None


def test_insecure_registry_with_a_scheme_gets_a_hint(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [devsync]
        insecure_registries = [
            "reg:5000",
            "http://reg2:5000",
        ]
    """)
    # the array starts on line 2; the key is what the message names
    assert error.message == (
        ".devsync.toml:2: devsync.insecure_registries: expected host[:port], "
        "got 'http://reg2:5000'"
    )
    assert error.hint == "write the host without a scheme, e.g. 'reg2:5000'"


def test_lines_are_found_past_look_alikes_in_strings_and_arrays(tmp_path: Path) -> None:
    # keys and headers inside multi-line strings and arrays must not fool the line finder
    error = _error(tmp_path, '''
        [devsync]
        notes = """
        [images.app]
        build_args = 1
        """
        other = [
          "build_args = 2", # [images.app]
          { build_args = 3 },
        ]
        raw = \'\'\'
        [images.app]\'\'\'

        [images.app] # the real one
        "build_args" = 4
    ''')
    assert error.message == (
        ".devsync.toml:14: images.app.build_args: expected a table of strings, got an integer"
    )


def test_dotted_and_quoted_keys_are_located(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [images]
        app.role = "app"
        app.build_args.X = "1"
        "base" . build_args . "Y.Z" = 2
    """)
    assert error.message == (
        ".devsync.toml:4: images.base.build_args.Y.Z: expected a string, got an integer"
    )


def test_inline_image_tables_are_located(tmp_path: Path) -> None:
    error = _error(tmp_path, """
        [images]
        base = { role = "base" }
        app = { role = "app", target = "x", tag = "NOPE" }
    """)
    assert error.message == (
        ".devsync.toml:3: images.app.tag: 'NOPE': repository name must be lowercase"
    )


def test_unknown_keys_warn_with_line_and_suggestion(tmp_path: Path) -> None:
    _write(tmp_path, """
        [devsync]
        registry_check_minute = 10
        colour = "auto"

        [images.app]
        dockerfle = "Dockerfile"
        role = "app"

        [imgaes.web]
        role = "app"
    """)
    config = load_config(tmp_path)
    assert config.warnings == [
        ".devsync.toml:2: devsync.registry_check_minute: unknown key, ignored "
        "(did you mean 'registry_check_minutes'?)",
        ".devsync.toml:3: devsync.colour: unknown key, ignored",
        ".devsync.toml:6: images.app.dockerfle: unknown key, ignored (did you mean 'dockerfile'?)",
        ".devsync.toml:9: imgaes: unknown key, ignored (did you mean 'images'?)",
    ]
    # and the known values still load
    assert config.registry_check_minutes == 30
    assert config.images["app"].role == "app"
    assert config.images["app"].dockerfile is None


def test_layer_warning_above_overlay2_limit_warns(tmp_path: Path) -> None:
    _write(tmp_path, "[devsync]\nlayer_warning = 200\n")
    config = load_config(tmp_path)
    assert config.layer_warning == 200
    assert config.warnings == [
        ".devsync.toml:2: devsync.layer_warning: 200 is above overlay2's limit of 127 layers: "
        "builds fail before it warns"
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("[devsync]\nregistry_check_minutes = \n",
     ".devsync.toml:2: Invalid value (column 26)"),
    ("[devsync]\nlayer_warning = 1 2\n",
     ".devsync.toml:2: Expected newline or end of document after a statement (column 19)"),
    ("[images.app]\nrole = 'app'\n[images.app]\n",
     ".devsync.toml:3: Cannot declare ('images', 'app') twice (column 12)"),
    ('[images.app]\nbuild_args = { A = "1",\n}\n',
     ".devsync.toml:2: Invalid initial character for a key part (column 24)"),
    ('[devsync]\ninsecure_registries = ["a",\n"b"\n',
     ".devsync.toml:3: Unclosed array (at the end of the file)"),
    ('[images.app]\nrole = "app',
     ".devsync.toml:2: Unterminated string (at the end of the file)"),
])
def test_toml_syntax_errors_become_file_line(tmp_path: Path, text: str, message: str) -> None:
    assert _error(tmp_path, text).message == message


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_bytes(b'[devsync]\n# caf\xe9\nlayer_warning = 3\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.message == ".devsync.toml:2: not UTF-8 text (TOML files must be)"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_bytes(b"\xef\xbb\xbf[devsync]\nlayer_warning = 3\n")
    assert load_config(tmp_path).layer_warning == 3


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).mkdir()
    with pytest.raises(ConfigError, match=r"^\.devsync\.toml: is a directory"):
        load_config(tmp_path)


def test_where_and_error_for_checks_done_by_the_caller(tmp_path: Path) -> None:
    _write(tmp_path, """
        [images.app]
        role = "app"
        dockerfile = "docker/Dockerfile"
    """)
    config = load_config(tmp_path)
    assert config.where("images.app.dockerfile") == ".devsync.toml:3"
    assert config.where("images.app.context") == ".devsync.toml:1"  # falls back to the table
    assert config.where("devsync.layer_warning") == ".devsync.toml"
    error = config.error("images.app.dockerfile", "docker/Dockerfile does not exist",
                         hint="create it or fix the path")
    assert isinstance(error, ConfigError)
    assert error.message == (
        ".devsync.toml:3: images.app.dockerfile: docker/Dockerfile does not exist"
    )
    assert error.hint == "create it or fix the path"


def test_allowed_relative_paths(tmp_path: Path) -> None:
    _write(tmp_path, """
        [images.app]
        dockerfile = "./docker/../Dockerfile"
        context = "sub/dir/."
    """)
    image = load_config(tmp_path).images["app"]
    assert (image.dockerfile, image.context) == ("./docker/../Dockerfile", "sub/dir/.")


def test_builder_defaults_to_auto_and_is_read_per_project_and_per_image(tmp_path: Path) -> None:
    assert load_config(tmp_path).builder == "auto"
    _write(tmp_path, """
        [devsync]
        builder = "buildkit"
        [images.app]
        builder = "classic"
        [images.worker]
        dockerfile = "Dockerfile"
    """)
    config = load_config(tmp_path)
    assert config.builder == "buildkit"
    assert config.images["app"].builder == "classic"
    assert config.images["worker"].builder is None  # (the project's)
    assert config.warnings == []


@pytest.mark.parametrize("where", ["[devsync]", "[images.app]"])
def test_another_builder_is_a_config_error_naming_the_choices(tmp_path: Path, where: str) -> None:
    error = _error(tmp_path, f"""
        {where}
        builder = "buildx"
    """)
    key = "devsync.builder" if where == "[devsync]" else "images.app.builder"
    assert error.message == (f'.devsync.toml:2: {key}: expected "auto", "classic" or '
                             "\"buildkit\", got 'buildx'")
    assert error.hint and "auto" in error.hint
