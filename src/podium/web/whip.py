"""WHIP (RFC 9725): speakers publish to a live space with one HTTP POST of an SDP offer.

``POST /api/v1/spaces/{id}/whip`` with ``Content-Type: application/sdp`` and a Bearer
token answers ``201 Created`` with the SDP answer, a ``Location`` for the session (DELETE
it to leave the stage; PATCH it for trickle ICE) and an ``ETag`` naming the ICE session.
Browsers on other origins may publish: CORS allows ``Authorization`` and exposes
``Location``, ``ETag`` and ``Link`` (see :mod:`podium.web.app`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from podium.control.accounts import User
from podium.control.lifecycle import SpaceStatus
from podium.errors import Conflict, Forbidden, InvalidInput, PodiumError
from podium.web.auth import CurrentUser
from podium.web.context import Context, get_context
from podium.web.problems import problem

router = APIRouter(prefix="/api/v1/spaces", tags=["speaking"])
Ctx = Annotated[Context, Depends(get_context)]

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
# RFC 9725 4.2: the offer is an SDP document; Podium's are a few kilobytes.
MAX_OFFER_BYTES = 16 * 1024
_SDP_BODY: dict[str, Any] = {"content": {SDP: {"schema": {"type": "string"}}}}
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


class UnsupportedMediaType(PodiumError):
    status = 415
    kind = "unsupported-media-type"
    title = "Unsupported media type"


def _may_speak(context: Context, space_id: str, user: User) -> None:
    """Raise unless ``user`` may publish in the space now."""
    space = context.spaces.get(space_id)
    if space.status is not SpaceStatus.LIVE:
        raise Conflict(f"the space is {space.status}, not live: start it before speaking")
    if user.id != space.host_id:
        raise Forbidden("only the host may speak in this space")


async def _body(request: Request, media_type: str) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != media_type:
        raise UnsupportedMediaType(
            f"send the body as {media_type}, not {content_type or 'nothing'}"
        )
    raw = await request.body()
    if len(raw) > MAX_OFFER_BYTES:
        raise InvalidInput(f"the SDP is larger than {MAX_OFFER_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the SDP is not UTF-8 text") from exc


@router.post(
    "/{space_id}/whip",
    status_code=201,
    openapi_extra={"requestBody": {"required": True, **_SDP_BODY}},
    responses={201: _SDP_BODY, 401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 415: _PROBLEM},
)
async def publish(space_id: str, request: Request, user: CurrentUser, context: Ctx) -> Response:
    """Publish audio to a live space (WHIP). The body is the SDP offer."""
    _may_speak(context, space_id, user)
    offer = await _body(request, SDP)
    publication = await context.media.publish(space_id, user.id, offer)
    location = f"/api/v1/spaces/{space_id}/whip/{publication.resource_id}"
    return Response(
        publication.answer_sdp,
        status_code=201,
        media_type=SDP,
        headers={
            "Location": location,
            "ETag": publication.etag,
            "Accept-Patch": TRICKLE,
            "Cache-Control": "no-store",
        },
    )


@router.delete(
    "/{space_id}/whip/{resource_id}", status_code=200, responses={401: _PROBLEM, 404: _PROBLEM}
)
async def unpublish(space_id: str, resource_id: str, user: CurrentUser, context: Ctx) -> Response:
    """Leave the stage: ends the WHIP session (RFC 9725 4.3: DELETE the resource)."""
    space = context.spaces.get(space_id)
    if user.id != space.host_id:
        raise Forbidden("this is not your session")
    await context.media.unpublish(space_id, resource_id)
    return Response(status_code=200)


@router.patch(
    "/{space_id}/whip/{resource_id}",
    openapi_extra={"requestBody": {"content": {TRICKLE: {"schema": {"type": "string"}}}}},
    responses={204: {}, 401: _PROBLEM, 404: _PROBLEM, 412: _PROBLEM, 428: _PROBLEM},
)
async def trickle(
    space_id: str,
    resource_id: str,
    request: Request,
    user: CurrentUser,
    context: Ctx,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Trickle ICE candidates to a session (RFC 9725 4.3.1, RFC 8840 fragments)."""
    space = context.spaces.get(space_id)
    if user.id != space.host_id:
        raise Forbidden("this is not your session")
    fragment = await _body(request, TRICKLE)
    status, detail = await context.media.patch(space_id, resource_id, if_match, fragment)
    if status == 204:
        return Response(status_code=204)
    return problem(status, "whip-patch", "Cannot apply the ICE fragment", detail)
