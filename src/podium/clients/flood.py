"""``podium load flood``: junk and abusive requests at a given rate, and how they were met.

A rehearsal of an attack on the public endpoints. Each request follows one of the
:data:`PATTERNS`, in turn: malformed and mistyped JSON, oversized bodies, forged and
tampered tickets and tickets sent to another space, unknown paths and path tricks
(``..``, encoded separators, NUL, very long paths), wrong methods, bytes that are not
HTTP, slow bodies and slow headers (a few bytes a second), and join hammering from one
address. The answers are judged by :func:`judge`: a refusal with a 4xx, a ``429`` or a
``503`` that says why, or a connection cut off where cutting is the defence (oversized
and slow requests), is **explained**; any other 5xx, a success where the request should
have failed, or a connection failure elsewhere is **unexplained**.

Bounded: at most :data:`MAX_RATE` requests a second for at most :data:`MAX_SECONDS`, at
most ``concurrency`` in flight (the rest are counted as skipped, never queued up), and
only to the origin of ``server``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podium.clients.http1 import (
    ConnectFailed,
    HttpClient,
    Origin,
    RequestTimeout,
    Response,
    TransportError,
)
from podium.clients.load import source_address, source_addresses
from podium.errors import ClientError

MAX_RATE = 5000.0
MAX_SECONDS = 3600.0
MAX_SAMPLES = 20
OVERSIZED_BYTES = 2 * 1024 * 1024
SLOW_SECONDS = 5.0
"""How long a slow request trickles before it stops waiting to be cut off."""
SLOW_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Hit:
    """What one abusive request got. ``status`` is ``None`` without an HTTP answer;
    ``cut`` then says how it ended: ``closed`` by the server, ``held`` (the server was
    still waiting when we stopped: it did not cut the request off), or ``failed`` (no
    connection). ``reason`` is the problem
    document's ``reason`` (else its ``type``), if any."""

    status: int | None
    reason: str | None = None
    cut: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Pattern:
    """One kind of abuse. ``allowed``: the statuses that are a correct answer (429, and
    503 with a reason, are always allowed). ``may_cut``: closing the connection without
    an answer is a correct defence."""

    name: str
    allowed: frozenset[int]
    may_cut: bool = False


def judge(pattern: Pattern, hit: Hit) -> str | None:
    """Why ``hit`` is unexplained for ``pattern``, or ``None`` when it is explained."""
    if hit.status is None:
        if pattern.may_cut and hit.cut in ("closed", "held"):
            return None
        return f"no answer ({hit.cut}): {hit.detail}"
    if hit.status == 429:
        return None
    if hit.status == 503:
        return None if hit.reason else "503 without a reason"
    if hit.status >= 500:
        return f"{hit.status}"
    if hit.status in pattern.allowed:
        return None
    return f"{hit.status} where {sorted(pattern.allowed)} was expected"


_CLIENT_ERRORS = frozenset({400, 401, 403, 404, 405, 409, 411, 413, 414, 415, 422, 431})
PATTERNS: tuple[Pattern, ...] = (
    Pattern("malformed_json", frozenset({400, 415, 422})),
    Pattern("wrong_types", frozenset({400, 401, 422})),
    Pattern("oversized_body", frozenset({413}), may_cut=True),
    Pattern("forged_ticket", frozenset({400, 401, 422})),
    Pattern("tampered_ticket", frozenset({400, 401, 422})),
    Pattern("ticket_for_another_space", frozenset({400, 401, 404, 422})),
    Pattern("unknown_path", frozenset({404})),
    Pattern("path_trick", frozenset({400, 404, 414, 431})),
    Pattern("wrong_method", frozenset({404, 405})),
    Pattern("not_http", _CLIENT_ERRORS, may_cut=True),
    Pattern("slow_body", frozenset({400, 408, 413}), may_cut=True),
    Pattern("slow_head", frozenset({400, 408, 431}), may_cut=True),
)
JOIN_HAMMER = Pattern("join_hammer", frozenset({200, 202, 428}))
"""Joins from one address: it gets what any joiner may get (in, queued, a challenge,
refused), and it is a quarter of the flood, so that per-address limits are reached."""


def schedule() -> tuple[Pattern, ...]:
    """One cycle of the flood: every pattern once, and the join hammer after every third."""
    cycle: list[Pattern] = []
    for index, pattern in enumerate(PATTERNS, start=1):
        cycle.append(pattern)
        if index % 3 == 0:
            cycle.append(JOIN_HAMMER)
    return tuple(cycle)


_PATH_TRICKS = (
    "/hls/{space}/../../secret.key",
    "/hls/{space}/%2e%2e/%2e%2e/secret.key",
    "/hls/{space}/..%2f..%2fpodium.sqlite3",
    "/hls/..%2f..%2f..%2fetc%2fpasswd/live.m3u8",
    "//etc/passwd",
    "/hls/{space}/part-0-0.m4s%00.txt",
    "/api/v1/spaces/{space}/../../../../etc/passwd",
    "/static/..%2f..%2fserver.py",
    "/hls/{space}/" + "a" * 6000,
)


@dataclass(frozen=True, slots=True)
class FloodPlan:
    """What to run: ``rate`` requests a second for ``duration_s`` at ``server``, about
    space ``space``; at most ``concurrency`` in flight. ``source_network`` spreads the
    requests (except the join hammer, which keeps one address) over its addresses."""

    server: str
    space: str
    rate: float
    duration_s: float
    concurrency: int = 256
    source_network: str | None = None
    slow_s: float = SLOW_SECONDS
    timeout_s: float = 10.0

    def check(self) -> None:
        """Raises :class:`ClientError` saying what is out of bounds."""
        try:
            Origin.of(self.server)
        except ValueError as exc:
            raise ClientError(f"bad server URL: {exc}") from exc
        if not self.space or "/" in self.space or "?" in self.space:
            raise ClientError(f"bad space id {self.space!r}")
        if not 0 < self.rate <= MAX_RATE:
            raise ClientError(f"rate must be above 0 and at most {MAX_RATE:g} a second")
        if not 0 < self.duration_s <= MAX_SECONDS:
            raise ClientError(f"duration must be above 0 and at most {MAX_SECONDS:g} s")
        if not 1 <= self.concurrency <= 10_000:
            raise ClientError("concurrency must be 1 to 10000")
        if self.source_network is not None:
            source_addresses(self.source_network)


@dataclass(slots=True)
class _Counts:
    sent: int = 0
    skipped: int = 0
    held: int = 0
    by_pattern: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    unexplained: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)

    def record(self, pattern: Pattern, hit: Hit) -> None:
        label = str(hit.status) if hit.status is not None else f"no answer ({hit.cut})"
        self.by_pattern[pattern.name][label] += 1
        self.by_status[label] += 1
        if hit.reason:
            self.reasons[hit.reason] += 1
        if hit.cut == "held":
            self.held += 1
        why = judge(pattern, hit)
        if why is not None:
            self.unexplained[pattern.name] += 1
            if len(self.samples) < MAX_SAMPLES:
                self.samples.append(f"{pattern.name}: {why} {hit.detail}".rstrip())


def _reason(response: Response) -> str | None:
    """The problem document's ``reason`` (else its ``type``)."""
    if not (response.header("content-type") or "").startswith("application/problem+json"):
        return None
    try:
        document = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    reason = document.get("reason") or document.get("type")
    return reason if isinstance(reason, str) else None


class _Attacker:
    """Carries out the patterns against one server."""

    def __init__(self, plan: FloodPlan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self.origin = Origin.of(plan.server)
        self.base = plan.server.rstrip("/")
        self.network = source_addresses(plan.source_network) if plan.source_network else None
        self.hammer = HttpClient(
            [plan.server],
            max_connections=8,
            timeout=plan.timeout_s,
            local_address=source_address(self.network, 0),
        )
        self.clients: dict[str | None, HttpClient] = {}
        self.ticket: str | None = None
        self.serial = 0

    def _client(self) -> tuple[HttpClient, str | None]:
        self.serial += 1
        address = source_address(self.network, 1 + self.serial % 1024)
        client = self.clients.get(address)
        if client is None:
            client = HttpClient(
                [self.plan.server],
                max_connections=64,
                timeout=self.plan.timeout_s,
                local_address=address,
            )
            self.clients[address] = client
        return client, address

    async def prepare(self) -> None:
        """One ordinary join, for a real ticket to tamper with (none if it is not let in)."""
        with contextlib.suppress(TransportError, ValueError, AttributeError):
            response = await self.hammer.post_json(self._space_url("join"), b"")
            if response.status == 200:
                ticket = json.loads(response.body).get("ticket")
                self.ticket = ticket if isinstance(ticket, str) else None

    def _space_url(self, what: str, space: str | None = None) -> str:
        return f"{self.base}/api/v1/spaces/{space or self.plan.space}/{what}"

    async def attack(self, pattern: Pattern) -> Hit:
        method = getattr(self, f"_{pattern.name}")
        result: Hit = await method()
        return result

    async def _http(self, method: str, url: str, body: bytes = b"", *, hammer: bool = False) -> Hit:
        client = self.hammer if hammer else self._client()[0]
        headers = (("Content-Type", "application/json"),) if body else ()
        try:
            response = await client.request(method, url, body=body, headers=headers)
        except RequestTimeout as exc:
            return Hit(None, cut="held", detail=str(exc))
        except ConnectFailed as exc:
            return Hit(None, cut="failed", detail=str(exc))
        except TransportError as exc:
            return Hit(None, cut="closed", detail=str(exc))
        return Hit(response.status, _reason(response), detail=f"{method} {url[:120]}")

    async def _malformed_json(self) -> Hit:
        junk = self.rng.choice([b"{junk", b'{"ticket": ', b"\xff\xfe{}", b"[1, 2", b"null x"])
        return await self._http("POST", self._space_url("beacon"), junk)

    async def _wrong_types(self) -> Hit:
        body = self.rng.choice([{"ticket": 123}, {"ticket": ["a"]}, {"nope": True}, [1]])
        return await self._http("POST", self._space_url("beacon"), json.dumps(body).encode())

    async def _oversized_body(self) -> Hit:
        body = b'{"ticket": "' + b"x" * OVERSIZED_BYTES + b'"}'
        return await self._http("POST", self._space_url("join"), body)

    async def _forged_ticket(self) -> Hit:
        ticket = secrets.token_urlsafe(self.rng.randint(8, 90))
        return await self._beacon(ticket, self.plan.space)

    async def _tampered_ticket(self) -> Hit:
        ticket = self.ticket or secrets.token_urlsafe(64)
        at = self.rng.randrange(len(ticket))
        swapped = "A" if ticket[at] != "A" else "B"
        return await self._beacon(ticket[:at] + swapped + ticket[at + 1 :], self.plan.space)

    async def _ticket_for_another_space(self) -> Hit:
        ticket = self.ticket or secrets.token_urlsafe(64)
        other = "zz" + secrets.token_hex(4)
        return await self._beacon(ticket, other)

    async def _beacon(self, ticket: str, space: str) -> Hit:
        body = json.dumps({"ticket": ticket}).encode()
        return await self._http("POST", self._space_url("beacon", space), body)

    async def _unknown_path(self) -> Hit:
        path = self.rng.choice(["/nope/", "/api/v1/nope/", "/hls/nope/", "/api/v2/spaces/"])
        return await self._http("GET", f"{self.base}{path}{secrets.token_hex(6)}")

    async def _path_trick(self) -> Hit:
        path = self.rng.choice(_PATH_TRICKS).format(space=self.plan.space)
        return await self._http("GET", f"{self.base}{path}")

    async def _wrong_method(self) -> Hit:
        method = self.rng.choice(["DELETE", "PUT", "PATCH"])
        return await self._http(method, self._space_url(self.rng.choice(["join", "state"])))

    async def _join_hammer(self) -> Hit:
        return await self._http("POST", self._space_url("join"), b"", hammer=True)

    async def _not_http(self) -> Hit:
        junk = self.rng.choice(
            [b"GARBAGE\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET /\r\n\r\n"]
        )
        return await self._raw([junk], 0.0)

    async def _slow_body(self) -> Hit:
        head = (
            f"POST /api/v1/spaces/{self.plan.space}/beacon HTTP/1.1\r\n"
            f"Host: {self.origin.authority}\r\nContent-Type: application/json\r\n"
            "Content-Length: 4000\r\n\r\n"
        ).encode()
        return await self._raw([head, *([b" "] * 4000)], SLOW_INTERVAL_S)

    async def _slow_head(self) -> Hit:
        head = f"GET /api/v1/spaces/{self.plan.space}/state HTTP/1.1\r\nHost: ".encode()
        return await self._raw([head, *([b"a"] * 4000)], SLOW_INTERVAL_S)

    async def _raw(self, pieces: list[bytes], interval: float) -> Hit:
        """Send ``pieces`` one per ``interval`` on a raw connection, for at most
        ``slow_s``, watching for the server to answer or close."""
        address = self._client()[1]
        try:
            reader, writer = await asyncio.open_connection(
                self.origin.host,
                self.origin.port,
                local_addr=(address, 0) if address else None,
            )
        except OSError as exc:
            return Hit(None, cut="failed", detail=str(exc))
        answer = asyncio.ensure_future(reader.read(4096))
        try:
            deadline = time.monotonic() + (self.plan.slow_s if interval else self.plan.timeout_s)
            for piece in pieces:
                writer.write(piece)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                if answer.done():
                    break
                if interval:
                    await asyncio.wait({answer}, timeout=interval)
                if answer.done() or time.monotonic() >= deadline:
                    break
            if not answer.done():
                await asyncio.wait({answer}, timeout=max(0.0, deadline - time.monotonic()))
            if not answer.done():
                return Hit(None, cut="held", detail="the server kept waiting")
            try:
                data = answer.result()
            except ConnectionError:
                return Hit(None, cut="closed", detail="reset")
            return _raw_hit(data)
        finally:
            answer.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        await self.hammer.aclose()
        for client in self.clients.values():
            await client.aclose()


def _raw_hit(data: bytes) -> Hit:
    """What the first bytes a server sent back on a raw connection say."""
    if not data:
        return Hit(None, cut="closed", detail="closed without an answer")
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit():
        return Hit(int(parts[1]), detail=line[:80])
    return Hit(None, cut="closed", detail=f"not HTTP: {line[:40]!r}")


async def flood(plan: FloodPlan, *, clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Run the flood of ``plan``; return its report.

    Raises:
        ClientError: the plan is out of bounds.
    """
    plan.check()
    rng = random.Random()
    attacker = _Attacker(plan, rng)
    counts = _Counts()
    started = clock()
    await attacker.prepare()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(pattern: Pattern) -> None:
        counts.record(pattern, await attacker.attack(pattern))

    try:
        index = 0
        cycle = schedule()
        period = 1.0 / plan.rate
        begin = clock()
        while (now := clock()) - begin < plan.duration_s:
            due = begin + index * period
            if due > now:
                await asyncio.sleep(due - now)
            pattern = cycle[index % len(cycle)]
            index += 1
            if len(in_flight) >= plan.concurrency:
                counts.skipped += 1
                continue
            counts.sent += 1
            task = asyncio.create_task(one(pattern))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=plan.slow_s + plan.timeout_s + 5.0)
    finally:
        for task in in_flight:
            task.cancel()
        await attacker.aclose()
    return {
        "kind": "flood",
        "server": plan.server,
        "space": plan.space,
        "rate": plan.rate,
        "duration_s": plan.duration_s,
        "elapsed_s": round(clock() - started, 3),
        "sent": counts.sent,
        "skipped": counts.skipped,
        "by_status": dict(sorted(counts.by_status.items())),
        "by_pattern": {k: dict(sorted(v.items())) for k, v in sorted(counts.by_pattern.items())},
        "reasons": dict(sorted(counts.reasons.items())),
        "held_open": counts.held,
        "slow_s": plan.slow_s,
        "unexplained_errors": sum(counts.unexplained.values()),
        "unexplained_by_pattern": dict(sorted(counts.unexplained.items())),
        "unexplained_samples": counts.samples,
    }


def render_flood(report: dict[str, Any]) -> str:
    """The flood report as readable lines."""
    lines = [
        f"flood: {report['sent']} requests ({report['skipped']} skipped at the concurrency"
        f" cap) at {report['server']} over {report['elapsed_s']:.1f} s",
        "answers: " + ", ".join(f"{k} {v}" for k, v in report["by_status"].items()),
        "reasons: " + (", ".join(f"{k} {v}" for k, v in report["reasons"].items()) or "none"),
        f"slow or junk requests the server did not cut off within {report['slow_s']:g} s:"
        f" {report['held_open']} (a server whose header and body timeouts are longer"
        " keeps them open until then)",
        f"unexplained: {report['unexplained_errors']}"
        + "".join(f"\n  {sample}" for sample in report["unexplained_samples"]),
        "",
        "pattern                     answers",
    ]
    for name, answers in report["by_pattern"].items():
        lines.append(f"{name:<26}  " + ", ".join(f"{k} {v}" for k, v in answers.items()))
    return "\n".join(lines)


__all__ = [
    "JOIN_HAMMER",
    "MAX_RATE",
    "MAX_SECONDS",
    "PATTERNS",
    "FloodPlan",
    "Hit",
    "Pattern",
    "flood",
    "judge",
    "render_flood",
    "schedule",
]
