"""Each worker's tallies in a file of its own, so that whichever worker answers /metrics reports all.

The same idea as prometheus-client's multiprocess mode, at a coarser grain:
a worker writes its snapshot (a small JSON file, replaced atomically) a few
times a second when something changed, off the request path, and a scrape
merges every file in the directory with the answering worker's live numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

# Set by `gateway --workers N` for its workers; an operator may point it somewhere else.
DIRECTORY_VARIABLE = "GATEWAY_METRICS_DIR"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedTallies:
    __slots__ = ("directory", "pid", "path")

    def __init__(self, directory: str | Path, pid: int | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.pid = pid or os.getpid()
        self.path = self.directory / f"worker-{self.pid}.json"

    def write(self, snapshot: dict[str, Any]) -> None:
        partial = self.path.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(snapshot))
        os.replace(partial, self.path)

    def others(self) -> tuple[list[dict[str, Any]], list[bool]]:
        """Every other worker's last snapshot, and whether that worker still runs."""
        snapshots, live = [], []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                pid = int(path.stem.removeprefix("worker-"))
            except ValueError:
                continue
            if pid == self.pid:
                continue
            try:
                snapshots.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # removed or replaced while being read: its next version comes soon
            live.append(alive(pid))
        return snapshots, live
