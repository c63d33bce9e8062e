"""The decisions both views share: what a plain sync takes, when a pull asks first, the
version a publish proposes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from devsync.ops import policy
from devsync.ops.verdict import IN_SYNC, MISSING, ROLE_APP, ROLE_BASE, STALE, UNKNOWN


@dataclass
class _Base:
    base: str | None


@dataclass
class _Status:
    role: str
    state: str
    local_id: str | None = None
    name: str = "image"
    tag: str = ""
    plan: _Base | None = None


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


def test_an_app_on_a_base_taken_is_taken_with_it() -> None:
    """A teammate changed the base: its sync builds it here, so the app FROM it (in sync
    until then) is built on it in the same sync, not left stale for a second one."""
    base = _Status(ROLE_BASE, STALE, "sha256:b", "base", "reg/shop:base-1.0")
    app = _Status(ROLE_APP, IN_SYNC, "sha256:a", "app", "reg/shop:dev",
                  _Base("reg/shop:base-1.0"))
    other = _Status(ROLE_APP, IN_SYNC, "sha256:c", "other", "reg/other:dev",
                    _Base("reg/other:base-2"))
    assert policy.to_sync([base, app, other]) == [base, app]  # type: ignore[list-item]
    base.state = IN_SYNC
    assert policy.to_sync([base, app, other]) == []  # type: ignore[list-item]


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
