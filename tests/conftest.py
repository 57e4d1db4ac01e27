"""Shared fixtures: one real ``podium serve`` for the run, and a fresh account per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Account, Server, make_account, start_shared_server
from services import Postgres, Redis


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
    """One server for the whole run; tests create their own accounts to stay independent."""
    running = start_shared_server(tmp_path_factory.mktemp("podium") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server_on_each_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server a module shares, on each database in turn (a suite's ``conftest.py``
    makes it that suite's ``server``). Per module, not per run: the live spaces a module
    leaves behind stop with it, and do not take CPU from the suites after it."""
    url = ""
    if request.param == "postgresql":
        cluster: Postgres = request.getfixturevalue("postgres")
        url = cluster.create_database("shared")
    running = start_shared_server(tmp_path_factory.mktemp("podium") / "data", url)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL for the run; each user creates a database of its own."""
    cluster = Postgres()
    yield cluster
    cluster.close()


@pytest.fixture
def account(server: Server) -> Account:
    return make_account(server)


@pytest.fixture
def redis_server() -> Iterator[Redis]:
    """A Redis of the test's own (tests kill it)."""
    own = Redis()
    yield own
    own.close()
