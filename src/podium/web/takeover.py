"""A media node taking over the live spaces of a media node that stopped.

Each live space is hosted by the media node that holds its lease
(:mod:`podium.control.placement`), renewed every second. A live space whose lease has
expired has no host: its node died, hangs, or is cut off (and has stopped writing it, see
``keep_leases`` in :mod:`podium.server`). Every media node looks for such spaces once a
second. The node placement would choose takes one up as soon as it has seen the lease
free for :data:`TAKE_UP_AFTER_S`; the others wait :data:`DEFER_S` more, in case that node
cannot. A space whose own node is still heard from is left to that node to take back, for
a lease's time more. Taking the lease is atomic, so exactly one node wins.

The winner puts the recording together from the web nodes' copies
(:mod:`podium.media.replica`, :mod:`podium.record.assemble`): every part any listener
heard is in one of them. It records itself as the space's node and starts the room, which
resumes after a marked gap (``EXT-X-GAP`` + ``EXT-X-DISCONTINUITY``) on the same timeline,
as after a restart. Web nodes take the program from the new lease holder; speakers publish
again through the space's WHIP URL and land here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from podium import clock
from podium.control import placement
from podium.control.fleet import HEARTBEAT_S
from podium.control.placement import LEASE_S, Leases
from podium.errors import PodiumError, StorageError
from podium.record import assemble
from podium.record.manifest import PartLine
from podium.segment.names import part_name
from podium.web.context import Context
from podium.web.replicas import PREFIX

log = logging.getLogger("podium.media")

TAKE_UP_AFTER_S = 1.0
DEFER_S = 2.0
# A node heard from this lately is up (it beats every HEARTBEAT_S): its spaces are its to
# take back, unless it has not for a lease's time more.
ALIVE_S = 2.25 * HEARTBEAT_S
FETCH_TIMEOUT_S = 10.0


class NoCopy(PodiumError):
    status = 503
    kind = "no-copy"
    title = "No copy of the recording"


class Takeover:
    """One media node's watch for spaces without a host. Call :meth:`check` each second."""

    def __init__(self, context: Context, leases: Leases) -> None:
        assert context.fleet is not None
        assert context.settings.media_secret is not None
        self._context = context
        self._fleet = context.fleet
        self._leases = leases
        self._secret = context.settings.media_secret.value
        self._free_since: dict[str, float] = {}
        self.taken = 0

    async def check(self, running: list[str]) -> None:
        context = self._context
        try:
            placements = context.spaces.live_placements()
        except StorageError:
            return  # the database is away; the next round asks again
        now = time.monotonic()
        orphans: list[tuple[str, str, float]] = []
        for space_id, node in placements:
            if node is None or node == self._leases.node or space_id in running:
                continue  # unclaimed and this node's own are taken back, not over
            if placement.holder(self._fleet, space_id) is not None:
                continue
            free_for = now - self._free_since.setdefault(space_id, now)
            orphans.append((space_id, node, free_for))
        for space_id in set(self._free_since) - {space_id for space_id, _, _ in orphans}:
            del self._free_since[space_id]
        if not orphans:
            return
        wall = clock.now()
        nodes = self._fleet.nodes(wall)
        if nodes is None:
            return
        alive = {node.id for node in nodes if wall - node.seen_at < ALIVE_S}
        order = placement.ranked(placement.candidates(self._fleet, nodes))
        first = not order or order[0] == self._leases.node
        copies = [node.url.rstrip("/") for node in nodes if node.role == "web"]
        for space_id, node, free_for in orphans:
            wait = TAKE_UP_AFTER_S + (0.0 if first else DEFER_S)
            if node in alive:
                wait += LEASE_S  # its node is up, and takes its own spaces back
            if free_for >= wait:
                await self._take_up(space_id, copies, free_for)

    async def _take_up(self, space_id: str, copies: list[str], free_for: float) -> None:
        context = self._context
        lease = self._leases.hold(space_id)
        if lease is None or not lease.mine:
            return
        began = time.monotonic()
        directory = context.origin.recordings / space_id
        context.arriving.add(space_id)
        try:
            parts = await asyncio.to_thread(
                gather, copies, self._secret, space_id, directory, self._leases
            )
            self._leases.hold(space_id)
            context.spaces.claim_media(space_id, context.media_node)
            await context.media.start_room(space_id)
        except (PodiumError, assemble.CopyDamaged, httpx.HTTPError, OSError) as exc:
            self._leases.release(space_id)
            log.error(
                "space_take_over_failed",
                extra={"fields": {"space_id": space_id, "error": repr(exc)}},
            )
            return
        finally:
            context.arriving.discard(space_id)
        self.taken += 1
        self._free_since.pop(space_id, None)
        log.warning(
            "space_taken_over",
            extra={
                "fields": {
                    "space_id": space_id,
                    "lease_free_s": round(free_for, 2),
                    "parts": parts,
                    "assembled_s": round(time.monotonic() - began, 3),
                }
            },
        )


def replica_base(space_id: str) -> str:
    """The path of a space's copy on another node (:mod:`podium.web.replicas`)."""
    return f"{PREFIX}/{quote(space_id, safe='')}"


def replica_client(secret: str) -> httpx.Client:
    """A client for other nodes' copies, with the fleet's secret."""
    return httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=FETCH_TIMEOUT_S)


def gather(copies: list[str], secret: str, space_id: str, directory: Path, leases: Leases) -> int:
    """Put the space's recording together in ``directory`` from the web nodes' copies at
    ``copies`` (their base URLs); returns how many parts it holds. Blocking: run it in a
    thread."""
    base = replica_base(space_id)
    with replica_client(secret) as http:
        found: list[assemble.Copy] = []
        for url in copies:
            try:
                answer = http.get(f"{url}{base}/manifest.jsonl")
            except httpx.HTTPError:
                continue  # that web node is away; the others have what it had
            if answer.status_code == 200 and (copy := assemble.read_manifest(url, answer.content)):
                found.append(copy)
        merged = assemble.merge(found)
        if merged is None:
            raise NoCopy(f"no web node keeps a copy of space {space_id}")
        best = max((c for c in found if c.init.sha256 == merged.init.sha256), key=lambda c: c.parts)
        init = http.get(f"{best.source}{base}/init.mp4")
        init.raise_for_status()
        # The fullest copy's parts in one request, split by the sizes its manifest gives.
        in_best = [e for e in best.entries if isinstance(e, PartLine)]
        bulk = http.get(f"{best.source}{base}/parts.bin", params={"count": len(in_best)})
        bulk.raise_for_status()
        held: dict[tuple[int, int], bytes] = {}
        offset = 0
        for entry in in_best:
            held[(entry.msn, entry.index)] = bulk.content[offset : offset + entry.size]
            offset += entry.size
        leases.hold(space_id)  # a long recording: keep the lease while it comes

        def fetch(entry: PartLine, source: str) -> bytes:
            if (data := held.get((entry.msn, entry.index))) is not None:
                return data
            answer = http.get(f"{source}{base}/parts/{part_name(entry.msn, entry.index)}")
            answer.raise_for_status()
            return answer.content

        assemble.write(directory, merged, init.content, fetch)  # every part checked
    return merged.parts
