"""The room API suite runs twice: on the embedded SQLite database and on PostgreSQL."""

from __future__ import annotations

import pytest

from harness import Server


@pytest.fixture(scope="module")
def server(server_on_each_database: Server) -> Server:
    return server_on_each_database
