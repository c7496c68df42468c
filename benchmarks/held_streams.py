"""Thousands of open streams: memory per stream, CPU per event and added delay, side by side.

    python -m benchmarks.held_streams                       # quick: 500 streams, about 2 minutes
    python -m benchmarks.held_streams --streams 1000,5000,10000 --events 300
    python -m benchmarks.held_streams --base main     # adds the gateway of another commit

For each N and each target (direct to the upstream, the aiohttp pass-through,
nginx with `proxy_buffering off`, the gateway with its whole chain), a fresh
upstream and a fresh proxy are started and N streams are opened. Each gets its
first event at once, then waits until all are open (so that the streams opened
first do not slow the opening of the rest); from then on each gets an event
every --interval-ms, at a random phase, and after --settle seconds a window of
--window seconds is measured:

- memory per open stream: the proxy's RSS at the end of the window, minus its
  RSS before the streams opened (after a few warm-up requests), divided by N;
- CPU per relayed event: the proxy's CPU time (user + system) in the window
  divided by the events the clients received in it;
- delay: arrival minus the upstream's send stamp for every event in the
  window (p50/p99), and the same minus direct's, the delay the proxy adds.

Targets run in a rotating order per N. Writes DIR/held-streams.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from benchmarks import gateway_config, nginx_proxy
from benchmarks.held_client import raise_fd_limit
from benchmarks.servers import Server, ServerStartError, free_port, read_memory, start_server
from benchmarks.workloads import all_workloads

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DIRECT, FLOOR, NGINX, GATEWAY, BASE = "direct", "passthrough", "nginx", "gateway", "gateway (base)"
TARGETS = (DIRECT, FLOOR, NGINX, GATEWAY)
ORDER = (*TARGETS, BASE)
# A proxy holds two sockets per stream (client and upstream), plus its own few files.
FILES_PER_STREAM = 2
FILES_SPARE = 200
WARMUP_REQUESTS = 5
CLIENT_TIMEOUT_S = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Cell:
    target: str
    streams: int
    idle_rss_kib: int = 0
    rss_kib: int = 0
    kib_per_stream: float | None = None
    cpu_us_per_event: float | None = None
    delivered: float | None = None  # events received in the window / events the upstream was due to send
    delay_ms: tuple[float | None, float | None] = (None, None)
    added_ms: tuple[float | None, float | None] = (None, None)
    ramp_s: float = 0.0
    failed: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    streams: tuple[int, ...]
    events: int
    interval_ms: float
    settle_s: float
    window_s: float
    clients: int
    targets: tuple[str, ...]
    out_dir: Path
    gateway_args: tuple[str, ...]
    base: str | None = None
    base_root: Path | None = None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                queue.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _rss_kib(pid: int) -> int:
    return round(read_memory(pid).rss_mb * 1024)


def _warm_up(url: str, api_key: str) -> None:
    """A few short streams, so that lazy imports and first-use caches are not counted per stream."""
    workload = all_workloads()["chat-stream-paced"]
    for _ in range(WARMUP_REQUESTS):
        request = urllib.request.Request(url + workload.path, data=workload.body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(request, timeout=15) as response:
            response.read()


def _go(upstream: str) -> None:
    """Every held stream starts its events."""
    with urllib.request.urlopen(urllib.request.Request(upstream + "/held/go", data=b"", method="POST"),
                                timeout=15) as response:
        response.read()


class Clients:
    """The load generator processes of one cell, spoken to by lines on stdin and stdout."""

    def __init__(self, url: str, streams: int, processes: int, api_key: str) -> None:
        shares = [streams // processes + (1 if i < streams % processes else 0) for i in range(processes)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.held_client", "--url", url, "--streams", str(share),
                 "--api-key", api_key],
                cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )
            for share in shares if share
        ]  # fmt: skip

    def read(self) -> list[dict[str, object]]:
        lines = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            lines.append(orjson.loads(line) if line else {"died": True})
        return lines

    def mark(self) -> list[dict[str, object]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"mark\n")
            proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _total(lines: list[dict[str, object]], name: str) -> int:
    return sum(int(line.get(name) or 0) for line in lines)  # type: ignore[call-overload]


def _merged_quantiles(done: list[dict[str, object]], q: float) -> float | None:
    points = sorted(p for line in done for p in line.get("quantiles") or [])  # type: ignore[attr-defined]
    if not points:
        return None
    return float(points[min(len(points) - 1, int(q * len(points)))])


def _start_target(target: str, upstream: Server, tmp: Path, opts: Options, files: int,
                  servers: list[Server]) -> tuple[Server, str]:
    """The proxy in front of upstream and the key to call it with."""
    python = sys.executable
    port = free_port()
    if target == FLOOR:
        server = start_server("passthrough", [python, "-m", "benchmarks.passthrough", "--port", str(port),
                                              "--upstream", upstream.url], port, tmp, REPO_ROOT)
        servers.append(server)
        return server, "sk-bench"
    if target == NGINX:
        binary = nginx_proxy.available()
        if binary is None:
            raise ServerStartError("nginx is not installed (apt-get install -y nginx)")
        server = nginx_proxy.start(binary, port, upstream.url, tmp, REPO_ROOT, files)
        servers.append(server)
        return server, "sk-bench"
    config = gateway_config.write_config(tmp, upstream.url)
    root = opts.base_root if target == BASE and opts.base_root is not None else REPO_ROOT
    server = start_server("gateway", [python, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1",
                                      "--port", str(port), *opts.gateway_args], port, tmp, root,
                          timeout_s=30.0)
    servers.append(server)
    return server, gateway_config.issue_virtual_key(server.url)


def run_cell(target: str, streams: int, opts: Options, files: int) -> Cell:
    cell = Cell(target, streams)
    with tempfile.TemporaryDirectory(prefix="held-") as tmp_name:
        tmp = Path(tmp_name)
        servers: list[Server] = []
        clients: Clients | None = None
        try:
            up_port = free_port()
            upstream = start_server("fake_upstream", [
                sys.executable, "-m", "benchmarks.fake_upstream", "--port", str(up_port),
                "--held-events", str(opts.events), "--held-interval-ms", str(opts.interval_ms), "--held-wait"],
                up_port, tmp, REPO_ROOT)  # fmt: skip
            servers.append(upstream)
            proxy, api_key = (upstream, "sk-bench") if target == DIRECT else \
                _start_target(target, upstream, tmp, opts, files, servers)
            _warm_up(proxy.url, api_key)
            time.sleep(0.5)
            cell.idle_rss_kib = _rss_kib(proxy.pid)
            processes = opts.clients or (1 if streams <= 2000 else 2)
            clients = Clients(proxy.url, streams, processes, api_key)
            opened = clients.read()
            cell.ramp_s = max(float(line.get("ramp_s") or 0.0) for line in opened)  # type: ignore[arg-type]
            if _total(opened, "open") < streams:
                cell.problems.append(f"only {_total(opened, 'open')} of {streams} streams opened")
            _go(upstream.url)
            time.sleep(opts.settle_s)
            before = clients.mark()
            cpu_before, at_before = cpu_seconds(proxy.pid), time.monotonic()
            time.sleep(opts.window_s)
            after = clients.mark()
            cpu_after, at_after = cpu_seconds(proxy.pid), time.monotonic()
            cell.rss_kib = _rss_kib(proxy.pid)
            if _total(after, "open") < streams:
                cell.problems.append(f"{streams - _total(after, 'open')} streams ended or failed before the "
                                     "window closed (more --events, or a shorter --window)")
            events = _total(after, "events") - _total(before, "events")
            due = _total(before, "open") * (at_after - at_before) * 1000 / opts.interval_ms
            cell.delivered = events / due if due else None
            if target != DIRECT:
                cell.kib_per_stream = (cell.rss_kib - cell.idle_rss_kib) / streams
                cell.cpu_us_per_event = (cpu_after - cpu_before) * 1e6 / events if events else None
            done = clients.read()
            cell.failed = _total(done, "failed")
            errors = [str(line["first_error"]) for line in done if line.get("first_error")]
            if errors:
                cell.problems.append(f"{cell.failed} streams failed; first: {errors[0]}")
            cell.delay_ms = (_merged_quantiles(done, 0.5), _merged_quantiles(done, 0.99))
            if not proxy.alive():
                cell.problems.append(f"{target} died:\n{proxy.log_tail()}")
        except (ServerStartError, OSError) as exc:
            cell.problems.append(f"{target}: {exc}")
        finally:
            if clients is not None:
                clients.stop()
            for server in reversed(servers):
                server.stop()
    return cell


def _added(cell: Cell, direct: Cell | None) -> tuple[float | None, float | None]:
    if direct is None:
        return (None, None)
    return tuple(  # type: ignore[return-value]
        None if mine is None or base is None else mine - base
        for mine, base in zip(cell.delay_ms, direct.delay_ms, strict=True)
    )


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render(cells: list[Cell], settings: list[tuple[str, str]]) -> str:
    lines = ["# Held streams", "", *(f"- {k}: {v}" for k, v in settings), ""]
    for streams in dict.fromkeys(c.streams for c in cells):
        lines += [
            f"## {streams:,} open streams", "",
            "| target | RSS idle MiB | RSS held MiB | KiB / stream | CPU µs / event | events delivered "
            "| delay p50 ms | p99 ms | added p50 ms | added p99 ms | ramp s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]  # fmt: skip
        for cell in sorted((c for c in cells if c.streams == streams), key=lambda c: ORDER.index(c.target)):
            lines.append(
                f"| {cell.target} | {cell.idle_rss_kib / 1024:.1f} | {cell.rss_kib / 1024:.1f} "
                f"| {_fmt(cell.kib_per_stream)} | {_fmt(cell.cpu_us_per_event)} "
                f"| {_fmt(cell.delivered * 100 if cell.delivered is not None else None, 0)}% "
                f"| {_fmt(cell.delay_ms[0], 2)} | {_fmt(cell.delay_ms[1], 2)} "
                f"| {_fmt(cell.added_ms[0], 2)} | {_fmt(cell.added_ms[1], 2)} | {cell.ramp_s:.1f} |"
            )
        lines.append("")
    problems = [f"- {c.target} at {c.streams}: {p}" for c in cells for p in c.problems]
    if problems:
        lines += ["## Problems", "", *problems, ""]
    return "\n".join(lines)


def benchmark(opts: Options) -> str:
    hard = raise_fd_limit()
    files = hard
    most = (hard - FILES_SPARE) // FILES_PER_STREAM
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.monotonic()
    cells: list[Cell] = []
    notes = []
    for index, asked in enumerate(opts.streams):
        streams = min(asked, most)
        if streams < asked:
            notes.append(f"{asked:,} streams asked, {streams:,} run: the hard limit on open files is {hard:,} "
                         f"and a proxy holds {FILES_PER_STREAM} per stream")
        shift = index % len(opts.targets)
        order = opts.targets[shift:] + opts.targets[:shift]
        row = []
        for target in order:
            _log(f"{streams} streams via {target} ...")
            cell = run_cell(target, streams, opts, files)
            _log(f"  {target}: {_fmt(cell.kib_per_stream)} KiB/stream, {_fmt(cell.cpu_us_per_event)} µs/event, "
                 f"delay p50/p99 {_fmt(cell.delay_ms[0], 2)}/{_fmt(cell.delay_ms[1], 2)} ms "
                 f"{'; '.join(cell.problems)}")
            row.append(cell)
        direct = next((c for c in row if c.target == DIRECT), None)
        for cell in row:
            if cell is not direct:
                cell.added_ms = _added(cell, direct)
        cells += row
    settings = [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{os.cpu_count()} CPUs, shared; load average before / after: {load_before} / "
                    + " ".join(Path("/proc/loadavg").read_text().split()[:3])),
        ("streams", f"one event every {opts.interval_ms:g} ms, {opts.events} events each; measured over "
                    f"{opts.window_s:g} s once all are open (+{opts.settle_s:g} s settling)"),
        ("targets", "a fresh upstream and proxy per cell; nginx: 1 worker, proxy_buffering off; gateway: "
                    "master key, virtual key, default plugin chain"),
        ("wall time", f"{time.monotonic() - started:.0f} s"),
        *((("gateway (base)", f"the gateway at {opts.base}"),) if opts.base else ()),
        *(("note", n) for n in notes),
    ]
    markdown = render(cells, settings)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    (opts.out_dir / "held-streams.md").write_text(markdown)
    raw = {"settings": settings, "cells": [asdict(c) for c in cells]}
    (opts.out_dir / "held-streams.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    return markdown


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="500", help="comma-separated stream counts, e.g. 1000,5000,10000")
    parser.add_argument("--events", type=int, default=200, help="events per stream (hold = events x interval)")
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the last stream opened")
    parser.add_argument("--window", type=float, default=6.0, help="seconds measured")
    parser.add_argument("--clients", type=int, default=0, help="load generator processes (0: 1, or 2 past 2,000)")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {', '.join(TARGETS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra gateway argument, repeatable")
    parser.add_argument("--base", default=None, help="also run the gateway of this commit (from a git worktree)")
    args = parser.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return Options(
        streams=tuple(max(1, int(n)) for n in args.streams.split(",") if n),
        events=max(1, args.events),
        interval_ms=max(1.0, args.interval_ms),
        settle_s=max(0.0, args.settle),
        window_s=max(1.0, args.window),
        clients=max(0, args.clients),
        targets=(*targets, BASE) if args.base else targets,
        out_dir=args.out,
        gateway_args=tuple(args.gateway_arg),
        base=args.base,
    )


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse_args(argv)
    if opts.base is None:
        print(benchmark(opts))
    else:
        with tempfile.TemporaryDirectory(prefix="held-base-") as tmp:
            root = Path(tmp) / "base-checkout"
            subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(root), opts.base], cwd=REPO_ROOT,
                           check=True)
            try:
                print(benchmark(dataclasses.replace(opts, base_root=root)))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(root)], cwd=REPO_ROOT, check=False)
    _log(f"wrote {opts.out_dir / 'held-streams.md'}")


if __name__ == "__main__":
    main()
