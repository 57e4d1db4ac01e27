"""Slow clients cannot hold connections: a deadline for each request head and body."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Server, start_server


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("slow") / "data",
        env={
            "PODIUM_LOG_LEVEL": "warning",
            "PODIUM_HEADER_TIMEOUT_S": "1",
            "PODIUM_BODY_TIMEOUT_S": "1",
        },
    )
    yield running
    running.stop()


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _closed_within(sock: socket.socket, trickle: list[bytes], pause: float) -> bytes | None:
    """Send ``trickle`` a piece at a time; return what the server sent once it closed the
    connection, or None if every piece went through without it closing."""
    received = b""
    sock.settimeout(pause)
    for piece in trickle:
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return received
        try:
            while chunk := sock.recv(65536):
                received += chunk
            return received  # orderly close
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
    return None


def test_a_head_sent_a_line_at_a_time_is_cut_off(strict: Server) -> None:
    with _connect(strict) as sock:
        lines = [b"GET /livez HTTP/1.1\r\n", b"Host: x\r\n"] + [b"X-Slow: 1\r\n"] * 30
        assert _closed_within(sock, lines, pause=0.4) is not None


def test_a_connection_that_says_nothing_is_closed(strict: Server) -> None:
    with _connect(strict) as sock:
        sock.settimeout(8)
        assert sock.recv(1) == b""


def test_a_trickled_body_gets_408_and_the_connection_closes(strict: Server) -> None:
    with _connect(strict) as sock:
        head = (
            b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 400\r\n\r\n{"
        )
        answer = _closed_within(sock, [head] + [b" "] * 30, pause=0.4)
    assert answer is not None
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"application/problem+json" in answer
    assert b"did not arrive within 1 s" in answer


def test_a_patient_keep_alive_client_is_served(strict: Server) -> None:
    with _connect(strict) as sock:
        for _ in range(3):
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, "closed while a keep-alive client was being polite"
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 ")
            time.sleep(0.5)  # well inside both the keep-alive and head deadlines


def test_settings_reach_the_server(tmp_path: Path) -> None:
    # The deadline is a setting like any other: a bad value is refused at start.
    from podium.config import load_settings
    from podium.errors import ConfigError

    assert load_settings({}, environ={"PODIUM_HEADER_TIMEOUT_S": "2.5"}).header_timeout_s == 2.5
    with pytest.raises(ConfigError, match="PODIUM_BODY_TIMEOUT_S"):
        load_settings({}, environ={"PODIUM_BODY_TIMEOUT_S": "soon"})
