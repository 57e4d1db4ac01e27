"""``podium load`` against real ``podium serve --demo`` servers on loopback: a join storm on
an open space, a storm at several times the configured capacity, and a flood.

Bounds are generous on purpose: the machine running this has two cores shared by the
server, its media worker, the demo speaker and the load generator, so the tests assert
behaviour (who got in, in what order, what they were told), never speed.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import Server, start_server
from podium.clients.flood import FloodPlan, flood, render_flood
from podium.clients.joining import QUEUE_REASONS
from podium.clients.listen import RetryPolicy
from podium.clients.load import StormPlan, join_storm
from podium.clients.loadreport import render_storm

DEMO_LINE = re.compile(r"Demo space \(live\): \S+/s/(\w+)")
# The health guard measures this machine, which other tests and the load generator
# share: relaxed, so that what is tested is admission by the configured limits.
QUIET = {
    "PODIUM_LOG_LEVEL": "warning",
    "PODIUM_SHED_LOOP_LAG_MS": "60000",
    "PODIUM_SHED_CPU_PERCENT": "10000",
}

# Every key a script may rely on in the join-storm JSON report.
STORM_KEYS = {
    "kind",
    "server",
    "space",
    "listeners",
    "over_s",
    "duration_s",
    "elapsed_s",
    "admitted",
    "replay",
    "queued",
    "still_queued",
    "refused",
    "pending",
    "outcomes",
    "refused_with_reason",
    "refused_with_scope",
    "notes",
    "gave_up_with_reason",
    "unexplained_errors",
    "unexplained_by_kind",
    "unexplained_samples",
    "ttfa_p50_s",
    "ttfa_p95_s",
    "ttfa_p99_s",
    "ttfa_count",
    "admitted_without_audio",
    "ttfa_after_admission_p50_s",
    "queue_wait_p50_s",
    "queue_wait_p95_s",
    "queue_wait_p99_s",
    "estimate_error_p50_s",
    "estimate_error_p95_s",
    "overtakes",
    "stalls",
    "stalled_listeners",
    "stall_seconds",
    "stall_definition",
    "parts",
    "requests",
    "responses",
    "traffic",
    "proof_of_work",
    "beacons",
    "truthful",
    "timeline",
    "clients",
}
CLIENT_KEYS = {
    "index",
    "outcome",
    "first_queued_s",
    "first_position",
    "first_queue_length",
    "first_estimated_wait_s",
    "first_reason",
    "last_position",
    "admitted_s",
    "actual_wait_s",
    "wait_min_s",
    "wait_max_s",
    "estimate_error_s",
}


def start_demo(data: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Server, str]:
    """A server with its live demo space, once the playlist lists a few parts."""
    server = start_server(data, "--demo", *args, env={**QUIET, **(env or {})})
    match = next(filter(None, map(DEMO_LINE.search, server.stdout_lines)), None)
    assert match is not None, server.stdout_lines
    space = match.group(1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        playlist = httpx.get(f"{server.url}/hls/{space}/live.m3u8", timeout=10)
        if playlist.status_code == 200 and playlist.text.count("#EXT-X-PART:") >= 4:
            return server, space
        time.sleep(0.2)
    server.stop()
    raise AssertionError("the demo space's playlist never listed parts")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    server, space = start_demo(tmp_path_factory.mktemp("load") / "data")
    yield server, space
    server.stop()


def assert_clean(report: dict[str, Any]) -> None:
    assert report["unexplained_errors"] == 0, report["unexplained_samples"]
    assert report["truthful"]["ok"], report["truthful"]


def test_storm_on_an_open_space_lets_everyone_in_and_measures_them(
    demo: tuple[Server, str],
) -> None:
    server, space = demo
    plan = StormPlan(
        server.url,
        space,
        listeners=200,
        over_s=2.0,
        duration_s=3.0,
        source_network="127.1.0.0/16",
    )
    report = asyncio.run(join_storm(plan))

    assert report.keys() >= STORM_KEYS
    assert_clean(report)
    assert report["admitted"] == 200, report["outcomes"]
    assert report["queued"] == 0
    assert report["refused_with_reason"] == {}
    assert report["ttfa_count"] == 200
    assert report["admitted_without_audio"] == 0
    assert 0 < report["ttfa_p50_s"] <= report["ttfa_p95_s"] <= report["ttfa_p99_s"]
    assert report["parts"] >= 200
    requests = report["requests"]
    assert requests["join"] >= 200
    assert requests["state"] >= 200
    assert requests["init"] == 200  # once per listener
    assert requests["playlist"] > 0
    checks = report["truthful"]["by_check"]
    assert checks["admitted_is_live"]["checked"] == 200
    assert checks["state_has_capacity"]["failed"] == 0
    timeline = report["timeline"]
    assert sum(row["arrivals"] for row in timeline) == 200
    assert sum(row["admitted"] for row in timeline) == 200
    assert sum(row["first_audio"] for row in timeline) == 200
    assert all(client.keys() >= CLIENT_KEYS for client in report["clients"])
    json.dumps(report)  # the whole report is JSON


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "load", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_json_and_fails_on_unexplained_errors(demo: tuple[Server, str]) -> None:
    server, space = demo
    common = ["--server", server.url, "--listeners", "20", "--over", "1", "--duration", "2"]
    done = run_cli("join-storm", *common, "--space", space, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["admitted"] == 20
    assert {"admitted", "queued", "refused_with_reason", "unexplained_errors"} <= report.keys()
    assert {"ttfa_p50_s", "ttfa_p95_s"} <= report.keys()

    # A space that does not exist: the 404s are outside the join contract.
    missing = run_cli("join-storm", *common, "--space", "nosuchspace")
    assert missing.returncode == 1
    assert "unexplained errors: 20" in missing.stdout
    assert "404" in missing.stdout

    refused = run_cli("join-storm", *common, "--space", space, "--listeners", "100001")
    assert refused.returncode == 1
    assert "listeners must be between 1 and 100000" in refused.stderr


def test_the_report_says_when_one_source_address_met_the_per_address_limit(
    tmp_path: Path,
) -> None:
    """Rehearsing on one machine without --source-network, the whole crowd is one client
    address: the per-address join limit refuses most of it, and the report says so in
    words, with the way out. Spread over a network, the same crowd meets no such limit."""
    server, space = start_demo(
        tmp_path / "data", env={"PODIUM_JOIN_BURST": "5", "PODIUM_JOIN_PER_SECOND": "0.5"}
    )
    try:
        common: dict[str, Any] = {
            "listeners": 30,
            "over_s": 1.0,
            "duration_s": 1.0,
            "retry": RetryPolicy(attempts=1),
        }
        alone = asyncio.run(join_storm(StormPlan(server.url, space, **common)))
        spread = asyncio.run(
            join_storm(StormPlan(server.url, space, source_network="127.6.0.0/16", **common))
        )
    finally:
        server.stop()

    assert_clean(alone)
    assert alone["refused_with_scope"]["address"] >= 20, alone["refused_with_reason"]
    assert alone["gave_up_with_reason"]["rate_limited"] >= 20
    text = render_storm(alone)
    assert "per-address join limit" in text
    assert "all 30 listeners of this run came from one source address" in text
    assert "--source-network" in text
    assert "not a failing server" in text

    assert_clean(spread)
    assert spread["admitted"] == 30, spread["outcomes"]
    assert spread["refused_with_scope"] == {}
    assert spread["notes"] == []
    assert "per-address" not in render_storm(spread)


def test_storm_beyond_capacity_gets_an_honest_fair_queue(tmp_path: Path) -> None:
    """120 listeners in 2 s at a space that admits 10 a second and seats 40: 6 times the
    join rate and 3 times the capacity.

    Everyone ends admitted or holding a queue position; exactly the 60 seats are given;
    admission keeps queue order and the join rate; and the first estimated wait of each
    listener admitted from the queue lies within 1 s plus a quarter of the estimate of
    the interval its real wait lies in (``estimate_error_s``, see
    :mod:`podium.clients.loadreport`: answer latency widens that interval rather than
    counting as error; the slack is the poll spread and the generator's own timer lag).
    """
    seats, rate, listeners = 40, 10.0, 120
    server, space = start_demo(
        tmp_path / "data", "--max-listeners", str(seats), "--max-join-rate", str(rate)
    )
    try:
        plan = StormPlan(
            server.url,
            space,
            listeners=listeners,
            over_s=2.0,
            duration_s=3.0,
            max_wait_s=15.0,
            source_network="127.2.0.0/16",
            order_tolerance_s=2.0,
        )
        report = asyncio.run(join_storm(plan))
    finally:
        server.stop()

    assert_clean(report)
    assert report["admitted"] == seats, report["outcomes"]
    assert report["still_queued"] == listeners - seats, report["outcomes"]
    assert report["queued"] >= listeners - seats

    clients = report["clients"]
    assert all(c["first_reason"] in QUEUE_REASONS - {"pre_start"} for c in clients)
    for client in clients:
        if client["outcome"] == "queued":
            # Still waiting at the end, with a place in a line no longer than the crowd.
            assert 1 <= client["last_position"] <= listeners - seats, client
        assert client["first_position"] <= client["first_queue_length"], client

    # Queue order: nobody admitted (2 s tolerance) before someone who queued earlier.
    assert report["overtakes"] == 0
    # The join rate: 40 admissions at 10/s with a burst of 10 span at least 3 s; allow
    # for polls seeing their admission up to a second late.
    span = report["admitted_last_s"] - report["admitted_first_s"]
    assert span >= (seats - rate) / rate - 1.0, span

    compared = [
        c for c in clients if c["actual_wait_s"] is not None and c["first_estimated_wait_s"]
    ]
    assert len(compared) >= 10
    for client in compared:
        error, estimate = client["estimate_error_s"], client["first_estimated_wait_s"]
        assert error <= 1.0 + 0.25 * estimate, client


def test_listeners_solve_proofs_of_work_and_beacon(tmp_path: Path) -> None:
    """With proof of work always on, every listener solves its challenge (with hashlib;
    the server checks it) and gets in; listening past ``beacon_every_s`` (15 s), each
    beacons and the server accepts the beacons."""
    server, space = start_demo(
        tmp_path / "data", "--join-pow", "on", env={"PODIUM_POW_DIFFICULTY": "12"}
    )
    try:
        plan = StormPlan(
            server.url,
            space,
            listeners=10,
            over_s=1.0,
            duration_s=18.0,
            source_network="127.5.0.0/16",
        )
        report = asyncio.run(join_storm(plan))
    finally:
        server.stop()

    assert_clean(report)
    assert report["admitted"] == 10, report["outcomes"]
    work = report["proof_of_work"]
    assert work["challenges"] >= 10
    assert work["solved"] == work["challenges"]
    assert work["hashes"] >= work["solved"]
    assert report["responses"]["428"] == work["challenges"]
    beacons = report["beacons"]
    assert beacons["sent"] >= 10
    assert beacons["accepted"] == beacons["sent"]


def test_storm_before_a_scheduled_start_waits_in_the_pre_queue(tmp_path: Path) -> None:
    """Listeners arriving before a scheduled space starts are queued for ``pre_start``
    (no position, a scheduled space in the room state), and all get in once it starts."""
    server = start_server(tmp_path / "data", "--max-join-rate", "20", env=QUIET)
    try:
        with server.client(server.owner_token) as api:
            soon = datetime.now(UTC) + timedelta(minutes=5)
            created = api.post(
                "/api/v1/spaces",
                json={"title": "Soon", "scheduled_start": soon.isoformat()},
            )
            assert created.status_code == 201, created.text
            space = created.json()["id"]

        async def storm_then_start() -> dict[str, Any]:
            plan = StormPlan(
                server.url,
                space,
                listeners=40,
                over_s=1.0,
                duration_s=2.0,
                max_wait_s=30.0,
                source_network="127.4.0.0/16",
            )
            storm = asyncio.create_task(join_storm(plan))
            await asyncio.sleep(3.0)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
                started = await api.post(
                    f"/api/v1/spaces/{space}/start",
                    headers={"Authorization": f"Bearer {server.owner_token}"},
                )
                assert started.status_code == 200, started.text
            return await storm

        report = asyncio.run(storm_then_start())
    finally:
        server.stop()

    assert_clean(report)
    assert report["queued"] == 40
    assert report["admitted"] == 40, report["outcomes"]
    assert report["ttfa_count"] == 40
    assert all(c["first_reason"] == "pre_start" for c in report["clients"])
    assert all(c["first_position"] is None for c in report["clients"])
    assert report["truthful"]["by_check"]["queued_space_open"] == {"checked": 40, "failed": 0}


def test_flood_is_answered_and_joiners_still_get_in(tmp_path: Path) -> None:
    """Junk at 120 requests a second, with a small crowd joining at the same time.

    The server's per-address join limit is lowered so that the hammering address meets
    it, and its header and body timeouts so that slow requests are cut off within the
    flood's patience.
    """
    server, space = start_demo(
        tmp_path / "data",
        env={
            "PODIUM_JOIN_BURST": "10",
            "PODIUM_JOIN_PER_SECOND": "2",
            "PODIUM_HEADER_TIMEOUT_S": "1",
            "PODIUM_BODY_TIMEOUT_S": "1",
        },
    )
    try:

        async def both() -> tuple[dict[str, Any], dict[str, Any]]:
            attack = flood(FloodPlan(server.url, space, rate=120.0, duration_s=3.0, slow_s=4.0))
            crowd = join_storm(
                StormPlan(
                    server.url,
                    space,
                    listeners=30,
                    over_s=3.0,
                    duration_s=2.0,
                    source_network="127.3.0.0/16",
                )
            )
            return await asyncio.gather(attack, crowd)

        attacked, joined = asyncio.run(both())
    finally:
        server.stop()

    assert attacked["unexplained_errors"] == 0, attacked["unexplained_samples"]
    assert attacked["sent"] >= 150
    patterns = attacked["by_pattern"]
    assert set(patterns["forged_ticket"]) <= {"401", "429"}
    assert set(patterns["tampered_ticket"]) <= {"401", "429"}
    assert set(patterns["unknown_path"]) <= {"404", "429"}
    assert set(patterns["path_trick"]) <= {"400", "404", "414", "429", "431"}
    assert set(patterns["oversized_body"]) <= {"413", "429", "no answer (closed)"}
    assert "429" in patterns["join_hammer"]
    assert attacked["reasons"]["rate_limited"] > 0
    assert attacked["held_open"] == 0  # slow requests were cut off
    assert "did not cut off within 4 s: 0 " in render_flood(attacked)

    assert_clean(joined)
    assert joined["admitted"] + joined["still_queued"] == 30, joined["outcomes"]
