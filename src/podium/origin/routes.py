"""HTTP for listeners and edge caches: the multivariant playlist (a space's entry point),
the LL-HLS media playlist, media objects and the replay.

Cache policy by kind (an edge in front of the origin needs nothing else to do the right
thing):

==========================  ===============================================================
object                      Cache-Control
==========================  ===============================================================
init, part, segment         ``public, max-age=31536000, immutable``: never changes once made
index.m3u8 (multivariant)   ``public, max-age=60``, a day once ended: it names the same
                            media playlist all along
live playlist               ``public, max-age=1``: the edge coalesces, players re-ask
playlist with directives    ``public, max-age=6``: the answer to "at least part N" holds
ended playlist (replay)     ``public, max-age=86400``: final
replay.m4a                  ``public, max-age=86400``
errors                      ``no-store`` (404 for a part not made yet must not stick)
==========================  ===============================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from podium.errors import NotFound, PodiumError
from podium.origin.origin import Origin
from podium.origin.program import Program
from podium.record.recorder import EXPORT_FILE
from podium.segment import blocking
from podium.segment.multivariant import MULTIVARIANT_NAME, render_multivariant
from podium.segment.names import Kind, parse_name

router = APIRouter(prefix="/hls", tags=["listening"])

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "audio/mp4"
IMMUTABLE = "public, max-age=31536000, immutable"
CORS = {"Access-Control-Allow-Origin": "*"}


class TooEarly(PodiumError):
    """A playlist or part that was waited for did not appear in time (8216bis: 503)."""

    status = 503
    kind = "not-yet-available"
    title = "Not yet available"


class BadDirective(PodiumError):
    status = 400
    kind = "bad-delivery-directive"
    title = "Bad delivery directive"


async def get_origin(request: Request) -> Origin:
    origin: Origin = request.app.state.origin
    return origin


OriginDep = Annotated[Origin, Depends(get_origin)]
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_YET: dict[str, Any] = {
    "description": "Not there yet (waited for, or being prepared): ask again after Retry-After",
    **_PROBLEM,
}


def _answers(media_type: str, *problems: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a listening route: its media, or a problem document."""
    answers: dict[int | str, dict[str, Any]] = {
        200: {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}},
        404: _PROBLEM,
        503: _NOT_YET,
    }
    answers.update({code: _PROBLEM for code in problems})
    return answers


def _program(origin: Origin, space_id: str) -> Program:
    program = origin.program(space_id)
    if program is None:
        raise NotFound(f"space {space_id!r} has no program (not live yet, or unknown)")
    return program


class UpstreamUnavailable(PodiumError):
    status = 503
    kind = "media-unavailable"
    title = "Media node unavailable"


# The answer headers an upstream's answer keeps on its way through.
_PASSED_ON = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-range",
    "accept-ranges",
    "cache-control",
    "access-control-allow-origin",
    "retry-after",
    "content-disposition",
    "last-modified",
    "etag",
)
# And the request headers that go up with it: a player's seek, a cache's revalidation.
_ASKED_ON = ("range", "if-range", "if-none-match", "if-modified-since")


class Upstream:
    """A web node's way to what its own origin does not hold: the media node that has the
    space's recording (ended programs, replays, parts older than the feed's catch-up).
    ``locate`` names it for a space (its base URL), or None if none can be found."""

    def __init__(self, locate: Callable[[str], str | None]) -> None:
        self._locate = locate
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=3.0))

    async def get(self, request: Request, space_id: str) -> Response:
        base = self._locate(space_id)
        if base is None:
            raise UpstreamUnavailable(f"no media node holds space {space_id}'s recording")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        asked = {name: request.headers[name] for name in _ASKED_ON if name in request.headers}
        upstream = self._client.build_request("GET", base.rstrip("/") + target, headers=asked)
        try:
            answer = await self._client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"the media node did not answer: {exc}") from exc
        headers = {name: answer.headers[name] for name in _PASSED_ON if name in answer.headers}
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=headers,
            background=BackgroundTask(answer.aclose),
        )

    async def close(self) -> None:
        await self._client.aclose()


def _upstream(request: Request) -> Upstream | None:
    upstream: Upstream | None = getattr(request.app.state, "upstream", None)
    return upstream


@router.get(
    f"/{{space_id}}/{MULTIVARIANT_NAME}",
    response_class=Response,
    responses=_answers(PLAYLIST_TYPE),
)
async def multivariant(request: Request, space_id: str, origin: OriginDep) -> Response:
    """The space's entry point: a multivariant playlist with one audio-only variant
    (``CODECS="mp4a.40.2"``), the media playlist ``live.m3u8``. The same for the live
    space and its replay."""
    upstream = _upstream(request)
    if upstream is not None and origin.program(space_id) is None:
        return await upstream.get(request, space_id)
    program = _program(origin, space_id)
    cache = "public, max-age=86400" if program.playlist.ended else "public, max-age=60"
    return Response(
        render_multivariant(),
        media_type=PLAYLIST_TYPE,
        headers={"Cache-Control": cache, **CORS},
    )


@router.get(
    "/{space_id}/live.m3u8", response_class=Response, responses=_answers(PLAYLIST_TYPE, 400)
)
async def playlist(request: Request, space_id: str, origin: OriginDep) -> Response:
    """The LL-HLS media playlist; it becomes the replay (``EXT-X-ENDLIST``) at the end.

    Supports Blocking Playlist Reload (``_HLS_msn``, ``_HLS_part``) and delta updates
    (``_HLS_skip=YES``).
    """
    upstream = _upstream(request)
    if upstream is not None and origin.program(space_id) is None:
        return await upstream.get(request, space_id)
    program = _program(origin, space_id)
    query = request.query_params
    msn, part, skip = query.get("_HLS_msn"), query.get("_HLS_part"), query.get("_HLS_skip")
    decision = blocking.decide_query(program.playlist, msn, part, skip)
    if decision.action is blocking.Action.WAIT:
        assert decision.timeout is not None
        deadline = time.monotonic() + float(decision.timeout)
        while decision.action is blocking.Action.WAIT:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not await program.changed(remaining):
                raise TooEarly(f"no {decision.reason.split(' is ')[0]} within the block time")
            decision = blocking.decide_query(program.playlist, msn, part, skip)
    if decision.action is blocking.Action.REJECT:
        raise BadDirective(decision.reason)
    if program.playlist.ended:
        cache = "public, max-age=86400"
    elif msn is not None:
        cache = "public, max-age=6"
    else:
        cache = "public, max-age=1"
    wants_skip = skip in ("YES", "v2") and not program.playlist.ended
    return Response(
        program.render(skip=wants_skip),
        media_type=PLAYLIST_TYPE,
        headers={"Cache-Control": cache, **CORS},
    )


@router.get("/{space_id}/replay.m4a", response_class=Response, responses=_answers(MEDIA_TYPE))
async def replay(request: Request, space_id: str, origin: OriginDep) -> Response:
    """The whole program as one M4A file, once the space has ended."""
    upstream = _upstream(request)
    if upstream is not None and origin.program(space_id) is None:
        return await upstream.get(request, space_id)
    program = _program(origin, space_id)
    path = program.directory / EXPORT_FILE
    if program.playlist.ended and path.is_file():
        return FileResponse(
            path,
            media_type="audio/mp4",
            filename=f"podium-{space_id}.m4a",
            headers={"Cache-Control": "public, max-age=86400", **CORS},
        )
    if program.playlist.ended and program.exported is False:
        raise NotFound("the replay file could not be written; the HLS replay is complete")
    if program.playlist.ended or program.exported is None:
        raise _RetryLater("the replay file is being prepared", 2)
    raise NotFound("no replay file")


class _RetryLater(TooEarly):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


@router.get("/{space_id}/{name}", response_class=Response, responses=_answers(MEDIA_TYPE))
async def media_object(request: Request, space_id: str, name: str, origin: OriginDep) -> Response:
    """The init segment, a part or a whole segment. A part announced by the preload hint
    is held until it exists (8216bis 6.2.6: "the server SHOULD ... block")."""
    upstream = _upstream(request)
    if upstream is not None and origin.program(space_id) is None:
        return await upstream.get(request, space_id)
    program = _program(origin, space_id)
    parsed = parse_name(name)
    if parsed is None or parsed.kind is Kind.PLAYLIST:
        raise NotFound(f"no media object named {name!r}")
    if parsed.kind is Kind.INIT:
        data: bytes | None = program.init
    elif parsed.kind is Kind.SEGMENT:
        assert parsed.msn is not None
        data = program.segment(parsed.msn)
    else:
        assert parsed.msn is not None
        assert parsed.index is not None
        data = program.part(parsed.msn, parsed.index)
        if data is None and program.is_upcoming_part(parsed.msn, parsed.index):
            data = await _wait_for_part(program, parsed.msn, parsed.index)
    if (
        data is None
        and upstream is not None
        and parsed.msn is not None
        and parsed.msn < program.playlist.media_sequence
    ):
        # Older than this web node's catch-up: the media node has it on disk. (Nothing
        # else goes there: a flood of made-up names must not reach the media node.)
        return await upstream.get(request, space_id)
    if data is None:
        raise NotFound(f"{name} does not exist (yet)")
    return Response(data, media_type=MEDIA_TYPE, headers={"Cache-Control": IMMUTABLE, **CORS})


async def _wait_for_part(program: Program, msn: int, index: int) -> bytes | None:
    timeout = 3 * float(program.timeline.cadence.part_target_seconds)
    deadline = time.monotonic() + timeout
    while (data := program.part(msn, index)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not program.is_upcoming_part(msn, index):
            return None
        await program.changed(remaining)
    return data
