"""Server-rendered pages: the home page, each space's public page, and the API docs.

Every asset is served by Podium itself (Swagger UI comes from the ``swagger-ui-bundle``
package), so the pages work on a network with no route to any CDN.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Annotated

import swagger_ui_bundle
from fastapi import APIRouter, Depends
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from podium import clock
from podium.control.lifecycle import Space, SpaceStatus
from podium.errors import NotFound
from podium.web.context import Context, get_context

router = APIRouter(include_in_schema=False)
Ctx = Annotated[Context, Depends(get_context)]

STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)

static_files = StaticFiles(directory=STATIC_DIR)
swagger_files = StaticFiles(directory=SWAGGER_DIR)

_BADGE = {
    SpaceStatus.LIVE: ("live", "Live"),
    SpaceStatus.SCHEDULED: ("scheduled", "Upcoming"),
    SpaceStatus.ENDED: ("ended", "Ended"),
    SpaceStatus.CANCELLED: ("cancelled", "Cancelled"),
}


def _layout(title: str, body: str, status: int = 200) -> HTMLResponse:
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Podium</title>
<link rel="stylesheet" href="/static/podium.css">
</head>
<body>
<header class="bar"><a class="brand" href="/">Podium</a>
<nav><a href="/docs">API</a></nav></header>
<main>
{body}
</main>
{_LOCAL_TIMES}
</body>
</html>"""
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-cache"})


def _time(timestamp: float) -> str:
    """A ``<time>`` readable without scripts (UTC); the page's script shows local time."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    text = f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} UTC"
    return f'<time datetime="{clock.rfc3339(timestamp)}">{text}</time>'


def _when(space: Space) -> str:
    if space.status is SpaceStatus.LIVE and space.started_at is not None:
        return f"Live since {_time(space.started_at)}"
    if space.status is SpaceStatus.SCHEDULED:
        if space.scheduled_start is None:
            return "Not scheduled yet"
        return f"Starts {_time(space.scheduled_start)}"
    if space.ended_at is not None:
        return f"{_BADGE[space.status][1]} {_time(space.ended_at)}"
    return ""


# Times in the reader's own time zone, where scripts run; the UTC text stays otherwise.
_LOCAL_TIMES = """<script>
for (const t of document.querySelectorAll("time[datetime]")) {
  const d = new Date(t.getAttribute("datetime"));
  t.textContent = d.toLocaleString(undefined,
    {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"});
}
</script>"""


def _card(context: Context, space: Space) -> str:
    css, label = _BADGE[space.status]
    host = context.accounts.get_user(space.host_id)
    return (
        f'<li class="card"><a href="/s/{escape(space.id)}">'
        f'<span class="badge {css}">{label}</span>'
        f"<strong>{escape(space.title)}</strong>"
        f'<span class="meta">{escape(host.display_name)} · {_when(space)}</span></a></li>'
    )


def _section(context: Context, heading: str, spaces: list[Space], empty: str) -> str:
    items = "".join(_card(context, s) for s in spaces) or f'<li class="empty">{empty}</li>'
    return f'<section><h2>{heading}</h2><ul class="cards">{items}</ul></section>'


@router.get("/", response_class=HTMLResponse)
async def home(context: Ctx) -> HTMLResponse:
    body = (
        "<h1>Live audio spaces</h1>"
        + _section(
            context,
            "Live now",
            context.spaces.recent(SpaceStatus.LIVE, 20),
            "Nobody is live right now.",
        )
        + _section(
            context,
            "Upcoming",
            context.spaces.recent(SpaceStatus.SCHEDULED, 20),
            "Nothing scheduled.",
        )
        + _section(
            context, "Replays", context.spaces.recent(SpaceStatus.ENDED, 20), "No replays yet."
        )
    )
    return _layout("Home", body)


@router.get("/s/{space_id}", response_class=HTMLResponse)
async def space_page(space_id: str, context: Ctx) -> HTMLResponse:
    try:
        space = context.spaces.get(space_id)
    except NotFound:
        return _layout(
            "No such space",
            "<h1>No such space</h1><p>There is no space at this address. "
            'Check the link, or see <a href="/">what is live now</a>.</p>',
            status=404,
        )
    css, label = _BADGE[space.status]
    host = context.accounts.get_user(space.host_id)
    description = escape(space.description) or "<em>No description.</em>"
    body = f"""<article class="space">
<span class="badge {css}">{label}</span>
<h1>{escape(space.title)}</h1>
<p class="meta">Hosted by {escape(host.display_name)} (@{escape(host.handle)}) · {_when(space)}</p>
<p class="description">{description}</p>
{_listen(context, space)}
</article>"""
    return _layout(space.title, body)


def _listen(context: Context, space: Space) -> str:
    """How to hear the space from this page, in its current state."""
    hls = f"{context.settings.base_url}/hls/{space.id}/live.m3u8"
    if space.status is SpaceStatus.LIVE:
        return (
            '<section class="listen"><h2>Listen</h2>'
            "<p>Open this address in any HLS player (VLC, ffplay, Safari):</p>"
            f'<p><code class="url">{escape(hls)}</code></p></section>'
        )
    if space.status is SpaceStatus.ENDED:
        replay = f"/hls/{space.id}/replay.m4a"
        return (
            '<section class="listen"><h2>Replay</h2>'
            f'<audio controls preload="none" src="{replay}">'
            f'<a href="{replay}">Download the recording</a></audio>'
            f'<p><a href="{replay}" download>Download (M4A)</a> · '
            f'HLS: <code class="url">{escape(hls)}</code></p></section>'
        )
    if space.status is SpaceStatus.SCHEDULED and space.scheduled_start is not None:
        return (
            '<section class="listen"><p>'
            f'<a class="button" href="/api/v1/spaces/{space.id}/calendar.ics">'
            "Remind me (add to calendar)</a></p></section>"
        )
    return ""


@router.get("/docs", response_class=HTMLResponse)
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Podium API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/docs/assets/favicon-32x32.png",
    )
