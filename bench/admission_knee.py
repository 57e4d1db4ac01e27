"""The capacity at which admission starts to queue on this machine: the health guard's knee.

Issue 6 asks for "the capacity at which admission starts to queue on this machine". With
no ``--max-listeners`` and no ``--max-join-rate`` the only thing that queues a live join
is the node's health guard (:mod:`podium.control.health`): when the web process's event
loop runs late (or its CPU is pinned while the loop starts to run late) it answers new
joins ``202 queued`` with reason ``overload`` before the people already in feel it. This
benchmark finds the arrival rate, and the number of listeners already in, at which that
happens. It measures, prints a table and asserts nothing.

A ramp of steps, each against a **fresh** ``podium serve`` (so no hysteresis, queue or
audience carries over from the step before) with one space taken live through the API
and no speaker (the program is silence; the demo speaker would run its WebRTC stack in
the web process and be counted as join cost). The health guard keeps its **defaults**
(no ``PODIUM_SHED_*`` settings: 250 ms of loop lag, 95 % of a core), no admission
limits; proof of work is off (``PODIUM_JOIN_POW=off``; ``--join-pow auto`` keeps the
default rule, which asks for it above 200 arrivals a second).

In each step ``podium load``'s join storm (:func:`podium.clients.load.join_storm`)
sends ``rate x --step-seconds`` listeners arriving evenly, from the addresses of
127.0.0.0/16 in turn (so the per-address limit never answers). Each listener joins,
fetches the room state, follows the LL-HLS playlist and beacons for ``--listen-seconds``;
a queued one asks again when told and leaves the line after ``--max-wait`` seconds.
Meanwhile a thread scrapes ``/metrics`` and the room state every ``--sample-every``
seconds: ``podium_admission_shedding``, ``podium_event_loop_lag_seconds``,
``podium_web_cpu_ratio``, ``podium_join_arrivals_per_second`` and the server's own count
of listeners. The web process's CPU time is also read from ``/proc`` around the step.

Per step: arrivals a second, admitted, queued (by the reason of the first ``202``),
refusals (429/503, by reason), unexplained errors, time to first audio p50/p95, loop lag
and CPU (peak and median of the samples), when shedding first showed and how many
listeners the server counted then. The **knee** is the first step with joins queued for
``overload``; the ramp goes ``--beyond`` steps past it and stops.

Everything shares the machine: the server, its media worker and the simulated crowd
(the generator's own loop lag is reported; past a few tens of milliseconds the crowd,
not the server, is the bottleneck). The knee is a property of this machine with the
crowd on it; on a bigger one, or with the crowd elsewhere, it sits higher.

Run from the repository root::

    .venv/bin/python bench/admission_knee.py [--rates 25,50,100,200,400]
        [--step-seconds 4] [--listen-seconds 6] [--max-wait 8] [--beyond 1]
        [--join-pow off|auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

import join_rate
from join_rate import Process
from podium.clients.load import StormPlan, join_storm

GAUGES = {
    "podium_admission_shedding": "shedding",
    "podium_event_loop_lag_seconds": "lag_s",
    "podium_web_cpu_ratio": "cpu",
    "podium_join_arrivals_per_second": "arrivals_per_s",
}
SOURCE_NETWORK = "127.0.0.0/16"
SETTLE_S = 3.0  # after start: the first parts are made, start-up CPU has passed


# -- the server ----------------------------------------------------------------------------


def start_podium(data: Path, join_pow: str) -> tuple[Process, str]:
    """``podium serve`` with default health guard and no limits, one space live."""
    settings = {"PODIUM_LOG_LEVEL": "warning", "PODIUM_JOIN_POW": join_pow}
    return join_rate.start_podium(data, settings, "Admission knee")


# -- what the server says about itself -----------------------------------------------------


def parse_gauges(text: str) -> dict[str, float]:
    """The gauges of :data:`GAUGES` from a Prometheus text exposition."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in GAUGES:
            found[GAUGES[name]] = float(value)
    return found


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the step's storm began
    shedding: bool
    lag_s: float
    cpu: float
    arrivals_per_s: float
    listeners: int | None  # the room state's capacity.listeners


@dataclass(slots=True)
class Sampler:
    """Scrapes ``/metrics`` and the room state from its own thread, so that the crowd's
    event loop running late does not delay (or thin out) the samples."""

    url: str
    space: str
    every_s: float
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.wait(self.every_s):
                try:
                    gauges = parse_gauges(client.get("/metrics").text)
                    state = client.get(f"/api/v1/spaces/{self.space}/state").json()
                except (httpx.HTTPError, ValueError):
                    self.failures += 1
                    continue
                self.samples.append(
                    Sample(
                        t=time.monotonic() - self.started,
                        shedding=gauges.get("shedding", 0.0) > 0,
                        lag_s=gauges.get("lag_s", 0.0),
                        cpu=gauges.get("cpu", 0.0),
                        arrivals_per_s=gauges.get("arrivals_per_s", 0.0),
                        listeners=(state.get("capacity") or {}).get("listeners"),
                    )
                )


# -- one step ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    rate: float
    listeners: int
    admitted: int
    queued: int
    queued_by_reason: dict[str, int]
    still_queued: int
    refused_with_reason: dict[str, int]
    unexplained: int
    ttfa_p50_s: float | None
    ttfa_p95_s: float | None
    queue_wait_p50_s: float | None
    stalls: int
    generator_lag_p99_s: float | None
    peak_lag_s: float
    median_lag_s: float
    peak_cpu: float
    median_cpu: float
    web_cpu_share: float  # web process CPU s per wall s over the storm, from /proc
    peak_arrivals_per_s: float
    first_shed_s: float | None  # seconds into the storm when shedding first showed
    listeners_at_first_shed: int | None  # the server's count then
    peak_listeners: int | None  # the server's highest count in the step
    samples: int

    @property
    def overloaded(self) -> int:
        return self.queued_by_reason.get("overload", 0)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(
    rate: float, report: dict[str, Any], samples: list[Sample], web_cpu_share: float
) -> Step:
    """One step's row from the storm's report and the server's samples."""
    reasons = Counter(
        str(client["first_reason"]) for client in report["clients"] if client["first_reason"]
    )
    shed = next((s for s in samples if s.shedding), None)
    counts = [s.listeners for s in samples if s.listeners is not None]
    return Step(
        rate=rate,
        listeners=report["listeners"],
        admitted=report["admitted"],
        queued=report["queued"],
        queued_by_reason=dict(sorted(reasons.items())),
        still_queued=report["still_queued"],
        refused_with_reason=report["refused_with_reason"],
        unexplained=report["unexplained_errors"],
        ttfa_p50_s=report["ttfa_p50_s"],
        ttfa_p95_s=report["ttfa_p95_s"],
        queue_wait_p50_s=report["queue_wait_p50_s"],
        stalls=report["stalls"],
        generator_lag_p99_s=report["generator_lag_p99_s"],
        peak_lag_s=max((s.lag_s for s in samples), default=0.0),
        median_lag_s=_median([s.lag_s for s in samples]),
        peak_cpu=max((s.cpu for s in samples), default=0.0),
        median_cpu=_median([s.cpu for s in samples]),
        web_cpu_share=web_cpu_share,
        peak_arrivals_per_s=max((s.arrivals_per_s for s in samples), default=0.0),
        first_shed_s=None if shed is None else round(shed.t, 2),
        listeners_at_first_shed=None if shed is None else shed.listeners,
        peak_listeners=max(counts) if counts else None,
        samples=len(samples),
    )


async def storm(args: argparse.Namespace, podium: Process, space: str, rate: float) -> Step:
    listeners = max(1, round(rate * args.step_seconds))
    sampler = Sampler(podium.url, space, args.sample_every)
    cpu, wall = podium.cpu_seconds(), time.monotonic()
    sampler.start()
    try:
        report = await join_storm(
            StormPlan(
                podium.url,
                space,
                listeners,
                args.step_seconds,
                duration_s=args.listen_seconds,
                max_wait_s=args.max_wait,
                source_network=SOURCE_NETWORK,
                seed=1,
            )
        )
    finally:
        sampler.stop()
    share = (podium.cpu_seconds() - cpu) / (time.monotonic() - wall)
    return summarise(rate, report, sampler.samples, share)


def run_step(args: argparse.Namespace, rate: float) -> Step:
    """One step against a fresh server."""
    with tempfile.TemporaryDirectory(prefix="podium-knee-") as tmp:
        podium, space = start_podium(Path(tmp) / "data", args.join_pow)
        try:
            time.sleep(SETTLE_S)
            return asyncio.run(storm(args, podium, space, rate))
        finally:
            podium.stop()


def knee(steps: list[Step]) -> dict[str, Any] | None:
    """The first step with joins queued for overload, and the step before it."""
    for index, step in enumerate(steps):
        if step.overloaded:
            before = steps[index - 1].rate if index else None
            return {
                "rate": step.rate,
                "last_rate_without": before,
                "first_shed_s": step.first_shed_s,
                "listeners_at_first_shed": step.listeners_at_first_shed,
                "arrivals_until_first_shed": (
                    None if step.first_shed_s is None else round(step.rate * step.first_shed_s)
                ),
            }
    return None


# -- output --------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _reasons(counts: dict[str, int]) -> str:
    return ",".join(f"{k}:{v}" for k, v in counts.items()) or "-"


HEADER = (
    "arr/s  joins  admitted  queued (first reason)  refused  unexpl  ttfa p50/p95 s"
    "  lag peak/med ms  cpu peak/med  web cpu  shed at s  listeners then/peak  gen lag ms"
)


def render_step(step: dict[str, Any]) -> str:
    queued = f"{step['queued']} ({_reasons(step['queued_by_reason'])})"
    shed = "-" if step["first_shed_s"] is None else f"{step['first_shed_s']:.1f}"
    then = step["listeners_at_first_shed"]
    gen = step["generator_lag_p99_s"]
    return (
        f"{step['rate']:>5g}  {step['listeners']:>5}  {step['admitted']:>8}  {queued:<21}"
        f"  {_reasons(step['refused_with_reason']):>7}  {step['unexplained']:>6}"
        f"  {_s(step['ttfa_p50_s']):>5}/{_s(step['ttfa_p95_s']):<6}"
        f"  {step['peak_lag_s'] * 1000:>6.0f}/{step['median_lag_s'] * 1000:<6.0f}"
        f"  {step['peak_cpu']:>5.2f}/{step['median_cpu']:<5.2f}"
        f"  {step['web_cpu_share']:>7.2f}  {shed:>9}"
        f"  {'-' if then is None else then:>9}/{step['peak_listeners'] or 0:<9}"
        f"  {'n/a' if gen is None else f'{gen * 1000:.0f}':>6}"
    )


def render(result: dict[str, Any]) -> str:
    lines = [HEADER, *(render_step(step) for step in result["steps"])]
    found = result["knee"]
    if found is None:
        lines.append("\nno join was queued for overload at any rate tried")
    else:
        below = found["last_rate_without"]
        lines.append(
            f"\nknee: joins first queued for overload at {found['rate']:g} arrivals/s"
            + ("" if below is None else f" (none at {below:g})")
            + f"; shedding began {_s(found['first_shed_s'])} s into the step, after about"
            f" {found['arrivals_until_first_shed']} arrivals, with"
            f" {found['listeners_at_first_shed']} listeners counted by the server"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else "")
    parser.add_argument("--rates", default="25,50,100,200,400", help="arrivals a second")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="arrivals last this")
    parser.add_argument("--listen-seconds", type=float, default=6.0)
    parser.add_argument("--max-wait", type=float, default=8.0, help="a queued listener leaves")
    parser.add_argument("--beyond", type=int, default=1, help="steps to run past the knee")
    parser.add_argument("--sample-every", type=float, default=0.5)
    parser.add_argument("--join-pow", choices=["off", "auto"], default="off")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates: a comma-separated list of numbers, not {args.rates!r}")
    if not rates or min(rates) <= 0:
        parser.error("--rates must be positive")
    steps: list[Step] = []
    past = None
    load_before = os.getloadavg()[0]
    print(HEADER, flush=True)
    for rate in rates:
        steps.append(run_step(args, rate))
        print(render_step(asdict(steps[-1])), flush=True)
        if past is None and steps[-1].overloaded:
            past = 0
        elif past is not None:
            past += 1
        if past is not None and past >= args.beyond:
            break
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "steps": [asdict(step) for step in steps],
        "knee": knee(steps),
    }
    print("\n" + render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
