"""Mix + encode CPU: Podium's program pipeline against ffmpeg ``amix`` + ``aac``, same input.

DESIGN target: "mix + encode CPU, 13-speaker space: ffmpeg amix + aac on the same input:
<= 1.5x ffmpeg". This is a benchmark, not a test: it measures, prints a table of ratios and
asserts nothing.

For each speaker count N (1, 4, 13 by default) it builds N different 48 kHz mono speech
signals of the same length (the two speech fixtures, looped, each speaker starting at a
different offset), writes them as float32 WAV files, and then, alternating the two within
each run so that both see the same machine state:

- **Podium**, in this process, from PCM already in memory: per 20 ms tick one 960-sample
  :class:`~podium.pcm.PcmFrame` per speaker is pushed, :meth:`Mixer.tick` mixes
  the program *and* the N mix-minus feeds (each through its own limiter channel, plus
  level meters), :class:`~podium.encode.aac.AacEncoder` encodes the program (AAC-LC,
  64 kbit/s mono) and :class:`~podium.segment.segmenter.Segmenter` cuts 256 ms fMP4 parts
  in memory. As fast as possible, not paced in real time. CPU time is
  ``time.process_time()`` around the whole pipeline, construction and flush included.
- **ffmpeg** (the system binary), reading the same WAV files:
  ``amix=inputs=N:normalize=0`` (a plain sum, like Podium's, without any limiter or
  mix-minus), the native ``aac`` encoder at 64 kbit/s mono, muxed as fragmented MP4 with
  256 ms fragments (``empty_moov+default_base_moof``, ``-frag_duration 256000``) to a file
  in the temp dir: the same product as Podium's parts. ``-threads 1`` and
  ``-filter_complex_threads 1`` ask for one worker thread; CPU time is user + sys from
  ``getrusage(RUSAGE_CHILDREN)`` deltas, which counts every thread the process used.
- **ffmpeg read baseline**: the same inputs stream-copied to the ``null`` muxer: process
  start-up plus demuxing N WAV files (1024-sample packets, one reader thread per input in
  ffmpeg 5), work that Podium does not do because it gets arrays. The table also gives the
  ratio against ffmpeg minus this baseline. It leaves out the decode of ``pcm_f32le``
  (a copy per packet): re-encoding to raw PCM instead would add N encoders and muxer
  streams that the real run does not have, and cost more than reading, decoding *and*
  mixing. The true ratio lies between the two columns.
- **AAC alone** (calibration): one signal encoded by Podium's encoder (PyAV's bundled
  libavcodec) and by the ffmpeg binary (the system's libavcodec, possibly another
  version) with no mixing. Its ratio says how much of the headline ratio is the two
  builds of the same encoder rather than Podium's own code.

Every figure is the median of ``--runs`` runs. Run from the repository root::

    .venv/bin/python bench/mix_encode.py [--seconds 60] [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from podium.demo import DIRECTORY
from podium.encode.aac import AacEncoder
from podium.mixer.mixer import Mixer
from podium.pcm import SAMPLE_RATE, TICK_SAMPLES, PcmFrame
from podium.segment.segmenter import Segmenter

FIXTURES = DIRECTORY
SOURCES = ("speech-01.wav", "speech-02.wav")
BITRATE = 64_000
PART_US = 256_000  # Podium's part: 12 AAC frames of 1024 samples at 48 kHz = 256 ms
# Speaker i starts i * 1.37 s into its source: not a multiple of the tick, of the AAC
# frame or of either fixture's length, so no two speakers line up.
OFFSET_STEP = 65_760

Signal = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Row:
    """Median figures for one configuration; CPU figures are CPU seconds per audio second."""

    name: str
    speakers: int
    podium_cpu: float
    ffmpeg_cpu: float
    ffmpeg_read_cpu: float | None
    ratio: float  # podium / ffmpeg
    ratio_net: float | None  # podium / (ffmpeg - read baseline)
    podium_rtf: float  # audio seconds per CPU second
    ffmpeg_rtf: float
    podium_wall: float  # wall seconds per audio second
    ffmpeg_wall: float
    podium_samples: list[float]  # every run's raw CPU seconds, for the record
    ffmpeg_samples: list[float]


@dataclass(frozen=True, slots=True)
class Measure:
    cpu: float
    wall: float


@dataclass(slots=True)
class _Runs:
    """The raw measures of one configuration, filled run by run."""

    name: str
    speakers: int
    podium: list[Measure] = field(default_factory=list)
    ffmpeg: list[Measure] = field(default_factory=list)
    read: list[Measure] | None = field(default_factory=list)  # None: no read baseline


# ---- input -------------------------------------------------------------------------------


def load_source(path: Path) -> Signal:
    """Decode ``path`` to 48 kHz mono float32 with PyAV."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[Signal] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
    return np.concatenate(chunks)


def speaker_signals(sources: Sequence[Signal], count: int, samples: int) -> list[Signal]:
    """``count`` signals of ``samples`` samples: sources alternate, looped, offsets differ."""
    signals: list[Signal] = []
    for i in range(count):
        source = sources[i % len(sources)]
        index = (np.arange(samples, dtype=np.int64) + i * OFFSET_STEP) % source.shape[0]
        signals.append(np.ascontiguousarray(source[index], dtype=np.float32))
    return signals


def write_wav(path: Path, signal: Signal) -> None:
    """Write ``signal`` as a 48 kHz mono float32 WAV (no conversion on either side)."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_f32le", rate=SAMPLE_RATE, layout="mono")
        for start in range(0, signal.shape[0], SAMPLE_RATE):
            chunk = signal[start : start + SAMPLE_RATE]
            frame = av.AudioFrame.from_ndarray(chunk[np.newaxis, :], format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# ---- Podium ------------------------------------------------------------------------------


def podium_pipeline(signals: Sequence[Signal]) -> int:
    """Mix, encode and segment ``signals`` tick by tick; return the fMP4 bytes produced."""
    ticks = signals[0].shape[0] // TICK_SAMPLES
    mixer = Mixer()
    ids = [f"speaker-{i}" for i in range(len(signals))]
    for speaker_id in ids:
        mixer.add_speaker(speaker_id)
    encoder = AacEncoder(sample_rate=SAMPLE_RATE, channels=1, bitrate=BITRATE)
    segmenter = Segmenter(program_start=Fraction(0))
    produced = 0
    for tick in range(ticks):
        lo = tick * TICK_SAMPLES
        for speaker_id, signal in zip(ids, signals, strict=True):
            mixer.push(speaker_id, PcmFrame(lo, signal[lo : lo + TICK_SAMPLES]))
        result = mixer.tick()
        for unit in encoder.encode(result.program, result.pts):
            for part in segmenter.push(unit):
                produced += len(part.data)
    for unit in encoder.flush():
        for part in segmenter.push(unit):
            produced += len(part.data)
    for part in segmenter.flush():
        produced += len(part.data)
    return produced


def podium_encode_only(signal: Signal) -> int:
    """Encode ``signal`` in 960-sample blocks with Podium's encoder alone (calibration)."""
    encoder = AacEncoder(sample_rate=SAMPLE_RATE, channels=1, bitrate=BITRATE)
    produced = 0
    ticks = signal.shape[0] // TICK_SAMPLES
    for tick in range(ticks):
        lo = tick * TICK_SAMPLES
        produced += sum(len(u.data) for u in encoder.encode(signal[lo : lo + TICK_SAMPLES], lo))
    produced += sum(len(u.data) for u in encoder.flush())
    return produced


def measure_in_process(work: Callable[[], int]) -> Measure:
    wall = time.perf_counter()
    cpu = time.process_time()
    produced = work()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    if produced <= 0:
        raise RuntimeError("the Podium pipeline produced no output")
    return Measure(cpu, wall)


# ---- ffmpeg ------------------------------------------------------------------------------


def ffmpeg_mix_command(ffmpeg: str, wavs: Sequence[Path], out: Path) -> list[str]:
    inputs = [arg for wav in wavs for arg in ("-i", str(wav))]
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        *inputs,
        "-filter_complex_threads",
        "1",
        "-filter_complex",
        f"amix=inputs={len(wavs)}:normalize=0",
        *ffmpeg_aac_output(out),
    ]


def ffmpeg_aac_command(ffmpeg: str, wav: Path, out: Path) -> list[str]:
    head = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(wav)]
    return [*head, *ffmpeg_aac_output(out)]


def ffmpeg_aac_output(out: Path) -> list[str]:
    return [
        "-c:a",
        "aac",
        "-b:a",
        str(BITRATE),
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-threads",
        "1",
        "-f",
        "mp4",
        "-movflags",
        "+empty_moov+default_base_moof",
        "-frag_duration",
        str(PART_US),
        str(out),
    ]


def ffmpeg_read_command(ffmpeg: str, wavs: Sequence[Path]) -> list[str]:
    inputs = [arg for wav in wavs for arg in ("-i", str(wav))]
    maps = [arg for i in range(len(wavs)) for arg in ("-map", f"{i}:a")]
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *inputs,
        *maps,
        "-c:a",
        "copy",
        "-f",
        "null",
        "-",
    ]


def measure_child(command: Sequence[str], out: Path | None = None) -> Measure:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out is not None:
        if out.stat().st_size <= 0:
            raise RuntimeError(f"ffmpeg produced no output: {' '.join(command)}")
        out.unlink()
    return Measure(cpu, wall)


# ---- report ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    version = subprocess.run(
        [ffmpeg, "-version"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[0]
    libavcodec = ".".join(str(v) for v in av.library_versions["libavcodec"])
    return {
        "nproc": str(os.cpu_count()),
        "usable_cpus": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyav": f"{av.__version__} (libavcodec {libavcodec})",
        "ffmpeg": version,
    }


def build_row(runs: _Runs, seconds: float) -> Row:
    podium, ffmpeg, read = runs.podium, runs.ffmpeg, runs.read
    p_cpu = statistics.median(m.cpu for m in podium) / seconds
    f_cpu = statistics.median(m.cpu for m in ffmpeg) / seconds
    r_cpu = statistics.median(m.cpu for m in read) / seconds if read else None
    net = f_cpu - r_cpu if r_cpu is not None else None
    return Row(
        name=runs.name,
        speakers=runs.speakers,
        podium_cpu=p_cpu,
        ffmpeg_cpu=f_cpu,
        ffmpeg_read_cpu=r_cpu,
        ratio=p_cpu / f_cpu,
        ratio_net=p_cpu / net if net is not None and net > 0 else None,
        podium_rtf=1.0 / p_cpu,
        ffmpeg_rtf=1.0 / f_cpu,
        podium_wall=statistics.median(m.wall for m in podium) / seconds,
        ffmpeg_wall=statistics.median(m.wall for m in ffmpeg) / seconds,
        podium_samples=[round(m.cpu, 4) for m in podium],
        ffmpeg_samples=[round(m.cpu, 4) for m in ffmpeg],
    )


def markdown(rows: Sequence[Row]) -> str:
    head = (
        "| config | Podium CPU s / audio s | ffmpeg CPU s / audio s | ffmpeg read baseline "
        "| Podium / ffmpeg | Podium / (ffmpeg - read) | Podium RTF | ffmpeg RTF |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for row in rows:
        read = f"{row.ffmpeg_read_cpu:.4f}" if row.ffmpeg_read_cpu is not None else "-"
        net = f"{row.ratio_net:.2f}x" if row.ratio_net is not None else "-"
        lines.append(
            f"| {row.name} | {row.podium_cpu:.4f} | {row.ffmpeg_cpu:.4f} | {read} "
            f"| **{row.ratio:.2f}x** | {net} | {row.podium_rtf:.0f}x | {row.ffmpeg_rtf:.0f}x |"
        )
    return head + "\n".join(lines)


def profile(signals: Sequence[Signal], top: int) -> str:
    """cProfile one Podium run over ``signals``; the ``top`` functions by own time."""
    profiler = cProfile.Profile()
    profiler.runcall(podium_pipeline, signals)
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats(pstats.SortKey.TIME).print_stats(top)
    return buffer.getvalue()


# ---- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per run (60)")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (3)")
    parser.add_argument(
        "--speakers", default="1,4,13", help="comma-separated speaker counts (1,4,13)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="after the runs, cProfile the largest config and print the TOP functions",
    )
    args = parser.parse_args(argv)
    counts = sorted({int(c) for c in args.speakers.split(",")})
    ticks = int(args.seconds * SAMPLE_RATE) // TICK_SAMPLES
    if ticks < 1 or args.runs < 1 or counts[0] < 1:
        parser.error("need at least one tick, one run and one speaker")
    samples = ticks * TICK_SAMPLES
    seconds = samples / SAMPLE_RATE
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        parser.error("ffmpeg is not on PATH")

    info = machine()
    print("# mix + encode CPU: Podium vs ffmpeg amix + aac\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(f"- audio per run: {seconds:g} s, runs: {args.runs}, speakers: {counts}\n")

    sources = [load_source(FIXTURES / name) for name in SOURCES]
    signals = {n: speaker_signals(sources, n, samples) for n in counts}
    configs = [_Runs(f"{n} speaker{'s' if n > 1 else ''}", n) for n in counts]
    calibration = _Runs("AAC alone (calibration)", 1, read=None)
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        folder = Path(tmp)
        wavs = [folder / f"s{i + 1}.wav" for i in range(counts[-1])]
        for wav, signal in zip(wavs, signals[counts[-1]], strict=True):
            write_wav(wav, signal)  # the first n of the largest set are each smaller set
        out = folder / "out.mp4"
        # Warm-up, not counted: page cache, lazy imports, first-call allocations.
        measure_in_process(partial(podium_pipeline, signals[counts[0]]))
        measure_child(ffmpeg_mix_command(ffmpeg, wavs[:1], out), out)
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs} ...", file=sys.stderr, flush=True)
            for config in configs:
                n = config.speakers
                config.podium.append(measure_in_process(partial(podium_pipeline, signals[n])))
                config.ffmpeg.append(measure_child(ffmpeg_mix_command(ffmpeg, wavs[:n], out), out))
                assert config.read is not None
                config.read.append(measure_child(ffmpeg_read_command(ffmpeg, wavs[:n])))
            first = signals[counts[0]][0]
            calibration.podium.append(measure_in_process(partial(podium_encode_only, first)))
            calibration.ffmpeg.append(measure_child(ffmpeg_aac_command(ffmpeg, wavs[0], out), out))

    rows = [build_row(config, seconds) for config in [*configs, calibration]]
    print(markdown(rows))
    print(
        "\nCPU figures: median CPU seconds (user + sys) per second of audio; RTF: audio "
        "seconds per CPU second. Podium includes the N mix-minus feeds; ffmpeg mixes the "
        "program only. ffmpeg runs with -threads 1 and -filter_complex_threads 1."
    )
    if args.json is not None:
        payload = {
            "benchmark": "mix_encode",
            "machine": info,
            "seconds": seconds,
            "runs": args.runs,
            "rows": [asdict(row) for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if args.profile > 0:
        print(f"\n## cProfile: Podium, {counts[-1]} speakers, {seconds:g} s\n")
        print("```\n" + profile(signals[counts[-1]], args.profile).rstrip() + "\n```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
