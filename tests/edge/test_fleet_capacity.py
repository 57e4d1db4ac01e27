"""`podium capacity`'s web tier: the arithmetic worked by hand, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from podium.edge.capacity import Figure
from podium.edge.fleetcapacity import FleetAssumptions, MeasuredFleet, plan_fleet
from podium.errors import InvalidInput

ROUND = MeasuredFleet(
    joins_per_core_s=Figure(1000, "by hand"),
    beacons_per_core_s=Figure(4000, "by hand"),
    redis_commands_per_join=Figure(2, "by hand"),
    redis_commands_per_beacon=Figure(1, "by hand"),
    postgres_tx_per_join=Figure(0.01, "by hand"),
    postgres_tx_per_beacon=Figure(0.005, "by hand"),
)


def test_the_model_worked_by_hand() -> None:
    # A million in ten minutes: 1,666.7 joins/s; 66,666.7 beacons/s (every 15 s).
    assumed = FleetAssumptions(join_window_s=600, web_cores=8, utilisation=0.5)
    plan = plan_fleet(1_000_000, assumed, ROUND)
    assert plan.joins_per_s == pytest.approx(1666.67, abs=0.01)
    assert plan.beacons_per_s == pytest.approx(66666.67, abs=0.01)
    # (1.667 + 16.667 cores) / 0.5 = 36.67 cores: 5 nodes of 8.
    assert plan.web_cores == pytest.approx(36.67, abs=0.01)
    assert plan.web_nodes == 5
    assert plan.redis_commands_per_s == pytest.approx(2 * 1666.67 + 66666.67, abs=0.1)
    assert plan.redis_instances == 1
    assert plan.postgres_tx_per_s == pytest.approx(16.667 + 333.33, abs=0.01)


def test_a_small_crowd_still_gets_two_web_nodes() -> None:
    assert plan_fleet(10, measured=ROUND).web_nodes == 2


@pytest.mark.parametrize(
    "call",
    [
        lambda: plan_fleet(0),
        lambda: FleetAssumptions(join_window_s=0),
        lambda: FleetAssumptions(web_cores=0),
        lambda: FleetAssumptions(utilisation=1.5),
    ],
)
def test_nonsense_is_refused(call: object) -> None:
    with pytest.raises(InvalidInput):
        call()  # type: ignore[operator]


def test_the_command_prints_the_web_tier_with_its_assumptions() -> None:
    def capacity(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "podium", "capacity", "--listeners", "1000000", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    printed = capacity("--join-window", "600", "--web-cores", "16")
    assert printed.returncode == 0, printed.stderr
    assert "Web tier for 1,000,000 listeners joining within 600 s" in printed.stdout
    assert "16 cores each" in printed.stdout
    assert "beacons_per_core_s" in printed.stdout  # every figure says where it came from
    document = json.loads(capacity("--json").stdout)
    assert document["fleet"]["web_nodes"] >= 2
    assert document["fleet"]["assumptions"]["join_window_s"] == 600
    refused = capacity("--join-window", "0")
    assert refused.returncode != 0
    assert "--join-window" in refused.stderr
