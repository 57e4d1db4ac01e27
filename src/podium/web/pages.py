"""Server-rendered pages: home, each space's page (listen, speak, replay), sign-in, and
the API docs. The host's pages are in :mod:`podium.web.console`.

Each page is complete HTML that reads well before any script runs (times in UTC, the
playlist address for any HLS player); a small ES module per page then makes it live from
the JSON API. Every asset is served by Podium itself (Swagger UI from the
``swagger-ui-bundle`` package, hls.js vendored under ``static/vendor``), so the pages
work on a network with no route to any CDN.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Annotated

import swagger_ui_bundle
from fastapi import APIRouter, Depends
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from podium import clock
from podium.control.accounts import PASSWORD_MAX, PASSWORD_MIN
from podium.control.lifecycle import Space, SpaceStatus
from podium.errors import NotFound
from podium.web import console
from podium.web.context import Context, get_context
from podium.web.feeds import feed_links
from podium.web.roomstate import person_of_user
from podium.web.shell import BADGES, PRIVATE_PAGE, assets, avatar, icon, layout, when
from podium.web.spacepage import space_body

router = APIRouter(include_in_schema=False)
router.include_router(console.router)
Ctx = Annotated[Context, Depends(get_context)]

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)

static_files = assets
swagger_files = StaticFiles(directory=SWAGGER_DIR)

HOME_LIMIT = 24


def _duration(space: Space) -> str:
    if space.started_at is None or space.ended_at is None:
        return ""
    minutes = max(1, round((space.ended_at - space.started_at) / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _card(context: Context, space: Space, now: float) -> str:
    css, label = BADGES[space.status]
    host = context.accounts.get_user(space.host_id)
    host_name = host.display_name or host.handle
    extra = ""
    if space.status is SpaceStatus.LIVE:
        seats = context.rooms.stage(space.id).seats
        faces = "".join(avatar(s.name or "?", s.person) for s in seats[:4])
        listening = context.hub.room(space.id).audience.concurrent(now)
        extra = (
            f'<span class="faces">{faces}</span>'
            f'<span class="chip">{icon("headphones")}{listening} listening</span>'
        )
    elif space.status is SpaceStatus.ENDED and (length := _duration(space)):
        extra = f'<span class="chip">{icon("clock")}{length}</span>'
    return (
        f'<li class="space-card {css}"><a href="/s/{escape(space.id)}">'
        f'<span class="card-top"><span class="badge {css}">{label}</span>{extra}</span>'
        f'<strong class="card-title">{escape(space.title)}</strong>'
        f'<span class="card-host">{avatar(host_name, person_of_user(host.id), "xs")}'
        f"{escape(host_name)}</span>"
        f'<span class="meta">{when(space)}</span></a></li>'
    )


def _section(context: Context, heading: str, spaces: list[Space], empty: str) -> str:
    now = clock.now()
    items = "".join(_card(context, s, now) for s in spaces)
    if not items:
        items = f'<li class="empty">{empty}</li>'
    slug = heading.lower().replace(" ", "-")
    return (
        f'<section class="home-section" aria-labelledby="h-{slug}">'
        f'<h2 class="section-title" id="h-{slug}">{heading}</h2>'
        f'<ul class="cards">{items}</ul></section>'
    )


@router.get("/", response_class=HTMLResponse)
async def home(context: Ctx) -> HTMLResponse:
    upcoming = context.spaces.recent(SpaceStatus.SCHEDULED, HOME_LIMIT)
    upcoming.sort(key=lambda s: (s.scheduled_start is None, s.scheduled_start or 0.0))
    body = (
        '<section class="hero"><div class="hero-text"><h1>Live audio spaces</h1>'
        "<p>Tune in to live conversations, raise your hand to speak, or host your own. "
        "Every space becomes a replay the moment it ends.</p>"
        f'<a class="btn btn-primary" href="/host">{icon("radio")}Host a space</a></div>'
        f'<div class="hero-art" aria-hidden="true">{"<i></i>" * 28}</div></section>'
        + _section(
            context,
            "Live now",
            context.spaces.recent(SpaceStatus.LIVE, HOME_LIMIT),
            "Nobody is live right now. Check the upcoming spaces, or start one.",
        )
        + _section(context, "Upcoming", upcoming, "Nothing scheduled yet.")
        + _section(
            context,
            "Recent replays",
            context.spaces.recent(SpaceStatus.ENDED, HOME_LIMIT),
            "No replays yet: they appear here when a space ends.",
        )
    )
    return layout("Live audio spaces", body, wide=True, feeds=feed_links(None))


def _not_found() -> HTMLResponse:
    return layout(
        "No such space",
        '<section class="notice"><h1>No such space</h1><p>There is no space at this address. '
        'Check the link, or see <a href="/">what is live now</a>.</p></section>',
        status=404,
        cache=PRIVATE_PAGE,
    )


@router.get("/s/{space_id}", response_class=HTMLResponse)
async def space_page(space_id: str, context: Ctx) -> HTMLResponse:
    try:
        space = context.spaces.get(space_id)
    except NotFound:
        return _not_found()
    host = context.accounts.get_user(space.host_id)
    stage = context.rooms.stage(space.id) if space.status is not SpaceStatus.CANCELLED else None
    data = {
        "space_id": space.id,
        "status": space.status.value,
        "title": space.title,
        "scheduled_start": clock.rfc3339(space.scheduled_start),
        "hls": assets.url("vendor/hls.min.js"),
    }
    body = space_body(space, host, stage, context.settings.base_url)
    feeds = feed_links(host)
    return layout(space.title, body, script="js/space.js", data=data, feeds=feeds)


# -- accounts ----------------------------------------------------------------------------


def _field(name: str, label: str, kind: str = "text", hint: str = "", **attrs: str | int) -> str:
    extra = " ".join(f'{k.replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items())
    described = f' aria-describedby="{name}-hint"' if hint else ""
    hint_html = f'<small class="hint" id="{name}-hint">{hint}</small>' if hint else ""
    return (
        f'<div class="field"><label for="{name}">{label}</label>'
        f'<input id="{name}" name="{name}" type="{kind}" {extra}{described}>{hint_html}</div>'
    )


def _auth_page(title: str, mode: str, fields: str, switch: str) -> HTMLResponse:
    body = f"""<section class="auth card">
<h1>{title}</h1>
<form id="auth-form" data-mode="{mode}" novalidate>
{fields}
<p class="form-error" id="form-error" role="alert" hidden></p>
<button class="btn btn-primary btn-block" type="submit">{title}</button>
</form>
<p class="auth-switch">{switch}</p>
</section>"""
    return layout(title, body, script="js/account.js", cache=PRIVATE_PAGE)


_PASSWORD_MIN = str(PASSWORD_MIN)
_PASSWORD_MAX = str(PASSWORD_MAX)


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_page() -> HTMLResponse:
    fields = _field(
        "handle", "Handle", autocomplete="username", required="required", maxlength=30
    ) + _field(
        "password",
        "Password",
        "password",
        autocomplete="current-password",
        required="required",
        minlength=_PASSWORD_MIN,
        maxlength=_PASSWORD_MAX,
    )
    switch = 'New here? <a href="/signup" data-keep-next>Create an account</a>'
    return _auth_page("Sign in", "signin", fields, switch)


@router.get("/signup", response_class=HTMLResponse)
async def sign_up_page() -> HTMLResponse:
    fields = (
        _field(
            "handle",
            "Handle",
            hint="2 to 30 characters: lower-case letters, digits and _",
            autocomplete="username",
            required="required",
            pattern="[a-z0-9_]{2,30}",
            maxlength=30,
            autocapitalize="none",
        )
        + _field(
            "display_name",
            "Display name",
            hint="Shown on the stage. You can leave it empty.",
            autocomplete="name",
            maxlength=64,
        )
        + _field(
            "password",
            "Password",
            "password",
            hint=f"At least {PASSWORD_MIN} characters.",
            autocomplete="new-password",
            required="required",
            minlength=_PASSWORD_MIN,
            maxlength=_PASSWORD_MAX,
        )
    )
    switch = 'Already have an account? <a href="/signin" data-keep-next>Sign in</a>'
    return _auth_page("Create account", "signup", fields, switch)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Podium API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )
