"""How many web nodes, and how much Redis and PostgreSQL, a crowd's joins and beacons need.

Pure arithmetic, like :mod:`podium.edge.capacity` (which plans the edges): N listeners
arriving within a join window make ``N / window`` joins a second, and once in, one
beacon each every ``beacon_every_s``. What a web node's core carries and what each action
asks of Redis and PostgreSQL are figures ``bench/fleet_join_rate.py`` measured
(:data:`MEASURED_FLEET`, each with where it came from); what one Redis and one
PostgreSQL can take, and the machines, are assumptions an operator changes to fit.
Listening itself costs the web tier nothing that grows with N: edges serve it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from podium.edge.capacity import Figure
from podium.errors import InvalidInput

_BENCH = "bench/fleet_join_rate.py, 2-vCPU VM, PostgreSQL 15 and Redis 7 on the same machine"


@dataclass(frozen=True, slots=True)
class MeasuredFleet:
    joins_per_core_s: Figure = Figure(
        2_170, f"{_BENCH}: tickets issued per CPU-second of a fleet node (median of 3 rounds)"
    )
    beacons_per_core_s: Figure = Figure(
        1_689,
        f"{_BENCH}: beacons accepted per CPU-second of a fleet node (1,500 sent one after"
        " another, the node's idle work taken off)",
    )
    redis_commands_per_join: Figure = Figure(
        2.05,
        f"{_BENCH}: 1.05 commands per join (the per-address limit, the audience's"
        " pipelines), plus the admission script (one call) when the space has limits",
    )
    redis_commands_per_beacon: Figure = Figure(1.02, f"{_BENCH}: commands per beacon")
    postgres_tx_per_join: Figure = Figure(0.007, f"{_BENCH}: transactions per join")
    postgres_tx_per_beacon: Figure = Figure(0.005, f"{_BENCH}: transactions per beacon")

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(getattr(self, name)) for name in MeasuredFleet.__dataclass_fields__}


MEASURED_FLEET = MeasuredFleet()


@dataclass(frozen=True, slots=True)
class FleetAssumptions:
    join_window_s: float = 600.0
    beacon_every_s: float = 15.0
    web_cores: int = 8
    utilisation: float = 0.6
    # One Redis is one thread: short commands and scripts, planned well below its limit.
    redis_commands_per_s: float = 100_000.0
    postgres_tx_per_s: float = 5_000.0

    def __post_init__(self) -> None:
        if self.join_window_s <= 0 or self.beacon_every_s <= 0:
            raise InvalidInput("--join-window and the beacon interval must be positive")
        if self.web_cores < 1 or not 0 < self.utilisation <= 1:
            raise InvalidInput("--web-cores must be at least 1, utilisation in (0, 1]")
        if self.redis_commands_per_s <= 0 or self.postgres_tx_per_s <= 0:
            raise InvalidInput("Redis and PostgreSQL capacities must be positive")


@dataclass(frozen=True, slots=True)
class FleetPlan:
    listeners: int
    joins_per_s: float
    beacons_per_s: float
    web_cores: float
    web_nodes: int
    redis_commands_per_s: float
    redis_instances: int
    postgres_tx_per_s: float
    assumptions: FleetAssumptions = field(default_factory=FleetAssumptions)
    measured: MeasuredFleet = field(default_factory=MeasuredFleet)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            name: getattr(self, name)
            for name in FleetPlan.__dataclass_fields__
            if name not in ("assumptions", "measured")
        }
        document["assumptions"] = asdict(self.assumptions)
        document["measured"] = self.measured.to_json()
        return document


def plan_fleet(
    listeners: int,
    assumptions: FleetAssumptions | None = None,
    measured: MeasuredFleet = MEASURED_FLEET,
) -> FleetPlan:
    """The web tier and shared services for ``listeners`` joining within the window."""
    if listeners < 1:
        raise InvalidInput("--listeners must be at least 1")
    assumed = assumptions or FleetAssumptions()
    joins = listeners / assumed.join_window_s
    beacons = listeners / assumed.beacon_every_s
    cores = (
        joins / measured.joins_per_core_s.value + beacons / measured.beacons_per_core_s.value
    ) / assumed.utilisation
    # Two at least: one machine is one failure from a dead room.
    nodes = max(2, math.ceil(cores / assumed.web_cores))
    redis_load = (
        joins * measured.redis_commands_per_join.value
        + beacons * measured.redis_commands_per_beacon.value
    )
    postgres = (
        joins * measured.postgres_tx_per_join.value
        + beacons * measured.postgres_tx_per_beacon.value
    )
    return FleetPlan(
        listeners=listeners,
        joins_per_s=joins,
        beacons_per_s=beacons,
        web_cores=cores,
        web_nodes=nodes,
        redis_commands_per_s=redis_load,
        redis_instances=max(1, math.ceil(redis_load / assumed.redis_commands_per_s)),
        postgres_tx_per_s=postgres,
        assumptions=assumed,
        measured=measured,
    )


def render_fleet(result: FleetPlan) -> str:
    assumed = result.assumptions
    redis_share = result.redis_commands_per_s / assumed.redis_commands_per_s
    postgres_share = result.postgres_tx_per_s / assumed.postgres_tx_per_s
    lines = [
        f"Web tier for {result.listeners:,} listeners joining within {assumed.join_window_s:g} s",
        "",
        f"  joins                   {result.joins_per_s:,.0f}/s",
        f"  beacons                 {result.beacons_per_s:,.0f}/s  "
        f"(one per listener every {assumed.beacon_every_s:g} s)",
        f"  web nodes               {result.web_nodes:,}  "
        f"({result.web_cores:,.1f} cores at {assumed.utilisation:.0%}, "
        f"{assumed.web_cores} cores each; two at least)",
        f"  Redis                   {result.redis_commands_per_s:,.0f} commands/s  "
        f"({redis_share:.0%} of one instance; {result.redis_instances} needed)",
        f"  PostgreSQL              {result.postgres_tx_per_s:,.0f} transactions/s  "
        f"({postgres_share:.0%} of the assumed capacity)",
        "",
        "Assumptions:",
        f"  a web node: {assumed.web_cores} cores, planned to {assumed.utilisation:.0%}; "
        f"one Redis takes {assumed.redis_commands_per_s:,.0f} commands/s, PostgreSQL "
        f"{assumed.postgres_tx_per_s:,.0f} transactions/s (check yours)",
        "Measured figures:",
    ]
    for name in MeasuredFleet.__dataclass_fields__:
        figure: Figure = getattr(result.measured, name)
        lines.append(f"  {name} = {figure.value:g}: {figure.source}")
    return "\n".join(lines) + "\n"
