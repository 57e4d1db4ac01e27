"""Room life over real HTTP: the stage's rules, hands, the room state, audience numbers,
reactions, invites, the audit log, analytics and calendar files."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from harness import Account, Server, assert_problem, make_account
from media_signal import RATE, decode, loud_spans, peak_hz
from podium.clients.speak import ToneSource, speak
from podium.control import tickets


def _space(server: Server, host: Account, **fields: object) -> dict[str, str]:
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Room", **fields}).json()
        assert "state_url" in space
    return dict(space)


def _start(server: Server, host: Account, space: dict[str, str]) -> None:
    with server.client(host.token) as client:
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200


def _join(server: Server, space_id: str, token: str | None = None) -> dict[str, str]:
    with server.client(token) as client:
        joined = client.post(f"/api/v1/spaces/{space_id}/join")
        assert joined.status_code == 200, joined.text
    return dict(joined.json())


def _person(account: Account) -> str:
    return f"u:{account.id}"


def _state(server: Server, space_id: str) -> dict[str, object]:
    return dict(httpx.get(f"{server.url}/api/v1/spaces/{space_id}/state").json())


def test_request_to_speak_end_to_end_heard_in_the_program(server: Server) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    _start(server, host, space)
    listener = _join(server, space["id"])
    base = f"{server.url}/api/v1/spaces/{space['id']}"

    with httpx.Client(timeout=10) as http:
        # Not on stage yet: publishing is refused with a reason.
        refused = http.post(
            f"{base}/whip",
            content="v=0\r\n",
            headers={
                "Content-Type": "application/sdp",
                "Authorization": f"Bearer {listener['ticket']}",
            },
        )
        assert "raise your hand" in assert_problem(refused, 403)["detail"]
        raised = http.post(f"{base}/hand", json={"ticket": listener["ticket"], "name": "Front row"})
        assert raised.json()["position"] == 1
    with server.client(host.token) as client:
        queue = client.get(f"{base}/hands").json()["hands"]
        assert [(h["name"], h["position"]) for h in queue] == [("Front row", 1)]
        approved = client.post(f"{base}/stage/{listener['listener_id']}/approve")
        assert approved.status_code == 200, approved.text
    state = _state(server, space["id"])
    assert [s["role"] for s in state["stage"]] == ["host", "speaker"]  # type: ignore[index]

    # The listener publishes over WHIP with nothing but their ticket, and is heard.
    asyncio.run(speak(space["whip_url"], listener["ticket"], ToneSource(1500.0, 0.5), seconds=4.0))
    with server.client(host.token) as client:
        client.post(f"/api/v1/spaces/{space['id']}/end")
    program = decode(space["playlist_url"])
    start, end = loud_spans(program)[0]
    assert (end - start) / RATE > 3.0
    assert peak_hz(program[start + RATE // 2 : end - RATE // 2]) == pytest.approx(1500, abs=5)


def test_a_listener_can_ask_where_their_hand_is(server: Server) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    _start(server, host, space)
    first, second = _join(server, space["id"]), _join(server, space["id"])
    base = f"{server.url}/api/v1/spaces/{space['id']}"

    def where(http: httpx.Client, listener: dict[str, str]) -> object:
        answer = http.post(f"{base}/hand/status", json={"ticket": listener["ticket"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["person"] == listener["listener_id"]
        return answer.json()["position"]

    with httpx.Client(timeout=10) as http:
        assert where(http, first) is None
        for listener in (first, second):
            http.post(f"{base}/hand", json={"ticket": listener["ticket"], "name": "Guest"})
        assert (where(http, first), where(http, second)) == (1, 2)
        assert _state(server, space["id"])["hands"] == {"count": 2}
        with server.client(host.token) as client:
            declined = client.post(f"{base}/stage/{first['listener_id']}/decline")
            assert declined.status_code == 200, declined.text
        # The state says only that a hand went down; each listener can ask whose.
        assert _state(server, space["id"])["hands"] == {"count": 1}
        assert (where(http, first), where(http, second)) == (None, 1)
        assert_problem(http.post(f"{base}/hand/status", json={}), 401)
        forged = first["ticket"][:-4] + ("AAAA" if not first["ticket"].endswith("AAAA") else "BBBB")
        assert_problem(http.post(f"{base}/hand/status", json={"ticket": forged}), 401)


def test_moderation_reaches_the_media_and_the_audit_log(server: Server) -> None:
    host, guest = make_account(server, "host"), make_account(server, "guest")
    space = _space(server, host)
    _start(server, host, space)
    base = f"/api/v1/spaces/{space['id']}"
    with server.client(host.token) as client:
        invite = client.post(f"{base}/invites").json()
        assert invite["url"].endswith(f"?invite={invite['invite']}")
    with server.client(guest.token) as client:
        accepted = client.post(f"{base}/invites/accept", json={"invite": invite["invite"]})
        assert accepted.json()["role"] == "speaker"
        forged = client.post(
            f"{base}/invites/accept", json={"invite": "1999999999.AAAAAAAAAAAAAAAAAAAAAAAA"}
        )
        assert_problem(forged, 401)

    async def speak_and_moderate() -> None:
        speaking = asyncio.create_task(
            speak(space["whip_url"], guest.token, ToneSource(700.0, 0.5), seconds=8.0)
        )
        await asyncio.sleep(2.0)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {host.token}"}
        ) as c:
            assert (await c.post(f"{base}/stage/{_person(guest)}/mute")).status_code == 200
            await asyncio.sleep(2.0)
            removed = await c.post(f"{base}/stage/{_person(guest)}/remove")
            assert removed.status_code == 200
        with pytest.raises(Exception):  # noqa: B017,PT011 - the session is cut from the server side
            await asyncio.wait_for(speaking, 8.0)

    asyncio.run(speak_and_moderate())
    with server.client(guest.token) as client:
        again = client.post(
            f"{base}/whip", content="v=0\r\n", headers={"Content-Type": "application/sdp"}
        )
        assert "removed" in assert_problem(again, 403)["detail"]
        assert "removed" in assert_problem(client.post(f"{base}/hand", json={}), 403)["detail"]
    with server.client(host.token) as client:
        entries = client.get(f"{base}/audit").json()["entries"]
        assert [e["action"] for e in entries] == ["accept_invite", "mute", "remove"]
        assert entries[1]["actor"] == _person(host)
        assert entries[1]["target"] == _person(guest)
    with server.client(guest.token) as client:
        assert_problem(client.get(f"{base}/audit"), 403)
        client_state = _state(server, space["id"])
        assert _person(guest) not in [s["person"] for s in client_state["stage"]]  # type: ignore[union-attr]
    with server.client(host.token) as client:
        client.post(f"{base}/end")
    # Their tone was there until the host muted them (after ~2 s), and never after.
    program = decode(space["playlist_url"])
    spans = loud_spans(program)
    heard = sum(end - start for start, end in spans) / RATE
    assert 1.0 < heard < 3.5
    assert (spans[-1][1] - spans[0][0]) / RATE < 3.5


ACTIONS = ("approve", "decline", "move-to-audience", "mute", "remove", "make-cohost", "demote")


@pytest.mark.parametrize("actor_kind", ["cohost", "speaker", "stranger", "anonymous"])
def test_role_rules_over_http(server: Server, actor_kind: str) -> None:
    """Who may do what to whom, through the API (the full matrix is in test_stage.py)."""
    host, cohost, speaker, stranger = (
        make_account(server, k) for k in ("host", "cohost", "speaker", "stranger")
    )
    space = _space(server, host)
    _start(server, host, space)
    base = f"/api/v1/spaces/{space['id']}"
    with server.client(host.token) as client:
        invite = client.post(f"{base}/invites").json()["invite"]
    for account in (cohost, speaker):
        with server.client(account.token) as client:
            client.post(f"{base}/invites/accept", json={"invite": invite})
    with server.client(host.token) as client:
        assert client.post(f"{base}/stage/{_person(cohost)}/make-cohost").status_code == 200
    actor = {"cohost": cohost, "speaker": speaker, "stranger": stranger}.get(actor_kind)
    with server.client(actor.token if actor else None) as client:
        for action in ACTIONS:
            on_host = client.post(f"{base}/stage/{_person(host)}/{action}")
            if actor is None:
                assert_problem(on_host, 401)
                continue
            if actor_kind == "cohost" and action in ("approve", "decline"):
                # A co-host may approve and decline; the host simply has no hand up.
                assert on_host.status_code in (404, 409), on_host.text
                continue
            problem = assert_problem(on_host, 403)
            assert "host" in problem["detail"], (action, problem)
        if actor is None:
            return
        ending = client.post(f"{base}/end")
        assert "only the host" in assert_problem(ending, 403)["detail"]
        hands = client.get(f"{base}/hands")
        if actor_kind == "cohost":
            assert hands.status_code == 200
            muted = client.post(f"{base}/stage/{_person(speaker)}/mute")
            assert muted.status_code == 200
            assert (
                "only the host"
                in assert_problem(client.post(f"{base}/stage/{_person(speaker)}/make-cohost"), 403)[
                    "detail"
                ]
            )
        else:
            assert "only the host and co-hosts" in assert_problem(hands, 403)["detail"]
            target = cohost if actor_kind == "speaker" else speaker
            refused = client.post(f"{base}/stage/{_person(target)}/mute")
            if actor_kind == "speaker":
                assert "only the host and co-hosts" in assert_problem(refused, 403)["detail"]
            else:
                assert_problem(refused, 403)
    with server.client(host.token) as client:
        client.post(f"{base}/end")


def test_room_state_versions_etag_and_long_poll(server: Server) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    url = f"{server.url}/api/v1/spaces/{space['id']}/state"
    # Before the start, a join waits in the pre-queue (which changes the document once).
    early = httpx.post(f"{server.url}/api/v1/spaces/{space['id']}/join")
    assert early.status_code == 202
    assert early.json()["reason"] == "pre_start"
    time.sleep(1.2)
    first = httpx.get(url)
    assert first.headers["cache-control"] == "public, max-age=1"
    etag, version = first.headers["etag"], first.json()["version"]
    assert etag == f'"v{version}"'
    assert first.json()["status"] == "scheduled"
    assert httpx.get(url, headers={"If-None-Match": etag}).status_code == 304
    woke: dict[str, object] = {}

    def long_poll() -> None:
        started = time.monotonic()
        answer = httpx.get(url, params={"after": version}, timeout=30)
        woke["after_s"] = time.monotonic() - started
        woke["version"] = answer.json()["version"]
        woke["status"] = answer.json()["status"]

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    _start(server, host, space)  # a change: the waiting request answers with it
    poller.join(timeout=30)
    assert woke["version"] == version + 1  # type: ignore[operator]
    assert woke["status"] == "live"
    assert woke["after_s"] < 15  # woken by the change, not by the 20 s timeout
    live = httpx.get(url).json()
    assert live["status"] == "live"
    assert live["recording"] == "ok"
    assert live["links"]["playlist"] == space["playlist_url"]


def test_room_state_is_right_under_concurrent_changes(server: Server) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    _start(server, host, space)
    listeners = [_join(server, space["id"]) for _ in range(40)]

    def raise_hand(listener: dict[str, str]) -> int:
        answer = httpx.post(
            f"{server.url}/api/v1/spaces/{space['id']}/hand",
            json={"ticket": listener["ticket"]},
            timeout=20,
        )
        return answer.status_code

    with __import__("concurrent.futures").futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(raise_hand, listeners))
    assert codes == [200] * 40
    time.sleep(1.2)
    state = _state(server, space["id"])
    assert state["hands"] == {"count": 40}
    with server.client(host.token) as client:
        positions = [
            h["position"] for h in client.get(f"/api/v1/spaces/{space['id']}/hands").json()["hands"]
        ]
        assert positions == list(range(1, 41))
        client.post(f"/api/v1/spaces/{space['id']}/end")


def test_audience_numbers_are_exact_and_floods_do_not_inflate_them(server: Server) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    _start(server, host, space)
    base = f"{server.url}/api/v1/spaces/{space['id']}"
    joined = [_join(server, space["id"]) for _ in range(150)]
    with httpx.Client(timeout=10) as http:
        for listener in joined[:100]:
            assert (
                http.post(f"{base}/beacon", json={"ticket": listener["ticket"]}).status_code == 204
            )
        # One ticket beaconing in a loop is throttled and counted once.
        flood = [
            http.post(f"{base}/beacon", json={"ticket": joined[0]["ticket"]}).status_code
            for _ in range(30)
        ]
        assert flood.count(429) >= 20
    time.sleep(1.2)
    audience = _state(server, space["id"])["audience"]
    assert audience == {
        "concurrent": 150,
        "peak": 150,
        "unique": 150,
        "replay_plays": 0,
        "exact": True,
    }
    with server.client(host.token) as client:
        client.post(f"/api/v1/spaces/{space['id']}/end")
        analytics = client.get(f"/api/v1/spaces/{space['id']}/analytics").json()
    assert analytics["unique"] == 150
    assert analytics["peak"] == 150
    assert "distinct listeners" in analytics["definitions"]["concurrent"]
    _join(server, space["id"])  # a join after the end is a replay play
    time.sleep(1.2)
    assert _state(server, space["id"])["audience"]["replay_plays"] == 1  # type: ignore[index]


def test_reactions_are_aggregated_and_bad_ones_refused(server: Server, tmp_path: Path) -> None:
    host = make_account(server, "host")
    space = _space(server, host)
    _start(server, host, space)
    base = f"{server.url}/api/v1/spaces/{space['id']}"
    listeners = [_join(server, space["id"]) for _ in range(5)]
    with httpx.Client(timeout=10) as http:
        for listener in listeners:
            for emoji in ("🔥", "👏"):
                sent = http.post(
                    f"{base}/reactions", json={"ticket": listener["ticket"], "emoji": emoji}
                )
                assert sent.status_code == 202
        ticket = listeners[0]["ticket"]
        assert_problem(http.post(f"{base}/reactions", json={"ticket": ticket, "emoji": "🐍"}), 422)
        assert_problem(
            http.post(f"{base}/reactions", json={"ticket": ticket, "emoji": "x" * 500}), 422
        )
        assert_problem(http.post(f"{base}/reactions", json={"ticket": ticket}), 422)
        assert_problem(
            http.post(f"{base}/reactions", json={"ticket": ticket, "emoji": "🔥", "extra": 1}), 422
        )
        burst = [
            http.post(f"{base}/reactions", json={"ticket": ticket, "emoji": "🔥"})
            for _ in range(20)
        ]
        limited = [r for r in burst if r.status_code == 429]
        assert limited
        assert int(limited[0].headers["retry-after"]) >= 1
        # Forged, tampered, expired and other-space tickets.
        other = _space(server, host)
        _start(server, host, other)
        foreign = _join(server, other["id"])["ticket"]
        key = (server.data_dir / "secret.key").read_text().strip().encode()
        expired = tickets.issue(key, space["id"], "l:old", "guest", time.time() - 7200, 3600)
        tampered = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
        for bad, reason in (
            (foreign, "another space"),
            (expired, "expired"),
            (tampered, "signature"),
            ("junk", "malformed"),
        ):
            refused = http.post(f"{base}/beacon", json={"ticket": bad})
            assert reason in assert_problem(refused, 401)["detail"], reason
    time.sleep(1.2)
    reactions = _state(server, space["id"])["reactions"]
    assert reactions["totals"]["🔥"] >= 5  # type: ignore[index]
    assert reactions["totals"]["👏"] == 5  # type: ignore[index]
    with server.client(host.token) as client:
        for s in (space, other):
            client.post(f"/api/v1/spaces/{s['id']}/end")


def test_scheduled_space_page_calendar_and_starting_soon(server: Server) -> None:
    host = make_account(server, "host")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    later = datetime.now(UTC) + timedelta(days=2)
    near = _space(server, host, scheduled_start=soon.isoformat(), description="Q&A, live")
    far = _space(server, host, scheduled_start=later.isoformat())
    assert _state(server, near["id"])["status"] == "starting"
    assert _state(server, far["id"])["status"] == "scheduled"
    ics = httpx.get(f"{server.url}/api/v1/spaces/{near['id']}/calendar.ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    text = ics.text
    assert text.startswith("BEGIN:VCALENDAR\r\n")
    assert text.endswith("END:VCALENDAR\r\n")
    assert f"DTSTART:{soon.strftime('%Y%m%dT%H%M%S')}Z" in text
    assert "DESCRIPTION:Q&A\\, live\\n" in text
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    unscheduled = _space(server, host)
    assert_problem(httpx.get(f"{server.url}/api/v1/spaces/{unscheduled['id']}/calendar.ics"), 409)
    page = httpx.get(near["page_url"])
    assert page.status_code == 200
