"""The project model: zero configuration for the common layouts, `.devsync.toml` overrides."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devsync.errors import ConfigError, DockerfileError, NotARepoError
from devsync.model.project import load_project
from tests.support.teamrepo import git


def _repo(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_common_layout_needs_no_config(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "FROM reg.example.com:5000/team/shop:base-1.2.0\nCOPY . /app\n",
        "Dockerfile.base": "FROM php:8.3-fpm\nRUN apt-get update\n",
    })
    project = load_project(root / "src" if (root / "src").exists() else root)
    names = {i.name: i for i in project.images}
    assert set(names) == {"base", "app"}
    base, app = names["base"], names["app"]
    assert base.role == "base" and base.tag == "reg.example.com:5000/team/shop:base-1.2.0"
    assert base.dockerfile == root / "Dockerfile.base"
    assert app.deployed == "reg.example.com:5000/team/shop"
    assert app.tag == "reg.example.com:5000/team/shop:dev"
    assert app.base_ref == "reg.example.com:5000/team/shop:base-1.2.0"


@pytest.mark.parametrize("base_tag", ["base-1.1", "base-1.2.0", "base-2024.05",
                                      "base-20240501", "base-v2.0"])
def test_common_layout_with_any_base_tag_scheme(tmp_path: Path, base_tag: str) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": f"FROM r.io/yii2:{base_tag}\nCOPY . /app\n",
        "build/Dockerfile": "FROM alpine\nRUN apk add php\n",
    })
    roles = {i.name: (i.role, i.tag, i.deployed) for i in load_project(root).images}
    assert roles == {"base": ("base", f"r.io/yii2:{base_tag}", f"r.io/yii2:{base_tag}"),
                     "app": ("app", "r.io/yii2:dev", "r.io/yii2")}


def test_from_a_subdirectory(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "FROM r.io/shop:base-1.0.0\n",
        "Dockerfile.base": "FROM scratch\n",
        "src/app/main.py": "",
    })
    assert load_project(root / "src" / "app").root == root


def test_base_dockerfile_elsewhere_with_its_own_context(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "ARG BASE=r.io/shop:base-2.0.0\nFROM ${BASE}\nCOPY . /app\n",
        "build/Dockerfile": "FROM alpine\nCOPY packages.txt /tmp/\n",
        "build/packages.txt": "curl\n",
    })
    project = load_project(root)
    base = next(i for i in project.images if i.role == "base")
    assert base.dockerfile == root / "build" / "Dockerfile"
    assert base.context == root / "build"
    app = next(i for i in project.images if i.role == "app")
    assert app.base_ref == "r.io/shop:base-2.0.0"


def test_multi_stage_and_several_app_dockerfiles(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": ("FROM r.io/shop:base-1.0.0 AS deps\nRUN make\n"
                       "FROM deps AS app\nCOPY --from=deps /out /out\n"),
        "Dockerfile.worker": "FROM r.io/shop:base-1.0.0\nCMD [\"worker\"]\n",
        "Dockerfile.base": "FROM debian\n",
    })
    project = load_project(root)
    apps = {i.name: i for i in project.images if i.role == "app"}
    assert set(apps) == {"app", "worker"}
    assert apps["app"].base_ref == "r.io/shop:base-1.0.0"  # through the `deps` stage
    assert apps["worker"].tag != apps["app"].tag


def test_config_overrides_everything(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "docker/app.Dockerfile": "FROM alpine\n",
        ".devsync.toml": (
            "[images.web]\n"
            'dockerfile = "docker/app.Dockerfile"\n'
            'context = "."\n'
            'tag = "local/web:mine"\n'
            'deployed = "reg.io/web"\n'
            "build_args = { A = \"1\" }\n"
        ),
    })
    (web,) = load_project(root).images
    assert (web.name, web.tag, web.deployed, web.build_args) == (
        "web", "local/web:mine", "reg.io/web", {"A": "1"})


def test_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    root = _repo(tmp_path, {
        "Dockerfile": "FROM alpine\n",
        ".devsync.toml": '[images.app]\ndockerfile = "nope/Dockerfile"\n',
    })
    with pytest.raises(ConfigError) as err:
        load_project(root)
    assert ".devsync.toml" in err.value.message
    assert "images.app.dockerfile" in err.value.message


def test_not_a_repo(tmp_path: Path) -> None:
    with pytest.raises(NotARepoError):
        load_project(tmp_path)


def test_broken_dockerfile_names_file_and_line(tmp_path: Path) -> None:
    root = _repo(tmp_path, {"Dockerfile": "RUN echo before any FROM\n"})
    with pytest.raises(DockerfileError) as err:
        load_project(root)
    assert err.value.message.startswith("Dockerfile:1:")


def test_names_image_leaves_out_scratch_and_stages() -> None:
    from devsync.model.dockerfiles import parse_text

    df = parse_text("FROM golang:1.22 AS Build\nRUN true\nFROM scratch AS empty\n"
                    "FROM build\nCOPY --from=empty / /\n", Path("Dockerfile"))
    assert df.names_image("golang:1.22")
    assert not df.names_image("scratch")
    assert not df.names_image("build") and not df.names_image("BUILD")
    assert not df.names_image("") and not df.names_image(None)


def test_discovery_walks_like_the_docker_cli_following_no_link(tmp_path: Path) -> None:
    """Issue 14: `src/loop -> loop` made the walk die ("Too many levels of symbolic links")."""
    outside = tmp_path / "outside"
    (outside / "images").mkdir(parents=True)
    (outside / "images" / "Dockerfile").write_text("FROM scratch\n")
    root = _repo(tmp_path, {
        "Dockerfile": "FROM r.io/shop:base-1.0\nCOPY . /app\n",
        "Dockerfile.base": "FROM alpine\n",
        "src/index.php": "<?php\n",
        "tools/real.Dockerfile": "FROM alpine\n",
    })
    src = root / "src"
    (src / "loop").symlink_to("loop")
    (src / "ping").symlink_to("pong")
    (src / "pong").symlink_to("ping")
    (src / "up").symlink_to("..")  # walking into it would never end
    (src / "gone").symlink_to("nowhere")
    (src / "etc").symlink_to("/etc")
    (root / "images").symlink_to(outside / "images")  # Dockerfiles out of the repository
    (root / "Dockerfile.loop").symlink_to("Dockerfile.loop")
    (root / "Dockerfile.gone").symlink_to("Dockerfile.removed")
    (root / "Dockerfile.host").symlink_to("/etc/hostname")
    (root / "Dockerfile.tools").symlink_to("tools/real.Dockerfile")  # docker build -f reads it
    (root / "docker").mkdir()
    os.mkfifo(root / "docker" / "Dockerfile")  # reading it would block forever
    project = load_project(root)
    found = sorted(i.rel_dockerfile(root) for i in project.images)
    assert found == ["Dockerfile", "Dockerfile.base"]  # (a base layout keeps the app's own)
    (root / "Dockerfile").write_text("FROM alpine\nCOPY . /app\n")  # every Dockerfile an app
    found = sorted(i.rel_dockerfile(root) for i in load_project(root).images)
    assert found == ["Dockerfile", "Dockerfile.base", "Dockerfile.tools",
                     "tools/real.Dockerfile"]
