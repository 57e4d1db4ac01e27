"""uvicorn's HTTP/1.1 protocol (h11), with a deadline for each request's head.

uvicorn closes idle keep-alive connections, but cancels that timer on any byte received
and arms none for a fresh connection: a client sending a header line every few seconds
(slowloris) holds a connection, and its memory, for ever. Here every request head,
the first on a connection or the next after a response, must arrive in full within
``head_timeout`` seconds, or the connection is closed. Bodies have their own deadline in
:class:`~podium.web.middleware.RequestGuard`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class GuardedH11Protocol(H11Protocol):
    head_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_timer()  # the head is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head starts its own clock

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_head_timeout(seconds: float) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout": seconds})
