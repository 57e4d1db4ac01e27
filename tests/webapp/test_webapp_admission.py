"""Honest states in a real browser: "starting soon" before a scheduled start, the waiting
room with its position and estimate and automatic retry, and a proof of work solved by
the page, on a server that admits one listener every ten seconds and asks every new
arrival for a proof of work."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from webapp_browser import WAIT_MS, launch, screenshot, watch_errors

from harness import Server, assert_problem, make_account, start_server
from media_signal import FIXTURES
from podium.control.proofofwork import leading_zero_bits

DIFFICULTY = 12


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("webapp-gated") / "data",
        "--max-join-rate",
        "0.1",
        "--join-pow",
        "on",
        env={
            "PODIUM_LOG_LEVEL": "warning",
            # The queue here is the join rate's, with its estimate: the health guard would
            # queue for "overload" instead (no estimate) when the browsers leave the 2-core
            # machine's event loops lagging.
            "PODIUM_SHED_LOOP_LAG_MS": "60000",
            "PODIUM_SHED_CPU_PERCENT": "10000",
            "PODIUM_POW_DIFFICULTY": str(DIFFICULTY),
            "PODIUM_SIGNIN_BURST": "1000",
        },
    )
    yield running
    running.stop()


def _solve(challenge: dict[str, object]) -> dict[str, str]:
    token = str(challenge["token"])
    for nonce in itertools.count():
        digest = hashlib.sha256(f"{token}:{nonce}".encode()).digest()
        if leading_zero_bits(digest) >= int(str(challenge["difficulty"])):
            return {"token": token, "nonce": str(nonce)}
    raise AssertionError("unreachable")


def _join_with_proof(server: Server, space_id: str) -> httpx.Response:
    url = f"{server.url}/api/v1/spaces/{space_id}/join"
    challenge = assert_problem(httpx.post(url, timeout=10), 428)["challenge"]
    assert isinstance(challenge, dict)
    return httpx.post(url, json={"pow": _solve(challenge)}, timeout=10)


def _playing(page: Page) -> None:
    page.wait_for_function(
        "() => document.querySelector('#audio').currentTime > 1", timeout=WAIT_MS
    )
    expect(page.locator('[data-view="playing"]')).to_be_visible()


def test_the_page_sha256_matches_python(gated: Server) -> None:
    """The page solves proofs of work with its own SHA-256 (crypto.subtle needs a secure
    origin, which a LAN address over HTTP is not): it must agree with hashlib's."""
    messages = ["", "abc", "podium:12345", "x" * 55, "y" * 56, "z" * 64, "é" * 100]
    with sync_playwright() as playwright:
        browser = launch(playwright, FIXTURES / "speech-01.wav")
        try:
            page = browser.new_page()
            page.goto(f"{gated.url}/signin")
            script = page.locator('script[type="module"]').get_attribute("src")
            assert script is not None
            module = script.replace("account.js", "admission.js")
            hexes = page.evaluate(
                """async ([module, messages]) => {
                  const {sha256} = await import(module);
                  const hex = (w) => [...w].map((x) => x.toString(16).padStart(8, "0")).join("");
                  return messages.map((m) => hex(sha256(new TextEncoder().encode(m))));
                }""",
                [module, messages],
            )
        finally:
            browser.close()
    assert hexes == [hashlib.sha256(m.encode()).hexdigest() for m in messages]


def test_starting_soon_then_the_waiting_room_then_playing(gated: Server) -> None:
    host = make_account(gated, "host")
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    with gated.client(host.token) as client:
        scheduled = client.post(
            "/api/v1/spaces", json={"title": "Launch party", "scheduled_start": later}
        ).json()
        busy = client.post("/api/v1/spaces", json={"title": "The busy one"}).json()
        assert client.post(f"/api/v1/spaces/{busy['id']}/start").status_code == 200

    with sync_playwright() as playwright:
        browser = launch(playwright, FIXTURES / "speech-01.wav")
        try:
            # Before the start: the page says when, and waits in the pre-queue.
            early = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = watch_errors(early)
            early.goto(f"{gated.url}/s/{scheduled['id']}")
            expect(early.locator("#countdown")).to_have_text("Starts in 5 min")
            screenshot(early, "listener-scheduled")
            early.get_by_role("button", name="Listen when it starts").click()
            expect(early.locator('[data-view="waiting"]')).to_be_visible(timeout=WAIT_MS)
            expect(early.locator("#waiting-text")).to_contain_text("Scheduled for")
            with gated.client(host.token) as client:
                started = client.post(f"/api/v1/spaces/{scheduled['id']}/start")
                assert started.status_code == 200
            _playing(early)  # admitted from the pre-queue at the start, with no click

            # A busy space: someone takes this second's admission, the page queues.
            assert _join_with_proof(gated, busy["id"]).json()["status"] == "admitted"
            queued = browser.new_page(viewport={"width": 1280, "height": 900})
            errors += watch_errors(queued)
            queued.goto(f"{gated.url}/s/{busy['id']}")
            queued.get_by_role("button", name="Listen live").click()
            expect(queued.locator('[data-view="queued"]')).to_be_visible(timeout=WAIT_MS)
            expect(queued.locator("#queue-text")).to_contain_text("Position 1 of 1")
            expect(queued.locator("#queue-text")).to_contain_text("s to go")
            screenshot(queued, "listener-queued")
            _playing(queued)  # the page came back when told to and was let in
            assert not errors, errors
        finally:
            browser.close()
