"""A media node's internal API, for the fleet's web nodes (``--role media``).

``GET /internal/media/feed`` streams the feed (one JSON object per line: first
``{"node": NAME}``, then the catch-up and every event, see :mod:`podium.media.fanout`,
and an empty line after every second without one);
every other path is a command for the media worker, passed on as it came (the worker's
own paths: ``POST /internal/media/rooms/{id}`` and so on) and answered as the worker
answers. Starting a room takes the space's lease first (:mod:`podium.control.placement`):
a space another node holds is refused (409) rather than run twice; ending one gives the
lease up. Every request carries ``Authorization: Bearer <media_secret>``; nothing here is
for the public, and a load balancer in front of web nodes refuses ``/internal/`` anyway.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from podium.errors import Conflict, InvalidInput, PodiumError, Unauthenticated
from podium.web.context import Context, get_context

PREFIX = "/internal/media"
# An empty line on the feed when there has been nothing else for this long: a follower
# that hears nothing for a few of these knows the node is gone (or paused).
KEEPALIVE_S = 1.0
Ctx = Annotated[Context, Depends(get_context)]


async def authenticated(
    context: Ctx, authorization: Annotated[str | None, Header()] = None
) -> None:
    secret = context.settings.media_secret
    assert secret is not None  # a media node's settings require it
    expected = f"Bearer {secret.value}".encode()
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
        raise Unauthenticated("this is a media node's internal API: send the fleet's secret")


router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(authenticated)])


@router.get("/feed")
async def follow(context: Ctx) -> StreamingResponse:
    lines, queue = context.media.fanout.follow()
    hello = json.dumps({"node": context.media_node or context.settings.node_name}).encode()

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield hello + b"\n"
            for line in lines:
                yield line
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b"\n"  # nothing to send: say this node is still here
                    continue
                if event is None:
                    break
                yield event
        finally:
            context.media.fanout.leave(queue)

    return StreamingResponse(
        stream(), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"}
    )


@router.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "DELETE"])
async def command(request: Request, context: Ctx) -> Response:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("ascii", "replace").split("?", 1)[0][len(PREFIX) :]
    if request.url.query:
        path += f"?{request.url.query}"
    body: dict[str, Any] | None = None
    if request.method in ("POST", "PATCH"):
        content = await request.body()
        try:
            body = json.loads(content) if content else None
        except ValueError as exc:
            raise InvalidInput("the command's body is not JSON") from exc
    try:
        room = _room_of(path)
        if room is not None and request.method == "POST" and context.leases is not None:
            lease = context.leases.hold(room)
            if lease is not None and not lease.mine:
                raise Conflict(f"space {room} is hosted by media node {lease.node}")
        answer = await context.media.forward(request.method, path, body)
        if room is not None and request.method == "DELETE" and context.leases is not None:
            context.leases.release(room)
    except PodiumError as exc:
        # As the worker answers, so that the web node raises the same error.
        return JSONResponse({"kind": exc.kind, "detail": exc.detail}, status_code=exc.status)
    if answer is None:
        return Response(status_code=204)
    return JSONResponse(answer)


def _room_of(path: str) -> str | None:
    """The space of a command that starts or ends a room (``/rooms/{id}``), else None."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) == 3 and parts[0] == "" and parts[1] == "rooms":
        return unquote(parts[2])
    return None
