"""Log setup: LiteLLM-style text lines, or one JSON object a line (`--json-logs`, `json_logs: true`)."""

from __future__ import annotations

import logging
import os
import time

import orjson

TRUE = ("1", "true", "yes", "on")


def json_logs_from_environment() -> bool:
    return os.environ.get("JSON_LOGS", "").strip().lower() in TRUE


class JsonFormatter(logging.Formatter):
    def __init__(self, pid: bool = False) -> None:
        super().__init__()
        self.pid = pid

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.pid:
            entry["pid"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str, json: bool, pid: bool = False) -> None:
    handler = logging.StreamHandler()
    if json:
        handler.setFormatter(JsonFormatter(pid))
    else:
        pid_part = f"[{os.getpid()}]" if pid else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{pid_part}: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
