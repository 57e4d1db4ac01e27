"""RFC 9457 problem details for every error the API returns.

Each :class:`~podium.errors.PodiumError` maps to its own status and type; validation
failures list what was wrong and where; anything unexpected is logged with its traceback
and answered with a plain 500 that reveals nothing internal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from podium.errors import PodiumError, Unauthenticated

log = logging.getLogger("podium.web")

PROBLEM_TYPE_BASE = "urn:podium:problem:"
MEDIA_TYPE = "application/problem+json"


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    # An error must not stick in a cache: a part that is not there yet will be.
    headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def from_error(exc: PodiumError) -> JSONResponse:
    headers: dict[str, str] = {}
    extra: dict[str, Any] = dict(exc.extra)
    if exc.retry_after is not None:
        seconds = max(1, math.ceil(exc.retry_after))
        headers["Retry-After"] = str(seconds)
        extra["retry_after_s"] = seconds
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="podium"'
    return problem(exc.status, exc.kind, exc.title, exc.detail, headers, **extra)


def invalid(errors: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """The answer to a request that failed validation: pydantic's error list, each
    location starting with where the value was (``body``, ``query``, ``path``…)."""
    listed = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
        for e in errors
    ]
    # Only what is wrong with the body as a whole is a malformed body; a field of the
    # wrong type inside it is invalid input, named by where it is.
    in_body = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    kinds = {e.get("type") for e in in_body if len(e.get("loc", ())) == 1}
    if any(e.get("type") == "json_invalid" for e in in_body):
        return problem(
            400, "malformed-json", "Malformed JSON", "the request body is not valid JSON"
        )
    if "model_attributes_type" in kinds:
        return problem(400, "malformed-json", "Malformed JSON", NOT_A_JSON_OBJECT)
    first = listed[0] if listed else {"where": "request", "problem": "invalid"}
    return problem(
        422,
        "invalid-input",
        "Invalid input",
        f"{first['where']}: {first['problem']}",
        errors=listed,
    )


NOT_A_JSON_OBJECT = "the request body must be a JSON object sent as application/json"


def unexpected(method: str, path: str, exc: BaseException) -> JSONResponse:
    """Log ``exc`` with its traceback; answer a plain 500 that reveals nothing internal."""
    log.error("unhandled_error", exc_info=exc, extra={"fields": {"path": path, "method": method}})
    return problem(500, "internal", "Internal error", "something went wrong on our side")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this request's path."""
    methods: set[str] = set()
    for route in request.app.state.api_routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    return sorted(methods)


_HTTP_KINDS = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    async def on_podium_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PodiumError)
        return from_error(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid(exc.errors())

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        kind, title = _HTTP_KINDS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"nothing at {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # The router names the methods of the first route with this path; there may be
            # several (GET and POST /api/v1/spaces are two routes).
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(exc.status_code, kind, title, detail, headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected(request.method, request.url.path, exc)

    app.add_exception_handler(PodiumError, on_podium_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
