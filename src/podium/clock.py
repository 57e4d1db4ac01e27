"""The one place Podium reads the wall clock. Everything else takes ``now`` as an argument."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    """Seconds since the Unix epoch, UTC."""
    return time.time()


def rfc3339(timestamp: float | None) -> str | None:
    """``2026-11-28T19:02:35.123Z`` for a Unix time, ``None`` for ``None``."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
