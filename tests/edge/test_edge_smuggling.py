"""Request smuggling through an edge: a request whose length the edge and the origin could
read differently (``Content-Length`` and ``Transfer-Encoding`` together, or a disguised
``Transfer-Encoding``) carries a second request in its body. Behind a real Varnish and a
real nginx, each configured by ``podium edge-config``, the origin must see exactly the
requests the edge answered, and the next client through the edge must get its own answer.

RFC 9112 6.1 lets the edge refuse such a request or read it by ``Transfer-Encoding``, and
either way it must close the connection after answering: so what rides in the body is
never a request of its own.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from edges import Edge, origin_requests, start_nginx, start_varnish

from harness import Server, start_server

# The request hidden in the body: its route is counted by the origin, and its answer
# (401, never cached) names itself in the response stream.
HIDDEN_ROUTE = "/api/v1/me"
HIDDEN = b"GET /api/v1/me HTTP/1.1\r\nHost: podium\r\n\r\n"
HIDDEN_ANSWER = b"sign in or send an API token"

ATTACKS = {
    # Content-Length covers the chunked body and the hidden request; chunked ends at "0".
    "cl-te": (
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n",
        b"0\r\n\r\n" + HIDDEN,
    ),
    # Content-Length says 4; the chunk holds the hidden request.
    "te-cl": (
        b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        b"%x\r\n" % len(HIDDEN) + HIDDEN + b"\r\n0\r\n\r\n",
    ),
    "te-obfuscated-space": (
        b"Content-Length: %d\r\nTransfer-Encoding : chunked\r\n",
        b"0\r\n\r\n" + HIDDEN,
    ),
    "te-obfuscated-value": (
        b"Content-Length: %d\r\nTransfer-Encoding: xchunked\r\n",
        b"0\r\n\r\n" + HIDDEN,
    ),
    "te-twice": (
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"0\r\n\r\n" + HIDDEN,
    ),
    "cl-twice": (
        b"Content-Length: %d\r\nContent-Length: 0\r\n",
        HIDDEN,
    ),
}


@pytest.fixture(scope="module")
def smuggling_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("smuggling") / "data", env={"PODIUM_LOG_LEVEL": "warning"}
    )
    yield running
    running.stop()


@pytest.fixture(scope="module", params=["varnish", "nginx"])
def smuggling_edge(request: pytest.FixtureRequest, smuggling_origin: Server) -> Iterator[Edge]:
    start = start_varnish if request.param == "varnish" else start_nginx
    running = start(smuggling_origin.url)
    yield running
    running.stop()


def _send(edge: Edge, raw: bytes) -> bytes:
    """Send ``raw`` on one connection; everything the edge answers until it closes (or
    stops answering for two seconds)."""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as connection:
        connection.sendall(raw)
        connection.settimeout(2)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                return received
            if not chunk:
                return received
            received += chunk


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_no_request_is_smuggled_past_the_edge(
    smuggling_edge: Edge, smuggling_origin: Server, attack: str
) -> None:
    headers, body = ATTACKS[attack]
    if b"%d" in headers:
        headers = headers % len(body)
    raw = (
        b"POST /api/v1/spaces/nosuchspace/beacon HTTP/1.1\r\nHost: podium\r\n"
        b"Content-Type: application/json\r\n" + headers + b"\r\n" + body
    )
    before = origin_requests(smuggling_origin, HIDDEN_ROUTE)
    answered = _send(smuggling_edge, raw)
    assert answered.startswith(b"HTTP/1.1 "), answered[:200]
    # Both edges refuse such a request outright (Varnish 400; nginx 400, or 501 for a
    # transfer coding it does not know) rather than guess its length.
    assert int(answered[9:12]) in (400, 501), answered[:200]
    # Every client that comes next, on connections the edge may share with the attacker's
    # upstream, gets its own answer: nothing left over was glued to its request.
    for _ in range(5):
        with httpx.Client(base_url=smuggling_edge.url, timeout=10) as client:
            livez = client.get("/livez")
            assert livez.status_code == 200, livez.text
            spaces = client.get("/api/v1/spaces")
            assert spaces.status_code == 200, spaces.text
            assert "spaces" in spaces.json()
    time.sleep(0.5)  # the origin counts a request when it has answered it
    seen_by_origin = origin_requests(smuggling_origin, HIDDEN_ROUTE) - before
    answered_by_edge = answered.count(HIDDEN_ANSWER)
    # The hidden request reached the origin only if the edge itself took it for a request
    # and gave its answer back to the client that sent it: then it was not smuggled.
    assert seen_by_origin == answered_by_edge, (seen_by_origin, answered[:600])


def test_the_count_sees_a_request_that_is_really_there(
    smuggling_edge: Edge, smuggling_origin: Server
) -> None:
    """The control: a plain request with a pipelined second one (which the edge reads as
    two) is counted once by the origin and answered once to the client."""
    body = b"{}"
    raw = (
        b"POST /api/v1/spaces/nosuchspace/beacon HTTP/1.1\r\nHost: podium\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body + HIDDEN
    )
    before = origin_requests(smuggling_origin, HIDDEN_ROUTE)
    answered = _send(smuggling_edge, raw)
    time.sleep(0.5)
    assert answered.count(HIDDEN_ANSWER) == 1, answered[:600]
    assert origin_requests(smuggling_origin, HIDDEN_ROUTE) - before == 1
