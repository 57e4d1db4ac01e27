"""Each fuzz target of :mod:`targets`, run by atheris (libFuzzer) from its checked-in seed
corpus for a bounded number of inputs. A finding fails the test with the fuzzer's report;
the inputs that once found something stay in the seed corpus, so they run every time.
``scripts/fuzz`` runs the same targets for longer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TARGETS = sorted(path.name for path in (HERE / "corpus").iterdir())
RUNS = 50_000


def test_every_target_has_a_seed_corpus() -> None:
    usage = subprocess.run(
        [sys.executable, str(HERE / "targets.py")], capture_output=True, text=True, check=False
    )
    assert usage.returncode == 1
    assert f"{{{','.join(TARGETS)}}}" in usage.stderr, usage.stderr
    for name in TARGETS:
        assert any((HERE / "corpus" / name).iterdir()), name


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    # New inputs go to the first corpus directory: a scratch one, never the checkout.
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "targets.py"),
            target,
            f"-runs={RUNS}",
            "-max_total_time=120",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
            str(tmp_path),
            str(HERE / "corpus" / target),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = done.stderr[-4000:]
    assert done.returncode == 0, report
    assert "DONE" in done.stderr, report
    assert not list(tmp_path.glob("crash-*")), report
