"""Shared fixtures: one real ``podium serve`` for the run, and a fresh account per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Account, Server, make_account, start_server


@pytest.fixture(scope="session", autouse=True)
def away_from_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run, and every process it starts, works in an empty directory of its own: what
    the README's first command leaves in the checkout (``podium-data/`` with its database,
    token and recordings, ``artifacts/``) must not change what the tests see."""
    where = tmp_path_factory.mktemp("cwd")
    before = Path.cwd()
    os.chdir(where)
    yield where
    os.chdir(before)


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
