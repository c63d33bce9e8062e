"""Every instruction's `CreatedBy`, as devsync derives it, equals what the real classic builder
writes into the image history: the string the cache is probed with."""

from __future__ import annotations

from pathlib import Path

import pytest

from devsync.devtools import sandbox
from devsync.model.classic import BuildSimulator
from devsync.model.context import TarFlavor, scan_context
from devsync.model.dockerfiles import parse_file
from devsync.model.images import ImageInfo

EVERYTHING = """\
# escape=\\
ARG META=5
ARG BASE={base}
FROM $BASE AS first
RUN echo first stage
FROM {base}
ARG META
ARG Q=7
ARG UNSET
ENV A="one two" B=$Q C=${{META:-z}} D=${{UNSET:+set}}
ENV LEGACY value with spaces
LABEL x="y z" "quoted key"=v
RUN echo $A \\
  && ls /
RUN ["echo", "exec", "form"]
EXPOSE 80 443/udp $Q
CMD ["a", "b c", "quote\\"d"]
CMD echo "hi"
ENTRYPOINT ["x"]
VOLUME /data /v2
VOLUME ["/json", "/vol"]
STOPSIGNAL SIGTERM
ONBUILD RUN echo  build
HEALTHCHECK --interval=5s --timeout=1m30s --retries=3 CMD ls -l
HEALTHCHECK NONE
MAINTAINER me <m@x>
WORKDIR rel
WORKDIR /abs//x/
WORKDIR $Q/sub
COPY f.txt Dockerfile /app/
COPY --chown=1:2 f.txt /g
COPY dir /d
COPY *.txt /t/
ADD f.txt /added
SHELL ["/bin/sh", "-xc"]
ENV E=1
RUN echo shell
COPY . /all
# (busybox has no passwd file: USER last, after every RUN)
USER nobody:nogroup
USER $Q
"""


@pytest.fixture(scope="module")
def built(engine: sandbox.PrivateEngine, busybox_image: str,
          tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    ctx = tmp_path_factory.mktemp("everything")
    (ctx / "Dockerfile").write_text(EVERYTHING.format(base=busybox_image))
    (ctx / "f.txt").write_text("hello\n")
    (ctx / "g.txt").write_text("other\n")
    (ctx / "dir").mkdir()
    (ctx / "dir" / "inner").write_text("x\n")
    tag = "devsync-test/everything:1"
    sandbox.docker_cli(engine, "build", "-q", "--build-arg", "Q=9", "-t", tag, str(ctx))
    out = sandbox.docker_cli(engine, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
    history = list(reversed(out.stdout.rstrip("\n").split("\n")))
    return ctx, history


def test_every_instruction_matches_the_engine(built: tuple[Path, list[str]],
                                              engine: sandbox.PrivateEngine,
                                              busybox_image: str) -> None:
    import docker

    ctx, history = built
    client = docker.DockerClient(base_url=engine.url)
    base = client.api.inspect_image(busybox_image)
    base_config = {"config": base["Config"], "history": [{} for _ in range(2)],
                   "rootfs": {"diff_ids": base["RootFS"]["Layers"]}}
    info = ImageInfo.from_config(base_config, reference=busybox_image, image_id=base["Id"])
    df = parse_file(ctx / "Dockerfile")
    context = scan_context(ctx, "Dockerfile")
    sim = BuildSimulator(df, context=context, images=lambda ref: info, sources=[],
                         build_args={"Q": "9"}, flavor=TarFlavor.CLI_MODERN).run()
    final = [s for s in sim.steps if s.stage == sim.target_stage and s.kind != "from"]
    predicted = [s.created_by for s in final]
    # the image's history: the base's two entries, then one per final-stage step
    real = history[2:]
    assert len(real) == len(predicted)
    for step, want in zip(final, real, strict=True):
        assert step.created_by == want, f"line {step.instruction.line}: {step.instruction.text}"
