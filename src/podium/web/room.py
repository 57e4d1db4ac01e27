"""Room life over HTTP: joining, beacons, reactions, hands, the stage, invites, the room
state, the audit log, analytics and calendar files.

Listeners need no account: ``POST …/join`` answers a signed ticket (no database write),
which beacons, reactions and raised hands carry in their JSON body. Hosts and co-hosts act
with their account (API token or browser session).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from podium import clock
from podium.control import invites, tickets
from podium.control.accounts import User
from podium.control.admission import Admitted, Queued, Reason, Refused
from podium.control.audience import BeaconLimiter
from podium.control.lifecycle import Space, SpaceStatus
from podium.control.ratelimit import TokenBuckets
from podium.control.reactions import ALLOWED
from podium.control.stage import Stage, StageAction
from podium.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    Overloaded,
    ProofOfWorkRequired,
    RateLimited,
    Unauthenticated,
)
from podium.web.auth import CurrentUser, OptionalUser
from podium.web.context import (
    Context,
    client_address,
    get_context,
    signing_key,
    verifying_keys,
)
from podium.web.openapi import refuses_writes
from podium.web.roomstate import person_of_user
from podium.web.schemas import Request as StrictBody

Ctx = Annotated[Context, Depends(get_context)]


@refuses_writes(429, "Too many requests from this address or ticket")
async def _writes_per_address(request: Request, context: Ctx) -> None:
    """Every write here but the join (which has its own) takes a token of its address."""
    if request.method in ("GET", "HEAD", "OPTIONS") or request.url.path.endswith("/join"):
        return
    check_writes(context, client_address(request))


def check_writes(context: Context, address: str) -> None:
    """Take a listener write's token of ``address``; raise RateLimited when there is none."""
    wait = context.writes_by_client.take(address, clock.now())
    if wait > 0:
        context.metrics.rate_limited.labels(scope="listener-writes").inc()
        raise RateLimited(
            f"too many requests from your address; try again in {wait:.0f} s",
            wait,
            scope="address",
        )


router = APIRouter(
    prefix="/api/v1/spaces/{space_id}",
    tags=["room"],
    dependencies=[Depends(_writes_per_address)],
)
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}

# The largest id or version a query may name: SQLite's largest integer.
ID_MAX = 2**63 - 1
TICKET_TTL_S = 12 * 3600.0
INVITE_TTL_S = 24 * 3600.0
NAME = Field(default="", max_length=64)


class TicketBody(StrictBody):
    ticket: str = Field(max_length=600)


class ReactionBody(TicketBody):
    emoji: str = Field(max_length=16, description=f"One of {' '.join(ALLOWED)}")


class HandBody(StrictBody):
    ticket: str | None = Field(default=None, max_length=600)
    name: str = NAME


class InviteAccept(StrictBody):
    invite: str = Field(max_length=64)
    ticket: str | None = Field(default=None, max_length=600)
    name: str = NAME


class SelfBody(StrictBody):
    ticket: str | None = Field(default=None, max_length=600)


def _live_or_ended(context: Context, space_id: str, *, cached: bool = False) -> Space:
    space = (
        context.spaces.get_cached(space_id, clock.now()) if cached else context.spaces.get(space_id)
    )
    if space.status is SpaceStatus.CANCELLED:
        raise Conflict("this space was cancelled")
    return space


def _person(
    context: Context, space_id: str, user: User | None, ticket: str | None
) -> tuple[str, str]:
    """Who is acting, and their display name: an account, else a listener ticket."""
    now = clock.now()
    if user is not None:
        person, name = person_of_user(user.id), user.display_name
    elif ticket is None:
        raise Unauthenticated("send your listener ticket (from join), or sign in")
    else:
        person, name = (
            tickets.verify(verifying_keys(context), ticket, space_id, now).listener_id,
            "",
        )
    wait = _person_writes.take(person, now)
    if wait > 0:
        raise RateLimited(f"too many requests from you; try again in {wait:.0f} s", wait)
    return person, name


# Hands, stage requests and invite answers per person (a ticket or an account): a person
# clicking is far below this; a script replaying one ticket is not.
_person_writes = TokenBuckets(rate=2.0, burst=20)


# -- joining and being counted -----------------------------------------------------------


class ProofBody(StrictBody):
    token: str = Field(max_length=400)
    nonce: str = Field(max_length=32)


class JoinBody(StrictBody):
    queue_token: str | None = Field(
        default=None, max_length=600, description="From an earlier 202 answer: keeps your place"
    )
    pow: ProofBody | None = Field(
        default=None, description="A solved proof-of-work challenge (after a 428 answer)"
    )


_JOIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Queued: come back after retry_after_s with the queue_token"},
    **{code: _PROBLEM for code in (400, 401, 404, 409, 422, 428, 429, 503)},
}


@router.post("/join", responses=_JOIN_RESPONSES)
async def join(
    space_id: str,
    request: Request,
    context: Ctx,
    user: OptionalUser,
    body: Annotated[JoinBody | None, Body()] = None,
) -> JSONResponse:
    """Join as a listener: a signed ticket for beacons, reactions and raising a hand.

    No account needed and nothing written to a database. When the space is full or
    people arrive faster than it admits them, the answer is 202 with a place in a fair
    queue, an estimated wait and a ``queue_token`` to come back with; before a scheduled
    start, arrivals wait in a pre-queue that is shuffled at the start. Under a flood of
    joins the answer may be 428 with a proof-of-work challenge. Joining an ended space
    counts as a replay play.
    """
    return answer_join(context, space_id, client_address(request), user, body or JoinBody())


def answer_join(
    context: Context, space_id: str, address: str, user: User | None, body: JoinBody
) -> JSONResponse:
    """The join itself, for the route above and for :mod:`podium.web.joinpath` (which
    serves anonymous joins without the framework). Raises
    :class:`~podium.errors.PodiumError` for every refusal."""
    now = clock.now()
    gate = context.gate
    gate.arrival(now)
    # A read at most a second old: the crowd's joins do not each query the database, and
    # go on while it cannot be reached.
    space = _live_or_ended(context, space_id, cached=True)
    entry_id = None
    if body.queue_token is not None:
        entry_id = gate.queue_entry(space.id, body.queue_token, now)
    else:
        wait = context.join_by_client.take(address, now)
        if wait > 0:
            context.metrics.rate_limited.labels(scope="join").inc()
            raise RateLimited(
                f"too many joins from your address; try again in {wait:.0f} s",
                wait,
                scope="address",
            )
    listener = person_of_user(user.id) if user else "l:" + tickets.new_listener_id()
    if space.status is SpaceStatus.ENDED:
        return _admitted(context, space, listener, user, now, "replay")
    if entry_id is None and gate.pow_required(now):
        _check_proof(context, space.id, body.pow, now)
    room = context.hub.room(space.id)
    seated = gate.seated(space.id, now, room.audience.concurrent)
    started = space.status is SpaceStatus.LIVE
    admission = gate.space(space.id)
    if entry_id is None:
        decision = admission.arrive(now, seated, gate.healthy, started, listener)
    else:
        decision = admission.poll(entry_id, now, seated, gate.healthy, started, listener)
    if isinstance(decision, Admitted):
        gate.note_admitted(space.id)
        return _admitted(context, space, listener, user, now, "admitted")
    if isinstance(decision, Refused):
        raise Overloaded(
            "the waiting room of this space is full; try again later",
            decision.retry_after_s,
            decision.reason.value,
        )
    return _queued(context, space, decision, now)


def _check_proof(context: Context, space_id: str, proof: ProofBody | None, now: float) -> None:
    """Raise 428 with a fresh challenge unless ``proof`` solves an unused one."""
    detail = "joining needs a small proof of work right now: solve the challenge and ask again"
    if proof is not None:
        try:
            if context.gate.check_pow(space_id, proof.token, proof.nonce, now):
                return
            detail = "that proof of work was already used; solve this new challenge"
        except InvalidInput as exc:
            detail = f"{exc.detail}; solve this new challenge"
    challenge = context.gate.challenge(space_id, now)
    raise ProofOfWorkRequired(
        detail,
        {
            "token": challenge.token,
            "difficulty": challenge.difficulty,
            "algorithm": "sha256(token ':' nonce) with difficulty leading zero bits",
            "expires_at": clock.rfc3339(challenge.expires_at),
        },
    )


def _admitted(
    context: Context, space: Space, listener: str, user: User | None, now: float, status: str
) -> JSONResponse:
    tier = "account" if user else "guest"
    ticket = tickets.issue(signing_key(context), space.id, listener, tier, now, TICKET_TTL_S)
    room = context.hub.room(space.id)
    base = context.settings.base_url
    answer: dict[str, Any] = {
        "status": status,
        "ticket": ticket,
        "listener_id": listener,
        "expires_at": clock.rfc3339(now + TICKET_TTL_S),
        "beacon_every_s": 15,
        "state_url": f"{base}/api/v1/spaces/{space.id}/state",
        "playlist_url": f"{base}/hls/{space.id}/index.m3u8",
        "media_playlist_url": f"{base}/hls/{space.id}/live.m3u8",
    }
    if status == "replay":
        room.audience.replay_play(now)
        answer["replay_url"] = f"{base}/hls/{space.id}/replay.m4a"
    else:
        room.audience.join(listener, now)
    context.metrics.joins.labels(outcome=status).inc()
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


def _queued(context: Context, space: Space, decision: Queued, now: float) -> JSONResponse:
    retry = decision.retry_after_s
    if decision.reason is Reason.PRE_START and space.scheduled_start is not None:
        retry = min(retry, max(1.0, space.scheduled_start - now))
    context.metrics.joins.labels(outcome="queued").inc()
    answer = {
        "status": "queued",
        "reason": decision.reason.value,
        "position": decision.position,
        "queue_length": decision.queue_length,
        "estimated_wait_s": (
            None if decision.estimated_wait_s is None else round(decision.estimated_wait_s, 2)
        ),
        "retry_after_s": round(retry, 3),
        "queue_token": context.gate.queue_token(space.id, decision.entry_id, now),
        "starts_at": clock.rfc3339(space.scheduled_start),
    }
    headers = {"Cache-Control": "no-store", "Retry-After": str(max(1, math.ceil(retry)))}
    return JSONResponse(answer, status_code=202, headers=headers)


_beacon_limits = BeaconLimiter()


@router.post("/beacon", status_code=204, responses={401: _PROBLEM, 429: _PROBLEM})
async def beacon(space_id: str, body: TicketBody, context: Ctx) -> Response:
    """I am still listening (send every ~15 s). Counts toward concurrent listeners."""
    answer_beacon(context, space_id, body.ticket)
    return Response(status_code=204)


def answer_beacon(context: Context, space_id: str, ticket: str) -> None:
    """The beacon itself, for the route above and :mod:`podium.web.joinpath`."""
    now = clock.now()
    verified = tickets.verify(verifying_keys(context), ticket, space_id, now)
    _beacon_limits.check(verified.listener_id, now)
    context.hub.room(space_id).audience.beacon(verified.listener_id, now)


@router.post("/reactions", status_code=202, responses={401: _PROBLEM, 422: _PROBLEM, 429: _PROBLEM})
async def react(space_id: str, body: ReactionBody, context: Ctx) -> dict[str, str]:
    """Send an emoji reaction (rate limited per listener; counted per second)."""
    now = clock.now()
    verified = tickets.verify(verifying_keys(context), body.ticket, space_id, now)
    room = context.hub.room(space_id)
    emoji = room.reactions.add(verified.listener_id, body.emoji, now)
    room.audience.reaction(now)
    return {"emoji": emoji}


# -- the room state ----------------------------------------------------------------------


@router.get("/state", responses={304: {}, 404: _PROBLEM})
async def state(
    space_id: str,
    context: Ctx,
    after: Annotated[
        int | None, Query(ge=0, le=ID_MAX, description="Wait for a newer version.")
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The room state: who is on stage and talking, hands, reactions, audience, status.

    Cacheable. ``ETag`` is the version; ``If-None-Match`` answers 304 when unchanged;
    ``?after=N`` holds the request (up to ``long_poll_s``, 20 s by default) until the
    version passes N.
    """
    space = context.spaces.get_cached(space_id, clock.now())
    if after is not None:
        room = await context.hub.wait_after(space, after, context.settings.long_poll_s)
    else:
        room = context.hub.state(space)
    etag = f'"v{room.version}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=1"}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return JSONResponse(room.document, headers=headers)


# -- hands and the stage -----------------------------------------------------------------


async def _act(context: Context, space_id: str, action: Any) -> Stage:
    """Apply a stage action, then make the media side and the room state follow it."""
    before, after = context.rooms.act(space_id, action)
    if after is not before:
        await _sync_media(context, space_id, before, after)
        context.hub.refresh(context.spaces.get(space_id))
    return after


async def _sync_media(context: Context, space_id: str, before: Stage, after: Stage) -> None:
    space = context.spaces.get(space_id)
    if space.status is not SpaceStatus.LIVE:
        return
    for seat in before.seats:
        now_seat = after.seat(seat.person)
        if now_seat is None:
            await context.media.drop_speaker(space_id, seat.person)
        elif now_seat.muted != seat.muted:
            await context.media.set_muted(space_id, seat.person, now_seat.muted)


@router.post("/hand", responses={401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM})
async def raise_hand(
    space_id: str, body: HandBody, context: Ctx, user: OptionalUser
) -> dict[str, Any]:
    """Raise your hand to ask to speak. Your position in the queue is in the answer."""
    person, account_name = _person(context, space_id, user, body.ticket)
    name = body.name or account_name or "Listener"
    now = clock.now()
    stage = await _act(context, space_id, lambda s: s.raise_hand(person, name, now))
    return {"person": person, "position": stage.hand_position(person)}


@router.delete("/hand", status_code=204)
async def lower_hand(space_id: str, body: SelfBody, context: Ctx, user: OptionalUser) -> Response:
    """Lower your hand."""
    person, _ = _person(context, space_id, user, body.ticket)
    now = clock.now()
    await _act(context, space_id, lambda s: s.lower_hand(person, now))
    return Response(status_code=204)


@router.post("/hand/status", responses={401: _PROBLEM, 429: _PROBLEM})
async def hand_status(
    space_id: str, body: SelfBody, context: Ctx, user: OptionalUser
) -> dict[str, Any]:
    """Where your hand is: its place in the queue, or ``null`` once it is down (you
    lowered it, the host declined it, or approved it and you are on the stage). A ``POST``
    because it names you by your listener ticket, as the other hand requests do; it
    changes nothing."""
    person, _ = _person(context, space_id, user, body.ticket)
    return {"person": person, "position": context.rooms.stage(space_id).hand_position(person)}


def _moderator(context: Context, space_id: str, user: User) -> str:
    person = person_of_user(user.id)
    role = context.rooms.stage(space_id).role_of(person)
    if role is None or role.value not in ("host", "cohost"):
        raise Forbidden("only the host and co-hosts can see and manage the stage")
    return person


@router.get("/hands", responses={401: _PROBLEM, 403: _PROBLEM})
async def hands(space_id: str, context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """The queue of raised hands, in order (hosts and co-hosts)."""
    _moderator(context, space_id, user)
    stage = context.rooms.stage(space_id)
    return {
        "hands": [
            {
                "person": h.person,
                "name": h.name,
                "position": i + 1,
                "raised_at": clock.rfc3339(h.raised_at),
            }
            for i, h in enumerate(stage.hands)
        ]
    }


# Registered before "/stage/{person}/{action}": routes match in order, and "me" would
# otherwise be taken for a person.
@router.post("/stage/me/{action}", responses={401: _PROBLEM, 403: _PROBLEM})
async def self_action(
    space_id: str,
    action: Literal["leave", "mute", "unmute"],
    body: SelfBody,
    context: Ctx,
    user: OptionalUser,
) -> dict[str, Any]:
    """Leave the stage, or mute or unmute yourself."""
    person, _ = _person(context, space_id, user, body.ticket)
    now = clock.now()
    if action == "leave":
        stage = await _act(context, space_id, lambda s: s.leave(person, now))
    else:
        stage = await _act(context, space_id, lambda s: getattr(s, action)(person, person, now))
    seat = stage.seat(person)
    return {"on_stage": seat is not None, "muted": bool(seat and seat.muted)}


Moderation = Literal[
    "approve",
    "decline",
    "move-to-audience",
    "mute",
    "unmute",
    "remove",
    "unblock",
    "make-cohost",
    "demote",
]


@router.post(
    "/stage/{person}/{action}",
    responses={401: _PROBLEM, 403: _PROBLEM, 404: _PROBLEM, 409: _PROBLEM},
)
async def moderate(
    space_id: str, person: str, action: Moderation, context: Ctx, user: CurrentUser
) -> dict[str, Any]:
    """Manage the stage: approve or decline a hand, move a speaker to the audience, mute,
    remove (and block), unblock, make or demote a co-host. Unmute works on yourself only.
    Every action is recorded in the audit log."""
    actor = person_of_user(user.id)
    now = clock.now()
    method = StageAction(action.replace("-", "_")).value
    stage = await _act(context, space_id, lambda s: getattr(s, method)(actor, person, now))
    return {"stage": stage.to_json()["seats"], "version": stage.version}


# -- invites -----------------------------------------------------------------------------


@router.post("/invites", status_code=201, responses={401: _PROBLEM, 403: _PROBLEM})
async def invite(space_id: str, context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """An invite link to speak (hosts and co-hosts), good for 24 hours."""
    _moderator(context, space_id, user)
    token, expires = invites.issue(signing_key(context), space_id, clock.now(), INVITE_TTL_S)
    return {
        "invite": token,
        "url": f"{context.settings.base_url}/s/{space_id}?invite={token}",
        "expires_at": clock.rfc3339(expires),
    }


@router.post("/invites/accept", responses={401: _PROBLEM, 403: _PROBLEM, 409: _PROBLEM})
async def accept_invite(
    space_id: str, body: InviteAccept, context: Ctx, user: OptionalUser
) -> dict[str, Any]:
    """Take the stage with an invite (as your account, or with your listener ticket)."""
    now = clock.now()
    # Who first: each guess at an invite costs its person one of their writes.
    person, account_name = _person(context, space_id, user, body.ticket)
    invites.verify(verifying_keys(context), body.invite, space_id, now)
    name = body.name or account_name or "Guest"
    stage = await _act(context, space_id, lambda s: s.accept_invite(person, name, now))
    return {"person": person, "role": (stage.role_of(person) or "listener")}


# -- the record --------------------------------------------------------------------------


@router.get("/audit", responses={401: _PROBLEM, 403: _PROBLEM})
async def audit(
    space_id: str,
    context: Ctx,
    user: CurrentUser,
    after: Annotated[int, Query(ge=0, le=ID_MAX, description="Entries after this id.")] = 0,
) -> dict[str, Any]:
    """Every moderation action in this space, oldest first (the host only)."""
    space = context.spaces.get(space_id)
    if space.host_id != user.id:
        raise Forbidden("only the host can read the audit log")
    entries = context.rooms.audit(space_id, after)
    return {"entries": [{"id": i, **e.to_json(), "at": clock.rfc3339(e.at)} for i, e in entries]}


@router.get("/analytics", responses={401: _PROBLEM, 403: _PROBLEM})
async def analytics(space_id: str, context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Audience figures and a per-minute series (hosts and co-hosts), live or after."""
    _moderator(context, space_id, user)
    saved = context.rooms.saved_audience(space_id)
    space = context.spaces.get(space_id)
    if saved is not None and space.status is SpaceStatus.ENDED:
        return saved
    return audience_document(context, space_id)


def audience_document(context: Context, space_id: str) -> dict[str, Any]:
    now = clock.now()
    audience = context.hub.room(space_id).audience
    snapshot = audience.snapshot(now)
    return {
        "concurrent": snapshot.concurrent,
        "peak": snapshot.peak,
        "peak_at": clock.rfc3339(snapshot.peak_at),
        "unique": snapshot.unique,
        "joins": snapshot.joins,
        "replay_plays": snapshot.replay_plays,
        "exact": snapshot.exact,
        "definitions": {
            "concurrent": "distinct listeners heard from (join or beacon) in the last 30 s",
            "peak": "the highest concurrent figure, sampled every 5 s and on every read",
            "unique": "distinct listeners ever joined",
        },
        "minutes": [
            {
                "start": clock.rfc3339(m.start),
                "concurrent_max": m.concurrent_max,
                "concurrent_end": m.concurrent_end,
                "joins": m.joins,
                "reactions": m.reactions,
            }
            for m in audience.series(now)
        ],
    }


@router.get(
    "/calendar.ics",
    response_class=Response,
    responses={
        200: {"content": {"text/calendar": {"schema": {"type": "string"}}}},
        409: _PROBLEM,
    },
)
async def calendar(space_id: str, context: Ctx) -> Response:
    """ "Remind me": an iCalendar event for a scheduled space."""
    space = context.spaces.get(space_id)
    if space.scheduled_start is None:
        raise Conflict("this space has no scheduled start time")
    return Response(
        render_ics(space, f"{context.settings.base_url}/s/{space.id}", clock.now()),
        media_type="text/calendar",
        headers={
            "Content-Disposition": f'attachment; filename="podium-{space.id}.ics"',
            "Cache-Control": "public, max-age=60",
        },
    )


def _ics_time(timestamp: float) -> str:
    return (clock.rfc3339(timestamp) or "").replace("-", "").replace(":", "")[:15] + "Z"


def _ics_text(text: str) -> str:
    """RFC 5545 3.3.11 TEXT escaping."""
    return (
        text.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def render_ics(space: Space, page_url: str, now: float) -> str:
    """RFC 5545: one VEVENT, an hour long by default, with a 10-minute reminder."""
    assert space.scheduled_start is not None
    description = f"{space.description}\n{page_url}" if space.description else page_url
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Podium//Live audio spaces//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{space.id}@podium",
        f"DTSTAMP:{_ics_time(now)}",
        f"DTSTART:{_ics_time(space.scheduled_start)}",
        f"DTEND:{_ics_time(space.scheduled_start + 3600)}",
        f"SUMMARY:{_ics_text(space.title)}",
        f"DESCRIPTION:{_ics_text(description)}",
        f"URL:{page_url}",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        f"DESCRIPTION:{_ics_text(space.title)} starts in 10 minutes",
        "TRIGGER:-PT10M",
        "END:VALARM",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_fold(line) + "\r\n" for line in lines)


def _fold(line: str) -> str:
    """RFC 5545 3.1: lines longer than 75 octets are folded with CRLF and a space."""
    data = line.encode()
    if len(data) <= 75:
        return line
    pieces: list[str] = []
    current = b""
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > (75 if not pieces else 74):
            pieces.append(current.decode())
            current = b""
        current += encoded
    pieces.append(current.decode())
    return "\r\n ".join(pieces)
