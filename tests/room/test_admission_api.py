"""Admission over real HTTP: the waiting room, proof of work, refusals with reasons, and
tickets that cannot be forged or carried to another space."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import Server, assert_problem, make_account, start_server
from podium.control import proofofwork

BASE_ENV = {"PODIUM_LOG_LEVEL": "warning", "PODIUM_EXACT_AUDIENCE": "true"}


def _server(tmp: Path, *args: str, **env: str) -> Server:
    return start_server(tmp / "data", *args, env={**BASE_ENV, **env})


def _live_space(server: Server) -> str:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        space_id = str(client.post("/api/v1/spaces", json={"title": "Busy"}).json()["id"])
        assert client.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
    return space_id


@pytest.fixture(scope="module")
def rate_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Five admissions a second, proof of work off: a waiting room forms at once."""
    running = _server(
        tmp_path_factory.mktemp("admission"),
        "--max-join-rate",
        "5",
        "--join-pow",
        "off",
        PODIUM_JOIN_BURST="100000",
        PODIUM_SIGNIN_BURST="1000",
    )
    yield running
    running.stop()


def test_waiting_room_admits_in_order_at_the_rate_and_estimates_honestly(
    rate_limited: Server,
) -> None:
    space_id = _live_space(rate_limited)
    url = f"{rate_limited.url}/api/v1/spaces/{space_id}/join"
    with httpx.Client(timeout=30) as http:
        began = time.monotonic()
        answers = [http.post(url) for _ in range(25)]
        t0 = time.monotonic()
        admitted_now = [a for a in answers if a.status_code == 200]
        waiting = [a for a in answers if a.status_code == 202]
        assert len(admitted_now) + len(waiting) == 25
        # One second of burst, plus what refilled while the joins were sent.
        assert 1 <= len(admitted_now) <= 5 + 5 * (t0 - began) + 1
        assert waiting, "the joins came too slowly to form a queue"
        for answer in admitted_now:
            assert answer.json()["status"] == "admitted"
            assert answer.json()["ticket"]
        for answer in waiting:
            body = answer.json()
            assert body["status"] == "queued"
            assert body["reason"] == "join_rate"
            assert answer.headers["cache-control"] == "no-store"
            assert int(answer.headers["retry-after"]) >= 1
            assert body["position"] >= 1
            assert body["estimated_wait_s"] == pytest.approx(body["position"] / 5, abs=0.25)

        # Everyone comes back when told; each is admitted in queue order, at 5 a second.
        pending = {a.json()["queue_token"]: a.json() for a in waiting}
        due = {token: t0 + body["retry_after_s"] for token, body in pending.items()}
        admitted_at: dict[int, float] = {}
        estimate: dict[int, float] = {}
        for body in pending.values():
            estimate[body["position"]] = body["estimated_wait_s"]
        deadline = t0 + 60
        while pending and time.monotonic() < deadline:
            token = min(due, key=due.__getitem__)
            time.sleep(max(0.0, due[token] - time.monotonic()))
            again = http.post(url, json={"queue_token": token})
            first = pending[token]
            if again.status_code == 200:
                assert again.json()["status"] == "admitted"
                admitted_at[first["position"]] = time.monotonic() - t0
                del pending[token], due[token]
                continue
            assert again.status_code == 202, again.text
            assert again.json()["position"] <= first["position"]
            due[token] = time.monotonic() + again.json()["retry_after_s"]
        assert not pending, f"{len(pending)} never admitted"
    # Queue order holds (up to the granularity of when each client comes back).
    order = sorted(admitted_at, key=admitted_at.__getitem__)
    inversions = sum(1 for a, b in itertools.pairwise(order) if b < a)
    assert inversions <= len(order) // 5
    # The rate held: the last of N waiting got in no sooner than N / 5 s (less one burst).
    last = max(admitted_at.values())
    assert last >= (len(waiting) - 6) / 5
    # Honest estimates: the stated tolerance is 1 s or 25 %, whichever is larger.
    for position, at in admitted_at.items():
        assert abs(at - estimate[position]) <= max(1.0, 0.25 * estimate[position]), position


def test_queue_tokens_cannot_be_forged_or_moved(rate_limited: Server) -> None:
    space_id = _live_space(rate_limited)
    other_id = _live_space(rate_limited)
    url = f"{rate_limited.url}/api/v1/spaces/{space_id}/join"
    with httpx.Client(timeout=10) as http:
        answers = [http.post(url) for _ in range(40)]
        queued = next(a.json() for a in answers if a.status_code == 202)
        admitted = next(a.json() for a in answers if a.status_code == 200)
        token = queued["queue_token"]
        # The room state (rebuilt about once a second) tells the same story.
        state_url = f"{rate_limited.url}/api/v1/spaces/{space_id}/state"
        time.sleep(1.1)
        capacity = http.get(state_url).json()["capacity"]
        assert capacity["max_join_rate"] == 5
        assert capacity["max_listeners"] is None
        assert 0 < capacity["queue_length"] <= sum(a.status_code == 202 for a in answers)
        assert capacity["admitting"] is False
        assert capacity["estimated_wait_s"] > 0
        flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        for bad in (flipped, "garbage", admitted["ticket"]):
            assert_problem(http.post(url, json={"queue_token": bad}), 401)
        moved = http.post(
            f"{rate_limited.url}/api/v1/spaces/{other_id}/join", json={"queue_token": token}
        )
        assert "another space" in assert_problem(moved, 401)["detail"]
        # A queue token is no listener ticket: it cannot beacon or react.
        beacon = http.post(
            f"{rate_limited.url}/api/v1/spaces/{space_id}/beacon", json={"ticket": token}
        )
        assert_problem(beacon, 401)
        # Junk bodies get clear errors.
        assert_problem(http.post(url, json={"queue_token": 5}), 422)
        assert_problem(http.post(url, json={"surprise": True}), 422)
        assert_problem(
            http.post(url, content=b"{", headers={"content-type": "application/json"}), 400
        )


def test_someone_queued_when_the_space_ends_is_sent_to_the_replay(rate_limited: Server) -> None:
    host = make_account(rate_limited, "host")
    with rate_limited.client(host.token) as client:
        space_id = client.post("/api/v1/spaces", json={"title": "Short"}).json()["id"]
        assert client.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
        url = f"/api/v1/spaces/{space_id}/join"
        answers = [client.post(url) for _ in range(12)]
        token = next(a.json()["queue_token"] for a in answers if a.status_code == 202)
        assert client.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
        after = client.post(url, json={"queue_token": token})
    assert after.status_code == 200, after.text
    body = after.json()
    assert body["status"] == "replay"
    assert body["replay_url"].endswith(f"/hls/{space_id}/replay.m4a")
    assert body["ticket"]


def test_prequeue_before_a_scheduled_start(rate_limited: Server) -> None:
    host = make_account(rate_limited, "host")
    with rate_limited.client(host.token) as client:
        space = client.post(
            "/api/v1/spaces", json={"title": "Later", "scheduled_start": "2099-01-01T00:00:00Z"}
        ).json()
        url = f"/api/v1/spaces/{space['id']}/join"
        early = [client.post(url) for _ in range(8)]
        for answer in early:
            assert answer.status_code == 202
            body = answer.json()
            assert body["reason"] == "pre_start"
            assert body["position"] is None
            assert body["starts_at"].startswith("2099-01-01T00:00:00")
        state = client.get(f"/api/v1/spaces/{space['id']}/state").json()
        assert state["capacity"]["queue_length"] == 8
        assert state["capacity"]["admitting"] is False
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
        places = []
        for answer in early:
            again = client.post(url, json={"queue_token": answer.json()["queue_token"]})
            places.append(0 if again.status_code == 200 else again.json()["position"])
        # After the start everyone early is admitted or has a place among the early ones.
        assert all(0 <= p <= len(early) for p in places)
        late = client.post(url)
        # Whoever arrived after the start is served after everyone who came early.
        tokens = {i: a.json()["queue_token"] for i, a in enumerate(early) if places[i]}
        if late.status_code == 202:
            tokens[-1] = late.json()["queue_token"]
        order: list[int] = []
        deadline = time.monotonic() + 30
        while tokens and time.monotonic() < deadline:
            for who, token in list(tokens.items()):
                if client.post(url, json={"queue_token": token}).status_code == 200:
                    order.append(who)
                    del tokens[who]
            time.sleep(0.1)
        assert not tokens
        if late.status_code == 202:
            assert order[-1] == -1
        client.post(f"/api/v1/spaces/{space['id']}/end")


def solve(challenge: dict[str, object]) -> dict[str, str]:
    token = str(challenge["token"])
    return {"token": token, "nonce": proofofwork.solve(token, int(str(challenge["difficulty"])))}


def test_proof_of_work_when_switched_on(tmp_path: Path) -> None:
    server = _server(tmp_path, "--join-pow", "on", PODIUM_POW_DIFFICULTY="10")
    try:
        space_id = _live_space(server)
        other_id = _live_space(server)
        url = f"{server.url}/api/v1/spaces/{space_id}/join"
        with httpx.Client(timeout=10) as http:
            asked = http.post(url)
            problem = assert_problem(asked, 428)
            assert problem["reason"] == "proof_of_work"
            challenge = problem["challenge"]
            assert challenge["difficulty"] == 10
            proof = solve(challenge)
            digest = hashlib.sha256(f"{proof['token']}:{proof['nonce']}".encode()).digest()
            assert proofofwork.leading_zero_bits(digest) >= 10
            joined = http.post(url, json={"pow": proof})
            assert joined.status_code == 200
            assert joined.json()["status"] == "admitted"
            reused = assert_problem(http.post(url, json={"pow": proof}), 428)
            assert "already used" in reused["detail"]
            wrong = {"token": proof["token"] + "x", "nonce": proof["nonce"]}
            assert (
                "new challenge"
                in assert_problem(http.post(url, json={"pow": wrong}), 428)["detail"]
            )
            fresh = solve(assert_problem(http.post(url), 428)["challenge"])
            elsewhere = http.post(
                f"{server.url}/api/v1/spaces/{other_id}/join", json={"pow": fresh}
            )
            assert "another space" in assert_problem(elsewhere, 428)["detail"]
            state = http.get(f"{server.url}/api/v1/spaces/{space_id}/state").json()
            assert state["capacity"]["proof_of_work"] is True
    finally:
        server.stop()


def test_proof_of_work_switches_on_by_itself_under_join_pressure(tmp_path: Path) -> None:
    server = _server(
        tmp_path,
        PODIUM_POW_ABOVE_JOINS_PER_S="10",
        PODIUM_POW_DIFFICULTY="8",
        PODIUM_JOIN_BURST="100000",
    )
    try:
        space_id = _live_space(server)
        url = f"{server.url}/api/v1/spaces/{space_id}/join"
        with httpx.Client(timeout=10) as http:
            first = http.post(url)
            assert first.status_code == 200  # calm: no work asked
            statuses = [http.post(url).status_code for _ in range(60)]
            assert statuses[0] == 200
            assert 428 in statuses
            assert set(statuses) <= {200, 428}
    finally:
        server.stop()


def test_refusals_carry_a_reason_and_retry_after(tmp_path: Path) -> None:
    server = _server(
        tmp_path,
        "--join-pow",
        "off",
        PODIUM_JOIN_BURST="3",
        PODIUM_JOIN_PER_SECOND="0.1",
        PODIUM_SHED_LOOP_LAG_MS="0",
    )
    try:
        space_id = _live_space(server)
        url = f"{server.url}/api/v1/spaces/{space_id}/join"
        with httpx.Client(timeout=10) as http:
            # This node reports itself overloaded (a lag limit of 0 ms): new joins queue
            # with the reason, and the room state says so; nobody gets a bare error.
            time.sleep(0.5)
            answers = [http.post(url) for _ in range(3)]
            for answer in answers:
                assert answer.status_code == 202, answer.text
                assert answer.json()["reason"] == "overload"
                assert answer.json()["estimated_wait_s"] is None
            state = http.get(f"{server.url}/api/v1/spaces/{space_id}/state").json()
            assert state["capacity"]["admitting"] is False
            limited = http.post(url)
            problem = assert_problem(limited, 429)
            assert problem["reason"] == "rate_limited"
            assert int(limited.headers["retry-after"]) == problem["retry_after_s"] >= 1
            # The queue token keeps working past the per-address limit.
            again = http.post(url, json={"queue_token": answers[0].json()["queue_token"]})
            assert again.status_code == 202
            assert again.json()["position"] == 1
            metrics = http.get(f"{server.url}/metrics").text
            assert "podium_admission_shedding 1.0" in metrics
            assert f'podium_admission_queue_length{{space="{space_id}"}} 3.0' in metrics
    finally:
        server.stop()


def test_an_operator_switches_proof_of_work_on_under_attack(tmp_path: Path) -> None:
    server = _server(tmp_path, "--join-pow", "off", PODIUM_POW_DIFFICULTY="8")
    try:
        space_id = _live_space(server)
        join = f"{server.url}/api/v1/spaces/{space_id}/join"
        someone = make_account(server, "someone")
        with server.client(someone.token) as client:
            assert_problem(client.get("/api/v1/admin/admission"), 403)
            assert_problem(client.patch("/api/v1/admin/admission", json={"join_pow": "on"}), 403)
        with server.client() as anonymous:
            assert_problem(anonymous.get("/api/v1/admin/admission"), 401)
        assert httpx.post(join).status_code == 200
        switched = subprocess.run(
            [sys.executable, "-m", "podium", "admission", "--pow", "on", "--server", server.url],
            env={**os.environ, "PODIUM_TOKEN": server.owner_token},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert switched.returncode == 0, switched.stderr
        assert "proof of work: on (required now)" in switched.stdout
        assert_problem(httpx.post(join), 428)
        with server.client(server.owner_token) as admin:
            view = admin.get("/api/v1/admin/admission").json()
            assert view["join_pow"] == "on"
            assert view["shedding"] is False
            assert_problem(admin.patch("/api/v1/admin/admission", json={"join_pow": "x"}), 422)
            assert admin.patch("/api/v1/admin/admission", json={"join_pow": "off"}).is_success
        assert httpx.post(join).status_code == 200
    finally:
        server.stop()


def test_listener_writes_are_limited_per_address_and_per_person(tmp_path: Path) -> None:
    server = _server(
        tmp_path,
        "--join-pow",
        "off",
        PODIUM_LISTENER_WRITES_BURST="30",
        PODIUM_LISTENER_WRITES_PER_SECOND="0.01",
    )
    try:
        space_id = _live_space(server)
        base = f"{server.url}/api/v1/spaces/{space_id}"
        with httpx.Client(timeout=10) as http:
            ticket = http.post(f"{base}/join").json()["ticket"]
            # One person flapping a hand is held back by their own bucket first.
            answers = []
            for _ in range(12):
                answers.append(http.post(f"{base}/hand", json={"ticket": ticket}))
                answers.append(http.request("DELETE", f"{base}/hand", json={"ticket": ticket}))
            limited = [a for a in answers if a.status_code == 429]
            assert limited, [a.status_code for a in answers]
            assert assert_problem(limited[0], 429)["reason"] == "rate_limited"
            assert all(a.status_code in (200, 204, 429) for a in answers)
            # The address as a whole runs out next, whoever's ticket it carries.
            others = [http.post(f"{base}/join").json()["ticket"] for _ in range(8)]
            statuses = [http.post(f"{base}/beacon", json={"ticket": t}).status_code for t in others]
            assert statuses[-1] == 429
            # Joining has its own limit and still works; reading is never limited.
            assert http.post(f"{base}/join").status_code == 200
            assert http.get(f"{base}/state").status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("trusted", [True, False])
def test_per_address_limits_see_through_trusted_edges_only(tmp_path: Path, trusted: bool) -> None:
    env = {"PODIUM_JOIN_BURST": "2", "PODIUM_JOIN_PER_SECOND": "0.01"}
    if trusted:
        env["PODIUM_TRUSTED_PROXIES"] = "127.0.0.0/8, ::1"
    server = _server(tmp_path, "--join-pow", "off", **env)
    try:
        url = f"{server.url}/api/v1/spaces/{_live_space(server)}/join"

        def join(forwarded: str) -> int:
            # An edge appends the address it saw; the left part is whatever was claimed.
            header = {"X-Forwarded-For": f"10.9.9.9, {forwarded}"}
            return httpx.post(url, headers=header, timeout=10).status_code

        assert [join("203.0.113.5") for _ in range(3)] == [200, 200, 429]
        # Someone else behind the same edge is another address, if the edge is trusted;
        # an untrusted peer cannot dodge its limit by making a header up.
        assert join("203.0.113.6") == (200 if trusted else 429)
    finally:
        server.stop()
