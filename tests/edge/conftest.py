"""Fixtures of the edge tests: a fresh origin per test (its request counters start at 0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Server, start_server


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "data", env={"PODIUM_LOG_LEVEL": "warning"})
    yield running
    running.stop()
