"""Start the servers under test as child processes, wait for them, read their memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STOP_GRACE_S = 5.0


class ServerStartError(RuntimeError):
    """A server exited or never listened; the message carries its log tail."""


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mb: float
    peak_mb: float


def free_port() -> int:
    # The port may be taken again before the child binds it; on a quiet
    # loopback that race is rare enough for a benchmark.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(c) for c in text.split())
    except OSError:
        pass
    return found


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of the process and its living descendants."""
    return sum(_cpu_of(p) for p in _tree(pid))


def read_memory(pid: int) -> Memory:
    """VmRSS and VmHWM summed over the process and its descendants.

    Summing counts pages shared between forked workers more than once, so for
    a multi-process server this is an upper bound.
    """
    pids = _tree(pid)
    rss = sum(_status_kb(p, "VmRSS") for p in pids)
    peak = sum(_status_kb(p, "VmHWM") for p in pids)
    return Memory(rss_mb=rss / 1024, peak_mb=peak / 1024)


class Server:
    """One child process listening on HOST:port, logging to a file."""

    __slots__ = ("_proc", "log_path", "name", "port")

    def __init__(self, name: str, port: int, log_path: Path, proc: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self._proc = proc

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def memory(self) -> Memory:
        return read_memory(self._proc.pid)

    def cpu_s(self) -> float:
        return read_cpu_s(self._proc.pid)

    def log_tail(self, lines: int = 30, drop: str | None = None) -> str:
        """Last lines of the log, leaving out those containing drop."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.strip().splitlines() if drop is None or drop not in line]
        return "\n".join(kept[-lines:])

    def stop(self) -> None:
        if self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_server(
    name: str, argv: Sequence[str], port: int, log_dir: Path, cwd: Path, timeout_s: float = 20.0
) -> Server:
    """Spawn argv and wait until it accepts TCP connections on port.

    Output goes to a file rather than a pipe: a chatty server must never
    block on a pipe nobody reads while it is being measured.
    """
    log_path = log_dir / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = Server(name, port, log_path, proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerStartError(
                f"{name} exited with code {proc.returncode} before listening on {port}.\n"
                f"--- {log_path} ---\n{server.log_tail()}"
            )
        if _listening(port):
            return server
        time.sleep(0.05)
    server.stop()
    raise ServerStartError(
        f"{name} did not listen on {HOST}:{port} within {timeout_s:.0f}s.\n--- {log_path} ---\n{server.log_tail()}"
    )


def start_fake_upstream(log_dir: Path, cwd: Path, python: str = sys.executable) -> Server:
    """benchmarks.fake_upstream on a free loopback port, as every benchmark starts it."""
    port = free_port()
    return start_server("fake_upstream", [python, "-m", "benchmarks.fake_upstream", "--port", str(port)], port,
                        log_dir, cwd)
