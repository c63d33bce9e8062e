"""Docker Compose files in the model: which services build, how, the names Compose runs them
by, and how they become devsync images. Checked against Debian's real docker-compose 1.29.2
where it can say (`docker-compose config` needs no engine)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from devsync.errors import ConfigError
from devsync.model.compose import ComposeProject, interpolate, load_compose
from devsync.model.project import load_project
from tests.support.teamrepo import git

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _load(root: Path, environ: dict[str, str] | None = None) -> ComposeProject:
    project = load_compose(root, environ={} if environ is None else environ)
    assert project is not None
    return project


def _builds(project: ComposeProject) -> dict[str, dict[str, object]]:
    root = project.files[0].parent
    return {b.service: {"context": b.context.relative_to(root).as_posix() or ".",
                        "dockerfile": b.dockerfile.relative_to(root).as_posix(),
                        "args": b.args, "target": b.target, "cache_from": list(b.cache_from),
                        "image": b.image} for b in project.builds}


# -- what builds, and how ----------------------------------------------------------------------


def test_yii2_web_build_string_form(tmp_path: Path) -> None:
    root = _tree(tmp_path / "yii2-dockerized", {
        "Dockerfile": "FROM scratch\n",
        "docker-compose.yml": "version: '3'\nservices:\n\n    web:\n        build: ./\n"
                              "        ports:\n            - \"8080:80\"\n"
                              "    db:\n        image: mysql:5\n",
    })
    project = _load(root)
    assert _builds(project) == {"web": {"context": ".", "dockerfile": "Dockerfile", "args": {},
                                        "target": None, "cache_from": [], "image": None}}
    assert project.name == "yii2-dockerized" and project.legacy_name == "yii2-dockerized"
    assert project.image_names(project.builds[0]) == ["yii2-dockerized-web",
                                                      "yii2-dockerized_web"]
    assert project.builds[0].where == "docker-compose.yml:4"


def test_mapping_form_with_every_field_and_anchors(tmp_path: Path) -> None:
    root = _tree(tmp_path / "shop", {
        "docker/php.Dockerfile": "FROM scratch\n",
        "app/Dockerfile": "FROM scratch\n",
        "compose.yaml": """\
x-build: &build
  context: ./app
  args:
    PHP_VERSION: 8.10
    DEBUG: yes
    EMPTY:
    FROM_ENV:
services:
  web:
    build:
      <<: *build
      target: prod
      cache_from: [reg.io/shop:1.0, "reg.io/shop:dev"]
  worker:
    image: reg.io/shop-worker:${TAG:-dev}
    build:
      context: .
      dockerfile: docker/php.Dockerfile
      args:
        - A=1=2
        - FROM_ENV
        - NOT_SET
""",
    })
    project = _load(root, {"FROM_ENV": "from-env"})
    assert _builds(project) == {
        "web": {"context": "app", "dockerfile": "app/Dockerfile",
                "args": {"PHP_VERSION": "8.10", "DEBUG": "yes", "FROM_ENV": "from-env"},
                "target": "prod", "cache_from": ["reg.io/shop:1.0", "reg.io/shop:dev"],
                "image": None},
        "worker": {"context": ".", "dockerfile": "docker/php.Dockerfile",
                   "args": {"A": "1=2", "FROM_ENV": "from-env"}, "target": None,
                   "cache_from": [], "image": "reg.io/shop-worker:dev"},
    }
    worker = project.builds[1]
    assert project.image_names(worker) == ["reg.io/shop-worker:dev"]


def test_override_file_merges_as_compose_does(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app", {
        "Dockerfile": "FROM scratch\n", "Dockerfile.dev": "FROM scratch\n",
        "compose.yaml": "services:\n  web:\n    build:\n      context: .\n"
                        "      args: {A: '1', B: '1'}\n      cache_from: [x:1]\n",
        "docker-compose.yml": "services:\n  ignored:\n    build: .\n",
        "compose.override.yml": "services:\n  web:\n    build:\n      dockerfile: Dockerfile.dev\n"
                                "      args: {B: '2'}\n      cache_from: [y:1, x:1]\n"
                                "  other:\n    image: nginx\n",
    })
    project = _load(root)
    assert [p.name for p in project.files] == ["compose.yaml", "compose.override.yml"]
    assert _builds(project) == {"web": {
        "context": ".", "dockerfile": "Dockerfile.dev", "args": {"A": "1", "B": "2"},
        "target": None, "cache_from": ["x:1", "y:1"], "image": None}}


def test_compose_file_env_names_the_files(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app", {
        "Dockerfile": "FROM scratch\n",
        "docker-compose.yml": "services:\n  web:\n    build: .\n",
        "ci.yml": "services:\n  tests:\n    build: .\n",
    })
    assert [b.service for b in _load(root, {"COMPOSE_FILE": "ci.yml"}).builds] == ["tests"]
    project = _load(root, {"COMPOSE_FILE": "docker-compose.yml:missing.yml"})
    assert [b.service for b in project.builds] == ["web"]
    assert project.warnings == ["COMPOSE_FILE names missing.yml, which is not a file; ignored"]
    assert load_compose(tmp_path / "app", files=[], environ={}) is None
    assert load_compose(_tree(tmp_path / "none", {}), environ={}) is None


def test_builds_devsync_cannot_sync_are_said_and_left_out(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app", {
        "compose.yaml": """\
services:
  remote: {build: "https://github.com/team/app.git#main"}
  inline: {build: {dockerfile_inline: "FROM scratch"}}
  outside: {build: ../elsewhere}
  nofile: {build: ./nothing-here}
""",
    })
    project = _load(root)
    assert project.builds == []
    assert project.warnings == [
        "compose.yaml:2: services.remote.build: a remote context "
        "(https://github.com/team/app.git#main) is not synced",
        "compose.yaml:3: services.inline.build: an inline Dockerfile is not synced",
        "compose.yaml:4: services.outside.build.context: ../elsewhere is outside the "
        "repository; not synced",
        "compose.yaml:5: services.nofile.build: no Dockerfile at nothing-here/Dockerfile; "
        "not synced",
    ]


# -- project names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("directory", "v2", "v1"), [
    ("yii2-dockerized", "yii2-dockerized", "yii2-dockerized"),
    ("My_Shop.App", "my_shopapp", "my_shopapp"),
    ("_-Lead", "lead", "lead"),  # both drop leading separators from the image name
])
def test_project_name_from_the_directory(tmp_path: Path, directory: str, v2: str,
                                         v1: str) -> None:
    root = _tree(tmp_path / directory, {"Dockerfile": "FROM scratch\n",
                                        "compose.yaml": "services:\n  web:\n    build: .\n"})
    project = _load(root)
    assert (project.name, project.legacy_name) == (v2, v1)


def test_project_name_precedence(tmp_path: Path) -> None:
    root = _tree(tmp_path / "dir", {
        "Dockerfile": "FROM scratch\n",
        "compose.yaml": "name: ${NAME:-From File}\nservices:\n  web:\n    build: .\n",
        ".env": '# yii2-dockerized\'s .env-example\nCOMPOSE_PROJECT_NAME="myapp"\n',
    })
    # the environment over .env, .env over `name:`; Compose v1 knows no `name:`
    assert _load(root, {"COMPOSE_PROJECT_NAME": "Env"}).name == "env"
    assert _load(root).name == "myapp"
    (root / ".env").write_text("NAME=Named\n")
    project = _load(root)
    assert (project.name, project.legacy_name) == ("named", "dir")
    (root / ".env").unlink()
    assert _load(root).name == "fromfile"


# -- interpolation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("${SET}", "value"), ("$SET/x", "value/x"), ("${SET:-d}", "value"), ("${EMPTY:-d}", "d"),
    ("${EMPTY-d}", ""), ("${UNSET-d}", "d"), ("${UNSET:-${SET}}", "value"),
    ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""), ("$$SET", "$SET"), ("a$", "a$"), ("$1", "$1"), ("${set}", ""),
    ("${SET?x}", "value"), ("${EMPTY?x}", ""),
])
def test_interpolation(text: str, expected: str) -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate(text, env, []) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${UNSET:?set it}", "required variable UNSET is missing a value: set it"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value: is not set"),
    ("${UNSET?}", "required variable UNSET is missing a value"),
    ("${SET", "has no closing }"),
    ("${1X}", "invalid interpolation: ${1X}"),
])
def test_interpolation_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("$", r"\$").replace("{", r"\{")):
        interpolate(text, {"SET": "value", "EMPTY": ""}, [])


def test_an_unset_variable_is_empty_with_a_warning(tmp_path: Path) -> None:
    root = _tree(tmp_path / "app", {"Dockerfile": "FROM scratch\n",
                                    "compose.yaml": "services:\n  web:\n    build: .${NOPE}\n"})
    project = _load(root)
    assert [b.service for b in project.builds] == ["web"]
    assert project.warnings == ["compose.yaml:3: the NOPE variable is not set; an empty string "
                                "is used (as Compose does)"]


# -- bad files: one line, the file, the line, the key; exit 3 ----------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("services:\n  web:\n    build: [1\n",
     "compose.yaml:4: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'"
     " (column 1)"),
    ("services:\n\tweb: {}\n",
     "compose.yaml:2: while scanning for the next token, found character '\\t' that cannot"),
    ("- a\n", "compose.yaml:1: the top level: expected a mapping, got a list"),
    ("services: [web]\n", "compose.yaml:1: services: expected a mapping, got a list"),
    ("services:\n  web:\n    build:\n      context: [a]\n",
     "compose.yaml:4: services.web.build.context: expected a string, got a list"),
    ("services:\n  web:\n    build: 3\n", None),  # a number is a (strange) directory name
    ("services:\n  web:\n    build:\n      args: 3\n",
     "compose.yaml:4: services.web.build.args: expected a mapping or a list, got '3'"),
    ("services:\n  web:\n    build:\n      cache_from: x\n",
     "compose.yaml:4: services.web.build.cache_from: expected a list, got 'x'"),
    ("services:\n  web:\n    build: ${CTX:?set CTX to the app}\n",
     "compose.yaml:3: services.web.build: required variable CTX is missing a value: set CTX "
     "to the app"),
    ("a: 1\n---\nb: 2\n", "compose.yaml:2: expected a single document in the stream, but "
     "found another document (column 1)"),
])
def test_malformed_files(tmp_path: Path, text: str, message: str | None) -> None:
    root = _tree(tmp_path / "app", {"compose.yaml": text})
    if message is None:
        _load(root)
        return
    with pytest.raises(ConfigError) as info:
        _load(root)
    assert info.value.exit_code == 3
    assert info.value.message.startswith(message), info.value.message
    assert "\n" not in info.value.message


def test_a_malformed_file_stops_devsync_with_exit_3(tmp_path: Path) -> None:
    from tests.support.cli import devsync

    root = _tree(tmp_path / "app", {"Dockerfile": "FROM scratch\n",
                                    "docker-compose.yml": "services:\n  web:\n   build: .\n"
                                                          "  bad: [\n"})
    git(root, "init", "-q")
    out = devsync(root, "status", state=tmp_path / "state")
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("devsync: error: docker-compose.yml:5: ")
    assert "Traceback" not in out.stderr


# -- as devsync images -------------------------------------------------------------------------

YII2_COMPOSE = "version: '3'\nservices:\n    web:\n        build: ./\n    db:\n" \
               "        image: mysql:5\n"


def _repo(tmp_path: Path, files: dict[str, str], name: str = "yii2") -> Path:
    root = _tree(tmp_path / name, files)
    git(root, "init", "-q")
    return root


def test_yii2_layout_app_serves_web(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "FROM reg.io/myapp:base-1.0\nCOPY . /var/www/html\n",
        "build/Dockerfile": "FROM alpine:3.11\nCOPY composer.json /app\n",
        "build/composer.json": "{}\n",
        "docker-compose.yml": YII2_COMPOSE,
        ".env": 'COMPOSE_PROJECT_NAME="myapp"\n',
    })
    images = {i.name: i for i in load_project(root).images}
    assert set(images) == {"base", "app"}
    app = images["app"]
    assert (app.compose_services, app.compose_tags) == (["web"], ["myapp-web", "myapp_web"])
    assert app.tag == "reg.io/myapp:dev" and app.deployed == "reg.io/myapp"
    assert images["base"].compose_services == []
    assert load_project(root).image("web").name == "app"  # `devsync sync web` works too


def test_services_become_images(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "ARG BASE=reg.io/shop:base-1.0\nFROM ${BASE} AS prod\nCOPY . /app\n"
                      "FROM prod AS dev\nRUN touch /dev-tools\n",
        "Dockerfile.base": "FROM alpine\n",
        "deep/down/below/here/Dockerfile": "FROM alpine\n",
        "compose.yaml": """\
services:
  web: {build: .}
  queue: {build: ., image: reg.io/shop:queue}
  dev: {build: {context: ., target: dev}}
  tool: {build: ./deep/down/below/here}
  base: {build: {context: ., dockerfile: Dockerfile.base}, image: reg.io/shop:base-1.0}
""",
    }, name="shop")
    images = {i.name: i for i in load_project(root).images}
    assert {n: (i.compose_services, i.compose_tags) for n, i in images.items()} == {
        "base": (["base"], []),  # the base's own tag is the name Compose looks for
        "app": (["web", "queue"], ["shop-web", "shop_web", "reg.io/shop:queue"]),
        "dev": (["dev"], ["shop-dev", "shop_dev"]),
        "tool": (["tool"], ["shop-tool", "shop_tool"]),
    }
    dev, tool = images["dev"], images["tool"]
    assert (dev.target, dev.tag, dev.deployed) == ("dev", "reg.io/shop:dev-dev", None)
    assert dev.base_ref == "reg.io/shop:base-1.0"
    assert (tool.tag, tool.deployed, tool.role) == ("devsync/tool:dev", None, "app")


def test_args_reach_the_image_and_its_base(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "ARG BASE_TAG=base-1.0\nFROM reg.io/shop:${BASE_TAG}\n",
        "Dockerfile.base": "FROM alpine\n",
        "docker-compose.yml": "services:\n  web:\n    build:\n      context: .\n"
                              "      args: {BASE_TAG: base-1.1}\n",
    })
    app = next(i for i in load_project(root).images if i.role == "app")
    assert app.build_args == {"BASE_TAG": "base-1.1"}
    assert app.base_ref == "reg.io/shop:base-1.1"


def test_devsync_toml_wins_and_names_services(tmp_path: Path) -> None:
    files = {
        "Dockerfile": "FROM alpine AS prod\nFROM prod AS dev\n",
        "docker-compose.yml": "services:\n  web:\n    build:\n      context: .\n"
                              "      target: dev\n      args: {A: compose, B: compose}\n"
                              "  worker:\n    build: {context: ., target: prod}\n",
        ".devsync.toml": '[images.shop]\ndockerfile = "Dockerfile"\ntarget = "prod"\n'
                         'build_args = { B = "toml" }\n',
    }
    root = _repo(tmp_path, files)
    [shop] = load_project(root).images
    # web builds another target than the configured one: worker's build is the image's
    assert (shop.compose_services, shop.target, shop.build_args) == (["worker"], "prod",
                                                                     {"B": "toml"})
    (root / ".devsync.toml").write_text(files[".devsync.toml"]
                                        + 'compose_services = ["web", "worker"]\n')
    [shop] = load_project(root).images
    assert shop.compose_services == ["web", "worker"]
    assert (shop.target, shop.build_args) == ("prod", {"A": "compose", "B": "toml"})
    (root / ".devsync.toml").write_text(files[".devsync.toml"] + 'compose_services = ["db"]\n')
    with pytest.raises(ConfigError) as info:
        load_project(root)
    assert info.value.message == (".devsync.toml:5: images.shop.compose_services: no Compose "
                                  "service 'db' builds an image (services that build: web, "
                                  "worker)")
    (root / ".devsync.toml").write_text("[devsync]\ncompose_files = []\n")
    assert [i.compose_services for i in load_project(root).images] == [[]]


def test_compose_files_from_devsync_toml(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "FROM alpine\n",
        "docker-compose.dev.yml": "services:\n  web:\n    build: .\n",
        ".devsync.toml": '[devsync]\ncompose_files = ["docker-compose.dev.yml"]\n',
    })
    [app] = load_project(root).images
    assert app.compose_services == ["web"]
    (root / ".devsync.toml").write_text('[devsync]\ncompose_files = ["nope.yml"]\n')
    with pytest.raises(ConfigError, match=r"^nope.yml: no such Compose file$"):
        load_project(root)
    (root / ".devsync.toml").write_text('[devsync]\ncompose_files = ["../x.yml"]\n')
    with pytest.raises(ConfigError, match="points outside the repository"):
        load_project(root)


# -- the real docker-compose reads the same ----------------------------------------------------


def _compose_cli() -> str:
    from devsync.devtools import sandbox

    try:
        return sandbox.compose_cli()
    except sandbox.SandboxUnavailable as exc:
        if IN_CI:
            pytest.fail(f"docker-compose is needed in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


def test_docker_compose_config_agrees(tmp_path: Path) -> None:
    """`docker-compose config` (1.29.2) resolves the same builds from the same files, the
    override file, .env and the environment included."""
    cli = _compose_cli()
    root = _tree(tmp_path / "agree", {
        "Dockerfile": "FROM scratch\n", "docker/app.Dockerfile": "FROM scratch\n",
        "docker-compose.yml": """\
version: "3.8"
x-args: &args
  PHP: "8.3"
  FLAGS: ${FLAGS:-"--no-dev"}
services:
  web:
    build:
      context: .
      dockerfile: docker/app.Dockerfile
      args:
        <<: *args
        FROM_DOTENV: ${DOTENV_VALUE}
      target: ${TARGET-prod}
      cache_from: [reg.io/app:1.0]
  worker:
    image: reg.io/worker:${TAG:-dev}
    build: ./
  db:
    image: mysql:5
""",
        "docker-compose.override.yml": """\
version: "3.8"
services:
  web:
    build:
      args:
        PHP: "8.4"
      cache_from: [reg.io/app:dev]
""",
        ".env": "DOTENV_VALUE=from .env\nTAG=1.2\n",
    })
    env = {"PATH": os.environ.get("PATH", ""), "TAG": "env-wins"}
    proc = subprocess.run([cli, "config"], cwd=root, env=env, capture_output=True, text=True,
                          check=True)
    real = yaml.safe_load(proc.stdout)["services"]
    ours = _load(root, env)
    assert sorted(b.service for b in ours.builds) == sorted(
        name for name, s in real.items() if "build" in s)
    for build in ours.builds:
        theirs = real[build.service]["build"]
        assert str(build.context) == theirs["context"]
        dockerfile = theirs.get("dockerfile", "Dockerfile")
        assert build.dockerfile == build.context / dockerfile
        assert build.args == {k: str(v) for k, v in theirs.get("args", {}).items()}
        assert build.target == theirs.get("target")
        assert sorted(build.cache_from) == sorted(theirs.get("cache_from", []))
        assert build.image == real[build.service].get("image")
