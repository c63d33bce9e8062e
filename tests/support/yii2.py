"""A small copy of the layout of codemix/yii2-dockerized, made for real: an app `Dockerfile`
`FROM REPO:base-1.0`, a multi-stage base `build/Dockerfile` (a `vendor` stage that installs
the composer packages, and a final stage ending with `COPY --from=vendor`) built with the
context `build/`, views, composer files, a `.dockerignore` and a `docker-compose.yml`.

Its `FROM composer` and `FROM alpine:3.11` are local stand-ins (busybox, built FROM scratch
and pushed to the private registry) and its network steps are local ones. The team's CI is
the plain docker CLI (classic builder): it builds and pushes `REPO:base-1.0` from `build/`
and each deployment `REPO:1.0.N` from the root, with the OCI revision label.

`hub=` names another registry for those stand-ins, as Docker Hub is another registry than
the team's: one on a closed loopback port is a Docker Hub that cannot be reached (the
stand-ins are then only on the engine, as CI's cache would have them).

Base tags follow yii2's `base-X.Y` scheme; `base_tag("1.1")` spells a version's tag, so a
test can switch the scheme in one place.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devsync.devtools import sandbox
from tests.support.teamrepo import MODERN_CLI, git

REVISION = "org.opencontainers.image.revision"

COMPOSER_DOCKERFILE = """\
FROM {busybox}
RUN mkdir -p /app /var/www && echo "composer 2 (stand-in)" > /composer-version
WORKDIR /app
"""

ALPINE_DOCKERFILE = """\
FROM {busybox}
RUN echo "alpine 3.11 (stand-in)" > /etc/alpine-release
"""

BASE_DOCKERFILE = """\
# Application base image
#
# This image contains:
#
#  - PHP runtime
#  - PHP extensions
#  - Composer packages


# Build stage 1: Install composer packages
FROM {composer} AS vendor
COPY composer.json /app
COPY composer.lock /app
RUN mkdir -p /var/www/vendor \\
    && cat /app/composer.json /app/composer.lock > /var/www/vendor/installed.json


# Build stage 2: Final image
FROM {alpine}

# Add the S6 supervisor overlay (a local stand-in for the download)
RUN mkdir -p /etc/s6 && echo "s6-overlay 1.22.1.0" > /etc/s6/version

RUN mkdir -p /etc/php7/conf.d /etc/php7/php-fpm.d /etc/nginx/conf.d /run/nginx \\
    && echo "nginx php7 php7-fpm php7-intl" > /etc/packages

# S6 configuration
ADD ./etc/cont-init.d /etc/cont-init.d

# Nginx default server and PHP defaults
ADD ./etc/nginx/default.conf /etc/nginx/conf.d/default.conf
ADD ./etc/php7/zz-docker.conf /etc/php7/php-fpm.d/zz-docker.conf

# Composer packages from build stage 1
COPY --from=vendor /var/www/vendor /var/www/vendor

WORKDIR /var/www/html

EXPOSE 80

# S6 init will start all services
ENTRYPOINT ["/init"]
"""

APP_DOCKERFILE = """\
# Application image
#
# This image mainly adds the latest application source to the base image
#
FROM {repo}:{base_tag}

# Copy PHP configuration into the image
COPY ./config/php/productive.ini /etc/php7/conf.d/90-productive.ini

# Copy the app code into the image
COPY . /var/www/html

# Create required directories listed in .dockerignore
RUN mkdir -p runtime web/assets var/sessions \\
    && chown 82:82 runtime web/assets var/sessions

# Let docker create a volume for the session dir.
# This keeps the session files even if the container is rebuilt.
VOLUME /var/www/html/var/sessions
"""

DOCKERIGNORE = """\
.git/*
.env
build/
config/local.php
config/console-local.php
runtime/
web/assets/
vendor/
var/
"""

COMPOSE = """\
version: '2'
services:
  web:
    build: ./
    ports:
      - "8080:80"
"""

FILES = {
    "config/php/productive.ini": "display_errors = Off\nlog_errors = On\n",
    "config/web.php": "<?php return ['id' => 'basic'];\n",
    "controllers/SiteController.php": "<?php class SiteController {}\n",
    "views/layouts/main.php": "<html><?= $content ?></html>\n",
    "views/site/index.php": "<h1>Welcome</h1>\n",
    "web/index.php": "<?php require __DIR__ . '/../vendor/autoload.php';\n",
    "web/css/site.css": "body { margin: 0; }\n",
    "yii": "#!/usr/bin/env php\n<?php echo 'yii';\n",
    "README.md": "# yii2-dockerized (a small copy)\n",
    ".gitignore": ".env\nvendor/\nruntime/\n",
    "build/composer.json": '{"require": {"yiisoft/yii2": "~2.0.14"}}\n',
    "build/composer.lock": '{"packages": [{"name": "yiisoft/yii2", "version": "2.0.14"}]}\n',
    "build/etc/cont-init.d/10-configure-php-fpm": "#!/bin/sh\necho configure php-fpm\n",
    "build/etc/nginx/default.conf": "server { listen 80; root /var/www/html/web; }\n",
    "build/etc/php7/zz-docker.conf": "[www]\nlisten = 9000\n",
    "build/docker-compose.yml": "version: '2'\nservices:\n  base:\n    build: ./\n",
}


def base_tag(version: str) -> str:
    """yii2's base tag scheme: `base-1.0`."""
    return f"base-{version}"


@dataclass
class Yii2Repo:
    path: Path
    engine: sandbox.PrivateEngine
    registry: sandbox.PrivateRegistry
    repo: str  # localhost:PORT/yii2
    composer: str  # the stand-in for Docker Hub's `composer`
    alpine: str  # the stand-in for `alpine:3.11`
    cli: str = MODERN_CLI
    deployed: list[str] = field(default_factory=list)

    def docker(self, *args: str, check: bool = True, cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
        return sandbox.docker_cli(self.engine, *args, check=check, cwd=cwd or self.path,
                                  cli=self.cli)

    def write(self, rel: str, text: str) -> None:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str, author: str = "Ana") -> str:
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", message,
            env={"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.com"})
        return self.head

    @property
    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def base_ref(self, version: str = "1.0") -> str:
        return f"{self.repo}:{base_tag(version)}"

    def ci_build_base(self, version: str = "1.0", *, label: bool = True) -> str:
        """CI's base job: `docker build build/` (classic builder), pushed as base-X.Y."""
        ref = self.base_ref(version)
        labels = ["--label", f"{REVISION}={self.head}"] if label else []
        self.docker("build", "-q", *labels, "-t", ref, "build")
        self.docker("push", ref)
        return ref

    def ci_deploy(self, version: str) -> str:
        """CI's deploy job: `docker build .` with the revision label, pushed as 1.0.N."""
        ref = f"{self.repo}:{version}"
        self.docker("build", "-q", "--label", f"{REVISION}={self.head}", "-t", ref, ".")
        self.docker("push", ref)
        self.deployed.append(ref)
        return ref

    def forget_local_images(self) -> None:
        """The engine as a fresh developer machine sees this project: none of its images
        (the stand-ins for Docker Hub's stay, as they would in a cache)."""
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        refs = [ref for ref in out.split() if ref.startswith(self.repo + ":")]
        if refs:
            self.docker("rmi", "-f", *refs, check=False)
        self.docker("image", "prune", "-f", check=False)

    def forget_hub_images(self) -> None:
        """The base's FROM images (Docker Hub's stand-ins) leave the engine too."""
        self.docker("rmi", self.composer, self.alpine, check=False)

    def clone(self, dest: Path) -> Path:
        """A developer's fresh clone (its own work tree, the same history)."""
        git(dest.parent, "clone", "-q", str(self.path), str(dest))
        return dest


def _stand_in(engine: sandbox.PrivateEngine, directory: Path, ref: str, dockerfile: str, *,
              push: bool = True) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    sandbox.docker_cli(engine, "build", "-q", "-t", ref, str(directory))
    if push:
        sandbox.docker_cli(engine, "push", ref)
    return ref


def make_yii2_repo(root: Path, engine: sandbox.PrivateEngine,
                   registry: sandbox.PrivateRegistry, busybox: str, name: str = "yii2",
                   *, label_base: bool = True, hub: str | None = None) -> Yii2Repo:
    """The project with one base (`base-1.0`) and one deployment (`1.0.0`) made by CI.
    `hub`: the registry host of the base's FROM images (default: the team's; another one is
    not pushed to, so one nobody serves is a Docker Hub out of reach)."""
    path = root / name
    path.mkdir(parents=True)
    repo = f"{registry.host}/{name}"
    stand_ins = root / f"{name}-stand-ins"
    host = hub or registry.host
    composer = _stand_in(engine, stand_ins / "composer", f"{host}/composer:2",
                         COMPOSER_DOCKERFILE.format(busybox=busybox), push=hub is None)
    alpine = _stand_in(engine, stand_ins / "alpine", f"{host}/alpine:3.11",
                       ALPINE_DOCKERFILE.format(busybox=busybox), push=hub is None)
    yii = Yii2Repo(path=path, engine=engine, registry=registry, repo=repo, composer=composer,
                   alpine=alpine)
    git(path, "init", "-q", "-b", "main")
    for rel, text in FILES.items():
        yii.write(rel, text)
    (path / "yii").chmod(0o755)
    (path / "build/etc/cont-init.d/10-configure-php-fpm").chmod(0o755)
    yii.write("Dockerfile", APP_DOCKERFILE.format(repo=repo, base_tag=base_tag("1.0")))
    yii.write("build/Dockerfile", BASE_DOCKERFILE.format(composer=composer, alpine=alpine))
    yii.write(".dockerignore", DOCKERIGNORE)
    yii.write("docker-compose.yml", COMPOSE)
    yii.commit("Initial commit")
    yii.ci_build_base("1.0", label=label_base)
    yii.ci_deploy("1.0.0")
    return yii
