"""How many edges, how much bandwidth and how many requests a crowd of N listeners needs.

Pure arithmetic over figures the benchmarks measured (:data:`MEASURED`, each with where
it came from) and assumptions an operator may change (:class:`Assumptions`); no I/O.
``podium capacity`` prints the result with every assumption, so a plan can be checked
against the machines it will run on.

The model, per listener following the live edge with LL-HLS (8216bis blocking reload):

* requests: one blocking playlist reload and one part per part duration, the room state
  (a long poll answered at most once a second), a beacon every ``beacon_every_s`` (the
  only request that is not cacheable: it passes through to the origin);
* bytes: the audio at its bitrate times the fMP4 container's overhead, a compressed
  delta playlist per reload, the room state, and the HTTP heads of every request;
* an edge core serves a measured number of requests per second; an edge is also bounded
  by its network interface; neither is planned past ``utilisation`` of it;
* edges fetch each object once from a shield tier, and shields once from the origin,
  so the origin's cacheable load depends on the number of shields, never on N.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from podium.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Figure:
    """A measured number and where it comes from."""

    value: float
    source: str


@dataclass(frozen=True, slots=True)
class Measured:
    """Per-core and per-object figures from ``bench/`` (see bench/README.md)."""

    edge_requests_per_core_s: Figure = Figure(
        15_000,
        "bench/edge_cpu.py: Varnish 7.1 on one core of a shared 2-vCPU Xeon VM, 300 LL-HLS "
        "listeners at 256 ms parts, load generator on the other core (two runs: 14,577 "
        "and 17,147 requests per core-second)",
    )
    container_overhead: Figure = Figure(
        1.16,
        "bench/wire_bytes.py: fMP4 part bytes / AAC payload at 64 kbit/s, 256 ms parts",
    )
    playlist_bytes: Figure = Figure(
        488,
        "bench/wire_bytes.py: body of a gzip'd delta-update playlist (_HLS_skip=YES) from Varnish",
    )
    state_bytes: Figure = Figure(
        575,
        "bench/wire_bytes.py: the room state from Varnish, gzip'd, a one-speaker stage",
    )
    head_bytes: Figure = Figure(
        424,
        "bench/wire_bytes.py: request head + response head per request, HTTP/1.1 through Varnish",
    )

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(figure) for name, figure in _figures(self)}


MEASURED = Measured()


def _figures(measured: Measured) -> list[tuple[str, Figure]]:
    return [(name, getattr(measured, name)) for name in Measured.__dataclass_fields__]


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What the plan assumes about the machines and the clients; change to fit."""

    edge_cores: int = 16
    edge_gbps: float = 10.0
    utilisation: float = 0.6
    state_requests_per_s: float = 1.0
    beacon_every_s: float = 15.0
    edges_per_shield: int = 200
    min_shields: int = 2

    def __post_init__(self) -> None:
        if self.edge_cores < 1 or self.edge_gbps <= 0 or self.edges_per_shield < 1:
            raise InvalidInput("edge cores, edge bandwidth and edges per shield must be positive")
        if not 0 < self.utilisation <= 1:
            raise InvalidInput("utilisation must be in (0, 1]")
        if self.state_requests_per_s < 0 or self.beacon_every_s <= 0 or self.min_shields < 1:
            raise InvalidInput("state rate >= 0, beacon interval > 0 and min shields >= 1")


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``listeners`` need. Rates per second, bandwidth in bits per second."""

    listeners: int
    part_s: float
    bitrate: int
    requests_per_listener: float
    bytes_per_listener: float
    edge_requests: float
    egress_bps: float
    edge_cores: float
    edges_for_cpu: int
    edges_for_bandwidth: int
    edges: int
    shields: int
    origin_cacheable_requests: float
    origin_beacons: float
    assumptions: Assumptions = field(default_factory=Assumptions)
    measured: Measured = field(default_factory=Measured)

    @property
    def overhead(self) -> float:
        """Wire bytes per listener-second over the audio payload."""
        return self.bytes_per_listener * 8 / self.bitrate

    def to_json(self) -> dict[str, Any]:
        document = {
            name: getattr(self, name)
            for name in Plan.__dataclass_fields__
            if name not in ("assumptions", "measured")
        }
        document["overhead"] = self.overhead
        document["assumptions"] = asdict(self.assumptions)
        document["measured"] = self.measured.to_json()
        return document


def plan(
    listeners: int,
    part_ms: float,
    bitrate: int,
    assumptions: Assumptions | None = None,
    measured: Measured = MEASURED,
) -> Plan:
    """The edges, shields, bandwidth and request rates for ``listeners``.

    Raises:
        InvalidInput: for a count, part duration or bitrate that makes no sense.
    """
    if listeners < 1:
        raise InvalidInput("--listeners must be at least 1")
    if not 20 <= part_ms <= 20_000:
        raise InvalidInput("--part-ms must be between 20 and 20000")
    if not 8_000 <= bitrate <= 2_000_000:
        raise InvalidInput("--bitrate must be between 8 kbit/s and 2 Mbit/s")
    assumed = assumptions or Assumptions()
    part_s = part_ms / 1000
    reloads = 1 / part_s
    beacons = 1 / assumed.beacon_every_s
    per_listener = 2 * reloads + assumed.state_requests_per_s + beacons
    per_listener_bytes = (
        bitrate / 8 * measured.container_overhead.value
        + reloads * measured.playlist_bytes.value
        + assumed.state_requests_per_s * measured.state_bytes.value
        + per_listener * measured.head_bytes.value
    )
    edge_requests = listeners * per_listener
    egress = listeners * per_listener_bytes * 8
    cores = edge_requests / (measured.edge_requests_per_core_s.value * assumed.utilisation)
    for_cpu = math.ceil(cores / assumed.edge_cores)
    for_bandwidth = math.ceil(egress / (assumed.edge_gbps * 1e9 * assumed.utilisation))
    edges = max(1, for_cpu, for_bandwidth)
    shields = max(assumed.min_shields, math.ceil(edges / assumed.edges_per_shield))
    # Each shield asks the origin once per object: a reload and a part per part, the
    # state once a second.
    origin_cacheable = shields * (2 * reloads + assumed.state_requests_per_s)
    return Plan(
        listeners=listeners,
        part_s=part_s,
        bitrate=bitrate,
        requests_per_listener=per_listener,
        bytes_per_listener=per_listener_bytes,
        edge_requests=edge_requests,
        egress_bps=egress,
        edge_cores=cores,
        edges_for_cpu=for_cpu,
        edges_for_bandwidth=for_bandwidth,
        edges=edges,
        shields=shields,
        origin_cacheable_requests=origin_cacheable,
        origin_beacons=listeners * beacons,
        assumptions=assumed,
        measured=measured,
    )


def parse_bitrate(text: str) -> int:
    """``64000``, ``64k``, ``64kbit``, ``0.128M`` -> bits per second."""
    value = text.strip().lower().removesuffix("bit/s").removesuffix("bps").removesuffix("bit")
    scale = 1
    if value.endswith("k"):
        value, scale = value[:-1], 1000
    elif value.endswith("m"):
        value, scale = value[:-1], 1_000_000
    try:
        number = float(value) * scale
    except ValueError:
        raise InvalidInput(f"cannot read the bitrate {text!r} (say 64k or 64000)") from None
    if not math.isfinite(number):
        raise InvalidInput(f"cannot read the bitrate {text!r} (say 64k or 64000)")
    return round(number)


def render(result: Plan) -> str:
    """The plan as text, assumptions and measured figures included."""
    assumed = result.assumptions
    lines = [
        f"Capacity for {result.listeners:,} listeners, {result.part_s * 1000:g} ms parts, "
        f"{result.bitrate / 1000:g} kbit/s audio",
        "",
        f"  edges                   {result.edges:,}  "
        f"({result.edges_for_cpu:,} for CPU, {result.edges_for_bandwidth:,} for bandwidth; "
        f"{assumed.edge_cores} cores and {assumed.edge_gbps:g} Gbit/s each)",
        f"  edge cores busy         {result.edge_cores:,.0f}  "
        f"(at {assumed.utilisation:.0%} utilisation)",
        f"  shields                 {result.shields:,}",
        f"  requests at the edges   {result.edge_requests:,.0f}/s  "
        f"({result.requests_per_listener:.2f}/s per listener)",
        f"  egress                  {_bits(result.egress_bps)}  "
        f"({result.bytes_per_listener * 8 / 1000:.1f} kbit/s per listener, "
        f"{result.overhead:.2f}x the audio)",
        f"  origin, cacheable       {result.origin_cacheable_requests:,.1f} requests/s "
        f"(from the shields; the same at any N)",
        f"  origin, beacons         {result.origin_beacons:,.0f} requests/s  "
        f"(one per listener every {assumed.beacon_every_s:g} s: not cacheable)",
        "",
        "Assumptions:",
        f"  per listener: a blocking playlist reload and a part every part duration, the "
        f"room state {assumed.state_requests_per_s:g}/s, a beacon every "
        f"{assumed.beacon_every_s:g} s",
        f"  an edge: {assumed.edge_cores} cores, {assumed.edge_gbps:g} Gbit/s, planned to "
        f"{assumed.utilisation:.0%}; a shield per {assumed.edges_per_shield} edges, at "
        f"least {assumed.min_shields}",
        "Measured figures:",
    ]
    for name, figure in _figures(result.measured):
        lines.append(f"  {name} = {figure.value:g}: {figure.source}")
    return "\n".join(lines) + "\n"


def _bits(bps: float) -> str:
    for unit, scale in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6)):
        if bps >= scale:
            return f"{bps / scale:,.2f} {unit}"
    return f"{bps / 1e3:,.1f} kbit/s"
