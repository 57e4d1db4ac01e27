"""The body of a space's page: the room card (stage, player, reactions, hand, share), the
speaker panel and the replay player.

The HTML holds every view the page can show (listen, queued, starting soon, playing, the
replay, …); ``static/js/space.js`` shows one at a time from the room state, so a space
that ends while someone listens turns into its replay without a reload. The view chosen
here, from the space's status, is the one shown before the script runs.
"""

from __future__ import annotations

from html import escape

from podium.control.accounts import User
from podium.control.lifecycle import Space, SpaceStatus
from podium.control.reactions import ALLOWED
from podium.control.stage import Stage
from podium.web.roomstate import person_of_user
from podium.web.shell import BADGES, avatar, icon, time_tag, when

_ROLE_LABEL = {"host": "Host", "cohost": "Co-host", "speaker": "Speaker"}


def seat_item(name: str, person: str, role: str, muted: bool) -> str:
    """One person on the stage; ``stage.js`` draws the same markup when the stage changes."""
    muted_mark = f'<span class="seat-muted">{icon("mic-off", "muted")}</span>' if muted else ""
    return (
        f'<li class="seat" data-person="{escape(person)}">'
        f'<span class="seat-face">{avatar(name or "?", person, "lg")}{muted_mark}</span>'
        f'<span class="seat-name">{escape(name or "Guest")}</span>'
        f'<span class="seat-role">{_ROLE_LABEL.get(role, role)}</span></li>'
    )


def _stage(stage: Stage | None) -> str:
    seats = (
        ""
        if stage is None
        else "".join(seat_item(s.name, s.person, s.role.value, s.muted) for s in stage.seats)
    )
    return f"""<section class="stage-section" aria-labelledby="stage-title">
<div class="section-row"><h2 class="section-title" id="stage-title">On stage</h2>
<span class="meta" id="stage-count"></span></div>
<ul class="stage-grid" id="stage" aria-live="polite">{seats}</ul>
</section>"""


def _first_view(space: Space) -> str:
    return {
        SpaceStatus.LIVE: "listen",
        SpaceStatus.SCHEDULED: "scheduled",
        SpaceStatus.ENDED: "ended",
        SpaceStatus.CANCELLED: "cancelled",
    }[space.status]


def _scheduled(space: Space) -> str:
    start = space.scheduled_start
    if start is None:
        return """<div class="view-body"><h3>Not scheduled yet</h3>
<p class="meta">The host has not set a start time. This page goes live by itself.</p></div>"""
    return f"""<div class="view-body"><h3 class="countdown" id="countdown" data-at="{start}">
{icon("calendar")}<span>Starts {time_tag(start)}</span></h3>
<p class="meta">The stage opens at {time_tag(start)}. Come back then, or let the page
start playing by itself.</p>
<div class="row"><button class="btn btn-primary" id="arm-btn" type="button">
{icon("headphones")}Listen when it starts</button>
<a class="btn btn-ghost" href="/api/v1/spaces/{escape(space.id)}/calendar.ics">
{icon("calendar")}Remind me</a></div></div>"""


def _replay(space: Space, base_url: str) -> str:
    replay = f"/hls/{escape(space.id)}/replay.m4a"
    page = escape(f"{base_url}/s/{space.id}")
    return f"""<div class="view-body replay">
<h3>The space has ended: play the replay</h3>
<div class="replay-player">
<button class="btn-round" id="replay-play" type="button" aria-label="Play the replay">
{icon("play")}</button>
<div class="replay-track">
<input type="range" id="replay-seek" min="0" max="0" step="0.1" value="0"
 aria-label="Position in the replay" disabled>
<div class="replay-times"><span id="replay-pos">0:00</span>
<span id="replay-dur">&ndash;:&ndash;&ndash;</span></div>
</div></div>
<div class="row replay-actions">
<button class="btn btn-ghost btn-small" id="replay-back" type="button"
 aria-label="Back 15 seconds">{icon("rewind")}15 s</button>
<button class="btn btn-ghost btn-small" id="replay-fwd" type="button"
 aria-label="Forward 15 seconds">{icon("forward")}15 s</button>
<a class="btn btn-ghost btn-small" id="replay-download" href="{replay}" download>
{icon("download")}Download</a></div>
<p class="meta" id="replay-note"></p>
<p class="meta verifiable">Unedited, verifiable: the recording is sealed and signed by
this server (<a href="/hls/{escape(space.id)}/archive.json">its archive</a>). Check any copy
of the replay with <code>podium verify {page}</code>, or a downloaded file with
<code>podium verify FILE --archive</code> and the archive's address.</p>
<audio id="replay-audio" preload="none"></audio>
</div>"""


def _player(space: Space, base_url: str) -> str:
    shown = _first_view(space)

    def view(name: str, content: str) -> str:
        hidden = "" if name == shown else " hidden"
        return f'<div class="view" data-view="{name}"{hidden}>{content}</div>'

    hls = escape(f"{base_url}/hls/{space.id}/index.m3u8")
    return f"""<section class="player" id="player" aria-label="Listen" aria-live="polite">
{
        view(
            "listen",
            f'''<div class="view-body center">
<button class="btn btn-primary btn-xl" id="listen-btn" type="button">
{icon("play")}Listen live</button>
<p class="meta">No account needed.</p>
<details class="other-players"><summary>Listen in another app</summary>
<p class="meta">Open this address in VLC, ffplay, Safari or any HLS player:</p>
<code>{hls}</code></details></div>''',
        )
    }
{
        view(
            "joining",
            '<div class="view-body center"><span class="spinner"></span>'
            '<p id="joining-text">Joining…</p></div>',
        )
    }
{
        view(
            "queued",
            '''<div class="view-body"><h3>You are in the queue</h3>
<p class="queue-line" id="queue-text"></p>
<div class="progress" aria-hidden="true"><span id="queue-bar"></span></div>
<p class="meta">You keep your place: we retry for you. Keep this page open.</p>
<button class="btn btn-ghost btn-small" id="queue-cancel" type="button">Leave the queue</button>
</div>''',
        )
    }
{
        view(
            "waiting",
            '''<div class="view-body center"><h3>Starting soon</h3>
<p class="queue-line" id="waiting-text"></p>
<p class="meta">Playback starts by itself when the host goes live.</p></div>''',
        )
    }
{view("scheduled", _scheduled(space))}
{
        view(
            "playing",
            f'''<div class="view-body now-playing">
<span class="eq" aria-hidden="true"><i></i><i></i><i></i><i></i></span>
<div class="now-text"><strong id="playing-title">Listening live</strong>
<span class="latency" id="latency">Buffering…</span></div>
<button class="btn btn-ghost btn-small" id="stop-btn" type="button">{icon("pause")}Pause</button>
</div>''',
        )
    }
{view("ended", _replay(space, base_url))}
{
        view(
            "cancelled",
            '<div class="view-body center"><h3>This space was cancelled</h3>'
            '<p class="meta">There is nothing to play. <a href="/">See what is live</a>.</p></div>',
        )
    }
{
        view(
            "problem",
            '''<div class="view-body center"><h3 id="problem-title">We could not connect</h3>
<p id="problem-text" class="meta"></p>
<button class="btn btn-primary" id="retry-btn" type="button">Try again</button></div>''',
        )
    }
<audio id="audio" preload="none"></audio>
<noscript><p>Listen in any HLS player: <code>{hls}</code></p></noscript>
</section>"""


def _dock() -> str:
    buttons = "".join(
        f'<button class="reaction" type="button" data-emoji="{e}" aria-label="React {e}">'
        f'<span aria-hidden="true">{e}</span><span class="reaction-count"></span></button>'
        for e in ALLOWED
    )
    return f"""<div class="dock" id="dock">
<div class="reactions" role="group" aria-label="Reactions">{buttons}</div>
<div class="dock-actions">
<button class="btn btn-ghost" id="hand-btn" type="button" aria-pressed="false">
{icon("hand")}<span>Raise hand</span></button>
<button class="btn btn-ghost" id="share-btn" type="button">
{icon("share")}<span>Share</span></button>
</div>
<div class="floats" id="floats" aria-hidden="true"></div>
</div>"""


def speaker_panel(title: str, intro: str, *, offer: bool) -> str:
    """The microphone panel: join the stage, level meter, mute, music mode, leave.

    ``offer`` shows the "join the stage" step first (listeners brought on stage); the
    host's console starts at the same step with its own words.
    """
    return f"""<section class="card speaker" id="speaker" aria-labelledby="speaker-title"
{" hidden" if offer else ""}>
<div data-sview="offer">
<h2 id="speaker-title">{icon("mic")}{title}</h2>
<p class="meta">{intro}</p>
<div class="row">
<button class="btn btn-primary" id="join-stage" type="button">{icon("mic")}Join the stage</button>
{'<button class="btn btn-ghost" id="decline-stage" type="button">Not now</button>' if offer else ""}
</div></div>
<div data-sview="live" hidden>
<div class="speaker-head"><span class="live-dot" aria-hidden="true"></span>
<h2>You are on stage</h2><span class="meta" id="speaker-conn">Connecting…</span></div>
<div class="meter" role="meter" aria-label="Microphone level" aria-valuemin="0"
 aria-valuemax="100" aria-valuenow="0"><span id="meter-fill"></span></div>
<div class="row speaker-actions">
<button class="btn btn-ghost" id="mute-btn" type="button" aria-pressed="false">
{icon("mic-off")}<span>Mute</span></button>
<button class="btn btn-danger" id="leave-stage" type="button">{icon("leave")}Leave stage</button>
</div>
<p class="meta">You hear the other speakers directly, without the broadcast delay.</p>
</div>
<div class="music-row"><label class="switch"><input type="checkbox" id="music-mode" role="switch"
 aria-describedby="music-hint"><span class="switch-ui" aria-hidden="true"></span>
{icon("music")}Music mode</label>
<span class="meta" id="music-hint">For instruments and recordings: no echo cancellation, noise
suppression or automatic gain. Use headphones.</span></div>
<p class="form-error" id="speaker-error" role="alert" hidden></p>
<audio id="monitor" autoplay></audio>
</section>"""


def _hand_dialog() -> str:
    return """<dialog class="dialog" id="hand-dialog" aria-labelledby="hand-title">
<form method="dialog" id="hand-form">
<h2 id="hand-title">Ask to speak</h2>
<p class="meta">The host sees your name in the requests queue.</p>
<div class="field"><label for="hand-name">Your name</label>
<input id="hand-name" name="name" maxlength="64" autocomplete="name" required></div>
<div class="row end"><button class="btn btn-ghost" value="cancel" type="button"
 id="hand-cancel">Cancel</button>
<button class="btn btn-primary" value="ok" type="submit">Raise hand</button></div>
</form></dialog>"""


_JOIN_INTRO = (
    "Join the stage to talk with the host and the other speakers. "
    "Your browser asks for the microphone."
)


def space_body(space: Space, host: User, stage: Stage | None, base_url: str) -> str:
    css, label = BADGES[space.status]
    host_name = host.display_name or host.handle
    description = (
        f'<p class="description">{escape(space.description)}</p>' if space.description else ""
    )
    return f"""<article class="room {css}" id="room">
<div class="room-head">
<div class="room-badges"><span class="badge {css}" id="status-badge">{label}</span>
<span class="chip" id="audience-chip" hidden>{icon("headphones")}<span id="audience"></span></span>
<span class="chip rec" id="rec-chip" hidden><span class="rec-dot"></span>REC</span></div>
<h1 id="title">{escape(space.title)}</h1>
<p class="room-host">{avatar(host_name, person_of_user(host.id), "xs")}Hosted by
<strong>{escape(host_name)}</strong>
<span class="meta">@{escape(host.handle)}</span></p>
<p class="meta" id="when">{when(space)}</p>
{description}
<a class="btn btn-ghost btn-small console-link" id="console-link" href="/s/{escape(space.id)}/host"
 hidden>{icon("settings")}Host console</a>
</div>
{_stage(stage)}
{_player(space, base_url)}
{_dock()}
</article>
{speaker_panel("You are invited to speak", _JOIN_INTRO, offer=True)}
{_hand_dialog()}"""
