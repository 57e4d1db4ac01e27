"""A web node's copies of the programs it served, for a media node taking a space over;
on a media node, its own recordings, for a node it hands a space over to
(:mod:`podium.web.handover`).

``GET /internal/replica/{space_id}/manifest.jsonl``, ``…/init.mp4`` and
``…/parts/part-{msn}-{i}.m4s`` answer the files of the copy (:mod:`podium.media.replica`);
``…/parts.bin?count=N`` answers the first ``N`` parts of its manifest, one after the
other, so that a media node fetches a long recording in one request and splits it by the
sizes the manifest gives. Every request carries ``Authorization: Bearer <media_secret>``,
as on a media node's internal API; a load balancer refuses ``/internal/`` anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response, StreamingResponse

from podium.errors import NotFound
from podium.origin.origin import SPACE_ID
from podium.record import manifest
from podium.record.manifest import PartLine
from podium.record.recorder import INIT_FILE, MANIFEST_FILE, PARTS_DIR
from podium.segment.names import Kind, parse_name, part_name
from podium.web.context import Context, get_context
from podium.web.internal import authenticated

PREFIX = "/internal/replica"
REPLICAS_DIR = "replicas"
Ctx = Annotated[Context, Depends(get_context)]

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(authenticated)])


def _copy(context: Context, space_id: str) -> Path:
    if not SPACE_ID.fullmatch(space_id):
        raise NotFound(f"no copy of space {space_id!r}")
    # A web node's copies, or a media node's own recordings (for a node it hands over to).
    directory = context.origin.recordings / space_id
    if not (directory / MANIFEST_FILE).is_file():
        raise NotFound(f"this node keeps no copy of space {space_id}")
    return directory


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"{path.name} is not in this copy") from exc


@router.get("/{space_id}/manifest.jsonl")
async def copy_manifest(space_id: str, context: Ctx) -> Response:
    data = _read(_copy(context, space_id) / MANIFEST_FILE)
    return Response(data, media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})


@router.get("/{space_id}/init.mp4")
async def copy_init(space_id: str, context: Ctx) -> Response:
    return Response(_read(_copy(context, space_id) / INIT_FILE), media_type="video/mp4")


@router.get("/{space_id}/parts/{name}")
async def copy_part(space_id: str, name: str, context: Ctx) -> Response:
    parsed = parse_name(name)
    if parsed is None or parsed.kind is not Kind.PART:
        raise NotFound(f"no part named {name!r}")
    return Response(_read(_copy(context, space_id) / PARTS_DIR / name), media_type="video/mp4")


@router.get("/{space_id}/parts.bin")
async def copy_parts(
    space_id: str, context: Ctx, count: Annotated[int, Query(ge=0, le=10_000_000)]
) -> StreamingResponse:
    directory = _copy(context, space_id)
    lines = [manifest.parse(raw) for raw in _read(directory / MANIFEST_FILE).splitlines(True)]
    parts = [line for line in lines if isinstance(line, PartLine)][:count]

    def stream() -> Iterator[bytes]:
        for part in parts:
            yield (directory / PARTS_DIR / part_name(part.msn, part.index)).read_bytes()

    return StreamingResponse(stream(), media_type="application/octet-stream")
