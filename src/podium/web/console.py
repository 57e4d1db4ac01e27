"""The host's pages: "your spaces" with the form to create or schedule one, and each
space's console (go live, the microphone, the stage, requests to speak, invites,
co-hosts, analytics, the recording, end).

Like every page these are the same HTML for everyone; ``static/js/console.js`` signs the
visitor in (or sends them to the sign-in page) and fills them from the API, which is what
decides who may do what.
"""

from __future__ import annotations

from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from podium.control.spaces import DESCRIPTION_MAX, TITLE_MAX
from podium.errors import NotFound
from podium.web.context import Context, get_context
from podium.web.shell import BADGES, PRIVATE_PAGE, icon, layout, when
from podium.web.spacepage import speaker_panel

router = APIRouter(include_in_schema=False)
Ctx = Annotated[Context, Depends(get_context)]


@router.get("/host", response_class=HTMLResponse)
async def your_spaces() -> HTMLResponse:
    body = f"""<div class="console-index">
<section class="card create" aria-labelledby="create-title">
<h1 id="create-title">Host a space</h1>
<form id="create-form" novalidate>
<div class="field"><label for="title">Title</label>
<input id="title" name="title" required maxlength="{TITLE_MAX}"
 placeholder="What will you talk about?"></div>
<div class="field"><label for="description">Description <span class="meta">(optional)</span>
</label><textarea id="description" name="description" rows="3"
 maxlength="{DESCRIPTION_MAX}"></textarea></div>
<fieldset class="field when-field"><legend>When</legend>
<label class="radio"><input type="radio" name="when" value="now" checked> Now</label>
<label class="radio"><input type="radio" name="when" value="later"> Schedule for later</label>
<div class="schedule" id="schedule" hidden><label for="starts" class="sr-only">Start time</label>
<input type="datetime-local" id="starts" name="starts"></div>
</fieldset>
<label class="radio"><input type="checkbox" name="in_feed" id="in-feed" checked>
 In the podcast feeds (an episode once it ends)</label>
<p class="form-error" id="form-error" role="alert" hidden></p>
<button class="btn btn-primary" type="submit">{icon("plus")}Create space</button>
</form></section>
<section aria-labelledby="mine-title"><h2 class="section-title" id="mine-title">Your spaces</h2>
<ul class="cards" id="my-spaces"><li class="empty">Loading…</li></ul></section>
</div>"""
    return layout("Host a space", body, script="js/hostindex.js", cache=PRIVATE_PAGE, wide=True)


def _card(card_id: str, title: str, content: str, extra: str = "") -> str:
    return (
        f'<section class="card" id="{card_id}" aria-labelledby="{card_id}-title">'
        f'<div class="section-row"><h2 class="card-title" id="{card_id}-title">{title}</h2>'
        f"{extra}</div>{content}</section>"
    )


@router.get("/s/{space_id}/host", response_class=HTMLResponse)
async def console_page(space_id: str, context: Ctx) -> HTMLResponse:
    try:
        space = context.spaces.get(space_id)
    except NotFound:
        return layout(
            "No such space",
            '<section class="notice"><h1>No such space</h1><p>There is no space at this '
            'address. See <a href="/host">your spaces</a>.</p></section>',
            status=404,
            cache=PRIVATE_PAGE,
        )
    css, label = BADGES[space.status]
    sid = escape(space.id)
    head = f"""<header class="console-head">
<div><div class="room-badges"><span class="badge {css}" id="status-badge">{label}</span>
<span class="chip rec" id="rec-chip" hidden><span class="rec-dot"></span>REC</span></div>
<h1 id="title">{escape(space.title)}</h1>
<p class="meta" id="when">{when(space)}</p></div>
<div class="row console-actions">
<a class="btn btn-ghost" href="/s/{sid}" target="_blank" rel="noopener">Listener page</a>
<button class="btn btn-primary" id="golive-btn" type="button" hidden>{icon("radio")}Go live</button>
<button class="btn btn-danger" id="end-btn" type="button" hidden>End space</button>
</div></header>"""
    stage = _card(
        "stage-card",
        "On stage",
        '<ul class="people" id="stage-list"></ul>',
        '<span class="meta" id="stage-count"></span>',
    )
    requests = _card(
        "requests-card",
        "Requests to speak",
        '<ul class="people" id="hands-list"><li class="empty">No raised hands.</li></ul>',
        '<span class="count-pill" id="hands-count">0</span>',
    )
    numbers = "".join(
        f'<div class="stat"><span class="stat-value" id="stat-{key}">&ndash;</span>'
        f'<span class="stat-label">{text}</span></div>'
        for key, text in (
            ("concurrent", "listening"),
            ("peak", "peak"),
            ("unique", "unique"),
            ("joins", "joins"),
            ("reactions", "reactions"),
        )
    )
    analytics = _card(
        "analytics-card",
        "Audience",
        f'<div class="stats">{numbers}</div>'
        '<figure class="chart" id="chart" aria-labelledby="chart-caption">'
        '<figcaption id="chart-caption" class="meta">Concurrent listeners over time</figcaption>'
        "</figure>",
    )
    invite = _card(
        "invite-card",
        "Invite a speaker",
        '<p class="meta">Anyone with the link can join the stage for 24 hours.</p>'
        f'<button class="btn btn-ghost" id="invite-btn" type="button">{icon("plus")}'
        "Create invite link</button>"
        '<div class="copy-row" id="invite-row" hidden><input id="invite-url" readonly '
        'aria-label="Invite link"><button class="btn btn-ghost btn-small" id="invite-copy" '
        f'type="button">{icon("copy")}Copy</button></div>',
    )
    recording = _card(
        "recording-card",
        "Recording",
        '<p class="recording" id="recording"><span class="rec-state off" id="rec-state">'
        'Off</span><span class="meta" id="rec-detail">Starts when you go live.</span></p>',
        '<p class="meta" id="rec-interruption" role="status" hidden></p>',
    )
    mic = speaker_panel(
        "Your microphone",
        "Your microphone turns on when you go live. You hear your speakers directly, "
        "without the broadcast delay.",
        offer=False,
    )
    body = f"""<div class="console" id="console" data-space="{sid}">
{head}
<p class="form-error" id="console-error" role="alert" hidden></p>
<div class="console-grid">
<div class="col">{mic}{stage}{requests}</div>
<div class="col">{analytics}{invite}{recording}</div>
</div></div>"""
    data = {"space_id": space.id, "status": space.status.value}
    return layout(
        f"Console: {space.title}",
        body,
        script="js/console.js",
        cache=PRIVATE_PAGE,
        data=data,
        wide=True,
    )
