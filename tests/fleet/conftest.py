"""The fleet most tests here use (a module may define its own): two media nodes and two
web nodes, sharing one PostgreSQL and one Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetnodes import Fleet, start_fleet
from services import Postgres, Redis


@pytest.fixture
def fleet(postgres: Postgres, redis_server: Redis, tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(postgres, redis_server, tmp_path, web=2, media=2)
    yield started
    started.stop()
