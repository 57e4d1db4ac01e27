"""A lean HTTP/1.1 client for a crowd's requests other than following the stream.

A simulated listener's joins, room-state reads and beacons, the flood's requests and the
benchmarks' clients go through it; following the playlist is the hot path, and has its
own state machine (:mod:`podium.clients.follow`). httpx is the right client for one
listener; for a crowd its per-request cost (URL, header and request objects, hooks, a
general state machine) would be what gets measured, not the server. This client does
only what a player does: ``GET`` and ``POST`` to the origins it was given, persistent
connections (RFC 9112 9.3), and a pool of connections per origin with a cap. No
redirects, no cookies, no compression, no pipelining.

:class:`HttpClient` is an asyncio shell, one :class:`asyncio.Protocol` per connection,
around the sans-IO messages of :mod:`podium.clients.httpwire` (whose names, errors
included, are re-exported here). It contacts nothing but the origins it was built with:
any other URL raises :class:`OffTarget` before a socket is opened, which is how a load
generator keeps to the addresses its operator named.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from podium import __version__
from podium.clients.httpwire import (
    ConnectFailed,
    ConnectionClosed,
    OffTarget,
    Origin,
    ProtocolError,
    RequestTimeout,
    Response,
    ResponseParser,
    TransportError,
    check_target,
    render_request,
)

# -- the shell ---------------------------------------------------------------------------


@dataclass(slots=True)
class Traffic:
    """Counters several clients can share (a crowd's total)."""

    connections: int = 0
    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    stale_retries: int = 0


class _Connection(asyncio.Protocol):
    """One TCP connection carrying one exchange at a time."""

    def __init__(self, origin: Origin, traffic: Traffic) -> None:
        self.origin = origin
        self.traffic = traffic
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self.closed = False
        self.exchanges = 0
        self.idle_since = time.monotonic()
        self._waiter: asyncio.Future[Response] | None = None
        self._can_write: asyncio.Event | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.traffic.bytes_received += len(data)
        waiter = self._waiter
        if waiter is None or waiter.done():
            self.close()  # unsolicited bytes: nobody asked, so nobody can trust the rest
            return
        try:
            response = self.parser.feed(data)
        except ProtocolError as exc:
            waiter.set_exception(exc)
            self.close()
            return
        if response is not None:
            waiter.set_result(response)

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end(exc)
        if self._can_write is not None:
            self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write = asyncio.Event()

    def resume_writing(self) -> None:
        if self._can_write is not None:
            self._can_write.set()
            self._can_write = None

    def _end(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self.parser.feed_eof()
        except ProtocolError as error:
            waiter.set_exception(ConnectionClosed(f"{self.origin}: {error}"))
            return
        if response is not None:
            waiter.set_result(response)
        else:
            reason = f" ({exc})" if exc else ""
            waiter.set_exception(
                ConnectionClosed(f"{self.origin} closed the connection before answering{reason}")
            )

    async def exchange(self, method: str, data: bytes, deadline: float) -> Response:
        """Send one request; wait for its whole answer until ``deadline`` (loop time).

        A plain timer rather than :func:`asyncio.timeout`: this is the path every request
        takes, and a timer on the waiter costs a fraction of a cancel scope.
        """
        if self.closed or self.transport is None:
            raise ConnectionClosed(f"{self.origin}: the connection is closed")
        loop = asyncio.get_running_loop()
        self.exchanges += 1
        self.parser.expect(method)
        waiter: asyncio.Future[Response] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(deadline, self._expire, waiter)
        try:
            self.transport.write(data)
            self.traffic.bytes_sent += len(data)
            if self._can_write is not None:
                await self._can_write.wait()
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _expire(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(RequestTimeout(f"{self.origin}: no whole answer in time"))
        self.close()

    @property
    def started_answer(self) -> bool:
        return self.parser.received > 0

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections to one origin: idle ones reused newest first, at most ``cap``."""

    def __init__(
        self,
        origin: Origin,
        cap: int,
        idle_timeout: float,
        traffic: Traffic,
        local_address: str | None,
        ssl_context: ssl.SSLContext | None,
        user_agent: str,
    ) -> None:
        self.origin = origin
        self.cap = cap
        self.idle_timeout = idle_timeout
        self.traffic = traffic
        self.local_address = local_address
        self.ssl_context = ssl_context
        self.idle: list[_Connection] = []
        self.count = 0
        self.fixed_lines = f"Host: {origin.authority}\r\nUser-Agent: {user_agent}\r\n"
        self.waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()

    async def acquire(self, deadline: float) -> _Connection:
        """An idle connection, a new one, or the next one released; by ``deadline``."""
        while True:
            now = time.monotonic()
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed and now - connection.idle_since < self.idle_timeout:
                    return connection
                self._drop(connection)
            if self.count < self.cap:
                self.count += 1
                try:
                    async with asyncio.timeout_at(deadline):
                        return await self._open()
                except BaseException:
                    self.count -= 1
                    self._wake(None)
                    raise
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    handed = await waiter
            except BaseException:
                # Cancelled just after being handed a connection: pass it on.
                if waiter.done() and not waiter.cancelled():
                    given = waiter.result()
                    if given is not None:
                        self.release(given)
                    else:
                        self._wake(None)
                raise
            if handed is not None:
                return handed

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        local = (self.local_address, 0) if self.local_address else None
        try:
            _, connection = await loop.create_connection(
                lambda: _Connection(self.origin, self.traffic),
                self.origin.host,
                self.origin.port,
                ssl=self.ssl_context,
                local_addr=local,
            )
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.origin}: {exc.strerror or exc}") from exc
        self.traffic.connections += 1
        return connection

    def release(self, connection: _Connection) -> None:
        """Give back a connection after a whole exchange."""
        if connection.closed:
            self._drop(connection)
            return
        connection.idle_since = time.monotonic()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def discard(self, connection: _Connection) -> None:
        connection.close()
        self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self.count -= 1
        self._wake(None)

    def _wake(self, value: _Connection | None) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.count -= len(self.idle)
        self.idle.clear()


class HttpClient:
    """Requests to a fixed set of origins over pooled keep-alive connections.

    Args:
        urls: the origins of these URLs are the only ones contacted (see :class:`OffTarget`).
        max_connections: per origin; further requests wait for a free connection.
        timeout: seconds for a whole exchange (waiting for a connection included), unless
            a request says otherwise.
        idle_timeout: an idle connection older than this is closed rather than reused:
            keep it below the server's keep-alive timeout (uvicorn's default is 5 s), so
            requests rarely meet a connection the server is closing.
        local_address: the source address of every connection (e.g. one of 127.0.0.0/8,
            so that a crowd on loopback comes from many addresses, as a real one does).
        traffic: counters, shareable between clients.

    Raises:
        ValueError: a URL that is not absolute http(s).
    """

    def __init__(
        self,
        urls: Iterable[str],
        *,
        max_connections: int = 4,
        timeout: float = 15.0,
        idle_timeout: float = 4.0,
        local_address: str | None = None,
        user_agent: str = f"podium-load/{__version__}",
        traffic: Traffic | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.origins = frozenset(Origin.of(url) for url in urls)
        self.max_connections = max_connections
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.local_address = local_address
        self.user_agent = user_agent
        self.traffic = traffic or Traffic()
        self.ssl_context = ssl_context
        self._pools: dict[Origin, _Pool] = {}

    def check_origin(self, origin: Origin) -> None:
        """Raises :class:`OffTarget` unless ``origin`` is one this client may contact."""
        if origin not in self.origins:
            allowed = ", ".join(sorted(str(o) for o in self.origins))
            raise OffTarget(f"refusing to contact {origin}: only {allowed} may be")

    def _pool(self, origin: Origin) -> _Pool:
        pool = self._pools.get(origin)
        if pool is None:
            self.check_origin(origin)
            context = None
            if origin.scheme == "https":
                context = self.ssl_context or ssl.create_default_context()
            pool = _Pool(
                origin,
                self.max_connections,
                self.idle_timeout,
                self.traffic,
                self.local_address,
                context,
                self.user_agent,
            )
            self._pools[origin] = pool
        return pool

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        limit: float | None = None,
    ) -> Response:
        """Send ``method url`` and return the whole answer, whatever its status.

        The target is sent as the URL spells it (no normalisation), so tests of path
        handling send what they mean. A request that meets a reused connection closed by
        the server before any answer byte is sent once more on a fresh connection (the
        server never saw it; RFC 9112 9.3.1 allows the retry).

        Raises:
            OffTarget: the URL's origin is not one this client may contact.
            ValueError: the URL is not absolute http(s), or a header has CR/LF.
            TransportError: no whole answer (connect failure, close, timeout, garbage).
        """
        origin, target = _split(url)
        pool = self._pool(origin)
        if method == "GET" and not body and not headers:
            # The common case, rendered from the pool's fixed lines.
            check_target(target)
            data = f"GET {target} HTTP/1.1\r\n{pool.fixed_lines}\r\n".encode("latin-1")
        else:
            data = render_request(
                method, target, origin.authority, [("User-Agent", self.user_agent), *headers], body
            )
        self.traffic.requests += 1
        seconds = self.timeout if limit is None else limit
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            return await self._exchange(pool, method, data, deadline)
        except (TimeoutError, RequestTimeout):
            raise RequestTimeout(f"{method} {url}: no whole answer within {seconds:g} s") from None

    async def _exchange(self, pool: _Pool, method: str, data: bytes, deadline: float) -> Response:
        for attempt in (0, 1):
            connection = await pool.acquire(deadline)
            reused = connection.exchanges > 0
            try:
                response = await connection.exchange(method, data, deadline)
            except ConnectionClosed:
                pool.discard(connection)
                if reused and attempt == 0 and not connection.started_answer:
                    self.traffic.stale_retries += 1
                    continue
                raise
            except BaseException:
                pool.discard(connection)
                raise
            if response.keep_alive:
                pool.release(connection)
            else:
                pool.discard(connection)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, url: str, *, limit: float | None = None) -> Response:
        return await self.request("GET", url, limit=limit)

    async def post_json(self, url: str, body: bytes, *, limit: float | None = None) -> Response:
        return await self.request(
            "POST", url, body=body, headers=(("Content-Type", "application/json"),), limit=limit
        )

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def _split(url: str) -> tuple[Origin, str]:
    """The origin and the request target (path and query, verbatim) of ``url``."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        raise ValueError(f"{url!r} is not an absolute URL")
    path_at = url.find("/", scheme_end + 3)
    base, target = (url, "/") if path_at < 0 else (url[:path_at], url[path_at:])
    fragment = target.find("#")
    if fragment >= 0:
        target = target[:fragment]
    query_at = base.find("?")
    if query_at >= 0:  # "http://host?x": a query with an empty path
        base, target = base[:query_at], "/" + base[query_at:]
    return _origin_of(base), target


_ORIGINS: dict[str, Origin] = {}


def _origin_of(base: str) -> Origin:
    """:meth:`Origin.of` with a small cache: a crowd asks for the same few origins."""
    origin = _ORIGINS.get(base)
    if origin is None:
        origin = Origin.of(base)
        if len(_ORIGINS) < 1024:
            _ORIGINS[base] = origin
    return origin


__all__ = [
    "ConnectFailed",
    "ConnectionClosed",
    "HttpClient",
    "OffTarget",
    "Origin",
    "ProtocolError",
    "RequestTimeout",
    "Response",
    "ResponseParser",
    "Traffic",
    "TransportError",
    "render_request",
]
