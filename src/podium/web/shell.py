"""The HTML shell every page shares: head, header, icons, footer and security headers.

Pages are the same document for everyone (no account, cookie or listener in them), so an
edge may cache them like any other GET (DESIGN.md principle 1); what differs per person,
such as "signed in as", is filled in by the page's script from the API. Every asset comes
from Podium itself, and the Content-Security-Policy says so to the browser: a page cannot
load or send anything to another origin.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse

from podium import clock
from podium.control.lifecycle import Space, SpaceStatus
from podium.web.assets import StaticAssets

STATIC_DIR = Path(__file__).parent / "static"
assets = StaticAssets(STATIC_DIR)

# hls.js feeds Media Source Extensions (blob: media) and may run its demuxer in a worker
# made from a blob: URL; nothing else leaves 'self'.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)

# Page HTML is the same for everyone and tiny; a few seconds of caching lets an edge
# absorb a crowd arriving at one link, and the page's script takes it from there.
PUBLIC_PAGE = "public, max-age=5"
PRIVATE_PAGE = "no-cache"

_ICONS = {
    "mic": '<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 10v1a7 7 0 0 0 14 '
    '0v-1M12 18v4M8 22h8"/>',
    "mic-off": '<path d="M2 2l20 20M9 9v2a3 3 0 0 0 5.1 2.1M15 9.3V5a3 3 0 0 0-5.9-.8M19 '
    '10v1a7 7 0 0 1-1.2 3.9M5 10v1a7 7 0 0 0 11.5 5.4M12 18v4M8 22h8"/>',
    "hand": '<path d="M18 11V6a2 2 0 0 0-4 0v5M14 10V4a2 2 0 0 0-4 0v6M10 10.5V6a2 2 0 0 '
    '0-4 0v8"/><path d="M18 8a2 2 0 1 1 4 0v6a8 8 0 0 1-8 8h-2c-2.8 0-4.5-.9-6-2.4l-3.6-3.6'
    'a2 2 0 0 1 2.8-2.8L7 15"/>',
    "share": '<circle cx="18" cy="5" r="3"/><circle cx="6" cy="12" r="3"/><circle cx="18" '
    'cy="19" r="3"/><path d="M8.6 13.5l6.8 4M15.4 6.5l-6.8 4"/>',
    "play": '<path d="M7 4.5v15l12.5-7.5z" fill="currentColor"/>',
    "pause": '<rect x="6" y="4" width="4" height="16" rx="1" fill="currentColor"/><rect x="14" '
    'y="4" width="4" height="16" rx="1" fill="currentColor"/>',
    "download": '<path d="M12 3v12M7 10l5 5 5-5M4 21h16"/>',
    "headphones": '<path d="M3 18v-6a9 9 0 0 1 18 0v6"/><path d="M21 19a2 2 0 0 1-2 2h-1a2 2 0 '
    '0 1-2-2v-3a2 2 0 0 1 2-2h3zM3 19a2 2 0 0 0 2 2h1a2 2 0 0 0 2-2v-3a2 2 0 0 0-2-2H3z"/>',
    "users": '<path d="M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2"/><circle cx="9" cy="7" '
    'r="4"/><path d="M23 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8"/>',
    "copy": '<rect x="9" y="9" width="13" height="13" rx="2"/><path d="M5 15H4a2 2 0 0 1-2-2V4'
    'a2 2 0 0 1 2-2h9a2 2 0 0 1 2 2v1"/>',
    "check": '<path d="M20 6L9 17l-5-5"/>',
    "x": '<path d="M18 6L6 18M6 6l12 12"/>',
    "leave": '<path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4M16 17l5-5-5-5M21 12H9"/>',
    "clock": '<circle cx="12" cy="12" r="10"/><path d="M12 6v6l4 2"/>',
    "music": '<path d="M9 18V5l12-2v13"/><circle cx="6" cy="18" r="3"/><circle cx="18" '
    'cy="16" r="3"/>',
    "plus": '<path d="M12 5v14M5 12h14"/>',
    "radio": '<circle cx="12" cy="12" r="2"/><path d="M16.2 7.8a6 6 0 0 1 0 8.5M7.8 16.2a6 6 0 '
    '0 1 0-8.5M19.1 4.9a10 10 0 0 1 0 14.2M4.9 19.1a10 10 0 0 1 0-14.2"/>',
    "shield": '<path d="M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z"/>',
    "down": '<path d="M12 5v14M19 12l-7 7-7-7"/>',
    "user-x": '<path d="M16 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2"/><circle cx="8.5" cy="7" '
    'r="4"/><path d="M18 8l5 5M23 8l-5 5"/>',
    "calendar": '<rect x="3" y="4" width="18" height="18" rx="2"/><path d="M16 2v4M8 2v4M3 '
    '10h18"/>',
    "rewind": '<path d="M3 12a9 9 0 1 0 3-6.7L3 8"/><path d="M3 3v5h5"/>',
    "forward": '<path d="M21 12a9 9 0 1 1-3-6.7L21 8"/><path d="M21 3v5h-5"/>',
    "settings": '<path d="M4 21v-7M4 10V3M12 21v-9M12 8V3M20 21v-5M20 12V3M1 14h6M9 8h6M17 16h6"/>',
    "smile": '<circle cx="12" cy="12" r="10"/><path d="M8 14s1.5 2 4 2 4-2 4-2M9 9h.01M15 9h.01"/>',
}


def icon(name: str, label: str | None = None) -> str:
    """An inline icon from the page's sprite; decorative unless given a ``label``."""
    if name not in _ICONS:
        raise KeyError(f"no icon {name!r}")
    a11y = f'role="img" aria-label="{escape(label)}"' if label else 'aria-hidden="true"'
    return f'<svg class="icon" {a11y} focusable="false"><use href="#i-{name}"/></svg>'


def _sprite() -> str:
    symbols = "".join(
        f'<symbol id="i-{name}" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
        f'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">{paths}</symbol>'
        for name, paths in _ICONS.items()
    )
    return f'<svg class="sprite" aria-hidden="true" focusable="false">{symbols}</svg>'


_SPRITE = _sprite()

LOGO = (
    '<svg class="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false">'
    '<rect width="32" height="32" rx="9" class="logo-bg"/>'
    '<rect x="8" y="13" width="3.5" height="6" rx="1.75" class="logo-bar"/>'
    '<rect x="14.25" y="8" width="3.5" height="16" rx="1.75" class="logo-bar"/>'
    '<rect x="20.5" y="11" width="3.5" height="10" rx="1.75" class="logo-bar"/></svg>'
)


HUES = 10
"""Avatar colours (``.hue-0`` … in the stylesheet). Classes, not inline styles: the
Content-Security-Policy allows no style attributes."""

BADGES = {
    SpaceStatus.LIVE: ("live", "Live"),
    SpaceStatus.SCHEDULED: ("scheduled", "Upcoming"),
    SpaceStatus.ENDED: ("ended", "Replay"),
    SpaceStatus.CANCELLED: ("cancelled", "Cancelled"),
}


def time_tag(timestamp: float, css: str = "") -> str:
    """A ``<time>`` readable without scripts (UTC); the page's script shows local time."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    text = f"{moment:%a} {moment.day} {moment:%b %Y, %H:%M} UTC"
    cls = f' class="{css}"' if css else ""
    return f'<time datetime="{clock.rfc3339(timestamp)}"{cls}>{text}</time>'


def when(space: Space) -> str:
    """When the space was or will be live, in words."""
    if space.status is SpaceStatus.LIVE and space.started_at is not None:
        return f"Live since {time_tag(space.started_at)}"
    if space.status is SpaceStatus.SCHEDULED:
        if space.scheduled_start is None:
            return "Not scheduled yet"
        return f"Starts {time_tag(space.scheduled_start)}"
    if space.status is SpaceStatus.ENDED and space.ended_at is not None:
        return f"Ended {time_tag(space.ended_at)}"
    if space.ended_at is not None:
        return f"Cancelled {time_tag(space.ended_at)}"
    return ""


def initials(name: str) -> str:
    words = [w for w in name.replace("_", " ").split() if w]
    letters = "".join(w[0] for w in words[:2]) or "?"
    return letters.upper()


def avatar(name: str, key: str, size: str = "sm") -> str:
    """Initials on one of :data:`HUES` colours chosen by ``key``; ``ui.js`` chooses the same
    way, so a person keeps their colour when the scripts redraw the stage."""
    hue = sum(key.encode()) % HUES
    return (
        f'<span class="avatar avatar-{size} hue-{hue}" aria-hidden="true">'
        f"{escape(initials(name))}</span>"
    )


def page_data(data: dict[str, Any]) -> str:
    """Data for the page's script, as JSON that cannot close its ``<script>`` element."""
    text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="page-data">{text}</script>'


def layout(
    title: str,
    body: str,
    *,
    script: str = "js/page.js",
    status: int = 200,
    cache: str = PUBLIC_PAGE,
    data: dict[str, Any] | None = None,
    wide: bool = False,
    feeds: list[tuple[str, str]] | None = None,
) -> HTMLResponse:
    """A whole page around ``body``; ``script`` is the module that drives it; ``feeds``
    are the podcast feeds it links to, (title, URL)."""
    main_class = "wide" if wide else "narrow"
    alternates = "".join(
        f'<link rel="alternate" type="application/rss+xml" title="{escape(title)}"'
        f' href="{escape(url)}">\n'
        for title, url in feeds or []
    )
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="color-scheme" content="dark">
<meta name="theme-color" content="#0b0d12">
<title>{escape(title)} · Podium</title>
<link rel="icon" href="{assets.url("icon.svg")}" type="image/svg+xml">
<link rel="stylesheet" href="{assets.url("podium.css")}">
{alternates}<script type="module" src="{assets.url(script)}"></script>
</head>
<body>
{_SPRITE}
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
<a class="brand" href="/">{LOGO}<span>Podium</span></a>
<nav aria-label="Main">
<a href="/host" class="nav-host">{icon("plus")}<span>Host a space</span></a>
<span id="account" class="account"><a href="/signin" class="btn btn-small">Sign in</a></span>
</nav>
</header>
<main id="main" class="{main_class}">
{body}
</main>
<div id="toasts" class="toasts" role="status" aria-live="polite"></div>
<footer class="footer"><span>Podium · live audio spaces</span>
<a href="/docs">API</a></footer>
{page_data(data or {})}
</body>
</html>"""
    headers = {
        "Cache-Control": cache,
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    return HTMLResponse(page, status_code=status, headers=headers)
