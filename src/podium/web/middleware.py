"""Pure ASGI middleware around every request: body size limit, access log and metrics.

The size limit is checked on ``Content-Length`` before the handler runs, and again while the
body streams in (a chunked body has no length), so an oversized body is cut off early and
answered with 413 instead of being buffered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.web.metrics import Metrics
from podium.web.problems import problem

log = logging.getLogger("podium.http")


class _BodyTooLarge(Exception):
    pass


class RequestGuard:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "sent": False, "too_large": False}

        async def send_wrapper(message: Message) -> None:
            if state["too_large"]:
                # The framework answers a body we cut off with a generic 400; the caller
                # gets the true reason, a 413, instead.
                return
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["sent"] = True
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not state["sent"]:
                    state["too_large"] = True
                    raise _BodyTooLarge
            return message

        try:
            if self._declared_length(scope) > self.max_body_bytes:
                state["too_large"] = True
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except _BodyTooLarge:
            pass
        finally:
            if state["too_large"]:
                self.metrics.oversized.inc()
                state["too_large"] = False
                response = problem(
                    413,
                    "too-large",
                    "Request body too large",
                    f"the body is larger than {self.max_body_bytes} bytes",
                    {"Connection": "close"},
                )
                await response(scope, receive, send_wrapper)
            self._record(scope, state["status"], time.perf_counter() - started)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "(unmatched)"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        self.metrics.requests.labels(method=method, route=template, status=str(status)).inc()
        self.metrics.duration.labels(route=template).observe(elapsed)
        client = scope.get("client")
        log.info(
            "http_request",
            extra={
                "fields": {
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                }
            },
        )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
