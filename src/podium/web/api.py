"""The JSON API, version 1: users, API tokens, browser sessions and spaces."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from podium import clock
from podium.control.accounts import Session, TokenInfo, User, hash_password
from podium.control.fleet import RateLimiter
from podium.control.lifecycle import Action, Space, SpaceStatus, apply
from podium.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated
from podium.web import feeds
from podium.web.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Bearer,
    CurrentUser,
    OptionalUser,
    current_user,
)
from podium.web.context import Context, client_address, get_context
from podium.web.room import audience_document
from podium.web.roomstate import person_of_user
from podium.web.schemas import (
    HostOut,
    IssuedToken,
    NewSpace,
    NewToken,
    NewUser,
    SessionOut,
    SignIn,
    SpaceChange,
    SpaceList,
    SpaceOut,
    TokenList,
    TokenOut,
    UserOut,
)

router = APIRouter(prefix="/api/v1")
Ctx = Annotated[Context, Depends(get_context)]

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        handle=user.handle,
        display_name=user.display_name,
        is_admin=user.is_admin,
        created_at=clock.rfc3339(user.created_at) or "",
    )


def token_out(info: TokenInfo) -> TokenOut:
    return TokenOut(
        id=info.id,
        name=info.name,
        created_at=clock.rfc3339(info.created_at) or "",
        last_used_at=clock.rfc3339(info.last_used_at),
        revoked_at=clock.rfc3339(info.revoked_at),
    )


def space_out(context: Context, space: Space) -> SpaceOut:
    host = context.accounts.get_user(space.host_id)
    base = context.settings.base_url
    program = (
        None
        if space.status in (SpaceStatus.SCHEDULED, SpaceStatus.CANCELLED)
        else context.origin.program(space.id)
    )
    return SpaceOut(
        id=space.id,
        title=space.title,
        description=space.description,
        status=space.status.value,
        host=HostOut(id=host.id, handle=host.handle, display_name=host.display_name),
        scheduled_start=clock.rfc3339(space.scheduled_start),
        created_at=clock.rfc3339(space.created_at) or "",
        started_at=clock.rfc3339(space.started_at),
        ended_at=clock.rfc3339(space.ended_at),
        page_url=f"{base}/s/{space.id}",
        whip_url=f"{base}/api/v1/spaces/{space.id}/whip",
        playlist_url=f"{base}/hls/{space.id}/index.m3u8",
        media_playlist_url=f"{base}/hls/{space.id}/live.m3u8",
        replay_url=f"{base}/hls/{space.id}/replay.m4a",
        state_url=f"{base}/api/v1/spaces/{space.id}/state",
        recording="off" if program is None else program.recording,
        recording_detail="" if program is None else program.recording_reason,
        in_feed=space.in_feed,
        feed_url=feeds.host_feed_url(base, host),
    )


def _limit(context: Context, buckets: RateLimiter, key: str, scope: str, what: str) -> None:
    wait = buckets.take(key, clock.now())
    if wait > 0:
        context.metrics.rate_limited.labels(scope=scope).inc()
        raise RateLimited(f"too many {what}; try again in {wait:.0f} s", wait)


async def _sign_in(context: Context, request: Request, handle: str, password: str) -> User:
    """Check a password, rate limited by client address and by handle."""
    _limit(context, context.signin_by_client, client_address(request), "signin", "sign-ins")
    _limit(context, context.signin_by_handle, handle.lower(), "signin", "sign-ins")
    try:
        return await asyncio.to_thread(context.accounts.check_password, handle.lower(), password)
    except Unauthenticated:
        context.metrics.signin_failures.inc()
        raise


# -- users -----------------------------------------------------------------------------


@router.post("/users", status_code=201, tags=["accounts"], responses={409: PROBLEM, 429: PROBLEM})
async def create_user(
    body: NewUser, request: Request, context: Ctx, caller: OptionalUser
) -> UserOut:
    """Create an account.

    An administrator may create any account, with or without a password. Anyone else may
    sign up (when the server allows it) and must choose a password.
    """
    if caller is None or not caller.is_admin:
        if caller is not None:
            raise Forbidden("only an administrator may create accounts for others")
        if not context.settings.open_signup:
            raise Forbidden("sign-up is closed on this server; ask an administrator")
        if body.password is None:
            raise InvalidInput("password: choose a password to sign up")
        _limit(context, context.signup_by_client, client_address(request), "signup", "sign-ups")
    password_hash = (
        None if body.password is None else await asyncio.to_thread(hash_password, body.password)
    )
    user = context.accounts.create_user(body.handle, body.display_name, password_hash, clock.now())
    return user_out(user)


@router.get("/me", tags=["accounts"], responses={401: PROBLEM})
async def who_am_i(user: CurrentUser) -> UserOut:
    """The account the request is authenticated as."""
    return user_out(user)


# -- API tokens ------------------------------------------------------------------------


@router.post("/tokens", status_code=201, tags=["accounts"], responses={401: PROBLEM, 429: PROBLEM})
async def issue_token(
    body: NewToken, request: Request, context: Ctx, bearer: Bearer
) -> IssuedToken:
    """Issue an API token for scripts and bots.

    Either authenticated (a token or a session) or with ``handle`` and ``password``; a
    password signs in as that account whatever other credentials the request carries.
    The token is in the answer once; store it, it cannot be shown again.
    """
    if body.handle is not None or body.password is not None:
        if body.handle is None or body.password is None:
            raise InvalidInput("send both handle and password, or neither")
        user = await _sign_in(context, request, body.handle, body.password)
    elif (caller := await current_user(request, context, bearer)) is not None:
        user = caller
    else:
        raise Unauthenticated("sign in, send an API token, or send handle and password")
    info, token = context.accounts.issue_token(user.id, body.name, clock.now())
    return IssuedToken(token=token, **token_out(info).model_dump())


@router.get("/tokens", tags=["accounts"], responses={401: PROBLEM})
async def list_tokens(user: CurrentUser, context: Ctx) -> TokenList:
    """Your API tokens (never the tokens themselves), revoked ones included."""
    return TokenList(tokens=[token_out(t) for t in context.accounts.list_tokens(user.id)])


@router.delete("/tokens/{token_id}", status_code=204, tags=["accounts"], responses={404: PROBLEM})
async def revoke_token(token_id: str, user: CurrentUser, context: Ctx) -> Response:
    """Revoke one of your API tokens; it stops working at once."""
    context.accounts.revoke_token(user.id, token_id, clock.now())
    return Response(status_code=204)


# -- browser sessions ------------------------------------------------------------------


def _session_out(session: Session) -> SessionOut:
    return SessionOut(
        user=user_out(session.user),
        csrf_token=session.csrf_token,
        expires_at=clock.rfc3339(session.expires_at) or "",
    )


@router.post("/session", tags=["accounts"], responses={401: PROBLEM, 429: PROBLEM})
async def sign_in(body: SignIn, request: Request, response: Response, context: Ctx) -> SessionOut:
    """Sign in from a browser: sets an HttpOnly session cookie and a CSRF cookie."""
    user = await _sign_in(context, request, body.handle, body.password)
    ttl = context.settings.session_ttl_s
    session, cookie = context.accounts.create_session(user, clock.now(), ttl)
    secure = context.settings.secure_cookies
    response.set_cookie(
        SESSION_COOKIE, cookie, max_age=ttl, httponly=True, secure=secure, samesite="lax"
    )
    response.set_cookie(
        CSRF_COOKIE,
        session.csrf_token,
        max_age=ttl,
        httponly=False,
        secure=secure,
        samesite="lax",
    )
    return _session_out(session)


@router.get("/session", tags=["accounts"], responses={401: PROBLEM})
async def get_session(request: Request, context: Ctx) -> SessionOut:
    """The current browser session, with its CSRF token."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        raise Unauthenticated("not signed in")
    return _session_out(context.accounts.authenticate_session(cookie, clock.now()))


@router.delete("/session", status_code=204, tags=["accounts"])
async def sign_out(request: Request, user: CurrentUser, context: Ctx) -> Response:
    """Sign out: the session ends on the server and its cookies are cleared."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        session = context.accounts.authenticate_session(cookie, clock.now())
        context.accounts.end_session(session.session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


# -- spaces ----------------------------------------------------------------------------


@router.post("/spaces", status_code=201, tags=["spaces"], responses={401: PROBLEM, 422: PROBLEM})
async def create_space(body: NewSpace, user: CurrentUser, context: Ctx) -> SpaceOut:
    """Create a space, hosted by you. It starts ``scheduled``; go live with ``start``."""
    start = None
    if body.scheduled_start is not None:
        if body.scheduled_start.tzinfo is None:
            raise InvalidInput("scheduled_start: give a UTC offset, e.g. 2026-12-01T18:00:00Z")
        start = body.scheduled_start.timestamp()
    space = context.spaces.create(
        user.id, body.title, body.description, start, clock.now(), in_feed=body.in_feed
    )
    context.rooms.ensure(space.id, person_of_user(user.id), user.display_name)
    return space_out(context, space)


@router.get("/spaces", tags=["spaces"])
async def list_spaces(
    context: Ctx,
    status: Annotated[SpaceStatus | None, Query(description="Only spaces in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SpaceList:
    """Spaces anyone can see: live ones, upcoming ones, ended ones (replays)."""
    return SpaceList(spaces=[space_out(context, s) for s in context.spaces.recent(status, limit)])


@router.get("/spaces/{space_id}", tags=["spaces"], responses={404: PROBLEM})
async def get_space(space_id: str, context: Ctx) -> SpaceOut:
    """One space. Listening needs no account, so this needs no credentials."""
    return space_out(context, context.spaces.get(space_id))


@router.patch(
    "/spaces/{space_id}",
    tags=["spaces"],
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 422: PROBLEM},
)
async def change_space(
    space_id: str, body: SpaceChange, user: CurrentUser, context: Ctx
) -> SpaceOut:
    """Change a space's settings (only what the body names). Only the host may."""
    space = context.spaces.get(space_id)
    if space.host_id != user.id:
        raise Forbidden("only the host of a space may change it")
    if body.in_feed is not None:
        space = context.spaces.set_in_feed(space_id, body.in_feed)
    return space_out(context, space)


async def _transition(context: Context, space_id: str, action: Action, user: User) -> SpaceOut:
    """Move a space, and its room in the media worker with it.

    The rules are checked first, so nobody can start or stop a room they may not; the
    room starts before the space is shown live (no "live" space without a program) and
    ends before the space is shown ended (the replay is complete when it says so).
    """
    now = clock.now()
    apply(context.spaces.get(space_id), action, user.id, now)
    if action is Action.START:
        node = await context.media.start_room(space_id)
        context.spaces.claim_media(space_id, node)
    elif action is Action.END:
        with contextlib.suppress(NotFound):  # no room running: nothing to end
            await context.media.end_room(space_id)
        # The audience figures outlive the process that counted them.
        context.rooms.save_audience(space_id, audience_document(context, space_id))
    space = context.spaces.transition(space_id, action, user.id, now)
    context.hub.refresh(space)  # listeners waiting on the room state hear of it at once
    return space_out(context, space)


_LIFECYCLE: dict[int | str, dict[str, Any]] = {
    401: PROBLEM,
    403: PROBLEM,
    404: PROBLEM,
    409: PROBLEM,
}


@router.post("/spaces/{space_id}/start", tags=["spaces"], responses=_LIFECYCLE)
async def start_space(space_id: str, user: CurrentUser, context: Ctx) -> SpaceOut:
    """Go live. Only the host may."""
    return await _transition(context, space_id, Action.START, user)


@router.post("/spaces/{space_id}/end", tags=["spaces"], responses=_LIFECYCLE)
async def end_space(space_id: str, user: CurrentUser, context: Ctx) -> SpaceOut:
    """End a live space. Only the host may."""
    return await _transition(context, space_id, Action.END, user)


@router.post("/spaces/{space_id}/cancel", tags=["spaces"], responses=_LIFECYCLE)
async def cancel_space(space_id: str, user: CurrentUser, context: Ctx) -> SpaceOut:
    """Cancel a space that has not started. Only the host may."""
    return await _transition(context, space_id, Action.CANCEL, user)
