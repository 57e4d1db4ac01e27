"""A planned handover: a media node being drained moves its spaces to others, gapless.

An operator drains a media node (``podium fleet drain NODE``, :meth:`Fleet.drain`) before
stopping it, to upgrade it during a live space. From then on placement gives it no new
space, and once a second it hands its rooms over, one at a time, to the node placement
would choose (:class:`Drainer`):

1. The room stops at the end of its current segment (at most one segment, 2.048 s, from
   now), with every part it made durable; its program stays open.
2. The space's lease goes to the other node, atomically and with a new fencing token
   (:meth:`Leases.give`): from here on only that node may speak for the space.
3. That node has copied the recording so far beforehand, while the room still ran
   (``POST /internal/media/handover/{space}/prepare``), so that at the handover
   (``POST /internal/media/handover/{space}``) it fetches only the parts made since, every
   one checked (without that copy, all of it from the node handing over and the web
   nodes, as for a takeover); it starts
   the room on the program's own clock (:meth:`MediaLink.continue_room`): the next
   segment follows the last one with no gap and no discontinuity, and the clock catches up
   the moments the handover took (more than :data:`~podium.media.room.MAX_CATCH_UP_SECONDS`
   and that span is marked lost instead). Web nodes follow the program there; speakers,
   whose sessions ended with the old room, publish again through the space's WHIP URL.

If the other node cannot go on with the space (it refuses, dies, does not answer in
:data:`TAKE_TIMEOUT_S`), the lease comes back (it gives it up, or this node takes it back
while the other still holds it) and this node goes on itself, in the same way; the next
try is :data:`RETRY_AFTER_S` later.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from podium import clock
from podium.control import placement
from podium.control.placement import Leases
from podium.errors import Conflict, NotFound, PodiumError
from podium.origin.origin import SPACE_ID
from podium.record import assemble
from podium.record.manifest import PartLine
from podium.record.recorder import MANIFEST_FILE, Recorder, fsync_dir
from podium.segment.names import part_name
from podium.web.context import Context, get_context
from podium.web.internal import authenticated
from podium.web.takeover import ALIVE_S, gather, replica_base, replica_client

log = logging.getLogger("podium.media")

PREFIX = "/internal/media/handover"
RETRY_AFTER_S = 10.0
# Where a node keeps the copy of a recording it is about to be handed (under data_dir).
STAGING_DIR = "handover"
# How long copying a recording beforehand may take (hours of it: 7 s an hour here).
PREPARE_TIMEOUT_S = 120.0
# How long the node handing a space over waits for the other to have it on air (0.1 s
# here with the copy made beforehand); past it, this node goes on if the lease is free.
TAKE_TIMEOUT_S = 10.0
Ctx = Annotated[Context, Depends(get_context)]

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(authenticated)])


class HandOver(BaseModel):
    """A space handed to this node: from which node (its URL), and the segment the
    program goes on from."""

    source: str = Field(min_length=1, max_length=2048)
    next_msn: int = Field(ge=0)


class Prepare(BaseModel):
    """A space about to be handed to this node, from the node at ``source``."""

    source: str = Field(min_length=1, max_length=2048)


def _staging(context: Context, space_id: str) -> Path:
    if not SPACE_ID.fullmatch(space_id):
        raise NotFound(f"no space {space_id!r}")
    return context.settings.data_dir / STAGING_DIR / space_id


@router.post("/{space_id}/prepare")
async def prepare(space_id: str, body: Prepare, context: Ctx) -> dict[str, int]:
    """Copy the recording of a space about to be handed over, as it is now, while its
    room still runs there: at the handover only the parts made since are left to fetch."""
    leases = context.leases
    if leases is None or context.settings.media_secret is None:
        raise Conflict("this is not a media node of a fleet")
    staging = _staging(context, space_id)
    secret = context.settings.media_secret.value
    source = body.source.rstrip("/")
    parts = await asyncio.to_thread(gather, [source], secret, space_id, staging, leases)
    return {"parts": parts}


@router.post("/{space_id}", status_code=204)
async def take(space_id: str, body: HandOver, context: Ctx) -> Response:
    """Go on with a space another node handed over (its lease is this node's now)."""
    leases, fleet = context.leases, context.fleet
    if leases is None or fleet is None or context.settings.media_secret is None:
        raise Conflict("this is not a media node of a fleet")
    lease = placement.holder(fleet, space_id)
    if lease is None or lease.node != leases.node:
        raise Conflict(f"the lease of space {space_id} was not handed to this node")
    began = time.monotonic()
    source = body.source.rstrip("/")
    secret = context.settings.media_secret.value
    directory = context.origin.recordings / space_id
    context.arriving.add(space_id)
    try:
        staging = _staging(context, space_id)
        fetched = await asyncio.to_thread(_catch_up, source, secret, space_id, staging, directory)
        if fetched is None:  # nothing copied beforehand, or not usable: all of it now
            nodes = fleet.nodes(clock.now()) or []
            copies = [source, *(node.url.rstrip("/") for node in nodes if node.role == "web")]
            fetched = await asyncio.to_thread(gather, copies, secret, space_id, directory, leases)
        recorded = await asyncio.to_thread(Recorder.recover, directory)
        if recorded.next_msn != body.next_msn:
            raise Conflict(
                f"the copies of space {space_id} end before segment {body.next_msn}"
                f" ({recorded.next_msn})"
            )
        leases.hold(space_id)
        context.spaces.claim_media(space_id, context.media_node)
        await context.media.continue_room(space_id)
    except BaseException as exc:
        leases.release(space_id)  # the node that handed it over goes on with it
        log.error(
            "space_handover_refused",
            extra={"fields": {"space_id": space_id, "error": repr(exc)}},
        )
        raise
    finally:
        context.arriving.discard(space_id)
    log.warning(
        "space_taken_on",
        extra={
            "fields": {
                "space_id": space_id,
                "from": source,
                "parts": len(recorded.parts),
                "fetched_at_handover": fetched,
                "took_s": round(time.monotonic() - began, 3),
            }
        },
    )
    return Response(status_code=204)


def _catch_up(
    source: str, secret: str, space_id: str, staging: Path, directory: Path
) -> int | None:
    """Bring the copy made beforehand (:func:`prepare`) up to the source's recording and
    put it in ``directory``; returns the parts fetched for it, or None (and leaves
    ``directory`` as it was) if there is no such copy or it does not match. Blocking."""
    if not (staging / MANIFEST_FILE).is_file():
        return None
    base = replica_base(space_id)
    try:
        with replica_client(secret) as http:
            answer = http.get(f"{source}{base}/manifest.jsonl")
            answer.raise_for_status()
            copy = assemble.read_manifest(source, answer.content)
            if copy is None:
                return None

            def fetch(entry: PartLine) -> bytes:
                part = http.get(f"{source}{base}/parts/{part_name(entry.msn, entry.index)}")
                part.raise_for_status()
                return part.content

            fetched = assemble.extend(staging, copy, fetch)
    except (httpx.HTTPError, assemble.CopyDamaged, OSError) as exc:
        log.warning(
            "handover_copy_unusable",
            extra={"fields": {"space_id": space_id, "error": repr(exc)}},
        )
        shutil.rmtree(staging, ignore_errors=True)
        return None
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(directory)
    fsync_dir(directory.parent)
    return fetched


class Drainer:
    """A media node's side of a drain. Call :meth:`check` each second."""

    def __init__(self, context: Context, leases: Leases) -> None:
        assert context.fleet is not None
        assert context.settings.media_secret is not None
        self._context = context
        self._fleet = context.fleet
        self._leases = leases
        self._secret = context.settings.media_secret.value
        self._task: asyncio.Task[None] | None = None
        self._failed_at: dict[str, float] = {}
        self._draining = False
        # The spaces being handed over now: not this node's to take back meanwhile.
        self.moving: set[str] = set()

    def check(self, running: list[str]) -> None:
        """If this node is being drained, hand its rooms over, one after the other."""
        if self._task is not None and not self._task.done():
            return
        draining = self._fleet.draining()
        if draining is None:
            return  # Redis is away: nothing can be handed over now
        if self._leases.node not in draining:
            if self._draining:
                log.warning("node_drain_cancelled", extra={"fields": {"node": self._leases.node}})
            self._draining = False
            return
        if not self._draining:
            self._draining = True
            log.warning(
                "node_draining", extra={"fields": {"node": self._leases.node, "rooms": running}}
            )
        now = time.monotonic()
        due = [s for s in running if now - self._failed_at.get(s, -RETRY_AFTER_S) >= RETRY_AFTER_S]
        if due:
            self._task = asyncio.get_running_loop().create_task(self._hand_over_all(due))

    async def _hand_over_all(self, space_ids: list[str]) -> None:
        for space_id in space_ids:
            if await self.hand_over(space_id) is None:
                self._failed_at[space_id] = time.monotonic()

    async def hand_over(self, space_id: str) -> str | None:
        """Hand the space over to the node placement chooses; returns that node, or None
        if the space stays here."""
        nodes = self._fleet.nodes(clock.now())
        if nodes is None:
            return None
        order = [
            node
            for node in placement.ranked(placement.candidates(self._fleet, nodes))
            if node != self._leases.node
        ]
        urls = {node.id: node.url.rstrip("/") for node in nodes}
        if not order:
            log.error("drain_no_other_node", extra={"fields": {"space_id": space_id}})
            return None
        target = order[0]
        media = self._context.media
        self.moving.add(space_id)
        began = time.monotonic()
        try:
            await self._prepare(urls[target], space_id)
            if not self._alive(target):
                # It stopped beating while it copied: stop nothing, choose again later.
                log.error(
                    "drain_target_gone", extra={"fields": {"space_id": space_id, "to": target}}
                )
                return None
            try:
                next_msn = await media.hand_over_room(space_id)
            except PodiumError as exc:
                log.error(
                    "drain_room_not_stopped",
                    extra={"fields": {"space_id": space_id, "error": exc.detail}},
                )
                return None
            stopped = time.monotonic()
            if self._leases.give(space_id, target) is None:
                log.error("drain_lease_not_given", extra={"fields": {"space_id": space_id}})
                await self._go_on_here(space_id)
                return None
            if not await self._hand_to(urls[target], space_id, next_msn):
                # Unless it took the space on after all, the lease comes back here.
                self._leases.reclaim(space_id, target)
                await self._go_on_here(space_id)
                return None
        finally:
            self.moving.discard(space_id)
        log.warning(
            "space_handed_over",
            extra={
                "fields": {
                    "space_id": space_id,
                    "to": target,
                    "next_msn": next_msn,
                    "stopping_s": round(stopped - began, 3),
                    "handover_s": round(time.monotonic() - stopped, 3),
                }
            },
        )
        return target

    def _alive(self, node_id: str) -> bool:
        wall = clock.now()
        nodes = self._fleet.nodes(wall) or []
        return any(n.id == node_id and wall - n.seen_at < ALIVE_S for n in nodes)

    async def _post(
        self, url: str, body: dict[str, object], limit_s: float
    ) -> tuple[int | None, str]:
        """POST ``body`` to another media node's handover API: its status (None if it
        could not be reached) and what it said (or what went wrong)."""
        headers = {"Authorization": f"Bearer {self._secret}"}
        try:
            async with httpx.AsyncClient(headers=headers, timeout=limit_s) as http:
                answer = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            return None, repr(exc)
        return answer.status_code, answer.text[:300]

    async def _prepare(self, url: str, space_id: str) -> None:
        """Have the other node copy the recording so far, while the room runs on here
        (a long space's copy takes a while); at the handover it fetches only the rest."""
        status, said = await self._post(
            f"{url}{PREFIX}/{quote(space_id, safe='')}/prepare",
            {"source": self._fleet.public_url},
            PREPARE_TIMEOUT_S,
        )
        if status != 200:
            # It copies all of it at the handover instead: slower, as good.
            log.warning(
                "drain_copy_not_prepared",
                extra={"fields": {"space_id": space_id, "to": url, "error": said}},
            )

    async def _hand_to(self, url: str, space_id: str, next_msn: int) -> bool:
        status, said = await self._post(
            f"{url}{PREFIX}/{quote(space_id, safe='')}",
            {"source": self._fleet.public_url, "next_msn": next_msn},
            TAKE_TIMEOUT_S,
        )
        if status == 204:
            return True
        fields = {"space_id": space_id, "to": url, "status": status, "detail": said}
        event = "drain_handover_failed" if status is None else "drain_handover_refused"
        log.error(event, extra={"fields": fields})
        return False

    async def _go_on_here(self, space_id: str) -> None:
        """The handover failed: go on with the space here if its lease is free again (or
        still this node's); else whoever holds it speaks for it."""
        lease = self._leases.hold(space_id)
        if lease is None or not lease.mine:
            return
        try:
            await self._context.media.continue_room(space_id)
        except PodiumError as exc:
            self._leases.release(space_id)
            log.error(
                "drain_room_not_resumed",
                extra={"fields": {"space_id": space_id, "error": exc.detail}},
            )
