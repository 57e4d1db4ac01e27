"""The web app in a real browser, end to end: a host goes live from the console and speaks,
a listener hears the program through hls.js, raises a hand, is declined (and told so),
raises it again, is approved, speaks from the browser and is heard in the program, and
the page turns into the replay when the space ends.

Two Chromium processes, because a fake microphone is per process: the host's plays one
speech recording, the listener's another, so the program tells them apart. What was heard
is checked on the server side, in the recorded program, by its signal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from webapp_browser import STALL_COUNTER, WAIT_MS, eventually, launch, screenshot, watch_errors

from harness import MACHINE_IDLE_MIN, Account, Server, cpu_times, idle_since, make_account
from media_signal import FIXTURES, RATE, best_alignment, decode, load_wav

HOST_VOICE = FIXTURES / "speech-01.wav"
GUEST_VOICE = FIXTURES / "speech-02.wav"
PHONE = {"width": 390, "height": 844}
# Seconds of program to let each voice fill before moving on (measured in program time,
# from the playlist, not on the wall clock).
SPEECH_S = 12.0
VOICE_WINDOW_S = 0.5


def _state(server: Server, space_id: str) -> dict[str, object]:
    return dict(httpx.get(f"{server.url}/api/v1/spaces/{space_id}/state", timeout=10).json())


def _seat(server: Server, space_id: str, person: str) -> dict[str, object] | None:
    stage = _state(server, space_id)["stage"]
    assert isinstance(stage, list)
    return next((dict(s) for s in stage if s["person"] == person), None)


def _program_seconds(server: Server, space_id: str) -> float:
    """How much program the live playlist holds so far (whole segments)."""
    text = httpx.get(f"{server.url}/hls/{space_id}/live.m3u8", timeout=10).text
    return sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text))


def _wait_program(server: Server, space_id: str, seconds: float) -> None:
    start = _program_seconds(server, space_id)
    eventually(
        lambda: _program_seconds(server, space_id) >= start + seconds,
        f"{seconds} s more program",
        timeout=seconds * 6 + 30,
    )


def _sign_in(page: Page, server: Server, account: Account, next_path: str) -> None:
    page.goto(f"{server.url}/signin?next={next_path}")
    screenshot(page, "sign-in")
    page.get_by_label("Handle").fill(account.handle)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").last.click()
    page.wait_for_url(f"{server.url}{next_path}", timeout=WAIT_MS)


def _found(program: np.ndarray, piece: np.ndarray) -> bool:
    return best_alignment(program, piece)[1] > 0.8


def _assert_voice_in_program(program: np.ndarray, voice: Path, who: str, media: str) -> None:
    """Most half-second pieces of ``voice`` are in ``program``, each found on its own.

    Chromium plays the file from its start, on a loop, through Opus. A speaker's jitter
    buffer re-anchors at every pause in speech (Opus DTX sends nothing then), and now and
    then on a loaded test machine, which shifts what follows by a few ticks: so each piece
    is aligned separately, and half a second is short enough that most pieces hold no
    shift. A piece of speech that correlates above 0.8 with the program is that speech.
    The negative control: the same pieces played backwards (the same voice and spectrum,
    not the same speech) are not found.
    """
    reference = load_wav(voice)
    window = int(RATE * VOICE_WINDOW_S)
    # The file starts playing when the page takes the microphone, a moment before the
    # connection is up; and only what was said before the end can be in the program.
    spoken = int(min(len(reference) / RATE, SPEECH_S) * RATE)
    pieces = [reference[at : at + window] for at in range(RATE, spoken - window + 1, window)]
    found = [_found(program, piece) for piece in pieces]
    assert sum(found) >= len(found) / 2, f"{who}'s voice is not in the program: {found}; {media}"
    backwards = [_found(program, piece[::-1].copy()) for piece in pieces[:: len(pieces) // 4]]
    assert not any(backwards), f"{who}'s voice played backwards was found: the test is blind"


def _media_counters(server: Server, space_id: str) -> str:
    """The mixer's lateness counters for the space, to say why a voice went missing."""
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    wanted = ("podium_media_late_ticks", "podium_media_late_frames", "podium_media_concealed")
    lines = [line for line in metrics.splitlines() if line.startswith(wanted)]
    return ", ".join(line for line in lines if space_id in line)


def _other_spaces(server: Server) -> None:
    """An upcoming space and a replay by someone else, so the home page has all three."""
    other = make_account(server, "radio")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with server.client(other.token) as client:
        client.post(
            "/api/v1/spaces",
            json={"title": "Design systems AMA", "scheduled_start": tomorrow},
        )
        done = client.post("/api/v1/spaces", json={"title": "Morning news roundup"}).json()
        assert client.post(f"/api/v1/spaces/{done['id']}/start").status_code == 200
        assert client.post(f"/api/v1/spaces/{done['id']}/end").status_code == 200


@pytest.mark.timeout(600)
def test_host_listener_speaker_and_replay_in_chromium(server: Server) -> None:
    host = make_account(server, "host")
    with sync_playwright() as playwright:
        host_browser = launch(playwright, HOST_VOICE)
        guest_browser = launch(playwright, GUEST_VOICE)
        try:
            # -- the host signs in, creates the space and goes live, speaking ----------
            console = host_browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors = watch_errors(console)
            _sign_in(console, server, host, "/host")
            expect(console.locator("#my-spaces")).not_to_contain_text("Loading")
            screenshot(console, "host-spaces")
            console.get_by_label("Title").fill("Friday audio club")
            console.get_by_label("Description").fill("Weekly chat about sound, radio and code.")
            console.get_by_role("button", name="Create space").click()
            console.wait_for_url(re.compile(r".*/s/\w+/host$"), timeout=WAIT_MS)
            space_id = console.url.rstrip("/").split("/")[-2]
            host_person = f"u:{host.id}"
            # Music mode: no voice processing, so the recording keeps the voice's contour.
            console.get_by_role("switch", name="Music mode").check()
            console.get_by_role("button", name="Go live").click()
            expect(console.locator("#speaker-conn")).to_have_text("Connected", timeout=WAIT_MS)
            eventually(
                lambda: (_seat(server, space_id, host_person) or {}).get("talking"),
                "the host to be heard talking",
            )

            _other_spaces(server)

            # -- a listener arrives and listens through hls.js ---------------------------
            guest_context = guest_browser.new_context(viewport={"width": 1280, "height": 900})
            listener = guest_context.new_page()
            listener_errors = watch_errors(listener)
            listener.goto(f"{server.url}/")
            expect(listener.locator(f'a[href="/s/{space_id}"]')).to_be_visible()
            screenshot(listener, "home")
            listener.goto(f"{server.url}/s/{space_id}")
            listener.get_by_role("button", name="Listen live").click()
            listener.wait_for_function(
                "() => document.querySelector('#audio').currentTime > 1", timeout=WAIT_MS
            )
            # The player is hls.js on Chromium, through Media Source Extensions.
            assert listener.evaluate("document.querySelector('#audio').src").startswith("blob:")
            listener.evaluate(STALL_COUNTER, "#audio")
            start = listener.evaluate("document.querySelector('#audio').currentTime")
            before = cpu_times()
            listener.wait_for_function(
                f"() => document.querySelector('#audio').currentTime > {start + 6}",
                timeout=WAIT_MS,
            )
            stalls, idle = listener.evaluate("window.__stalls"), idle_since(before)
            # Two browsers, a speaker and the server share this machine: a stall while no
            # core was left idle is theirs waiting for each other, not the stream's.
            if idle >= MACHINE_IDLE_MIN:
                assert stalls == 0, f"playback stalled {stalls}x with {idle:.0%} idle"
            expect(listener.locator("#latency")).to_have_text(
                re.compile(r"~\d+(\.\d)? s behind live"), timeout=WAIT_MS
            )
            listener.get_by_role("button", name="React 🔥").click()
            expect(console.locator("#stat-reactions")).to_have_text("1", timeout=WAIT_MS)
            screenshot(listener, "listener-live")

            phone_context = guest_browser.new_context(
                viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
            )
            phone = phone_context.new_page()
            phone.goto(f"{server.url}/s/{space_id}")
            expect(phone.locator("#stage .seat")).to_have_count(1)
            expect(phone.locator("#audience-chip")).to_be_visible()
            screenshot(phone, "listener-phone")
            phone_context.close()

            # -- the listener raises a hand; the host declines it, then approves the next -
            listener.get_by_role("button", name="Raise hand").click()
            listener.get_by_label("Your name").fill("Guest Speaker")
            listener.locator("#hand-dialog").get_by_role("button", name="Raise hand").click()
            expect(listener.get_by_role("button", name="Lower hand")).to_be_visible()
            decline = console.get_by_role("button", name="Decline Guest Speaker")
            expect(decline).to_be_visible(timeout=WAIT_MS)
            decline.click()
            expect(listener.get_by_text("The host declined your request to speak")).to_be_visible(
                timeout=WAIT_MS
            )
            listener.get_by_role("button", name="Raise hand").click()
            expect(listener.get_by_label("Your name")).to_have_value("Guest Speaker")
            listener.locator("#hand-dialog").get_by_role("button", name="Raise hand").click()
            expect(listener.get_by_role("button", name="Lower hand")).to_be_visible()
            approve = console.get_by_role("button", name="Approve Guest Speaker")
            expect(approve).to_be_visible(timeout=WAIT_MS)
            screenshot(console, "host-console-request")
            approve.click()

            # -- the listener joins the stage and speaks ----------------------------------
            join = listener.get_by_role("button", name="Join the stage")
            expect(join).to_be_visible(timeout=WAIT_MS)
            listener.get_by_role("switch", name="Music mode").check()
            join.click()
            expect(listener.locator("#speaker-conn")).to_have_text("Connected", timeout=WAIT_MS)
            listener.wait_for_function(
                "() => Number(document.querySelector('.meter').getAttribute('aria-valuenow')) > 0",
                timeout=WAIT_MS,
            )
            guest_person = listener.evaluate(
                "(id) => JSON.parse(sessionStorage.getItem('podium:ticket:' + id)).listener_id",
                space_id,
            )
            # The host mutes themself so that the program holds the guest's voice alone.
            console.get_by_role("button", name="Mute", exact=True).click()
            eventually(
                lambda: (_seat(server, space_id, host_person) or {}).get("muted"),
                "the host's mute to reach the stage",
            )
            eventually(
                lambda: (_seat(server, space_id, guest_person) or {}).get("talking"),
                "the guest to be heard talking",
            )
            _wait_program(server, space_id, SPEECH_S)
            expect(console.locator("#stage-list .person")).to_have_count(2)
            screenshot(listener, "speaker-view")
            screenshot(console, "host-console")

            media = _media_counters(server, space_id)
            # -- the space ends: the listener's page turns into the replay ----------------
            console.get_by_role("button", name="End space").click()
            console.locator("#confirm-yes").click()
            replay_view = listener.locator('[data-view="ended"]')
            expect(replay_view).to_be_visible(timeout=WAIT_MS)
            expect(listener.locator("#speaker")).to_be_hidden()
            listener.get_by_role("button", name="Play the replay").click()
            listener.wait_for_function(
                "() => document.querySelector('#replay-audio').currentTime > 1", timeout=WAIT_MS
            )
            download = listener.locator("#replay-download")
            expect(download).to_have_attribute("aria-disabled", "false", timeout=WAIT_MS)
            assert download.get_attribute("href") == f"/hls/{space_id}/replay.m4a"
            listener.get_by_role("button", name="Pause the replay").click()
            screenshot(listener, "replay")
            assert not listener_errors, listener_errors
            assert not console_errors, console_errors
        finally:
            guest_browser.close()
            host_browser.close()

    program = decode(f"{server.url}/hls/{space_id}/live.m3u8")
    _assert_voice_in_program(program, HOST_VOICE, "the host", media)
    _assert_voice_in_program(program, GUEST_VOICE, "the listener brought on stage", media)
