"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily

from podium import clock
from podium.control.credentials import new_id
from podium.control.db import DatabaseUnavailable
from podium.errors import PodiumError, StorageError
from podium.web.context import Context, get_context
from podium.web.metrics import with_node_label

router = APIRouter(tags=["operations"])
MEDIA_STATUS_TIMEOUT = 2.0
Ctx = Annotated[Context, Depends(get_context)]


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


def check_storage(context: Context) -> None:
    """Raise :class:`StorageError` unless the data directory takes a durable write and
    the database answers."""
    probe = context.settings.data_dir / f".ready-{new_id(8)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        raise StorageError(f"the data directory is not writable: {exc.strerror or exc}") from exc
    context.db.check()


@router.get("/readyz", responses={503: {"content": {"application/problem+json": {}}}})
async def readyz(context: Ctx) -> dict[str, str]:
    """Ready to serve: storage takes writes and the database answers (else 503).

    A shared database (PostgreSQL) that cannot be reached leaves the node ready, and says
    so: listening and joining need no database, so a load balancer must keep sending
    listeners to every node while writes answer 503 with ``Retry-After``. So does a Redis
    that cannot be reached: the node goes on at its share of the fleet's limits.
    """
    answer = {"status": "ready"}
    try:
        check_storage(context)
    except DatabaseUnavailable as exc:
        if context.db.dialect == "sqlite":
            raise
        answer["database"] = f"unavailable: {exc.detail}"
    fleet = context.fleet
    if fleet is not None and fleet.problem is not None:
        answer["redis"] = (
            f"unavailable: {fleet.problem}; limits are this node's share of the fleet's"
            f" (1/{fleet.live_nodes})"
        )
    return answer


@router.get("/metrics", response_class=Response)
async def metrics(context: Ctx) -> Response:
    """Prometheus text exposition."""
    try:
        # A scrape must not hang on a stuck worker: that is what the 0 in _up reports.
        status = await asyncio.wait_for(context.media.status(), MEDIA_STATUS_TIMEOUT)
        if context.settings.role == "web":
            # The rooms' figures are the media node's own to report; here, only whether
            # it answers.
            status = {**status, "rooms": {}}
        context.metrics.set_media(status, context.media.restarts)
    except (PodiumError, TimeoutError):
        context.metrics.set_media(None, context.media.restarts)
    text = generate_latest(context.metrics.registry)
    if context.fleet is not None:
        text = with_node_label(text, context.fleet.node_id)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def control_gauges(context: Context) -> Iterator[GaugeMetricFamily]:
    """Gauges read from the database at scrape time (none but ``podium_database_up`` 0
    while it cannot be reached: a scrape must not fail with it)."""
    try:
        by_status = context.spaces.count_by_status()
        accounts = context.accounts.count_users()
    except StorageError:
        yield GaugeMetricFamily(
            "podium_database_up", "Whether the database answered this scrape.", value=0
        )
        return
    yield GaugeMetricFamily(
        "podium_database_up", "Whether the database answered this scrape.", value=1
    )
    spaces = GaugeMetricFamily("podium_spaces", "Spaces by lifecycle state.", labels=["status"])
    for status, count in by_status.items():
        spaces.add_metric([status.value], count)
    yield spaces
    yield GaugeMetricFamily("podium_accounts", "Accounts on this server.", value=accounts)


def fleet_gauges(context: Context) -> Iterator[GaugeMetricFamily]:
    """Which node this is, and (in a fleet) whether its Redis answers."""
    fleet = context.fleet
    info = GaugeMetricFamily(
        "podium_node_info", "This node: its name and role (always 1).", labels=["node", "role"]
    )
    info.add_metric([fleet.node_id if fleet else "", fleet.role if fleet else "all"], 1)
    yield info
    if fleet is None:
        return
    yield GaugeMetricFamily(
        "podium_redis_up",
        "Whether the fleet's Redis answered this node's last call (0: limits are this"
        " node's share).",
        value=int(fleet.available),
    )
    yield GaugeMetricFamily(
        "podium_fleet_nodes",
        "Live nodes that serve the crowd (roles web and all) this node last saw in the"
        " registry: while Redis is away, its share of a limit is 1/this.",
        value=fleet.live_nodes,
    )


def admission_gauges(context: Context) -> Iterator[GaugeMetricFamily]:
    """The waiting rooms and the node's health, read at scrape time."""
    gate = context.gate
    queued = GaugeMetricFamily(
        "podium_admission_queue_length",
        "People waiting to be admitted, by space.",
        labels=["space"],
    )
    for space_id, admission in gate.spaces():
        queued.add_metric([space_id], admission.waiting_count())
    yield queued
    yield GaugeMetricFamily(
        "podium_admission_shedding",
        "1 while this node sheds new joins to protect the people already in.",
        value=0 if gate.healthy else 1,
    )
    yield GaugeMetricFamily(
        "podium_event_loop_lag_seconds",
        "How late the web process's event loop runs timers (smoothed).",
        value=gate.health.lag_s,
    )
    yield GaugeMetricFamily(
        "podium_web_cpu_ratio",
        "CPU time of the web process per second of wall time, over the last second.",
        value=gate.health.cpu,
    )
    yield GaugeMetricFamily(
        "podium_join_arrivals_per_second",
        "Join requests arriving at this node a second, over the last two seconds.",
        value=gate.arrivals_per_s(clock.now()),
    )
