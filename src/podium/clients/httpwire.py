"""HTTP/1.1 messages as values, for the load generator's lean client.

:class:`ResponseParser` reads responses from the bytes of a connection (sans-IO: bytes
in, :class:`Response` values out), with bodies framed by ``Content-Length``, the chunked
transfer coding, or the connection's close (RFC 9112 6, 7.1); :func:`render_request`
writes requests. :class:`Origin` is what a connection pool is kept for, and what a client
may contact. The asyncio shell is :mod:`podium.clients.http1`.

Errors, all :class:`~podium.errors.ClientError`::

    ClientError
    ├── OffTarget            the URL is not on an origin the client was given
    └── TransportError       the exchange failed below HTTP
        ├── ConnectFailed    no connection (refused, unreachable, bad source address)
        ├── ConnectionClosed the server closed before the whole answer came
        ├── RequestTimeout   no whole answer within the request's time limit
        └── ProtocolError    the answer is not well-formed HTTP/1.1
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from podium.errors import ClientError

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line plus header section accepted."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest body accepted; a larger one is a :class:`ProtocolError`."""

_NO_BODY_STATUS = frozenset({204, 304})
# A header field line (RFC 9110 5.1 token, RFC 9112 5): "name: value" and its CRLF; the
# value without its surrounding spaces and tabs.
_FIELD = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*\r\n")
# A whole header section of such lines, checked in one match (possessive: no line can
# be read two ways, and it takes a third less time).
_FIELD_BLOCK = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[^\r\n]*+\r\n)*+")
_TOKEN_FORBIDDEN = frozenset("\r\n\0")


class OffTarget(ClientError):
    """A URL outside the origins the client may contact."""


class TransportError(ClientError):
    """The exchange failed below HTTP; no (whole) answer came."""


class ConnectFailed(TransportError):
    pass


class ConnectionClosed(TransportError):
    pass


class RequestTimeout(TransportError):
    pass


class ProtocolError(TransportError):
    pass


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port: what RFC 6454 calls an origin, and what a pool is kept for."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an absolute ``http``/``https`` URL.

        Raises:
            ValueError: for another scheme, no host, or a bad port.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError(f"{url!r} has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{url!r} has a bad port") from exc
        return cls(scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80))

    @property
    def authority(self) -> str:
        """The ``Host`` header value (RFC 9110 7.2): the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


@dataclass(slots=True)
class Response:
    """One answer. Header names are lower case; repeated headers are joined with ``, ``
    (RFC 9110 5.3), except ``set-cookie``, which this client has no use for. (Not frozen:
    a crowd's client makes thousands a second, and a frozen one costs nearly four times
    as much to make.)"""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class _Fields(Mapping[str, str]):
    """The header fields of a well-formed head, parsed when first read: a crowd's
    client reads the few fields that frame the body straight from the bytes, and most
    answers' other fields are never looked at."""

    __slots__ = ("_block", "_parsed")

    def __init__(self, block: bytes) -> None:
        self._block = block
        self._parsed: dict[str, str] | None = None

    def _fields(self) -> dict[str, str]:
        if self._parsed is None:
            self._parsed = _join_fields(_FIELD.findall(self._block.decode("latin-1")))
        return self._parsed

    def __getitem__(self, name: str) -> str:
        return self._fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields())

    def __len__(self) -> int:
        return len(self._fields())

    def __repr__(self) -> str:
        return repr(self._fields())


def _join_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; a repeated field's values joined with ``, `` (RFC 9110 5.3)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _field_value(lowered: bytes, name: bytes) -> bytes | None:
    """The value of the field ``name`` (CRLF, the name, a colon) in a lower-cased header
    section that starts with CRLF, or ``None``."""
    start = lowered.find(name)
    if start < 0:
        return None
    start += len(name)
    return lowered[start : lowered.index(b"\r\n", start)].strip(b" \t")


def _plain_head(head: bytes) -> tuple[int, str, bytes, int | None, bool] | None:
    """The usual kind of head (``head`` up to the CRLF before the blank line), read
    straight from its bytes: ``HTTP/1.1``, a final status, well-formed fields, at most one
    ``Content-Length`` and ``Connection``, and either no ``Transfer-Encoding`` or just
    ``chunked`` without a ``Content-Length``. Returns the status, the reason, the header
    section, the length (``None``: none given; :data:`_CHUNKED`: chunked) and whether the
    connection stays open; ``None`` for anything else, which the general reading decides.
    """
    first = head.find(b"\r\n")
    code = head[9:12]
    if head[:9] != b"HTTP/1.1 " or not (first == 12 or head[12:13] == b" "):
        return None
    if not code.isdigit() or code[:1] == b"1":
        return None
    block = head[first + 2 :]
    if _FIELD_BLOCK.fullmatch(block) is None:
        return None
    lowered = b"\r\n" + block.lower()
    if lowered.count(b"\r\ncontent-length:") > 1 or lowered.count(b"\r\nconnection:") > 1:
        return None
    length = _field_value(lowered, b"\r\ncontent-length:")
    if b"\r\ntransfer-encoding:" in lowered:
        if (
            length is not None
            or lowered.count(b"\r\ntransfer-encoding:") > 1
            or _field_value(lowered, b"\r\ntransfer-encoding:") != b"chunked"
        ):
            return None
        length = b"-1"
    elif length is not None and not length.isdigit():
        return None
    connection = _field_value(lowered, b"\r\nconnection:")
    keep_alive = (
        connection is None
        or b"close" not in connection
        or b"close" not in {token.strip() for token in connection.split(b",")}
    )
    reason = head[13:first].decode("latin-1")
    return int(code), reason, block, None if length is None else int(length), keep_alive


_CHUNKED = -1
"""The length :func:`_plain_head` gives a chunked body."""


_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _chunk_size(text: bytes) -> int | None:
    """A chunk-size (RFC 9112 7.1: ``1*HEXDIG``), or ``None``: ``int()`` alone would also
    take a sign, ``0x`` and underscores."""
    return int(text, 16) if _HEX_DIGITS.fullmatch(text) else None


def _whole_chunked(data: bytes, start: int) -> bytes | None:
    """The chunked body (RFC 9112 7.1) that is exactly ``data[start:]``, without chunk
    extensions' meaning or trailers; ``None`` for anything else (an incomplete body, or
    one the general reading should judge)."""
    chunks: list[bytes] = []
    while True:
        eol = data.find(b"\r\n", start)
        if eol < 0:
            return None
        size = _chunk_size(data[start:eol].split(b";", 1)[0].strip())
        if size is None:
            return None
        if size == 0:
            return b"".join(chunks) if len(data) == eol + 4 and data[eol:] == b"\r\n\r\n" else None
        end = eol + 2 + size
        if size < 0 or data[end : end + 2] != b"\r\n":
            return None
        chunks.append(data[eol + 2 : end])
        start = end + 2


# -- the parser (sans-IO) ----------------------------------------------------------------

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ResponseParser:
    """Reads one response at a time from the bytes of a connection.

    Call :meth:`expect` with the request's method before its answer arrives (a ``HEAD``
    answer has no body), then :meth:`feed` bytes as they come; it returns the
    :class:`Response` once complete. :meth:`feed_eof` says the connection closed: it
    completes a body delimited by the close, or raises. Interim ``1xx`` answers are
    skipped (RFC 9110 15.2). Raises :class:`ProtocolError` for anything malformed.
    """

    def __init__(self, max_head: int = MAX_HEAD_BYTES, max_body: int = MAX_BODY_BYTES) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.received = 0
        """Bytes of the current response seen so far (0: nothing yet)."""
        self.head_bytes = 0
        """Bytes of the current response's head (status line, fields, blank line)."""
        self._buffer = bytearray()
        self._method = "GET"
        self._reset()

    def _reset(self) -> None:
        self._state = _HEAD
        self._status = 0
        self._reason = ""
        self._headers: Mapping[str, str] = {}
        self._keep_alive = True
        self._body = bytearray()
        self._remaining = 0

    def expect(self, method: str) -> None:
        """The next answer is to a request with ``method``."""
        self._method = method
        self.received = 0
        self.head_bytes = 0
        self._reset()

    def feed(self, data: bytes) -> Response | None:
        self.received += len(data)
        if self._state == _HEAD and not self._buffer:
            # The usual case: a response begins this read. Its head is read from the bytes
            # once; a whole answer is taken as it is, and otherwise only the rest of the
            # bytes go on to the general reading of the body.
            end = data.find(b"\r\n\r\n")
            plain = _plain_head(data[: end + 2]) if 0 <= end <= self.max_head else None
            if plain is not None:
                whole = self._whole(data, end + 4, plain)
                if whole is not None:
                    return whole
                self.head_bytes = end + 4
                self._enter(plain)
                self._buffer += data[end + 4 :]
                if self._state == _DONE:
                    return self._finish(self._keep_alive)
                return self._advance()
        self._buffer += data
        return self._advance()

    def feed_eof(self) -> Response | None:
        """The peer closed. Returns the response a close completes, ``None`` if none had
        begun; raises :class:`ProtocolError` for a truncated one."""
        if self._state == _UNTIL_CLOSE:
            self._body += self._buffer
            self._buffer.clear()
            return self._finish(keep_alive=False)
        if self._state == _HEAD and not self._buffer and self.received == 0:
            return None
        raise ProtocolError("the connection closed in the middle of a response")

    def _advance(self) -> Response | None:
        while True:
            state = self._state
            if state == _HEAD:
                if not self._head():
                    return None
                if self._state == _DONE:
                    return self._finish(self._keep_alive)
            elif state == _LENGTH:
                take = min(self._remaining, len(self._buffer))
                if take:
                    self._body += self._buffer[:take]
                    del self._buffer[:take]
                    self._remaining -= take
                if self._remaining:
                    return None
                return self._finish(self._keep_alive)
            elif state == _UNTIL_CLOSE:
                self._body += self._buffer
                self._buffer.clear()
                self._check_body()
                return None
            elif state == _CHUNK_SIZE:
                if not self._chunk_size():
                    return None
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(self._buffer))
                self._body += self._buffer[:take]
                del self._buffer[:take]
                self._remaining -= take
                if self._remaining:
                    return None
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(self._buffer) < 2:
                    return None
                if self._buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk is not followed by CRLF")
                del self._buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    self._check_head(len(self._buffer))
                    return None
                del self._buffer[: end + 2]
                if end == 0:
                    return self._finish(self._keep_alive)
            else:  # pragma: no cover - _DONE is left by _finish
                return None

    def _check_head(self, size: int) -> None:
        if size > self.max_head:
            raise ProtocolError(f"the response head is longer than {self.max_head} bytes")

    def _check_body(self) -> None:
        if len(self._body) > self.max_body:
            raise ProtocolError(f"the response body is larger than {self.max_body} bytes")

    def _head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            self._check_head(len(self._buffer))
            return False
        self._check_head(end)
        self.head_bytes += end + 4
        if self._plain_head(end):
            return True
        text = self._buffer[: end + 2].decode("latin-1")
        del self._buffer[: end + 4]
        first = text.find("\r\n")
        status_line = text[:first].split(" ", 2)
        version = status_line[0]
        if len(status_line) < 2 or not version.startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {text[:first][:80]!r}")
        code = status_line[1]
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise ProtocolError(f"bad status code {code[:10]!r}")
        status = int(code)
        fields = text[first + 2 :]
        pairs = _FIELD.findall(fields)
        if len(pairs) != fields.count("\n"):
            # RFC 9112 5.1/5.2: a token, a colon (no whitespace before it), a value on
            # one line (no folding, no bare CR or LF).
            bad = next(line for line in fields.split("\r\n") if not _FIELD.match(line + "\r\n"))
            raise ProtocolError(f"malformed header line {bad[:80]!r}")
        headers = _join_fields(pairs)
        if 100 <= status < 200:
            return True  # interim answer: the final one follows
        self._status, self._reason, self._headers = status, (status_line[2:] or [""])[0], headers
        connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        self._frame(status, headers)
        return True

    def _plain_head(self, end: int) -> bool:
        """The head ending at ``end``, when :func:`_plain_head` can read it."""
        plain = _plain_head(bytes(self._buffer[: end + 2]))
        if plain is None:
            return False
        del self._buffer[: end + 4]
        self._enter(plain)
        return True

    def _enter(self, plain: tuple[int, str, bytes, int | None, bool]) -> None:
        """Take the head :func:`_plain_head` read: the answer's values, and how its body
        is framed."""
        status, reason, block, length, keep_alive = plain
        self._status, self._reason, self._headers = status, reason, _Fields(block)
        self._keep_alive = keep_alive
        if self._method == "HEAD" or status in _NO_BODY_STATUS:
            self._state = _DONE
        else:
            self._frame_length(length)

    def _whole(
        self, data: bytes, start: int, plain: tuple[int, str, bytes, int | None, bool]
    ) -> Response | None:
        """``data`` when it is exactly one whole response, its plain head (read by
        :func:`_plain_head`) ending at ``start``; ``None`` otherwise, consuming nothing."""
        status, reason, block, length, keep_alive = plain
        if self._method == "HEAD" or status in _NO_BODY_STATUS:
            if len(data) != start:
                return None
            body = b""
        elif length == _CHUNKED:
            chunked = _whole_chunked(data, start)
            if chunked is None or len(chunked) > self.max_body:
                return None
            body = chunked
        elif length is None or len(data) - start != length or length > self.max_body:
            return None
        else:
            body = data[start:]
        self.head_bytes = start
        self._state = _DONE
        return Response(status, reason, _Fields(block), body, keep_alive)

    def _frame(self, status: int, headers: Mapping[str, str]) -> None:
        """RFC 9112 6.3: how the body's length is determined."""
        if self._method == "HEAD" or status in _NO_BODY_STATUS:
            self._state = _DONE
            return
        coding = headers.get("transfer-encoding")
        if coding is not None:
            # "the final encoding is not chunked": the length is the connection's.
            chunked = coding.rsplit(",", 1)[-1].strip().lower() == "chunked"
            self._frame_length(_CHUNKED if chunked else None)
            return
        length = headers.get("content-length")
        if length is None:
            self._frame_length(None)
            return
        values = {v.strip() for v in length.split(",")}
        value = values.pop()
        if values or not (value.isascii() and value.isdigit()):
            raise ProtocolError(f"bad Content-Length {length[:40]!r}")
        self._frame_length(int(value))

    def _frame_length(self, length: int | None) -> None:
        """The body is ``length`` bytes, chunked (:data:`_CHUNKED`), or delimited by the
        connection's close (``None``)."""
        if length is None:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        elif length == _CHUNKED:
            self._state = _CHUNK_SIZE
        elif length > self.max_body:
            raise ProtocolError(f"the response body is larger than {self.max_body} bytes")
        else:
            self._remaining, self._state = length, _LENGTH

    def _chunk_size(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            self._check_head(len(self._buffer))
            return False
        line = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
        del self._buffer[: end + 2]
        size = _chunk_size(line)
        if size is None:
            raise ProtocolError(f"bad chunk size {line[:20]!r}")
        if size < 0 or len(self._body) + size > self.max_body:
            raise ProtocolError(f"the response body is larger than {self.max_body} bytes")
        if size == 0:
            self._state = _TRAILERS
        else:
            self._remaining, self._state = size, _CHUNK_DATA
        return True

    def _finish(self, keep_alive: bool) -> Response:
        if self._buffer:
            # Bytes nobody asked for (no pipelining here): the connection is not trusted.
            keep_alive = False
            self._buffer.clear()
        self._state = _DONE
        return Response(self._status, self._reason, self._headers, bytes(self._body), keep_alive)


def requestable(url: str) -> bool:
    """Whether ``url`` can go in a request line as it is: ASCII, printable, no space."""
    return url.isascii() and url.isprintable() and " " not in url


def check_target(target: str) -> None:
    """Raises :class:`ValueError` for a request target with a space, CR, LF or NUL."""
    if " " in target or _TOKEN_FORBIDDEN.intersection(target):
        raise ValueError(f"the request target {target[:80]!r} holds a space, CR, LF or NUL")


def render_request(
    method: str, target: str, authority: str, headers: Iterable[tuple[str, str]], body: bytes
) -> bytes:
    """The bytes of a request (RFC 9112 3). ``Content-Length`` is added for a body, and
    for ``POST``/``PUT``/``PATCH`` without one.

    Raises:
        ValueError: a CR, LF or NUL in the target or a header (request smuggling).
    """
    check_target(target)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    for name, value in headers:
        if _TOKEN_FORBIDDEN.intersection(name + value):
            raise ValueError(f"the header {name[:40]!r} holds a CR, LF or NUL")
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "ConnectFailed",
    "ConnectionClosed",
    "OffTarget",
    "Origin",
    "ProtocolError",
    "RequestTimeout",
    "Response",
    "ResponseParser",
    "TransportError",
    "check_target",
    "render_request",
    "requestable",
]
