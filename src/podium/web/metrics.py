"""Prometheus metrics of the web shell and the control plane.

Names follow Prometheus conventions: a ``podium_`` prefix, base units (seconds), ``_total``
on counters. Routes are labelled by their template (``/api/v1/spaces/{space_id}``), never by
the raw path, so a crawler of random URLs cannot blow up the number of series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from podium import __version__
from podium.pcm import SAMPLE_RATE


class _CallbackGauges(Collector):
    """Gauges read at scrape time, such as how many spaces are live."""

    def __init__(self, read: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._read()


# The *_created series double the output for no use to anyone scraping Podium.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "podium_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "podium_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.signin_failures = Counter(
            "podium_signin_failures",
            "Sign-in attempts refused for a wrong handle or password.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "podium_rate_limited",
            "Requests refused by a rate limit, by what was limited.",
            ["scope"],
            registry=self.registry,
        )
        self.joins = Counter(
            "podium_joins",
            "Join answers by outcome: admitted, queued (each answer), replay.",
            ["outcome"],
            registry=self.registry,
        )
        self.oversized = Counter(
            "podium_http_oversized_bodies",
            "Requests cut off because their body was larger than allowed.",
            registry=self.registry,
        )
        self.media_up = Gauge(
            "podium_media_worker_up",
            "1 when the media worker answers, 0 when it does not.",
            registry=self.registry,
        )
        self.media_restarts = Gauge(
            "podium_media_worker_restarts",
            "Times the media worker had to be started again since the server started.",
            registry=self.registry,
        )
        self.media_ticks = Gauge(
            "podium_media_ticks",
            "Mixer ticks (20 ms each) of each live room since it started.",
            ["space"],
            registry=self.registry,
        )
        self.media_late_ticks = Gauge(
            "podium_media_late_ticks",
            "Mixer ticks that ran over 100 ms late: the media worker was starved of CPU.",
            ["space"],
            registry=self.registry,
        )
        self.media_late_frames = Gauge(
            "podium_media_late_frames",
            "Speakers' audio frames that reached the mixer after their time to play had "
            "passed (each a 20 ms hole): the network, or the speaker, was later than the "
            "jitter delay.",
            ["space"],
            registry=self.registry,
        )
        self.media_concealed = Gauge(
            "podium_media_concealed_seconds",
            "Silence the mixer played in place of speakers' audio that was lost or late "
            "(including the short tail each time a speaker's audio stops).",
            ["space"],
            registry=self.registry,
        )
        self.media_speakers = Gauge(
            "podium_media_speakers",
            "Speakers on stage in each live room.",
            ["space"],
            registry=self.registry,
        )
        info = Gauge(
            "podium_build_info", "The running version.", ["version"], registry=self.registry
        )
        info.labels(version=__version__).set(1)

    def set_media(self, status: dict[str, Any] | None, restarts: int) -> None:
        """Copy the media worker's status (``None``: it did not answer) into the gauges."""
        self.media_up.set(0 if status is None else 1)
        self.media_restarts.set(restarts)
        gauges = (
            self.media_ticks,
            self.media_late_ticks,
            self.media_late_frames,
            self.media_concealed,
            self.media_speakers,
        )
        for gauge in gauges:
            gauge.clear()
        for space, room in (status or {}).get("rooms", {}).items():
            self.media_ticks.labels(space=space).set(room["ticks"])
            self.media_late_ticks.labels(space=space).set(room["late_ticks"])
            jitter = room["jitter"]
            self.media_late_frames.labels(space=space).set(jitter["frames_dropped_late"])
            self.media_concealed.labels(space=space).set(jitter["samples_concealed"] / SAMPLE_RATE)
            self.media_speakers.labels(space=space).set(len(room["speakers"]))

    def add_gauges(self, read: Callable[[], Iterator[GaugeMetricFamily]]) -> None:
        self.registry.register(_CallbackGauges(read))


def with_node_label(text: bytes, node: str) -> bytes:
    """The exposition ``text`` with ``node="<node>"`` on every sample that has no ``node``
    label yet, so that a fleet's series stay apart however they are scraped."""
    value = node.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    label = f'node="{value}"'.encode()
    lines = []
    for line in text.split(b"\n"):
        if not line or line.startswith(b"#"):
            lines.append(line)
            continue
        brace, space = line.find(b"{"), line.find(b" ")
        if 0 <= brace < space:
            if b'{node="' not in line and b',node="' not in line:
                line = line[: brace + 1] + label + b"," + line[brace + 1 :]
        elif space > 0:
            line = line[:space] + b"{" + label + b"}" + line[space:]
        lines.append(line)
    return b"\n".join(lines)
