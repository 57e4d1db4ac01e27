"""The crowd's player (podium.clients.follow.Follower) against a loopback server that
answers the ways edges do: Content-Length, chunked, gzip, ``Connection: close``, a
kept-alive connection closed between requests, 503 with ``Retry-After``, silence,
garbage, 404, and media on another origin."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import itertools
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from podium.clients.follow import Follower, FollowOptions, FollowStats
from podium.clients.hls import Playlist
from podium.clients.listen import Cursor, RetryPolicy, Step
from podium.clients.load import StormPlan
from podium.clients.playlists import PlaylistCache
from podium.errors import ClientError

QUICK = RetryPolicy(attempts=3, base=0.01, cap=0.05, max_retry_after=5.0)
INIT = b"\x00\x00\x00\x10ftypiso6\x00\x00\x00\x00"
MEDIA = b"\x00\x00\x00\x10stypmsdh\x00\x00\x00\x00" + bytes(400)


def playlist(*uris: str) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:2", '#EXT-X-MAP:URI="init.mp4"']
    for uri in uris:
        lines += ["#EXTINF:2.0,", uri]
    return ("\n".join([*lines, "#EXT-X-ENDLIST", ""])).encode()


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    pieces = (body[:half], body[half:])
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


def answer(status: str, body: bytes, *fields: str) -> bytes:
    head = "".join(f"{f}\r\n" for f in fields)
    if not any(f.lower().startswith("transfer-encoding") for f in fields):
        head += f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


# What to do with a request: the bytes to send (None: say nothing), and whether to close.
Script = Callable[[str, bool, int], tuple[bytes | None, bool]]


@dataclass
class Edge:
    """A scripted HTTP/1.1 server on loopback that counts what it is asked and sends."""

    script: Script
    requests: list[tuple[str, int]] = field(default_factory=list)
    sent: int = 0
    connections: int = 0
    asked: Counter[str] = field(default_factory=Counter)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                self.asked[target] += 1
                self.requests.append((target, connection))
                data, close = self.script(
                    target, b"accept-encoding: gzip" in head.lower(), self.asked[target]
                )
                if data is None:
                    await asyncio.sleep(3600)
                    break
                writer.write(data)
                self.sent += len(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed it
        finally:
            writer.close()


async def follow(
    script: Script,
    options: FollowOptions,
    seconds: float = 10.0,
    cache: PlaylistCache | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[FollowStats, Edge]:
    edge = Edge(script)
    server = await asyncio.start_server(edge.handle, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[FollowStats] = loop.create_future()
    follower = Follower(
        f"{'https' if tls else 'http'}://127.0.0.1:{port}/hls/s/live.m3u8",
        cache or PlaylistCache(),
        options,
        until=loop.time() + seconds,
        done=finished.set_result,
        clock=loop.time,
    )
    try:
        follower.start()
        return await asyncio.wait_for(finished, seconds + 5), edge
    finally:
        follower.stop()
        server.close()


def test_a_follower_plays_through_everything_edges_answer() -> None:
    lists = playlist("seg0.m4s", "seg1.m4s", "seg2.m4s")

    def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        if target == "/hls/s/live.m3u8":
            assert accepts_gzip
            body = gzip.compress(lists)
            fields = ("Content-Encoding: gzip", "Transfer-Encoding: chunked")
            return answer("200 OK", chunked(body), *fields), False
        if target == "/hls/s/init.mp4":
            return answer("200 OK", INIT), False
        if target == "/hls/s/seg0.m4s" and times == 1:
            return answer("503 Busy", b"busy", "Retry-After: 0", "Connection: close"), True
        if target == "/hls/s/seg1.m4s":
            # Kept alive as far as the client knows, then closed (an idle timeout).
            return answer("200 OK", MEDIA), True
        return answer("200 OK", chunked(MEDIA), "Transfer-Encoding: chunked"), False

    stats, edge = asyncio.run(follow(script, FollowOptions(gzip=True, policy=QUICK)))
    assert stats.failure is None
    assert stats.ended
    assert (stats.segments, stats.media_seconds) == (3, 6.0)
    assert stats.media_bytes == len(INIT) + 3 * len(MEDIA)
    # The 503 was retried on a new connection; the dropped kept-alive connection was
    # replaced without an error, as every client does.
    assert (stats.errors, stats.retries, stats.reload_retries) == (1, 1, 0)
    assert len(stats.outages) == 1
    assert stats.outages[0][1] is not None
    # The request written to the connection the server was closing is sent again.
    assert stats.by_kind["part"] in (4, 5)
    assert (stats.by_kind["playlist"], stats.by_kind["init"]) == (1, 1)
    assert stats.requests == sum(stats.by_kind.values())
    assert stats.statuses == {200: 5, 503: 1}
    assert stats.connections == edge.connections == 3
    assert stats.bytes_down == edge.sent
    assert [target for target, _ in edge.requests] == [
        "/hls/s/live.m3u8",
        "/hls/s/init.mp4",
        "/hls/s/seg0.m4s",
        "/hls/s/seg0.m4s",
        "/hls/s/seg1.m4s",
        "/hls/s/seg2.m4s",
    ]


def test_silence_and_garbage_are_retried_and_a_404_is_not() -> None:
    lists = playlist("seg0.m4s", "seg1.m4s", "gone.m4s")

    def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        if target == "/hls/s/live.m3u8":
            return answer("200 OK", lists), False
        if target == "/hls/s/seg0.m4s" and times == 1:
            return None, False  # never answered: the request's time limit ends it
        if target == "/hls/s/seg1.m4s" and times == 1:
            return b"SPDY/3 200 OK\r\n\r\n", True
        if target == "/hls/s/gone.m4s":
            return answer("404 Not Found", b"{}"), False
        return answer("200 OK", INIT if target.endswith("init.mp4") else MEDIA), False

    options = FollowOptions(policy=QUICK, timeout_s=0.5)
    stats, edge = asyncio.run(follow(script, options))
    assert stats.segments == 2
    assert (stats.errors, stats.retries) == (2, 2)
    assert stats.gave_up
    assert stats.failure is not None
    assert stats.failure[0] == "part"
    assert "/hls/s/gone.m4s" in stats.failure[1]
    assert "404" in stats.failure[1]
    assert edge.asked["/hls/s/gone.m4s"] == 1


def test_retries_end_when_the_policy_says() -> None:
    lists = playlist("seg0.m4s")

    def busy(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        if target == "/hls/s/live.m3u8":
            return answer("200 OK", lists), False
        if target.endswith("init.mp4"):
            return answer("200 OK", INIT), False
        return answer("503 Busy", b"", "Retry-After: 0"), False

    stats, edge = asyncio.run(follow(busy, FollowOptions(policy=QUICK)))
    assert stats.failure is not None
    assert stats.failure[0] == "status"
    assert edge.asked["/hls/s/seg0.m4s"] == QUICK.attempts + 1
    assert stats.retries == QUICK.attempts

    def far(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        if target == "/hls/s/live.m3u8":
            return answer("429 Too Many", b"", "Retry-After: 3600"), False
        return answer("200 OK", b""), False

    stats, edge = asyncio.run(follow(far, FollowOptions(policy=QUICK)))
    assert stats.failure is not None
    assert "Retry-After 3600" in stats.failure[1]
    assert edge.asked["/hls/s/live.m3u8"] == 1  # an hour is past the policy: no retry


def test_media_on_another_origin_is_never_fetched() -> None:
    elsewhere = Edge(lambda target, accepts_gzip, times: (answer("200 OK", MEDIA), False))

    async def scenario() -> tuple[FollowStats, Edge]:
        other = await asyncio.start_server(elsewhere.handle, "127.0.0.1", 0)
        port = other.sockets[0].getsockname()[1]
        lists = playlist(f"http://127.0.0.1:{port}/seg0.m4s")

        def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
            body = lists if target.endswith(".m3u8") else INIT
            return answer("200 OK", body), False

        try:
            return await follow(script, FollowOptions(policy=QUICK))
        finally:
            other.close()

    stats, edge = asyncio.run(scenario())
    assert stats.failure is not None
    assert "is not on" in stats.failure[1]
    assert elsewhere.connections == 0
    assert [target for target, _ in edge.requests] == ["/hls/s/live.m3u8", "/hls/s/init.mp4"]


def test_time_up_stops_a_follower_that_waits_for_more() -> None:
    live = playlist("seg0.m4s").replace(b"#EXT-X-ENDLIST\n", b"")
    numbers = itertools.count()

    def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        next(numbers)
        if target.startswith("/hls/s/live.m3u8"):
            return answer("200 OK", live), False
        return answer("200 OK", INIT if target.endswith("init.mp4") else MEDIA), False

    loop_seconds = 1.5
    stats, edge = asyncio.run(follow(script, FollowOptions(policy=QUICK), seconds=loop_seconds))
    assert stats.failure is None
    assert not stats.ended
    assert stats.segments == 1
    # No blocking reload offered: it polls every half target duration (8216bis 6.3.4).
    assert 2 <= edge.asked["/hls/s/live.m3u8"] <= 3
    assert stats.stopped_at is not None


def test_what_cannot_be_requested_or_handled_stops_it_with_a_reason() -> None:
    def listing(uri: str) -> Script:
        def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
            body = playlist(uri) if target.endswith(".m3u8") else INIT
            return answer("200 OK", body), False

        return script

    for uri in ("seg 0.m4s", "seg0.m4s\x00", "séance.m4s"):
        stats, edge = asyncio.run(follow(listing(uri), FollowOptions(policy=QUICK)))
        assert stats.failure is not None
        assert "cannot be requested" in stats.failure[1]
        assert [target for target, _ in edge.requests] == ["/hls/s/live.m3u8", "/hls/s/init.mp4"]

    class Broken(PlaylistCache):
        """A step that raises, standing for an answer nothing here foresaw."""

        def next_step(self, playlist: Playlist, cursor: Cursor) -> Step:
            raise RuntimeError("no step from here")

    stats, _ = asyncio.run(follow(listing("seg0.m4s"), FollowOptions(policy=QUICK), cache=Broken()))
    # Reported, not left waiting for an answer it would never handle.
    assert stats.failure == ("client", "RuntimeError: no step from here")


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (a staging deployment's own CA, in effect)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podium test edge")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "edge.pem", directory / "edge.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_with_the_deployments_own_authority(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    lists = playlist("seg0.m4s", "seg1.m4s")

    def script(target: str, accepts_gzip: bool, times: int) -> tuple[bytes | None, bool]:
        body = lists if target.endswith(".m3u8") else INIT if "init" in target else MEDIA
        return answer("200 OK", body), False

    trusted = StormPlan("https://127.0.0.1:1", "space", 1, 1.0, ca_file=str(cert)).tls()
    options = FollowOptions(policy=QUICK, ssl_context=trusted)
    stats, edge = asyncio.run(follow(script, options, tls=server_tls))
    assert stats.failure is None
    assert stats.ended
    assert stats.segments == 2
    assert stats.edge.startswith("https://")

    # The system's roots do not know this authority: refused, and said why.
    stats, edge = asyncio.run(
        follow(script, FollowOptions(policy=RetryPolicy(attempts=0)), tls=server_tls)
    )
    assert stats.failure is not None
    assert "CERTIFICATE_VERIFY_FAILED" in stats.failure[1]
    assert not edge.requests

    with pytest.raises(ClientError, match="cannot read certificates"):
        StormPlan("https://127.0.0.1:1", "space", 1, 1.0, ca_file=str(tmp_path / "none")).check()
