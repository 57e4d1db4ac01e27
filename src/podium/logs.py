"""Structured logging: one JSON object a line (the default), or readable lines for people.

Call sites log an event name as the message and put data in ``extra={"fields": {...}}``.
Credentials are never passed to a logger; as a second line of defence any field whose name
says it holds a secret is masked.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from podium.clock import rfc3339

_SECRET_WORDS = ("token", "password", "secret", "cookie", "authorization", "key")


def _masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        k: "**********" if any(w in k.lower() for w in _SECRET_WORDS) else v
        for k, v in fields.items()
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        document.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = _masked(getattr(record, "fields", {}))
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{rfc3339(record.created)} {record.levelname:<7} {record.getMessage()} {tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def configure(log_format: str, level: str) -> None:
    """Send all logs to standard error in ``log_format`` ("json" or "human")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else HumanFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the web process talks to the media worker often.
    # aioice logs every ICE candidate pair check at INFO: a dozen lines per speaker.
    for noisy in ("httpx", "aioice"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
