"""The crowd's lean HTTP/1.1 client against a loopback server that answers the ways edges
do: Content-Length, chunked, gzip, ``Connection: close``, a kept-alive connection closed
between requests."""

from __future__ import annotations

import asyncio
import gzip

from podium.clients.crowd import Connection

PLAYLIST = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n" * 20


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    return (
        b"".join(
            f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for piece in (body[:half], body[half:])
        )
        + b"0\r\n\r\n"
    )


ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(PLAYLIST),
    b"/gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    + _chunked(gzip.compress(PLAYLIST)),
    b"/close": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nConnection: close\r\n"
    b"Content-Length: 4\r\n\r\nbusy",
    # Kept alive as far as the client knows, then closed by the server (an idle timeout).
    b"/drop": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer requests on one connection; close it after ``/close`` and ``/drop``."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            writer.write(ANSWERS[target])
            await writer.drain()
            if target in (b"/close", b"/drop"):
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed it
    finally:
        writer.close()
        await writer.wait_closed()


def test_the_lean_client_reads_what_edges_send() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = Connection("127.0.0.1", port, gzip=True)
        try:
            plain = await connection.get("/length")
            assert (plain.status, plain.body) == (200, b"hello")
            assert plain.wire == len(ANSWERS[b"/length"])
            chunked = await connection.get("/chunked")
            assert chunked.body == PLAYLIST
            assert chunked.wire == len(ANSWERS[b"/chunked"])
            compressed = await connection.get("/gzip")
            assert compressed.body == PLAYLIST
            assert compressed.wire < len(PLAYLIST)
            refused = await connection.get("/close")
            assert (refused.status, refused.retry_after) == (503, "2")
            # A new connection after the server closed the last one.
            assert (await connection.get("/length")).body == b"hello"
            assert (await connection.get("/drop")).body == b"ok"
            await asyncio.sleep(0.05)
            # The kept-alive connection is gone: asked again on a new one, transparently.
            assert (await connection.get("/length")).body == b"hello"
            assert connection.sent > 0
        finally:
            connection.close()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
