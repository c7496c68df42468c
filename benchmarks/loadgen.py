"""Closed-loop load generator: wrk when installed, else Python (aiohttp).

C workers each send one request, wait for the whole response, and send the
next, for D seconds or until N requests are done. Streaming workloads always
use the Python client, because only it can time the first byte.

    python -m benchmarks.loadgen --url http://127.0.0.1:P --workload chat \
        [--concurrency C] [--duration D | --requests N] [--tool auto|wrk|python] [--json]

`measure()` is what the runner calls: it never runs the Python client in the
caller's event loop, but in a child process of its own, so the harness's work
cannot distort the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from dataclasses import dataclass
from time import perf_counter

import aiohttp
import orjson

from benchmarks.eventloop import run
from benchmarks.load_result import LoadResult, percentile
from benchmarks.workloads import Workload, all_workloads
from benchmarks.wrk_runner import run_wrk, wrk_path

TOOLS = ("auto", "wrk", "python")
REQUEST_TIMEOUT_S = 15.0
# Upper bound on a fixed-count run, so a stalled target cannot hang the harness.
MAX_COUNT_RUN_S = 120.0
# Pause after a failed connect so a dead target is not hammered in a hot loop.
ERROR_BACKOFF_S = 0.01


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base_url: str
    workload: str
    concurrency: int
    duration_s: float
    requests: int | None = None
    warmup_s: float = 0.0
    api_key: str = "sk-bench"
    tool: str = "auto"
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request, after the key


def resolve_tool(spec: LoadSpec, workload: Workload) -> str:
    if workload.stream or spec.requests is not None:
        return "python"
    if spec.tool == "auto":
        return "wrk" if wrk_path() else "python"
    return spec.tool


class _Tally:
    """Samples of one run; only requests inside the measuring window count."""

    __slots__ = ("completed", "errors", "first_error", "last_done", "latencies", "ttfbs", "window_end", "window_start")

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.latencies: list[float] = []
        self.ttfbs: list[float] = []
        self.completed = 0
        self.errors = 0
        self.first_error: str | None = None
        self.last_done = window_start

    def record(self, started: float, first_byte: float | None, done: float, error: str | None) -> None:
        if done < self.window_start or done > self.window_end:
            return
        self.last_done = max(self.last_done, done)
        if error is not None:
            self.errors += 1
            self.first_error = self.first_error or error
            return
        self.completed += 1
        # A request begun during warmup counts towards throughput but not latency,
        # since it may have queued behind connection setup.
        if started >= self.window_start:
            self.latencies.append(done - started)
            if first_byte is not None:
                self.ttfbs.append(first_byte - started)


async def _one(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool
) -> tuple[float | None, str | None]:
    """Send one request; return (time of first body byte, error or None)."""
    async with session.post(url, data=body, headers=headers) as resp:
        first_byte: float | None = None
        if stream:
            head = await resp.content.readany()
            first_byte = perf_counter()
            while await resp.content.readany():
                pass
        else:
            head = await resp.read()
        if resp.status != 200:
            return first_byte, f"HTTP {resp.status}: {head[:200].decode(errors='replace')}"
        return first_byte, None


async def generate(spec: LoadSpec, workload: Workload) -> LoadResult:
    url = spec.base_url.rstrip("/") + workload.path
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {spec.api_key}", **dict(spec.headers)}
    start = perf_counter()
    window_start = start + spec.warmup_s
    window_end = window_start + (spec.duration_s if spec.requests is None else MAX_COUNT_RUN_S)
    tally = _Tally(window_start, window_end)
    tickets = spec.requests

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal tickets
        while True:
            started = perf_counter()
            if started >= window_end:
                return
            if tickets is not None and started >= window_start:
                if tickets <= 0:
                    return
                tickets -= 1
            try:
                first_byte, error = await _one(session, url, workload.body, headers, workload.stream)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                tally.record(started, None, perf_counter(), f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            tally.record(started, first_byte, perf_counter(), error)

    connector = aiohttp.TCPConnector(limit=spec.concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        tasks = [asyncio.create_task(worker(session)) for _ in range(max(1, spec.concurrency))]
        _, pending = await asyncio.wait(tasks, timeout=window_end - perf_counter() + REQUEST_TIMEOUT_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    elapsed = (window_end - window_start) if spec.requests is None else (tally.last_done - window_start)
    latencies = sorted(tally.latencies)
    ttfbs = sorted(tally.ttfbs)

    def ms(value: float | None) -> float | None:
        return None if value is None else value * 1000

    return LoadResult(
        tool="python",
        requests=tally.completed,
        errors=tally.errors,
        elapsed_s=elapsed,
        p50_ms=ms(percentile(latencies, 50)),
        p99_ms=ms(percentile(latencies, 99)),
        ttfb_p50_ms=ms(percentile(ttfbs, 50)) if workload.stream else None,
        ttfb_p99_ms=ms(percentile(ttfbs, 99)) if workload.stream else None,
        first_error=tally.first_error,
    )


def _python_in_child(spec: LoadSpec) -> LoadResult:
    argv = [
        sys.executable, "-m", "benchmarks.loadgen",
        "--url", spec.base_url, "--workload", spec.workload,
        "--concurrency", str(spec.concurrency), "--duration", str(spec.duration_s),
        "--warmup", str(spec.warmup_s), "--api-key", spec.api_key,
        "--tool", "python", "--json",
    ]  # fmt: skip
    if spec.requests is not None:
        argv += ["--requests", str(spec.requests)]
    for name, value in spec.headers:
        argv += ["--header", f"{name}: {value}"]
    limit = spec.warmup_s + (spec.duration_s if spec.requests is None else MAX_COUNT_RUN_S) + 2 * REQUEST_TIMEOUT_S
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return LoadResult.failed("python", f"load generator did not finish within {limit:.0f}s")
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return LoadResult.failed("python", f"load generator exited {done.returncode}: {tail}")
    return LoadResult.from_dict(orjson.loads(lines[-1]))


def measure(spec: LoadSpec) -> LoadResult:
    """One measurement, out of the caller's process whichever tool runs it."""
    workload = all_workloads()[spec.workload]
    if resolve_tool(spec, workload) == "wrk":
        url = spec.base_url.rstrip("/") + workload.path
        return run_wrk(url, workload.body, spec.api_key, spec.concurrency, spec.duration_s, spec.headers)
    return _python_in_child(spec)


def _describe(result: LoadResult) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    text = (
        f"tool={result.tool} requests={result.requests} errors={result.errors} "
        f"rps={result.rps:.0f} p50={f(result.p50_ms)}ms p99={f(result.p99_ms)}ms"
    )
    if result.ttfb_p50_ms is not None:
        text += f" ttfb_p50={f(result.ttfb_p50_ms)}ms ttfb_p99={f(result.ttfb_p99_ms)}ms"
    if result.first_error:
        text += f"\nfirst error: {result.first_error}"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="base URL of the target, e.g. http://127.0.0.1:8000")
    parser.add_argument("--workload", choices=list(all_workloads()), default="chat")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of measurement")
    parser.add_argument("--requests", type=int, default=None, help="fixed request count instead of a duration")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of unmeasured load first (Python only)")
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--tool", choices=TOOLS, default="auto")
    parser.add_argument("--header", action="append", default=[], help="extra 'Name: value', repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a summary")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        base_url=args.url,
        workload=args.workload,
        concurrency=max(1, args.concurrency),
        duration_s=max(0.1, args.duration),
        requests=args.requests,
        warmup_s=max(0.0, args.warmup),
        api_key=args.api_key,
        tool=args.tool,
        headers=tuple((n.strip(), v.strip()) for n, _, v in (h.partition(":") for h in args.header)),
    )
    workload = all_workloads()[spec.workload]
    if resolve_tool(spec, workload) == "python":
        result = run(generate(spec, workload))
    else:
        result = measure(spec)
    print(orjson.dumps(result.to_dict()).decode() if args.json else _describe(result))


if __name__ == "__main__":
    main()
