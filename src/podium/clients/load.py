"""``podium load join-storm``: a crowd arriving at one space, to rehearse the day it is busy.

``listeners`` simulated listeners arrive evenly over ``over_s`` seconds. Each does what
Podium's own web page does, over HTTP only:

1. **join** (``POST …/join``) following the join contract (:mod:`podium.clients.joining`):
   admitted, or queued and asking again with its ``queue_token`` after exactly
   ``retry_after_s``, or solving a proof of work, or backing off with full jitter after a
   429/503 (at least ``Retry-After``; a retry budget, so the crowd never amplifies an
   overload);
2. fetches the **room state** and checks that it agrees with what the join said;
3. **follows the LL-HLS playlist** from ``PART-HOLD-BACK`` behind live with blocking
   reloads (``_HLS_msn``/``_HLS_part``, delta updates when offered) and fetches every
   part (the init segment once), as :func:`podium.clients.listen.listen` does, without
   decoding: a player model counts the stalls;
4. **beacons** every ``beacon_every_s`` while it listens, for ``duration_s``.

Each listener is a :class:`~podium.clients.loadlistener.SimulatedListener`, one asyncio
task with its own lean HTTP/1.1 client (:mod:`podium.clients.http1`, from its own source
address if asked); identical playlist bodies are parsed once for the whole crowd.
Everything is measured into :mod:`podium.clients.loadreport`.

Bounded: at most :data:`MAX_LISTENERS` listeners, :data:`MAX_SECONDS` for any duration,
a hard end to the run, and requests only to the origin of ``server`` (and those the
operator adds with ``allow``): a join answer pointing anywhere else is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from podium.clients.http1 import HttpClient, Origin, Traffic
from podium.clients.listen import RetryPolicy
from podium.clients.loadlistener import SimulatedListener
from podium.clients.loadreport import ListenerRecord, Tally, storm_report
from podium.clients.playlists import PlaylistCache
from podium.errors import ClientError

MAX_LISTENERS = 100_000
MAX_SECONDS = 3600.0
_LAG_PERIOD_S = 0.1

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StormPlan:
    """What to run.

    Attributes:
        server: the server's base URL; only its origin is contacted (plus ``allow``).
        space: the space id.
        listeners: how many listeners arrive, evenly spread over ``over_s`` seconds.
        duration_s: how long each admitted listener listens.
        max_wait_s: how long a queued listener waits before it leaves the line.
        timeout_s: the limit for one request (a blocking reload is held up to three
            target durations, 8216bis 6.2.5.2).
        source_network: spread the listeners over the addresses of this network (e.g.
            ``127.0.0.0/16`` on loopback), one per listener in turn, as a real crowd
            comes from many addresses; ``None``: the system's choice.
        allow: further origins (edge caches) the join answers may send listeners to.
        retry: the backoff and retry budget after 429/503 and failed connections.
        pow_attempts: challenges in a row a listener solves before calling it a loop.
        order_tolerance_s: how much later than someone queued behind it a listener may
            be admitted before it counts as overtaken (clients poll, so admissions are
            seen up to a poll late).
        ca_file: trust the certificate authorities in this PEM file for ``https``
            (``None``: the system's trusted roots).
        seed: for the backoff jitter (``None``: random).
    """

    server: str
    space: str
    listeners: int
    over_s: float
    duration_s: float = 10.0
    max_wait_s: float = 60.0
    timeout_s: float = 15.0
    source_network: str | None = None
    allow: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pow_attempts: int = 5
    order_tolerance_s: float = 1.0
    ca_file: str | None = None
    seed: int | None = None

    def check(self) -> None:
        """Raises :class:`ClientError` saying what is out of bounds."""
        for url in (self.server, *self.allow):
            try:
                Origin.of(url)
            except ValueError as exc:
                raise ClientError(f"bad server URL: {exc}") from exc
        if not self.space or "/" in self.space or "?" in self.space:
            raise ClientError(f"bad space id {self.space!r}")
        if not 1 <= self.listeners <= MAX_LISTENERS:
            raise ClientError(f"listeners must be between 1 and {MAX_LISTENERS}")
        for name in ("over_s", "duration_s", "max_wait_s", "timeout_s"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_SECONDS:
                raise ClientError(f"{name.removesuffix('_s')} must be 0 to {MAX_SECONDS:g} s")
        if self.timeout_s <= 0:
            raise ClientError("the request timeout must be positive")
        if self.source_network is not None:
            source_addresses(self.source_network)
        self.tls()

    def tls(self) -> ssl.SSLContext | None:
        """The TLS context of ``ca_file`` (``None``: the clients' default).

        Raises:
            ClientError: the file cannot be read as certificates.
        """
        if self.ca_file is None:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot read certificates from {self.ca_file}: {exc}") from None

    @property
    def hard_limit_s(self) -> float:
        """The run ends by then, whatever is still going on."""
        return self.over_s + self.max_wait_s + self.duration_s + 3 * self.timeout_s + 10.0

    def settings(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "space": self.space,
            "listeners": self.listeners,
            "over_s": self.over_s,
            "duration_s": self.duration_s,
            "max_wait_s": self.max_wait_s,
            "source_network": self.source_network,
        }


def source_addresses(
    network: str,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network to take source addresses from (at least one usable address).

    Raises:
        ClientError: not a network, or one without host addresses.
    """
    try:
        parsed = ipaddress.ip_network(network, strict=False)
    except ValueError as exc:
        raise ClientError(f"bad source network {network!r}: {exc}") from exc
    if parsed.num_addresses < 3 and parsed.prefixlen < parsed.max_prefixlen:
        raise ClientError(f"the source network {network} has no host addresses")
    return parsed


def source_address(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None, index: int
) -> str | None:
    """Listener ``index``'s source address: the hosts of ``network`` in turn (the network
    and broadcast addresses skipped)."""
    if network is None:
        return None
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    hosts = network.num_addresses - 2
    return str(network.network_address + 1 + index % hosts)


def arrival_offset(index: int, listeners: int, over_s: float) -> float:
    """Seconds after the start at which listener ``index`` arrives: evenly spread."""
    return index * over_s / listeners


async def _watch_lag(tally: Tally, clock: Clock) -> None:
    """How late the generator's own loop wakes up: past a few tens of milliseconds, its
    measurements say more about this machine than about the server."""
    while True:
        before = clock()
        await asyncio.sleep(_LAG_PERIOD_S)
        tally.lag.append(max(0.0, clock() - before - _LAG_PERIOD_S))


async def join_storm(
    plan: StormPlan,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Any]:
    """Run the storm of ``plan``; return the report (see :mod:`podium.clients.loadreport`).

    Raises:
        ClientError: the plan is out of bounds.
    """
    plan.check()
    network = source_addresses(plan.source_network) if plan.source_network else None
    tally = Tally(started_at=clock())
    traffic = Traffic()
    cache = PlaylistCache()
    rng = random.Random(plan.seed)
    records: list[ListenerRecord] = []
    urls = (plan.server, *plan.allow)
    tls = plan.tls()
    watcher = asyncio.create_task(_watch_lag(tally, clock))
    try:
        async with asyncio.timeout(plan.hard_limit_s), asyncio.TaskGroup() as crowd:
            for index in range(plan.listeners):
                delay = tally.started_at + arrival_offset(index, plan.listeners, plan.over_s)
                if delay - clock() > 0:
                    await sleep(delay - clock())
                record = ListenerRecord(index, clock())
                records.append(record)
                http = HttpClient(
                    urls,
                    max_connections=2,
                    timeout=plan.timeout_s,
                    local_address=source_address(network, index),
                    traffic=traffic,
                    ssl_context=tls,
                )
                listener = SimulatedListener(
                    plan, record, tally, cache, http, rng, clock, wall_clock, sleep
                )
                crowd.create_task(listener.run())
    except TimeoutError:
        pass  # the hard limit: whoever is still going is reported as cut short
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    return storm_report(
        records,
        tally,
        end=clock(),
        settings=plan.settings(),
        traffic={
            "connections": traffic.connections,
            "requests": traffic.requests,
            "bytes_sent": traffic.bytes_sent,
            "bytes_received": traffic.bytes_received,
            "stale_retries": traffic.stale_retries,
        },
        order_tolerance_s=plan.order_tolerance_s,
    )


__all__ = [
    "MAX_LISTENERS",
    "MAX_SECONDS",
    "StormPlan",
    "arrival_offset",
    "join_storm",
    "source_address",
    "source_addresses",
]
