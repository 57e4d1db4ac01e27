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
from fastapi.security import HTTPAuthorizationCredentials

from podium import clock
from podium.control import tickets
from podium.control.lifecycle import SpaceStatus
from podium.errors import Conflict, Forbidden, InvalidInput, PodiumError, Unauthenticated
from podium.web import ice
from podium.web.auth import current_user
from podium.web.context import Context, get_context, verifying_keys
from podium.web.problems import problem
from podium.web.roomstate import person_of_user

router = APIRouter(prefix="/api/v1/spaces", tags=["speaking"])
Ctx = Annotated[Context, Depends(get_context)]

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
# RFC 9725 4.2: the offer is an SDP document; Podium's are a few kilobytes.
MAX_OFFER_BYTES = 16 * 1024
_SDP_BODY: dict[str, Any] = {"content": {SDP: {"schema": {"type": "string"}}}}
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
# An API token, a listener's ticket (for a listener brought on stage) as the Bearer token,
# or a browser session with its CSRF token: see _speaker.
_SECURITY: list[dict[str, list[str]]] = [{"HTTPBearer": []}]


class UnsupportedMediaType(PodiumError):
    status = 415
    kind = "unsupported-media-type"
    title = "Unsupported media type"


async def _speaker(request: Request, context: Context, space_id: str) -> str:
    """Who is publishing: an account (API token, or browser session with its CSRF token)
    or, for a listener brought on stage, their listener ticket as the Bearer token."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    now = clock.now()
    if scheme.lower() == "bearer" and credential and not credential.startswith("pdm_"):
        return tickets.verify(verifying_keys(context), credential, space_id, now).listener_id
    user = await current_user(request, context, None if not header else _bearer(header))
    if user is None:
        raise Unauthenticated("send an API token or your listener ticket as a Bearer token")
    return person_of_user(user.id)


def _bearer(header: str) -> HTTPAuthorizationCredentials | None:
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credential.strip())


def _may_speak(context: Context, space_id: str, person: str) -> bool:
    """Raise unless ``person`` may publish in the space now; return whether they are
    muted (a muted speaker may connect and is silent in the mix until they unmute)."""
    space = context.spaces.get(space_id)
    if space.status is not SpaceStatus.LIVE:
        raise Conflict(f"the space is {space.status}, not live: start it before speaking")
    stage = context.rooms.stage(space_id)
    seat = stage.seat(person)
    if seat is None:
        if stage.is_blocked(person):
            raise Forbidden("you were removed from this space")
        raise Forbidden("you are not on stage: raise your hand or use an invite first")
    return seat.muted


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
    openapi_extra={"requestBody": {"required": True, **_SDP_BODY}, "security": _SECURITY},
    responses={201: _SDP_BODY, 401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM, 415: _PROBLEM},
)
async def publish(space_id: str, request: Request, context: Ctx) -> Response:
    """Publish audio to a live space (WHIP). The body is the SDP offer.

    Anyone on the stage may: the host, co-hosts and speakers (with their account's API
    token, or a listener ticket once their hand was approved or they used an invite).
    """
    person = await _speaker(request, context, space_id)
    muted = _may_speak(context, space_id, person)
    offer = await _body(request, SDP)
    publication = await context.media.publish(space_id, person, offer)
    if muted:
        await context.media.set_muted(space_id, person, True)
    location = f"/api/v1/spaces/{space_id}/whip/{publication.resource_id}"
    response = Response(
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
    _advertise_ice_servers(response, context, person)
    return response


@router.options(
    "/{space_id}/whip",
    status_code=204,
    responses={401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM},
    openapi_extra={"security": _SECURITY},
)
async def ice_servers(space_id: str, request: Request, context: Ctx) -> Response:
    """The STUN and TURN servers to publish through, before the offer: one
    ``Link: <url>; rel="ice-server"`` header each, TURN ones with credentials for this
    speaker alone (``username``, ``credential``, ``credential-type="password"``).

    RFC 9725 gives them with the ``201`` answer too; asked for first (as WHIP's drafts
    had it), the client's one offer already holds the relay's candidates. Only someone
    who may publish now is given TURN credentials.
    """
    person = await _speaker(request, context, space_id)
    _may_speak(context, space_id, person)
    response = Response(status_code=204, headers={"Accept-Post": SDP, "Cache-Control": "no-store"})
    _advertise_ice_servers(response, context, person)
    return response


def _advertise_ice_servers(response: Response, context: Context, person: str) -> None:
    for link in ice.links_for(context.settings, person, clock.now()):
        response.headers.append("Link", link)


@router.delete(
    "/{space_id}/whip/{resource_id}",
    status_code=200,
    responses={401: _PROBLEM, 404: _PROBLEM},
    openapi_extra={"security": _SECURITY},
)
async def unpublish(space_id: str, resource_id: str, request: Request, context: Ctx) -> Response:
    """End the WHIP session (RFC 9725 4.3: DELETE the resource). Your seat on the stage
    stays: publish again to come back, or leave the stage through the room API."""
    person = await _speaker(request, context, space_id)
    await context.media.unpublish(space_id, resource_id, person)
    return Response(status_code=200)


@router.patch(
    "/{space_id}/whip/{resource_id}",
    openapi_extra={
        "requestBody": {"required": True, "content": {TRICKLE: {"schema": {"type": "string"}}}},
        "security": _SECURITY,
    },
    responses={
        204: {},
        **{code: _PROBLEM for code in (401, 404, 412, 415, 428)},
    },
)
async def trickle(
    space_id: str,
    resource_id: str,
    request: Request,
    context: Ctx,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Trickle ICE candidates to a session (RFC 9725 4.3.1, RFC 8840 fragments)."""
    person = await _speaker(request, context, space_id)
    fragment = await _body(request, TRICKLE)
    status, detail = await context.media.patch(space_id, resource_id, person, if_match, fragment)
    if status == 204:
        return Response(status_code=204)
    return problem(status, "whip-patch", "Cannot apply the ICE fragment", detail)
