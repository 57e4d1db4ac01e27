"""Speakers from behind NAT and firewalls, through a real coturn: heard in the program.

Each speaker is ``podium speak`` in a network namespace of its own behind a NAT router
(iptables MASQUERADE, :mod:`netlab`). With UDP let through it reaches the media node
directly; with UDP blocked, as the strictest networks do, only through TURN, over TCP or
TLS, with credentials Podium minted for that speaker (coturn's shared-secret scheme).
A speaker with UDP blocked and no TURN cannot connect at all: that is what makes the
TURN cases proof that the relay carried them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection
from playwright.sync_api import sync_playwright

from harness import Account, Server, make_account, start_server
from media_signal import RATE, has_tones, loud_spans, tone_wav
from netlab import (
    PRIVATE_IP,
    PUBLIC_IP,
    SERVER_IP,
    Coturn,
    NatNetwork,
    OneToOneNat,
    end_and_replay,
)
from services import free_port
from webapp.webapp_browser import CHROMIUM, host_on_stage

PODIUM = [sys.executable, "-m", "podium"]
SECRET = "turn-shared-secret-for-the-tests-0123456789"
TONE_HZ = 440.0
PAGE_TONE_HZ = 1000.0  # the page's fake microphone
SPOKEN_S = 6.0


@pytest.fixture(scope="module")
def coturn(network: NatNetwork) -> Iterator[Coturn]:
    # On this machine's side of the speaker's network (its address exists from then on).
    turn = Coturn(SERVER_IP, SECRET, free_port(), free_port())
    try:
        yield turn
    finally:
        turn.close()


def _server(tmp_path: Path, ice_servers: str) -> Server:
    env = {"PODIUM_LOG_LEVEL": "warning", "PODIUM_ICE_SERVERS": ice_servers}
    if ice_servers:
        env["PODIUM_TURN_SECRET"] = SECRET
    return start_server(tmp_path / "data", "--host", SERVER_IP, env=env)


def _live_space(server: Server) -> tuple[str, str]:
    space_id, host = _live_space_of(server)
    return space_id, host.token


def _live_space_of(server: Server) -> tuple[str, Account]:
    host = make_account(server, "natspeaker")
    with server.client(host.token) as api:
        space_id = str(api.post("/api/v1/spaces", json={"title": "Behind NAT"}).json()["id"])
        assert api.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
    return space_id, host


def _speak_from(
    network: NatNetwork, server: Server, space_id: str, token: str, *flags: str, **env: str
) -> subprocess.CompletedProcess[str]:
    whip = f"{server.url}/api/v1/spaces/{space_id}/whip"
    command = [*PODIUM, "speak", whip, "--token", token, "--tone", str(TONE_HZ), *flags]
    command += ["--seconds", str(SPOKEN_S)]
    return subprocess.run(
        network.command("env", *(f"{k}={v}" for k, v in env.items()), *command),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _heard_seconds(server: Server, space_id: str, token: str, hz: float = TONE_HZ) -> float:
    """End the space; how long the tone ``hz`` is on the air in its replay."""
    audio = end_and_replay(server, space_id, token)
    heard = 0
    for start, end in loud_spans(audio):
        if end - start >= RATE and has_tones(audio[start : start + RATE], (hz,)):
            heard += end - start
    return heard / RATE


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("block_udp", "through"),
    [(False, ""), (True, "turn-tcp"), (True, "turn-tls")],
    ids=["udp-open-direct", "udp-blocked-turn-tcp", "udp-blocked-turn-tls"],
)
def test_a_speaker_behind_nat_is_heard_in_the_program(
    network: NatNetwork, coturn: Coturn, tmp_path: Path, block_udp: bool, through: str
) -> None:
    ice_servers = {
        "": "",
        "turn-tcp": f"turn:{SERVER_IP}:{coturn.port}?transport=tcp",
        "turn-tls": f"turns:{SERVER_IP}:{coturn.tls_port}?transport=tcp",
    }[through]
    allocations_before = coturn.log().count("ALLOCATE processed, success")
    server = _server(tmp_path, ice_servers)
    network.block_udp(block_udp)
    try:
        space_id, token = _live_space(server)
        # TLS to the TURN server is checked against the CA, as aiortc does by default.
        spoken = _speak_from(network, server, space_id, token, SSL_CERT_FILE=str(coturn.ca))
        assert spoken.returncode == 0, spoken.stderr[-3000:]
        heard = _heard_seconds(server, space_id, token)
    finally:
        server.stop()
    assert heard >= SPOKEN_S - 2.0, f"the speaker was on the air {heard:.1f} s of {SPOKEN_S}"
    allocations = coturn.log().count("ALLOCATE processed, success") - allocations_before
    if through:
        assert allocations >= 1, coturn.log()[-3000:]
    else:
        assert allocations == 0, "a direct connection needs no relay"


@pytest.mark.timeout(240)
def test_the_web_page_speaks_from_behind_nat_with_udp_blocked_through_turn(
    network: NatNetwork, coturn: Coturn, tmp_path: Path
) -> None:
    server = _server(tmp_path, f"turn:{SERVER_IP}:{coturn.port}?transport=tcp")
    network.block_udp(True)
    # Chromium itself runs in the speaker's namespace; Playwright drives it over a pipe.
    wrapper = tmp_path / "chromium-behind-nat"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(network.command(CHROMIUM))} "$@"\n')
    wrapper.chmod(0o755)
    allocations_before = coturn.log().count("ALLOCATE processed, success")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(wrapper),
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={tone_wav(tmp_path / 'mic.wav', PAGE_TONE_HZ)}",
                # The server is plain http at a private address: a microphone needs a
                # secure context, which a real deployment has with https.
                f"--unsafely-treat-insecure-origin-as-secure={server.url}",
                "--disable-background-networking",
                "--no-first-run",
            ],
        )
        try:
            space_id, host = _live_space_of(server)
            _console, errors = host_on_stage(
                browser, server.url, host.handle, host.password, space_id
            )
            time.sleep(SPOKEN_S)
            assert not errors, errors
            heard = _heard_seconds(server, space_id, host.token, PAGE_TONE_HZ)
        finally:
            browser.close()
    finally:
        playwright.stop()
        server.stop()
    assert heard >= SPOKEN_S - 2.0, f"the page was on the air {heard:.1f} s"
    assert coturn.log().count("ALLOCATE processed, success") > allocations_before


@pytest.mark.timeout(120)
def test_with_udp_blocked_and_no_turn_a_speaker_cannot_connect(
    network: NatNetwork, tmp_path: Path
) -> None:
    server = _server(tmp_path, "")
    network.block_udp(True)
    try:
        space_id, token = _live_space(server)
        spoken = _speak_from(network, server, space_id, token, "--no-reconnect")
    finally:
        server.stop()
    assert spoken.returncode != 0
    assert "WebRTC connection" in spoken.stderr, spoken.stderr[-2000:]


def _links(answer: httpx.Response) -> list[str]:
    return answer.headers.get_list("link")


async def _offer() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


@pytest.mark.timeout(120)
def test_turn_credentials_are_each_speakers_own_and_expire(coturn: Coturn, tmp_path: Path) -> None:
    turn_url = f"turn:{SERVER_IP}:{coturn.port}?transport=tcp"
    server = _server(tmp_path, f"stun:{SERVER_IP}:{coturn.port}, {turn_url}")
    try:
        space_id, token = _live_space(server)
        whip = f"/api/v1/spaces/{space_id}/whip"
        outsider = make_account(server, "natoutsider")
        with server.client() as api:
            refused = api.options(whip)
            assert refused.status_code == 401
            assert not _links(refused)
        with server.client(outsider.token) as api:
            refused = api.options(whip)
            assert refused.status_code == 403, refused.text
            assert not _links(refused), "no TURN credentials for someone off the stage"
        with server.client(token) as api:
            before = time.time()
            answer = api.options(whip)
        assert answer.status_code == 204, answer.text
        assert answer.headers["accept-post"] == "application/sdp"
        assert answer.headers["cache-control"] == "no-store"
        links = _links(answer)
        assert links[0] == f'<stun:{SERVER_IP}:{coturn.port}>; rel="ice-server"'
        found = re.fullmatch(
            rf'<{re.escape(turn_url)}>; rel="ice-server"; username="(\d+):([^"]+)"; '
            r'credential="([^"]+)"; credential-type="password"',
            links[1],
        )
        assert found is not None, links
        expiry, who, credential = int(found[1]), found[2], found[3]
        assert before + 24 * 3600 - 5 <= expiry <= time.time() + 24 * 3600 + 1
        assert ":" not in who
        mac = hmac.new(SECRET.encode(), f"{expiry}:{who}".encode(), hashlib.sha1).digest()
        assert base64.b64decode(credential) == mac
        with server.client(outsider.token) as api:
            # The host's credentials are not another speaker's.
            invite = httpx.post(
                f"{server.url}/api/v1/spaces/{space_id}/invites",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()["invite"]
            assert api.post(
                f"/api/v1/spaces/{space_id}/invites/accept", json={"invite": invite}
            ).is_success
            theirs = _links(api.options(whip))
        assert theirs[1] != links[1]

        # The 201 answer to an offer carries them too (RFC 9725 section 4.6).
        async def publish() -> httpx.Response:
            pc, sdp = await _offer()
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
                    created = await http.post(
                        whip,
                        content=sdp,
                        headers={
                            "Content-Type": "application/sdp",
                            "Authorization": f"Bearer {token}",
                        },
                    )
                    if created.status_code == 201:
                        await http.delete(
                            created.headers["location"],
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    return created
            finally:
                await pc.close()

        created = asyncio.run(publish())
        assert created.status_code == 201, created.text
        assert [link.split(";")[0] for link in _links(created)] == [
            f"<stun:{SERVER_IP}:{coturn.port}>",
            f"<{turn_url}>",
        ]
    finally:
        server.stop()


def test_a_turn_server_without_a_secret_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PODIUM, "serve", "--data", str(tmp_path), "--port", "0"],
        env={"PATH": "/usr/bin:/bin", "PODIUM_ICE_SERVERS": "turn:turn.example.net"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "set turn_secret" in result.stderr, result.stderr


@pytest.mark.timeout(180)
@pytest.mark.parametrize("announced", [True, False], ids=["announced", "not-announced"])
def test_a_server_behind_one_to_one_nat_is_reached_at_its_public_address(
    tmp_path: Path, announced: bool
) -> None:
    """A cloud VM: the server has a private address only; with ``public_address`` set,
    speakers reach it at the public one, and without it they cannot."""
    nat = OneToOneNat()
    port = free_port()
    env = {"PODIUM_LOG_LEVEL": "warning"}
    if announced:
        env["PODIUM_PUBLIC_ADDRESS"] = PUBLIC_IP
    try:
        server = start_server(
            tmp_path / "data",
            *("--host", PRIVATE_IP, "--port", str(port)),
            env=env,
            wrap=nat.command(),
        )
        try:
            server.url = f"http://{PUBLIC_IP}:{port}"  # it says its private one
            space_id, token = _live_space(server)
            whip = f"{server.url}/api/v1/spaces/{space_id}/whip"
            command = [*PODIUM, "speak", whip, "--token", token, "--tone", str(TONE_HZ)]
            command += ["--seconds", str(SPOKEN_S), "--no-reconnect"]
            spoken = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            if not announced:
                assert spoken.returncode != 0, "the private address alone cannot be reached"
                assert "WebRTC connection" in spoken.stderr, spoken.stderr[-2000:]
                return
            assert spoken.returncode == 0, spoken.stderr[-3000:]
            heard = _heard_seconds(server, space_id, token)
        finally:
            server.stop()
    finally:
        nat.close()
    assert heard >= SPOKEN_S - 2.0, f"the speaker was on the air {heard:.1f} s of {SPOKEN_S}"
