"""A local append-only spool, so that no spend record is lost to a crash or a database outage.

Each record is one JSON line written with a single write() on an O_APPEND
descriptor before the client has its whole answer, so a process killed
after that keeps the record in the file. The file in use is a segment
locked (flock) by its writer; every half second the writer's segment is
closed and renamed `.ready`. Ready segments, and segments whose writer has
died (their lock is free), are read into the store and then deleted. The
store ignores a request id it already has, so a segment read twice (a crash
between the store's commit and the unlink) costs nothing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from gateway.spend.record import SpendRecord, spool_line

log = logging.getLogger("gateway.spend")

OPEN_SUFFIX = ".open"
READY_SUFFIX = ".ready"
MAX_SEGMENT_BYTES = 8 * 1024 * 1024


class Spool:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fd = -1
        self.path: Path | None = None
        self.size = 0
        self.sequence = 0

    def append(self, record: SpendRecord) -> None:
        line = spool_line(record)
        if self.fd < 0 or self.size > MAX_SEGMENT_BYTES:
            self.rotate()
            self._open()
        os.write(self.fd, line)
        self.size += len(line)

    def _open(self) -> None:
        self.sequence += 1
        self.path = self.directory / f"{os.getpid()}-{time.time_ns()}-{self.sequence}{OPEN_SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.size = 0

    def rotate(self) -> None:
        """Close the segment in use (if it holds anything) and mark it ready to be written out."""
        if self.fd < 0 or self.path is None:
            return
        if self.size == 0:
            return
        os.rename(self.path, self.path.with_suffix(READY_SUFFIX))
        os.close(self.fd)  # closing releases the lock
        self.fd, self.path, self.size = -1, None, 0

    def close(self) -> None:
        self.rotate()
        if self.fd >= 0 and self.path is not None:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)  # empty
            self.fd, self.path = -1, None

    def pending(self) -> list[Path]:
        """Segments to write out: ready ones, and open ones whose writer is gone."""
        found = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix == READY_SUFFIX:
                found.append(path)
            elif path.suffix == OPEN_SUFFIX and path != self.path and _orphaned(path):
                ready = path.with_suffix(READY_SUFFIX)
                try:
                    os.rename(path, ready)
                except FileNotFoundError:
                    continue  # another instance took it
                log.info("spool: taking over %s from a writer that stopped", path.name)
                found.append(ready)
        return found


def _orphaned(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def read_segment(path: Path) -> bytes:
    """A segment's whole lines; a last line cut short by a crash is left out."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        log.warning("spool: %s ends in a partial record; it is skipped", path.name)
        data = data[:data.rfind(b"\n") + 1]
    return data
