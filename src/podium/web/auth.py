"""Who is calling: an API token (``Authorization: Bearer``) or a browser session cookie.

Cookie-authenticated writes must carry the session's CSRF token in ``X-CSRF-Token``: a
page on another origin can make the browser send the cookie, but cannot read the token.
Bearer requests need no CSRF token since browsers never attach them on their own.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from podium import clock
from podium.control.accounts import User
from podium.errors import Forbidden, Unauthenticated
from podium.web.context import Context, get_context

SESSION_COOKIE = "podium_session"
CSRF_COOKIE = "podium_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="An API token: `pdm_…`")


async def current_user(
    request: Request,
    context: Annotated[Context, Depends(get_context)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    """The caller, or ``None`` for an anonymous request. Bad credentials raise 401."""
    now = clock.now()
    header = request.headers.get("authorization")
    if header is not None:
        if bearer is None or not bearer.credentials:
            raise Unauthenticated("use 'Authorization: Bearer <API token>'")
        return context.accounts.authenticate_token(bearer.credentials.strip(), now)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is None:
        return None
    session = context.accounts.authenticate_session(cookie, now)
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise Forbidden(f"missing or wrong {CSRF_HEADER} header for this session")
    return session.user


async def require_user(user: Annotated[User | None, Depends(current_user)]) -> User:
    if user is None:
        raise Unauthenticated("sign in or send an API token")
    return user


OptionalUser = Annotated[User | None, Depends(current_user)]
# The bearer credentials as sent, for a route that decides itself whether to check them.
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CurrentUser = Annotated[User, Depends(require_user)]
