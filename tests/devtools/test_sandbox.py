from __future__ import annotations

from devsync.devtools import sandbox


def test_private_engine_builds_and_pushes(engine: sandbox.PrivateEngine,
                                          registry: sandbox.PrivateRegistry,
                                          busybox_image: str) -> None:
    out = sandbox.docker_cli(engine, "run", "--rm", "--network=none", busybox_image,
                             "echo", "hello")
    assert out.stdout.strip() == "hello"
    # the image is in the registry, not just local
    import json
    import urllib.request

    with urllib.request.urlopen(f"{registry.url}/v2/busybox/tags/list") as resp:
        assert json.load(resp)["tags"] == ["1"]
