"""The OpenAPI document: FastAPI's description of each route, completed with what every
route shares and the framework cannot see.

Every error is an RFC 9457 problem document (:mod:`podium.web.problems`), not FastAPI's
validation schema; a route that reads credentials refuses bad ones with 401, and a cookie
write without its CSRF token with 403; a route with a body refuses one too large (413, the
request guard) or not JSON (400); a space that is not there is 404. Said once here, for
every route, so that the description stays what the server does (``tests/api`` runs
schemathesis against it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from podium.web.auth import current_user, require_user
from podium.web.problems import MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "`urn:podium:problem:<kind>`"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "errors": {
            "type": "array",
            "description": "For invalid input: each value refused, and why.",
            "items": {
                "type": "object",
                "required": ["where", "problem"],
                "properties": {"where": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
        "retry_after_s": {"type": "integer", "description": "As `Retry-After`."},
    },
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    400: "Malformed: the body is not the JSON object this operation reads",
    401: "Credentials sent that are not valid, or none where they are needed",
    403: "Not allowed for this caller (or a cookie write without its CSRF token)",
    404: "No such space or resource",
    413: "The request body is larger than the server accepts",
    422: "Invalid input: the problem lists each value refused",
}
# What FastAPI says of a response nobody described.
_FRAMEWORK_WORDS = frozenset({"", "Additional Response", "Validation Error"})
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_F = TypeVar("_F", bound=Callable[..., Any])
_REFUSALS = "_podium_refusals_on_writes"


def refuses_writes(code: int, description: str) -> Callable[[_F], _F]:
    """Mark a dependency that may refuse a write (POST, PATCH, DELETE) with ``code``: every
    operation that depends on it documents the refusal."""

    def mark(dependency: _F) -> _F:
        refusals = {**getattr(dependency, _REFUSALS, {}), code: description}
        setattr(dependency, _REFUSALS, refusals)
        return dependency

    return mark


def install(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Serve the completed document of ``routes`` (every route of ``app``, flat) at the
    app's ``openapi_url``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = complete(document, routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """``document`` with the responses and security every route shares (see above)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        calls = set(_calls(route.dependant))
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            _complete_operation(operation, route.path_format, method, calls)
    return document


def _complete_operation(
    operation: dict[str, Any], path: str, method: str, calls: set[object]
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes: set[int] = set()
    if current_user in calls or operation.get("security"):
        codes.add(401)
        if method not in _SAFE:
            codes.add(403)
        if current_user in calls and require_user not in calls:
            # Signed in or not: the operation answers both (a bad token is still 401).
            operation["security"] = [*operation.get("security", []), {}]
    body = operation.get("requestBody")
    if body is not None:
        codes.add(413)
        if "application/json" in body.get("content", {}):
            codes.add(400)
    if "{space_id}" in path:
        codes.add(404)
    for code in codes:
        responses.setdefault(str(code), {})
    if method not in _SAFE:
        for call in calls:
            for refusal, description in getattr(call, _REFUSALS, {}).items():
                responses.setdefault(str(refusal), {"description": description})
    for status, response in responses.items():
        if status[0] in "45":
            if response.get("description", "") in _FRAMEWORK_WORDS:
                response["description"] = _DESCRIPTIONS.get(int(status), "A refusal")
            response["content"] = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _calls(dependant: Dependant) -> Iterator[object]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)
