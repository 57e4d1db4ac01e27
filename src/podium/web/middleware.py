"""Pure ASGI middleware around every request: body size and time limits, access log and
metrics.

The size limit is checked on ``Content-Length`` before the handler runs, and again while the
body streams in (a chunked body has no length), so an oversized body is cut off early and
answered with 413 instead of being buffered. A body must also arrive in full within
``body_timeout`` seconds of the request's start, or it is answered with 408 and the
connection closed: a client trickling a body cannot hold a handler for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.web.metrics import Metrics
from podium.web.problems import problem

log = logging.getLogger("podium.http")


class _BodyCutOff(Exception):
    pass


class RequestGuard:
    def __init__(
        self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, body_timeout: float = 10.0
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # "cut" says why the body was cut off ("large" or "slow"), if it was.
        state: dict[str, Any] = {"status": 500, "sent": False, "cut": None}
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        body_done = False

        async def send_wrapper(message: Message) -> None:
            if state["cut"]:
                # The framework answers a body we cut off with a generic 400; the caller
                # gets the true reason, a 413 or a 408, instead.
                return
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["sent"] = True
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received, body_done
            if body_done:  # later reads only wait for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                if state["sent"]:
                    raise
                state["cut"] = "slow"
                raise _BodyCutOff from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not state["sent"]:
                    state["cut"] = "large"
                    raise _BodyCutOff
            return message

        try:
            if self._declared_length(scope) > self.max_body_bytes:
                state["cut"] = "large"
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except _BodyCutOff:
            pass
        finally:
            cut, state["cut"] = state["cut"], None
            if cut == "large":
                self.metrics.oversized.inc()
                response = problem(
                    413,
                    "too-large",
                    "Request body too large",
                    f"the body is larger than {self.max_body_bytes} bytes",
                    {"Connection": "close"},
                )
                await response(scope, receive, send_wrapper)
            elif cut == "slow":
                response = problem(
                    408,
                    "body-timeout",
                    "Request body too slow",
                    f"the body did not arrive within {self.body_timeout:g} s",
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
