"""The load generator's lean HTTP/1.1 client (podium.clients.http1): its parser on crafted
bytes, and the client against a real uvicorn server and a raw socket server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from podium.clients.http1 import (
    ConnectionClosed,
    HttpClient,
    OffTarget,
    Origin,
    ProtocolError,
    RequestTimeout,
    Response,
    ResponseParser,
    render_request,
)

# -- the parser --------------------------------------------------------------------------


def feed_bytewise(parser: ResponseParser, data: bytes) -> list[Response]:
    """Feed one byte at a time: framing must not depend on how TCP cuts the stream."""
    out = []
    for i in range(len(data)):
        response = parser.feed(data[i : i + 1])
        if response is not None:
            out.append(response)
    return out


def test_content_length_body_in_any_pieces() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
    (response,) = feed_bytewise(ResponseParser(), raw)
    assert response.status == 200
    assert response.reason == "OK"
    assert response.body == b"hello"
    assert response.headers["x-a"] == "1, 2"
    assert response.keep_alive


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    (response,) = feed_bytewise(ResponseParser(), raw)
    assert response.body == b"hello 0123456789"
    whole = ResponseParser().feed(raw)
    assert whole is not None
    assert whole.body == response.body


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
        b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 503 Busy Now\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nConnection: x-closed\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
    ],
)
def test_an_answer_read_whole_is_the_answer_read_in_pieces(raw: bytes) -> None:
    """A whole answer in one read takes a shorter way through the parser, and a head whole
    in the first read with the body still to come another: what comes out must not depend
    on it (the byte-by-byte reading takes the general way)."""

    def seen(response: Response) -> tuple[Any, ...]:
        fields = dict(response.headers)
        return (response.status, response.reason, fields, response.body, response.keep_alive)

    whole_parser = ResponseParser()
    whole = whole_parser.feed(raw)
    assert whole is not None
    (piecewise,) = feed_bytewise(pieces := ResponseParser(), raw)
    assert seen(whole) == seen(piecewise)
    assert whole_parser.head_bytes == pieces.head_bytes
    assert whole_parser.received == pieces.received == len(raw)
    split_parser = ResponseParser()
    assert split_parser.feed(raw[:-1]) is None
    split = split_parser.feed(raw[-1:])
    assert split is not None
    assert seen(split) == seen(whole)
    assert split_parser.head_bytes == whole_parser.head_bytes


def test_no_body_for_head_204_304_and_interim_answers_skipped() -> None:
    parser = ResponseParser()
    parser.expect("HEAD")
    head = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert head is not None
    assert head.body == b""
    for status in (204, 304):
        parser.expect("GET")
        answer = parser.feed(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        assert answer is not None
        assert answer.status == status
    parser.expect("POST")
    final = parser.feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    assert final is not None
    assert (final.status, final.body) == (201, b"ok")


def test_body_until_close_and_connection_close() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\n\r\nsome ") is None
    assert parser.feed(b"bytes") is None
    response = parser.feed_eof()
    assert response is not None
    assert response.body == b"some bytes"
    assert not response.keep_alive
    closing = ResponseParser().feed(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    assert closing is not None
    assert not closing.keep_alive
    old = ResponseParser().feed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert old is not None
    assert not old.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"SPDY/3 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header : x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
    ],
)
def test_malformed_answers_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(raw)


def test_limits_and_truncation() -> None:
    with pytest.raises(ProtocolError, match="head"):
        ResponseParser(max_head=100).feed(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 50)
    with pytest.raises(ProtocolError, match="larger"):
        ResponseParser(max_body=10).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
    truncated = ResponseParser()
    truncated.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError, match="middle"):
        truncated.feed_eof()
    assert ResponseParser().feed_eof() is None


def test_requests_are_rendered_and_injection_refused() -> None:
    data = render_request("POST", "/a?b=c", "h:1", [("X-Y", "z")], b"{}")
    assert data == b"POST /a?b=c HTTP/1.1\r\nHost: h:1\r\nX-Y: z\r\nContent-Length: 2\r\n\r\n{}"
    assert render_request("GET", "/", "h", [], b"").endswith(b"Host: h\r\n\r\n")
    with pytest.raises(ValueError, match="target"):
        render_request("GET", "/a b", "h", [], b"")
    with pytest.raises(ValueError, match="header"):
        render_request("GET", "/", "h", [("X", "a\r\nInjected: 1")], b"")


def test_origins() -> None:
    assert Origin.of("http://Example.org") == Origin("http", "example.org", 80)
    assert Origin.of("https://[::1]:8443/x").authority == "[::1]:8443"
    assert Origin.of("http://h:80/").authority == "h"
    for bad in ("ftp://h/", "http:///x", "http://h:99999/"):
        with pytest.raises(ValueError, match=r"URL|host|port"):
            Origin.of(bad)


# -- against a real uvicorn --------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """A small ASGI app exercising each framing."""
    assert scope["type"] == "http"
    path = scope["path"]
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"text/plain")]
    if path == "/chunked":
        # No Content-Length: uvicorn frames the body with the chunked coding.
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(float(scope["query_string"].decode().split("=")[1]))
    if path == "/close":
        headers.append((b"connection", b"close"))
    client = scope["client"]
    answers = {
        "/peer": f"{client[0]} {client[1]}".encode(),
        "/echo": body,
        "/big": b"x" * 1_000_000,
    }
    payload = answers.get(path, b"hello")
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@contextlib.asynccontextmanager
async def uvicorn_server(keep_alive: int = 5) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        http="h11",
        timeout_keep_alive=keep_alive,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, not an event)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_keep_alive_reuses_one_connection() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url])
            peers = {(await client.get(f"{url}/peer")).text for _ in range(20)}
            assert len(peers) == 1
            assert client.traffic.connections == 1
            assert client.traffic.requests == 20
            await client.aclose()

    run(scenario)


def test_bodies_chunked_large_and_posted() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url])
            chunked = await client.get(f"{url}/chunked")
            assert chunked.header("transfer-encoding") == "chunked"
            assert chunked.body == b"one two three"
            assert len((await client.get(f"{url}/big")).body) == 1_000_000
            sent = bytes(range(256)) * 1000
            echoed = await client.request("POST", f"{url}/echo", body=sent)
            assert echoed.body == sent
            empty = await client.post_json(f"{url}/echo", b"")
            assert empty.body == b""
            assert client.traffic.connections == 1
            await client.aclose()

    run(scenario)


def test_pool_cap_holds_under_concurrency() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url], max_connections=3)
            answers = await asyncio.gather(
                *(client.get(f"{url}/slow?s=0.1") for _ in range(12)),
            )
            assert all(a.status == 200 for a in answers)
            assert client.traffic.connections == 3
            peers = await asyncio.gather(*(client.get(f"{url}/peer") for _ in range(6)))
            assert len({p.text for p in peers}) <= 3
            await client.aclose()

    run(scenario)


def test_connection_close_and_server_idle_close_get_fresh_connections() -> None:
    async def scenario() -> None:
        async with uvicorn_server(keep_alive=1) as url:
            client = HttpClient([url], idle_timeout=30.0)
            await client.get(f"{url}/close")
            await client.get(f"{url}/close")
            assert client.traffic.connections == 2
            await client.get(f"{url}/hello")
            await asyncio.sleep(1.6)  # the server closes the idle connection meanwhile
            assert (await client.get(f"{url}/hello")).status == 200
            assert client.traffic.connections == 4
            await client.aclose()

    run(scenario)


def test_timeout_then_recovery() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url], timeout=0.2)
            with pytest.raises(RequestTimeout):
                await client.get(f"{url}/slow?s=1")
            assert (await client.get(f"{url}/hello", limit=5.0)).body == b"hello"
            await client.aclose()

    run(scenario)


def test_source_address_is_used() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url], local_address="127.0.0.7")
            assert (await client.get(f"{url}/peer")).text.startswith("127.0.0.7 ")
            await client.aclose()

    run(scenario)


def test_only_the_given_origins_are_contacted() -> None:
    async def scenario() -> None:
        async with uvicorn_server() as url:
            client = HttpClient([url])
            port = int(url.rsplit(":", 1)[1])
            for other in (
                f"http://127.0.0.1:{port + 1}/",
                f"http://localhost:{port}/",
                f"https://127.0.0.1:{port}/",
                "http://example.org/",
            ):
                with pytest.raises(OffTarget):
                    await client.get(other)
            assert client.traffic.connections == 0
            await client.aclose()

    run(scenario)


# -- against a raw socket server (framings uvicorn never sends) --------------------------


@contextlib.asynccontextmanager
async def raw_server(answer: bytes, *, close: bool) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            if not close:
                await reader.read()  # hold the connection until the client leaves
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def test_body_delimited_by_close() -> None:
    async def scenario() -> None:
        async with raw_server(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True) as url:
            client = HttpClient([url])
            assert (await client.get(url + "/")).body == b"until the end"
            await client.aclose()

    run(scenario)


def test_truncated_and_garbage_answers_raise() -> None:
    async def scenario() -> None:
        truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
        async with raw_server(truncated, close=True) as url:
            client = HttpClient([url])
            with pytest.raises(ConnectionClosed):
                await client.get(url + "/")
            await client.aclose()
        async with raw_server(b"garbage\r\n\r\n", close=False) as url:
            client = HttpClient([url])
            with pytest.raises(ProtocolError):
                await client.get(url + "/")
            await client.aclose()

    run(scenario)
