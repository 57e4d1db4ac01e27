"""The lifecycle of a space, as a pure state machine.

::

    scheduled ──start──► live ──end──► ended
        │
        └──cancel──► cancelled

A space is created ``scheduled`` (with or without a start time); the host takes it live
and ends it. Only the host may move it (co-hosts join in with room roles). Nothing here
does I/O: callers pass the actor and the time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from podium.errors import Forbidden, InvalidTransition


class SpaceStatus(StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class Action(StrEnum):
    START = "start"
    END = "end"
    CANCEL = "cancel"


_NEXT: dict[tuple[SpaceStatus, Action], SpaceStatus] = {
    (SpaceStatus.SCHEDULED, Action.START): SpaceStatus.LIVE,
    (SpaceStatus.LIVE, Action.END): SpaceStatus.ENDED,
    (SpaceStatus.SCHEDULED, Action.CANCEL): SpaceStatus.CANCELLED,
}

_WHY_NOT: dict[tuple[SpaceStatus, Action], str] = {
    (SpaceStatus.SCHEDULED, Action.END): "the space has not started; cancel it instead",
    (SpaceStatus.LIVE, Action.START): "the space is already live",
    (SpaceStatus.LIVE, Action.CANCEL): "the space is live; end it instead",
}


@dataclass(frozen=True, slots=True)
class Space:
    id: str
    host_id: str
    title: str
    description: str
    status: SpaceStatus
    scheduled_start: float | None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    in_feed: bool = True
    # The replay file's size in bytes and duration in seconds, once it is written.
    replay_bytes: int | None = None
    replay_seconds: float | None = None


def apply(space: Space, action: Action, actor_id: str, now: float) -> Space:
    """Return ``space`` after ``action`` by ``actor_id`` at ``now``.

    Raises :class:`Forbidden` if the actor is not the host, and
    :class:`InvalidTransition` if the action makes no sense in the current state.
    """
    if actor_id != space.host_id:
        raise Forbidden(f"only the host of a space may {action} it")
    target = _NEXT.get((space.status, action))
    if target is None:
        reason = _WHY_NOT.get((space.status, action), f"the space is {space.status}")
        raise InvalidTransition(f"cannot {action} this space: {reason}")
    if target is SpaceStatus.LIVE:
        return dataclasses.replace(space, status=target, started_at=now)
    return dataclasses.replace(space, status=target, ended_at=now)
