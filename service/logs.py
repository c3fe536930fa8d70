"""Logging for every qfleet process: plain lines, or one JSON object a line
(``QFLEET_LOG_JSON=1``) carrying job id, task and tenant where a record has them."""

from __future__ import annotations

import json
import logging
import time

_CONTEXT = (
    "job_id",
    "task",
    "tasks",
    "tenant",
    "backend",
    "engines",
    "seconds",
    "outcome",
    "actor",
    "action",
    "target",
    "via",
    "details",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in _CONTEXT if hasattr(record, k)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT if hasattr(record, k))
        return f"{line} {context}" if context else line


def configure(json_lines: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else PlainFormatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger("qfleet")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
