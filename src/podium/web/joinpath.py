"""The anonymous join and the beacon, answered before the framework sees them.

On the day a space goes viral, the join is the request that arrives by the hundred
thousand. FastAPI's routing (every route tried in turn), dependency solving and body
validation cost about three times what the join itself does (``bench/join_rate.py``), so
an anonymous ``POST /api/v1/spaces/{id}/join``, which is what every listener's page and
player sends, is answered here: by the same :func:`~podium.web.room.answer_join` as the
route, with the body checked by the same :class:`~podium.web.room.JoinBody`, and every
refusal the same problem document. A join that carries credentials (an API token, or a
session cookie and its CSRF token) goes on to the route, where authentication lives.

The beacon, which every listener sends every 15 s (a million listeners: 67,000 a
second), is answered here too when its body is what players send (a JSON object with a
ticket): the same :func:`~podium.web.room.answer_beacon` after the same per-address
limit. Any other body goes on to the route, which answers it as it always did.

This sits inside :class:`~podium.web.middleware.RequestGuard` (body size and time limits,
metrics, access log) and CORS, like every route; the routes stay the description in the
OpenAPI document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.errors import PodiumError
from podium.web import problems
from podium.web.context import Context, client_address
from podium.web.room import JoinBody, TicketBody, answer_beacon, answer_join, check_writes

JOIN_PATH = re.compile(r"/api/v1/spaces/([^/]+)/join")
BEACON_PATH = re.compile(r"/api/v1/spaces/([^/]+)/beacon")


@dataclass(frozen=True, slots=True)
class _Route:
    """Stands in ``scope["route"]`` for the route the router would have matched: the access
    log and the metrics read its template (FastAPI keeps included routes to itself)."""

    path: str


JOIN_ROUTE = _Route("/api/v1/spaces/{space_id}/join")
BEACON_ROUTE = _Route("/api/v1/spaces/{space_id}/beacon")
_SESSION = b"podium_session="


class JoinFastPath:
    """ASGI middleware: anonymous joins answered here, everything else passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            JOIN_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None or _has_credentials(scope):
            await self.app(scope, receive, send)
            return
        # What the router would have set: the access log and metrics name the route.
        scope["route"] = JOIN_ROUTE
        request = Request(scope, receive)
        context: Context = scope["app"].state.context
        # A body cut off (too large, too slow) or a client gone is the request guard's and
        # the server's to answer, as for every route: it is not caught below.
        raw = await request.body()
        try:
            body = _join_body(raw, request.headers.get("content-type"))
            if isinstance(body, JSONResponse):
                response = body
            else:
                address = client_address(request)
                response = answer_join(context, match.group(1), address, None, body)
        except PodiumError as exc:
            response = problems.from_error(exc)
        except Exception as exc:  # the app's own last-resort handler, as for every route
            response = problems.unexpected(scope["method"], scope["path"], exc)
        await response(scope, receive, send)


class BeaconFastPath:
    """ASGI middleware: beacons with a well-formed body answered here, the rest passed on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            BEACON_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        raw = await request.body()
        body = _beacon_body(raw, request.headers.get("content-type"))
        if body is None:  # anything unusual: the route answers it, with the same bytes
            await self.app(scope, _replay(raw, receive), send)
            return
        scope["route"] = BEACON_ROUTE
        context: Context = scope["app"].state.context
        response: Response
        try:
            check_writes(context, client_address(request))
            answer_beacon(context, match.group(1), body.ticket)
            response = Response(status_code=204)
        except PodiumError as exc:
            response = problems.from_error(exc)
        except Exception as exc:  # the app's own last-resort handler, as for every route
            response = problems.unexpected(scope["method"], scope["path"], exc)
        await response(scope, receive, send)


def _beacon_body(raw: bytes, content_type: str | None) -> TicketBody | None:
    if content_type is None or not _is_json(content_type):
        return None
    try:
        document = json.loads(raw)
        return TicketBody.model_validate(document) if isinstance(document, dict) else None
    except (ValueError, UnicodeDecodeError, ValidationError):
        return None


def _replay(raw: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read given back first."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return again


def _has_credentials(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"authorization" or (name == b"cookie" and _SESSION in value):
            return True
    return False


def _join_body(raw: bytes, content_type: str | None) -> JoinBody | JSONResponse:
    """The join's body as the route reads it (JSON sent as JSON; empty or ``null`` is no
    body), or the problem to answer instead."""
    if not raw:
        return JoinBody()
    if content_type is None or not _is_json(content_type):
        return problems.problem(400, "malformed-json", "Malformed JSON", problems.NOT_A_JSON_OBJECT)
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return problems.invalid([{"type": "json_invalid", "loc": ("body",), "msg": "bad JSON"}])
    if document is None:
        return JoinBody()
    if not isinstance(document, dict):
        return problems.problem(400, "malformed-json", "Malformed JSON", problems.NOT_A_JSON_OBJECT)
    try:
        return JoinBody.model_validate(document)
    except ValidationError as exc:
        return problems.invalid(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
