"""One command: direct vs pass-through floor vs gateway, side by side.

    python -m benchmarks.run [--duration S] [--concurrency C] [--out DIR]

Starts the fake upstream, the pass-through floor and the gateway, then runs
every workload against every target in rounds, rotating the target order each
round, and reports the median round. Writes DIR/latest.md, latest.png and
latest.json (raw per-round numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks import chart, gateway_config, peers, report
from benchmarks.aggregate import DIRECT, FLOOR, GATEWAY, PEERS, Rounds, summarise
from benchmarks.loadgen import TOOLS, LoadSpec, measure, resolve_tool
from benchmarks.servers import Memory, Server, ServerStartError, free_port, start_server
from benchmarks.workloads import Workload, all_workloads

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
LOAD_WORKLOADS = ("chat", "chat-stream", "embeddings", "messages", "messages-stream", "messages-translated-stream")
# The paced stream stands in for streaming here: at concurrency 1 a flat-out
# stream adds nothing the non-stream row does not show, while a paced one
# separates time to first byte from total time.
MODERATE_WORKLOADS = ("chat", "chat-stream-paced", "embeddings")
PREFLIGHT_TIMEOUT_S = 15.0
# Spawning a load generator and tearing it down, per measurement
SPAWN_OVERHEAD_S = 0.4
# Unmeasured load on each peer per workload before the rounds: LiteLLM's first requests at concurrency
# are many times slower than its steady state (imports and caches filled on first use).
PEER_WARMUP_S = 3.0


@dataclass(frozen=True, slots=True)
class Options:
    duration_s: float
    concurrency: int
    rounds: int
    moderate_concurrency: int
    moderate_duration_s: float
    warmup_s: float
    out_dir: Path
    gateway_config: Path | None
    gateway_timeout_s: float
    gateway_args: tuple[str, ...]
    api_key: str
    tool: str
    stream_chunks: int
    chunk_delay_ms: float
    paced_delay_ms: float
    peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    server: Server  # the process whose death makes this target's numbers meaningless
    url: str
    api_key: str | None = None  # the gateway is measured with a virtual key through its whole chain
    headers: tuple[tuple[str, str], ...] = ()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _preflight(url: str, workload: Workload, api_key: str, headers: tuple[tuple[str, str], ...] = ()) -> str | None:
    """One request to prove a target serves a workload at all; the error if not."""
    request = urllib.request.Request(
        url + workload.path,
        data=workload.body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}", **dict(headers)},
    )
    try:
        with urllib.request.urlopen(request, timeout=PREFLIGHT_TIMEOUT_S) as response:
            response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _estimate_s(opts: Options) -> float:
    def phase(workloads: Sequence[str], duration: float, concurrency: int) -> float:
        total = 0.0
        for name in workloads:
            spec = LoadSpec("", name, concurrency, duration, tool=opts.tool)
            python = resolve_tool(spec, all_workloads()[name]) == "python"
            total += (duration + (opts.warmup_s if python else 0.0) + SPAWN_OVERHEAD_S) * (3 + len(opts.peers))
        return total * opts.rounds

    return phase(LOAD_WORKLOADS, opts.duration_s, opts.concurrency) + phase(
        MODERATE_WORKLOADS, opts.moderate_duration_s, opts.moderate_concurrency
    )


def _run_phase(
    title: str,
    targets: Sequence[Target],
    workloads: Sequence[str],
    skip: set[tuple[str, str]],
    concurrency: int,
    duration_s: float,
    opts: Options,
    problems: list[str],
) -> Rounds:
    rounds: Rounds = {(w, t.name): [] for w in workloads for t in targets}
    dead: set[str] = set()
    for index in range(opts.rounds):
        # Rotate so every target takes every slot once per len(targets) rounds:
        # a slow drift on the shared machine then does not favour one target.
        shift = index % len(targets)
        order = list(targets[shift:]) + list(targets[:shift])
        for workload in workloads:
            for target in order:
                key = (workload, target.name)
                if key in skip or target.name in dead:
                    rounds[key].append(None)
                    continue
                if not target.server.alive():
                    dead.add(target.name)
                    problems.append(f"{target.name} process died during {title}.\n{target.server.log_tail()}")
                    rounds[key].append(None)
                    continue
                spec = LoadSpec(
                    base_url=target.url,
                    workload=workload,
                    concurrency=concurrency,
                    duration_s=duration_s,
                    warmup_s=opts.warmup_s,
                    api_key=target.api_key or opts.api_key,
                    tool=opts.tool,
                    headers=target.headers,
                )
                cpu_before = target.server.cpu_s()
                result = measure(spec)
                cpu = target.server.cpu_s() - cpu_before
                if result.tool == "python" and duration_s + opts.warmup_s > 0:
                    cpu *= duration_s / (duration_s + opts.warmup_s)  # only the measured window's requests count
                result = dataclasses.replace(result, server_cpu_s=cpu)
                rounds[key].append(result)
                _log(
                    f"  [{title} {index + 1}/{opts.rounds}] {workload:<18} {target.name:<8} "
                    f"{result.rps:>9.0f} req/s  p50 {result.p50_ms or 0:7.2f} ms  "
                    f"CPU {result.cpu_us_per_request or 0:6.0f} us/req  errors {result.errors}"
                )
    return rounds


def _start_stack(opts: Options, tmp: Path, servers: list[Server], problems: list[str]) -> list[Target]:
    """Upstream and floor must start; the gateway may fail, which is reported, not fatal.

    Each started server is appended to servers at once, so the caller can stop
    it even when a later one fails to start.
    """
    python = sys.executable
    up_port = free_port()
    upstream = start_server(
        "fake_upstream",
        [python, "-m", "benchmarks.fake_upstream", "--port", str(up_port),
         "--stream-chunks", str(opts.stream_chunks), "--chunk-delay-ms", str(opts.chunk_delay_ms),
         "--paced-delay-ms", str(opts.paced_delay_ms)],
        up_port, tmp, REPO_ROOT,
    )  # fmt: skip
    servers.append(upstream)
    floor_port = free_port()
    floor = start_server(
        "passthrough",
        [python, "-m", "benchmarks.passthrough", "--port", str(floor_port), "--upstream", upstream.url],
        floor_port, tmp, REPO_ROOT,
    )  # fmt: skip
    servers.append(floor)
    targets = [Target(DIRECT, upstream, upstream.url), Target(FLOOR, floor, floor.url)]

    config = gateway_config.write_config(tmp, upstream.url, opts.gateway_config)
    gw_port = free_port()
    try:
        gateway = start_server(
            "gateway",
            [python, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(gw_port),
             *opts.gateway_args],
            gw_port, tmp, REPO_ROOT, timeout_s=opts.gateway_timeout_s,
        )  # fmt: skip
    except ServerStartError as exc:
        problems.append(f"gateway failed to start:\n{exc}")
        _log(f"gateway failed to start:\n{exc}")
        return targets
    servers.append(gateway)
    api_key = None
    if opts.gateway_config is None:
        try:
            api_key = gateway_config.issue_virtual_key(gateway.url)
        except OSError as exc:
            problems.append(f"gateway did not issue a virtual key: {exc}")
            return targets
    targets.append(Target(GATEWAY, gateway, gateway.url, api_key))
    return targets


def _start_peers(
    opts: Options, tmp: Path, upstream: str, servers: list[Server], problems: list[str]
) -> tuple[list[Target], list[str]]:
    """The installed peers among opts.peers, started; one line per peer on what ran or why not."""
    targets: list[Target] = []
    lines: list[str] = []
    for name in opts.peers:
        version = peers.installed_version(name)
        if version is None:
            lines.append(f"{name} skipped ({peers.how_to_install(name)})")
            _log(f"peer {lines[-1]}")
            continue
        _log(f"starting peer {name} {version}")
        try:
            peer = peers.start(name, tmp, upstream, version)
        except ServerStartError as exc:
            problems.append(f"{name} failed to start:\n{exc}")
            lines.append(f"{name} {version} failed to start (see Problems)")
            continue
        servers.append(peer.server)
        targets.append(Target(name, peer.server, peer.server.url, peer.api_key, tuple(peer.headers.items())))
        lines.append(f"{name} {version}, started by benchmarks/peers.py")
    return targets, lines

def _git_head() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "no commit"


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _settings(opts: Options, load_before: str, elapsed_s: float) -> list[tuple[str, str]]:
    try:
        loop = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        loop = "asyncio"
    tools = sorted(
        {
            resolve_tool(LoadSpec("", w, opts.concurrency, opts.duration_s, tool=opts.tool), all_workloads()[w])
            for w in LOAD_WORKLOADS
        }
    )
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("commit", _git_head()),
        ("gateway command extras", " ".join(opts.gateway_args) or "none"),
        ("machine", f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {loop}"),
        ("load average before / after", f"{load_before} / {_loadavg()}"),
        ("load tools", ", ".join(tools) + " (streams always use the Python client, which times the first byte)"),
        (
            "rounds",
            (
                f"{opts.rounds} x {opts.duration_s:g} s per cell at concurrency {opts.concurrency}, "
                f"{opts.moderate_duration_s:g} s at concurrency {opts.moderate_concurrency}; "
                "medians of rounds, ratios and deltas paired within a round"
            ),
        ),
        (
            "stream",
            (
                f"{opts.stream_chunks} chunks, {opts.chunk_delay_ms:g} ms apart "
                f"({opts.paced_delay_ms:g} ms for the paced workload)"
            ),
        ),
        ("wall time", f"{elapsed_s:.0f} s"),
    ]


def _memory_row(target: Target | None, name: str, idle: Memory | None) -> report.MemoryRow:
    if target is None or not target.server.alive():
        return report.MemoryRow(name, idle.rss_mb if idle else None, None, None)
    now = target.server.memory()
    return report.MemoryRow(name, idle.rss_mb if idle else None, now.peak_mb, now.rss_mb)


def _raw(rounds: Rounds) -> dict[str, list[dict[str, object] | None]]:
    return {f"{w}/{t}": [r.to_dict() if r else None for r in results] for (w, t), results in rounds.items()}


def _problems_from_errors(rounds: Rounds, phase: str) -> list[str]:
    found = []
    for (workload, target), results in rounds.items():
        errors = [r for r in results if r is not None and r.first_error]
        if errors:
            total = sum(r.errors for r in errors)
            found.append(f"{phase}: {workload} via {target}: {total} errors; first: {errors[0].first_error}")
    return found


def benchmark(opts: Options) -> str:
    started = time.monotonic()
    load_before = _loadavg()
    problems: list[str] = []
    workloads = all_workloads()
    _log(f"estimated time: ~{_estimate_s(opts):.0f} s")
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp_name:
        tmp = Path(tmp_name)
        servers: list[Server] = []
        try:
            targets = _start_stack(opts, tmp, servers, problems)
            peer_targets, peer_lines = _start_peers(opts, tmp, targets[0].url, servers, problems)
            targets += peer_targets
            skip: set[tuple[str, str]] = set()
            for target in targets:
                for name in dict.fromkeys(LOAD_WORKLOADS + MODERATE_WORKLOADS):
                    error = _preflight(target.url, workloads[name], target.api_key or opts.api_key, target.headers)
                    if error is not None:
                        skip.add((name, target.name))
                        problems.append(f"{target.name} fails {name} before any load: {error}")
                        _log(f"preflight: {target.name} {name}: {error}")
            for target in peer_targets:
                for name in LOAD_WORKLOADS:
                    if (name, target.name) not in skip:
                        measure(LoadSpec(target.url, name, opts.concurrency, PEER_WARMUP_S, api_key=target.api_key
                                         or opts.api_key, tool="python", headers=target.headers))
            by_name = {t.name: t for t in targets}
            measured = [name for name in (FLOOR, GATEWAY, *PEERS) if name in by_name]
            idle = {name: by_name[name].server.memory() for name in measured}

            _log(f"throughput phase: concurrency {opts.concurrency}")
            load = _run_phase("load", targets, LOAD_WORKLOADS, skip, opts.concurrency, opts.duration_s, opts, problems)
            _log(f"latency phase: concurrency {opts.moderate_concurrency}")
            moderate = _run_phase(
                "moderate", targets, MODERATE_WORKLOADS, skip, opts.moderate_concurrency,
                opts.moderate_duration_s, opts, problems,
            )  # fmt: skip
            time.sleep(1.0)  # let in-flight buffers drain before reading RSS "after load"
            memory = [_memory_row(by_name.get(name), name, idle.get(name)) for name in measured]
            load_errors = _problems_from_errors(load, "load") + _problems_from_errors(moderate, "moderate")
            problems += load_errors
            gateway = by_name.get(GATEWAY)
            if gateway is not None and any(f"via {GATEWAY}" in p for p in load_errors):
                # Per-request access lines at INFO would bury the warning or traceback that explains the errors.
                problems.append(f"gateway log, last lines above INFO:\n{gateway.server.log_tail(20, drop=' INFO ')}")
        finally:
            for server in reversed(servers):
                server.stop()

    result = report.Report(
        settings=_settings(opts, load_before, time.monotonic() - started),
        workload_labels={w.name: w.label for w in workloads.values()},
        load_concurrency=opts.concurrency,
        moderate_concurrency=opts.moderate_concurrency,
        load=summarise(load, LOAD_WORKLOADS),
        moderate=summarise(moderate, MODERATE_WORKLOADS),
        memory=memory,
        problems=problems,
        peers=peer_lines,
    )
    markdown = report.render(result)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    (opts.out_dir / "latest.md").write_text(markdown)
    raw = {"settings": dict(result.settings), "load": _raw(load), "moderate": _raw(moderate)}
    (opts.out_dir / "latest.json").write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    chart.draw(result, opts.out_dir / "latest.png")
    return markdown


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per target per workload per round")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop workers in the throughput phase")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions; the median is reported")
    parser.add_argument("--moderate-concurrency", type=int, default=1, help="workers in the latency phase")
    parser.add_argument("--moderate-duration", type=float, default=1.0, help="seconds per cell, latency phase")
    parser.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds before each Python run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for latest.md/.png/.json")
    parser.add_argument(
        "--gateway-config", type=Path, default=None, help="YAML to start the gateway with; {upstream} is replaced"
    )
    parser.add_argument("--gateway-timeout", type=float, default=30.0, help="seconds to wait for the gateway port")
    parser.add_argument(
        "--gateway-arg",
        action="append",
        default=[],
        help="extra argument for the gateway command line, repeatable; use the = form: --gateway-arg=--workers=2",
    )
    parser.add_argument("--api-key", default="sk-bench", help="bearer token sent to every target")
    parser.add_argument("--tool", choices=TOOLS, default="auto", help="load tool for non-streaming workloads")
    parser.add_argument("--stream-chunks", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    parser.add_argument("--paced-delay-ms", type=float, default=1.0)
    parser.add_argument(
        "--peers",
        default="auto",
        help="other gateways to run beside ours: auto (those installed), none, or a list such as litellm,portkey; "
        "install them with python -m benchmarks.peers install",
    )
    args = parser.parse_args(argv)
    try:
        peer_names = peers.parse_peers(args.peers)
    except ValueError as exc:
        parser.error(str(exc))
    if args.gateway_config is not None and not args.gateway_config.is_file():
        parser.error(f"--gateway-config {args.gateway_config} is not a file")
    return Options(
        duration_s=max(0.5, args.duration),
        concurrency=max(1, args.concurrency),
        rounds=max(1, args.rounds),
        moderate_concurrency=max(1, args.moderate_concurrency),
        moderate_duration_s=max(0.5, args.moderate_duration),
        warmup_s=max(0.0, args.warmup),
        out_dir=args.out,
        gateway_config=args.gateway_config,
        gateway_timeout_s=args.gateway_timeout,
        gateway_args=tuple(args.gateway_arg),
        api_key=args.api_key,
        tool=args.tool,
        stream_chunks=max(0, args.stream_chunks),
        chunk_delay_ms=max(0.0, args.chunk_delay_ms),
        paced_delay_ms=max(0.0, args.paced_delay_ms),
        peers=peer_names,
    )


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse_args(argv)
    try:
        markdown = benchmark(opts)
    except ServerStartError as exc:
        sys.exit(f"benchmark aborted: {exc}")
    print(markdown)
    _log(f"wrote {opts.out_dir / 'latest.md'} and {opts.out_dir / 'latest.png'}")
    if "## Problems" in markdown:
        _log("there were problems (a target failed, died or returned errors): see the Problems section")


if __name__ == "__main__":
    main()
