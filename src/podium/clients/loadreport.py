"""What a join storm saw, and the report made of it.

Each simulated listener writes its own :class:`ListenerRecord` (times are the load
generator's monotonic seconds); events that are counted rather than kept per listener
(refusals, statuses, requests, unexplained errors, truth checks) go to one shared
:class:`Tally`. :func:`storm_report` turns both into the JSON document that
``podium load join-storm --json`` prints, and :func:`render_storm` into a table.

Definitions the report relies on:

- **time to first audio** (``ttfa``): from a listener's first join request to the moment
  the whole body of its first media object (part or segment) has arrived; queueing and
  proof of work are included, as a person waiting would feel them.
- **queue wait**: from the first ``202 queued`` answer to the ``200`` that admitted it.
- **estimate error**: how far the first ``estimated_wait_s`` lies outside the interval the
  server's real wait must lie in, measured without trusting either clock: the server
  decided "queued" between sending that join and receiving its answer, and "admitted"
  between sending the admitting join and receiving its answer, so its wait lies between
  (admitting join sent - first 202 received) and (admitting 200 received - first join
  sent). An estimate inside the interval has error 0; answer latency under load widens
  the interval instead of counting as error.
- **stall**: the player model of :class:`podium.clients.listen.PlayerModel`. Playback
  starts once ``PART-HOLD-BACK`` of media is buffered and drains in real time; a stall is
  each time the buffer runs empty before the next part's bytes have arrived, i.e. a part
  arrived later than the media already received could cover.
- **overtake**: a listener admitted more than ``order_tolerance_s`` before another that
  was queued before it (by the time of their first ``202``) and was still waiting.

Pure: no I/O and no clocks.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.clients.listen import percentile

MAX_SAMPLES = 20
"""Examples kept of each kind of problem (the counts are always complete)."""

STALL_DEFINITION = (
    "playback starts once PART-HOLD-BACK of media is buffered and drains in real time; "
    "a stall is each time the buffer runs empty before the next part has arrived"
)


@dataclass(slots=True)
class ListenerRecord:
    """One simulated listener's story (monotonic seconds; ``None``: did not happen).

    ``outcome`` ends as one of ``admitted``, ``replay``, ``queued`` (still waiting when
    it left), ``refused`` (its retry budget ran out; ``gave_up_reason`` says why),
    ``error`` (something outside the contract) or ``pending`` (the run was cut short).
    ``last_wait_s`` is how long the server last told it to wait before asking again: a
    grant made meanwhile was seen up to that late.
    """

    index: int
    arrived_at: float
    outcome: str = "pending"
    join_requests: int = 0
    first_queued_sent_at: float | None = None
    first_queued_at: float | None = None
    first_position: int | None = None
    first_queue_length: int | None = None
    first_estimate: float | None = None
    first_reason: str | None = None
    last_position: int | None = None
    last_wait_s: float = 0.0
    polls: int = 0
    admitted_sent_at: float | None = None
    admitted_at: float | None = None
    first_audio_at: float | None = None
    left_at: float | None = None
    gave_up_reason: str | None = None
    parts: int = 0
    stalls: int = 0
    stall_seconds: float = 0.0


@dataclass(slots=True)
class Tally:
    """Counts shared by the whole crowd. ``started_at`` is the run's time zero."""

    started_at: float
    refused_with_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    refused_with_scope: collections.Counter[str] = field(default_factory=collections.Counter)
    refusals_by_second: collections.Counter[int] = field(default_factory=collections.Counter)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    unexplained: collections.Counter[str] = field(default_factory=collections.Counter)
    unexplained_by_second: collections.Counter[int] = field(default_factory=collections.Counter)
    unexplained_samples: list[str] = field(default_factory=list)
    checks: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: collections.Counter[str] = field(default_factory=collections.Counter)
    violation_samples: list[str] = field(default_factory=list)
    challenges: int = 0
    solved: int = 0
    hashes: int = 0
    solve_seconds: float = 0.0
    beacons_sent: int = 0
    beacons_accepted: int = 0
    reload_retries: int = 0
    retries: int = 0
    lag: list[float] = field(default_factory=list)

    def second(self, now: float) -> int:
        return max(0, int(now - self.started_at))

    def refused(self, now: float, reason: str, scope: str | None = None) -> None:
        self.refused_with_reason[reason] += 1
        if scope is not None:
            self.refused_with_scope[scope] += 1
        self.refusals_by_second[self.second(now)] += 1

    def error(self, now: float, kind: str, detail: str) -> None:
        """Something that does not follow the contract (``kind``: a short label)."""
        self.unexplained[kind] += 1
        self.unexplained_by_second[self.second(now)] += 1
        if len(self.unexplained_samples) < MAX_SAMPLES:
            self.unexplained_samples.append(f"{kind}: {detail}")

    def check(self, name: str, ok: bool, detail: str) -> None:
        """One truthfulness check: what the listener was told against what it saw."""
        self.checks[name] += 1
        if not ok:
            self.violations[name] += 1
            if len(self.violation_samples) < MAX_SAMPLES:
                self.violation_samples.append(f"{name}: {detail}")


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _percentiles(prefix: str, values: Sequence[float]) -> dict[str, float | None]:
    return {
        f"{prefix}_p50_s": _round(percentile(values, 0.50)),
        f"{prefix}_p95_s": _round(percentile(values, 0.95)),
        f"{prefix}_p99_s": _round(percentile(values, 0.99)),
        f"{prefix}_max_s": _round(max(values) if values else None),
    }


def count_overtakes(records: Iterable[ListenerRecord], tolerance_s: float) -> int:
    """Listeners admitted more than ``tolerance_s`` before someone queued ahead of them.

    Queue order is the order of the first ``202``. A listener ahead counts from the
    earliest moment its own grant may have been made: its admission less the wait it had
    been told to keep before asking again (a queue whose wait is unknown asks clients to
    check back every few seconds, and a grant is only seen at the next check). One that
    never got in counts as waiting until it left. O(n log n).
    """
    queued = sorted(
        (r for r in records if r.first_queued_at is not None and r.first_reason != "pre_start"),
        key=lambda r: r.first_queued_at or 0.0,
    )
    overtakes = 0
    latest_ahead = -math.inf  # the latest admission (or departure) of anyone queued earlier
    for record in queued:
        done = record.left_at
        if record.admitted_at is not None:
            done = record.admitted_at - record.last_wait_s
        if record.admitted_at is not None and record.admitted_at + tolerance_s < latest_ahead:
            overtakes += 1
        latest_ahead = max(latest_ahead, done) if done is not None else math.inf
    return overtakes


def timeline(records: Sequence[ListenerRecord], tally: Tally, end: float) -> list[dict[str, int]]:
    """Per second of the run: arrivals, admissions, first queueings, refusal answers,
    unexplained errors, first audio, and how many waited in the queue at the second's end."""
    seconds = tally.second(end) + 1
    rows = [
        {
            "t": t,
            "arrivals": 0,
            "admitted": 0,
            "queued": 0,
            "refused": tally.refusals_by_second.get(t, 0),
            "errors": tally.unexplained_by_second.get(t, 0),
            "first_audio": 0,
            "in_queue": 0,
        }
        for t in range(seconds)
    ]
    change = [0] * (seconds + 1)

    def bump(at: float | None, key: str) -> None:
        if at is not None:
            rows[min(seconds - 1, tally.second(at))][key] += 1

    for record in records:
        bump(record.arrived_at, "arrivals")
        bump(record.admitted_at, "admitted")
        bump(record.first_queued_at, "queued")
        bump(record.first_audio_at, "first_audio")
        if record.first_queued_at is not None:
            # Waiting from the second it was queued in, up to the one it left the line in.
            change[min(seconds, tally.second(record.first_queued_at))] += 1
            out = record.admitted_at if record.admitted_at is not None else record.left_at
            change[min(seconds, tally.second(out if out is not None else end) + 1)] -= 1
    waiting = 0
    for t in range(seconds):
        waiting += change[t]
        rows[t]["in_queue"] = waiting
    return rows


def wait_bounds(record: ListenerRecord) -> tuple[float, float] | None:
    """The interval the server's own wait (first "queued" to "admitted") lies in, for a
    listener admitted from the queue (see the module docstring)."""
    if (
        record.first_queued_at is None
        or record.first_queued_sent_at is None
        or record.admitted_at is None
        or record.admitted_sent_at is None
    ):
        return None
    return (
        max(0.0, record.admitted_sent_at - record.first_queued_at),
        record.admitted_at - record.first_queued_sent_at,
    )


def estimate_error(record: ListenerRecord) -> float | None:
    """How far the first estimate lies outside :func:`wait_bounds` (0 inside)."""
    bounds = wait_bounds(record)
    if bounds is None or record.first_estimate is None:
        return None
    low, high = bounds
    return max(0.0, low - record.first_estimate, record.first_estimate - high)


def _queue_observation(record: ListenerRecord, zero: float) -> dict[str, Any]:
    assert record.first_queued_at is not None
    waited = None if record.admitted_at is None else record.admitted_at - record.first_queued_at
    bounds = wait_bounds(record)
    return {
        "index": record.index,
        "outcome": record.outcome,
        "arrived_s": _round(record.arrived_at - zero),
        "first_queued_s": _round(record.first_queued_at - zero),
        "first_position": record.first_position,
        "first_queue_length": record.first_queue_length,
        "first_estimated_wait_s": _round(record.first_estimate),
        "first_reason": record.first_reason,
        "last_position": record.last_position,
        "polls": record.polls,
        "admitted_s": None if record.admitted_at is None else _round(record.admitted_at - zero),
        "actual_wait_s": _round(waited),
        "wait_min_s": None if bounds is None else _round(bounds[0]),
        "wait_max_s": None if bounds is None else _round(bounds[1]),
        "estimate_error_s": _round(estimate_error(record)),
    }


def storm_notes(
    tally: Tally, gave_up: collections.Counter[str], settings: dict[str, Any]
) -> list[str]:
    """Plain sentences on what the numbers alone could be mistaken for.

    Refusals from the server's per-address join limit (``scope: address``) are the
    limit working as designed, not a failing server; when the whole crowd came from one
    source address, that is all a rehearsal on one machine can show unless it spreads
    its listeners over many addresses."""
    per_address = tally.refused_with_scope["address"]
    if not per_address:
        return []
    network = settings.get("source_network")
    listeners = settings.get("listeners")
    quitters = gave_up["rate_limited"]
    told = (
        f"{per_address} refusal answers (and {quitters} listeners giving up rate_limited)"
        " came from the server's per-address join limit (join_burst, join_per_second),"
    )
    if network is None:
        return [
            f"{told} because all {listeners} listeners of this run came from one source"
            " address: the limit working as designed, not a failing server. A real crowd"
            " comes from many addresses: spread this one with --source-network (e.g."
            " --source-network 127.0.0.0/16 against a server on loopback, or a network"
            " assigned to this machine's interface), or raise the limit on a staging server."
        ]
    return [
        f"{told} with listeners spread over {network}: a wider --source-network gives"
        " each address fewer of them."
    ]


def storm_report(
    records: Sequence[ListenerRecord],
    tally: Tally,
    *,
    end: float,
    settings: dict[str, Any],
    traffic: dict[str, int],
    order_tolerance_s: float,
) -> dict[str, Any]:
    """The JSON report of a join storm (see the module docstring for the definitions)."""
    zero = tally.started_at
    outcomes = collections.Counter(r.outcome for r in records)
    ttfa = [r.first_audio_at - r.arrived_at for r in records if r.first_audio_at is not None]
    after_admission = [
        r.first_audio_at - r.admitted_at
        for r in records
        if r.first_audio_at is not None and r.admitted_at is not None
    ]
    queued = [r for r in records if r.first_queued_at is not None]
    waits = [
        r.admitted_at - r.first_queued_at
        for r in queued
        if r.admitted_at is not None and r.first_queued_at is not None
    ]
    errors = [e for e in map(estimate_error, queued) if e is not None]
    admissions = sorted(r.admitted_at for r in records if r.admitted_at is not None)
    gave_up = collections.Counter(
        r.gave_up_reason for r in records if r.outcome == "refused" and r.gave_up_reason
    )
    violations = sum(tally.violations.values())
    return {
        "kind": "join-storm",
        **settings,
        "elapsed_s": _round(end - zero),
        "admitted": outcomes["admitted"],
        "replay": outcomes["replay"],
        "queued": len(queued),
        "still_queued": outcomes["queued"],
        "refused": outcomes["refused"],
        "pending": outcomes["pending"],
        "outcomes": dict(sorted(outcomes.items())),
        "refused_with_reason": dict(sorted(tally.refused_with_reason.items())),
        "refused_with_scope": dict(sorted(tally.refused_with_scope.items())),
        "notes": storm_notes(tally, gave_up, settings),
        "gave_up_with_reason": dict(sorted(gave_up.items())),
        "unexplained_errors": sum(tally.unexplained.values()),
        "unexplained_by_kind": dict(sorted(tally.unexplained.items())),
        "unexplained_samples": list(tally.unexplained_samples),
        **{k: v for k, v in _percentiles("ttfa", ttfa).items()},
        "ttfa_count": len(ttfa),
        "admitted_without_audio": sum(
            1 for r in records if r.outcome == "admitted" and r.first_audio_at is None
        ),
        "ttfa_after_admission_p50_s": _round(percentile(after_admission, 0.5)),
        "ttfa_after_admission_p95_s": _round(percentile(after_admission, 0.95)),
        **_percentiles("queue_wait", waits),
        "estimate_error_p50_s": _round(percentile(errors, 0.5)),
        "estimate_error_p95_s": _round(percentile(errors, 0.95)),
        "estimate_error_max_s": _round(max(errors) if errors else None),
        "estimates_compared": len(errors),
        "admitted_first_s": _round(admissions[0] - zero) if admissions else None,
        "admitted_last_s": _round(admissions[-1] - zero) if admissions else None,
        "overtakes": count_overtakes(records, order_tolerance_s),
        "order_tolerance_s": order_tolerance_s,
        "stalls": sum(r.stalls for r in records),
        "stalled_listeners": sum(1 for r in records if r.stalls),
        "stall_seconds": _round(sum(r.stall_seconds for r in records)),
        "stall_definition": STALL_DEFINITION,
        "parts": sum(r.parts for r in records),
        "requests": dict(sorted(tally.requests.items())),
        "responses": dict(sorted(tally.statuses.items())),
        "traffic": traffic,
        "retries": tally.retries,
        "reload_retries": tally.reload_retries,
        "proof_of_work": {
            "challenges": tally.challenges,
            "solved": tally.solved,
            "hashes": tally.hashes,
            "seconds": _round(tally.solve_seconds),
        },
        "beacons": {"sent": tally.beacons_sent, "accepted": tally.beacons_accepted},
        "truthful": {
            "ok": violations == 0,
            "checks": sum(tally.checks.values()),
            "violations": violations,
            "by_check": {
                name: {"checked": tally.checks[name], "failed": tally.violations[name]}
                for name in sorted(tally.checks)
            },
            "samples": list(tally.violation_samples),
        },
        "generator_lag_p99_s": _round(percentile(tally.lag, 0.99)),
        "timeline": timeline(records, tally, end),
        "clients": [_queue_observation(r, zero) for r in queued],
    }


def _seconds(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def render_storm(report: dict[str, Any]) -> str:
    """The report as a few readable lines and a per-second table."""
    truth = report["truthful"]
    refused = ", ".join(f"{k} {v}" for k, v in report["refused_with_reason"].items()) or "none"
    lines = [
        f"join storm: {report['listeners']} listeners over {report['over_s']:g} s"
        f" at {report['server']} (space {report['space']}), {report['elapsed_s']:.1f} s",
        f"admitted {report['admitted']}, replay {report['replay']}, ever queued"
        f" {report['queued']} (still queued {report['still_queued']}), gave up"
        f" {report['refused']}, cut short {report['pending']}",
        f"refusal answers: {refused}",
        *(f"note: {note}" for note in report["notes"]),
        f"unexplained errors: {report['unexplained_errors']}"
        + "".join(f"\n  {sample}" for sample in report["unexplained_samples"]),
        f"time to first audio: p50 {_seconds(report['ttfa_p50_s'])},"
        f" p95 {_seconds(report['ttfa_p95_s'])}, p99 {_seconds(report['ttfa_p99_s'])}"
        f" ({report['ttfa_count']} listeners; admitted but never heard anything:"
        f" {report['admitted_without_audio']})",
        f"queue wait: p50 {_seconds(report['queue_wait_p50_s'])},"
        f" p95 {_seconds(report['queue_wait_p95_s'])}; estimate off by p50"
        f" {_seconds(report['estimate_error_p50_s'])}, p95"
        f" {_seconds(report['estimate_error_p95_s'])}; overtakes {report['overtakes']}",
        f"stalls: {report['stalls']} in {report['stalled_listeners']} listeners"
        f" ({report['stall_seconds']:.2f} s)",
        f"truthful: {'yes' if truth['ok'] else 'NO'} ({truth['checks']} checks,"
        f" {truth['violations']} violations)"
        + "".join(f"\n  {sample}" for sample in truth["samples"]),
        "",
        "   t  arrivals  admitted  queued  in queue  refused  errors  first audio",
    ]
    for row in report["timeline"]:
        lines.append(
            f"{row['t']:>4}  {row['arrivals']:>8}  {row['admitted']:>8}  {row['queued']:>6}"
            f"  {row['in_queue']:>8}  {row['refused']:>7}  {row['errors']:>6}"
            f"  {row['first_audio']:>11}"
        )
    return "\n".join(lines)


__all__ = [
    "MAX_SAMPLES",
    "STALL_DEFINITION",
    "ListenerRecord",
    "Tally",
    "count_overtakes",
    "estimate_error",
    "render_storm",
    "storm_notes",
    "storm_report",
    "timeline",
    "wait_bounds",
]
