"""The decisions both views share: what a plain sync takes, when a pull asks first, the
version a publish proposes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from devsync.ops import policy
from devsync.ops.verdict import IN_SYNC, MISSING, ROLE_APP, ROLE_BASE, STALE, UNKNOWN


@dataclass
class _Status:
    role: str
    state: str
    local_id: str | None = None


@pytest.mark.parametrize(("role", "state", "local_id", "syncs"), [
    (ROLE_APP, IN_SYNC, "sha256:a", False),
    (ROLE_APP, STALE, "sha256:a", True),
    (ROLE_APP, MISSING, None, True),
    (ROLE_APP, UNKNOWN, "sha256:a", True),
    (ROLE_BASE, IN_SYNC, "sha256:b", False),
    (ROLE_BASE, STALE, "sha256:b", True),
    (ROLE_BASE, MISSING, None, True),
    (ROLE_BASE, UNKNOWN, None, True),  # never pulled: a sync pulls it
    (ROLE_BASE, UNKNOWN, "sha256:b", False),  # here, only the registry is unknown
])
def test_what_a_plain_sync_takes(role: str, state: str, local_id: str | None,
                                 syncs: bool) -> None:
    status = _Status(role, state, local_id)
    assert policy.needs_sync(status) is syncs  # type: ignore[arg-type]
    assert policy.to_sync([status]) == ([status] if syncs else [])  # type: ignore[list-item]


@dataclass
class _Plan:
    name: str
    pull_bytes: int


def test_a_large_pull_asks_first() -> None:
    assert not policy.asks_before_pull(_Plan("app", policy.LARGE_PULL_BYTES))  # type: ignore[arg-type]
    big = _Plan("app", policy.LARGE_PULL_BYTES + 1)
    assert policy.asks_before_pull(big)  # type: ignore[arg-type]
    assert policy.large_pull_question(big) == "pull 210 MB for app?"  # type: ignore[arg-type]


@pytest.mark.parametrize(("deployed", "proposed"), [
    (None, "1.0.0"), ("reg.example/shop:1.4.2", "1.4.3"), ("reg.example/shop:latest", ""),
])
def test_the_version_a_publish_proposes(deployed: str | None, proposed: str) -> None:
    assert policy.next_publish_version(deployed) == proposed
