"""Shared fixtures: one real ``podium serve`` for the run, and a fresh account per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Account, Server, make_account, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole run; tests create their own accounts to stay independent.
    Sign-in limits are raised so that tests signing in do not throttle each other."""
    running = start_server(
        tmp_path_factory.mktemp("podium") / "data",
        env={
            "PODIUM_SIGNIN_BURST": "10000",
            "PODIUM_LOG_LEVEL": "warning",
            "PODIUM_EXACT_AUDIENCE": "true",
        },
    )
    yield running
    running.stop()


@pytest.fixture
def account(server: Server) -> Account:
    return make_account(server)
