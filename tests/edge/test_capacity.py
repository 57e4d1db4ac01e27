"""The capacity model: arithmetic over measured figures, and the command that prints it."""

from __future__ import annotations

import json
import subprocess

import pytest

from harness import PODIUM
from podium.edge.capacity import (
    MEASURED,
    Assumptions,
    Figure,
    Measured,
    parse_bitrate,
    plan,
    render,
)
from podium.errors import InvalidInput

# Round figures, so that the expected numbers can be worked out by hand.
ROUND = Measured(
    edge_requests_per_core_s=Figure(10_000, "test"),
    container_overhead=Figure(1.0, "test"),
    playlist_bytes=Figure(500, "test"),
    state_bytes=Figure(400, "test"),
    head_bytes=Figure(100, "test"),
)
SIMPLE = Assumptions(
    edge_cores=10,
    edge_gbps=1.0,
    utilisation=0.5,
    state_requests_per_s=1.0,
    beacon_every_s=10.0,
    edges_per_shield=100,
    min_shields=2,
)


def test_the_model_worked_by_hand() -> None:
    result = plan(1_000_000, 250, 64_000, SIMPLE, ROUND)
    # Per listener: 4 reloads + 4 parts + 1 state + 0.1 beacon = 9.1 requests a second.
    assert result.requests_per_listener == pytest.approx(9.1)
    # 8000 B of audio + 4 x 500 playlist + 400 state + 9.1 x 100 heads = 11 310 B/s.
    assert result.bytes_per_listener == pytest.approx(11_310)
    assert result.edge_requests == pytest.approx(9_100_000)
    # 9.1 M requests/s at 10 000 per core, planned to half load: 1820 cores, 182 edges.
    assert result.edge_cores == pytest.approx(1820)
    assert result.edges_for_cpu == 182
    # 90.48 Gbit/s of egress at 0.5 Gbit/s usable per edge: 181 edges.
    assert result.egress_bps == pytest.approx(90.48e9)
    assert result.edges_for_bandwidth == 181
    assert result.edges == 182
    assert result.shields == 2
    assert result.origin_cacheable_requests == pytest.approx(2 * (8 + 1))
    assert result.origin_beacons == pytest.approx(100_000)
    assert result.overhead == pytest.approx(11_310 * 8 / 64_000)


def test_the_origin_sees_the_shields_not_the_crowd() -> None:
    small, large = plan(1_000, 256, 64_000), plan(8_000_000, 256, 64_000)
    assert large.edges > 100 * small.edges
    assert large.origin_cacheable_requests <= 5 * small.origin_cacheable_requests
    assert small.origin_cacheable_requests == pytest.approx(
        small.shields * (2 / 0.256 + 1), rel=1e-9
    )


def test_shorter_parts_cost_requests() -> None:
    short, long = plan(100_000, 128, 64_000), plan(100_000, 1024, 64_000)
    # A reload and a part per part, plus the same state and beacons for both.
    difference = short.requests_per_listener - long.requests_per_listener
    assert difference == pytest.approx(2 / 0.128 - 2 / 1.024)
    assert short.edges >= long.edges
    assert short.bytes_per_listener > long.bytes_per_listener


def test_bandwidth_bounds_the_edges_at_high_bitrates() -> None:
    result = plan(1_000_000, 2000, 1_000_000, Assumptions(edge_gbps=1.0))
    assert result.edges == result.edges_for_bandwidth > result.edges_for_cpu


@pytest.mark.parametrize(
    ("text", "bits"),
    [("64000", 64_000), ("64k", 64_000), ("96kbit", 96_000), ("0.128M", 128_000)],
)
def test_bitrates_are_read_in_the_usual_spellings(text: str, bits: int) -> None:
    assert parse_bitrate(text) == bits


@pytest.mark.parametrize(
    "call",
    [
        lambda: plan(0, 256, 64_000),
        lambda: plan(10, 5, 64_000),
        lambda: plan(10, 256, 100),
        lambda: parse_bitrate("fast"),
        lambda: parse_bitrate("nan"),
        lambda: Assumptions(utilisation=1.5),
        lambda: Assumptions(edge_cores=0),
    ],
)
def test_nonsense_is_refused(call: object) -> None:
    with pytest.raises(InvalidInput):
        call()  # type: ignore[operator]


def test_every_measured_figure_says_where_it_comes_from() -> None:
    text = render(plan(8_000_000, 256, 64_000))
    for name in Measured.__dataclass_fields__:
        figure = getattr(MEASURED, name)
        assert figure.value > 0
        assert figure.source.startswith("bench/")
        assert f"{name} = {figure.value:g}: {figure.source}" in text
    assert "Assumptions:" in text


def test_capacity_command_prints_the_plan_and_refuses_nonsense() -> None:
    command = [*PODIUM, "capacity", "--listeners", "8000000", "--part-ms", "256"]
    text = subprocess.run(
        [*command, "--bitrate", "64k"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert text.startswith("Capacity for 8,000,000 listeners, 256 ms parts, 64 kbit/s audio")
    assert "Measured figures:" in text
    document = json.loads(
        subprocess.run(
            [*command, "--json"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
    )
    assert document["edges"] == plan(8_000_000, 256, 64_000).edges
    assert document["measured"]["edge_requests_per_core_s"]["source"].startswith("bench/")
    refused = subprocess.run(
        [*PODIUM, "capacity", "--listeners", "-3"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert "--listeners must be at least 1" in refused.stderr
