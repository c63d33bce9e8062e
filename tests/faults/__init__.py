"""The fault suite: devsync on a developer's bad day, each fault injected for real.

Every case runs the `devsync` CLI as a subprocess against a real engine, registry and git
repository with one fault injected, and checks the message, the exit code, that nothing was
lost, and that the next run recovers once the fault is gone. The outcomes are written to
`tests/FAULTS.md` when the whole package ran (see conftest.py).
"""
