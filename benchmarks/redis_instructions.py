"""Instructions a request costs the gateway with Redis and without, counted by callgrind.

    python -m benchmarks.redis_instructions [--requests N] [--concurrency C] [--workload W ...] [--tls]

CPU time on a shared machine swings with the load; instruction counts do not. Each gateway (the
embedded counters, then the same config sharing them through a Redis of its own, as in
`benchmarks.redis_cost`) runs under `valgrind --tool=callgrind` with collection off; after a
warm-up of its own the counters are zeroed, N requests are sent at concurrency C, and the dump's
total divided by N is the figure. The gateway's background work in that window (its change-log
poll, the settlement timer) is counted in, as it is in CPU per request. `--dump DIR` keeps the
callgrind files for `callgrind_annotate`; `--tls` serves Redis over TLS only, as
`benchmarks.redis_cost --tls` does.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.redis_cost import NAMES, _config, _limited_key, _start_redis
from benchmarks.servers import Server, free_port, start_fake_upstream, start_server
from benchmarks.workloads import all_workloads

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 600.0  # a Python program under callgrind starts some 50 times slower


async def _send(url: str, key: str, workload: str, total: int, concurrency: int) -> int:
    spec = all_workloads()[workload]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    left = total
    failed = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left, failed
        while left > 0:
            left -= 1
            async with session.post(url + spec.path, data=spec.body, headers=headers) as response:
                await response.read()
                failed += response.status != 200

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failed


def _callgrind(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True)


def _total(folder: Path) -> int:
    """The highest-numbered dump's total instructions."""
    dumps = sorted(folder.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
    text = dumps[-1].read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    assert found is not None, f"no totals in {dumps[-1]}"
    return int(found.group(1))


def _measure(name: str, upstream: str, redis_url: str | None, work: Path, args: argparse.Namespace) -> dict[str, float]:
    import yaml

    folder = work / name
    folder.mkdir()
    config = folder / "gateway.yaml"
    config.write_text(yaml.safe_dump(_config(upstream, redis_url), sort_keys=False))
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={folder}/callgrind.out.%p",
            sys.executable, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]
    server = start_server(name, argv, port, folder, REPO_ROOT, timeout_s=STARTUP_S)
    per_request: dict[str, float] = {}
    try:
        key = _limited_key(server.url)
        for workload in args.workload or ["chat", "chat-stream"]:
            asyncio.run(_send(server.url, key, workload, args.warmup, args.concurrency))
            _callgrind(server.pid, "-i", "on")
            time.sleep(0.5)
            _callgrind(server.pid, "-z")
            failed = asyncio.run(_send(server.url, key, workload, args.requests, args.concurrency))
            time.sleep(0.05)  # the settlements still queued go out
            _callgrind(server.pid, "-d")
            _callgrind(server.pid, "-i", "off")
            per_request[workload] = _total(folder) / args.requests
            print(f"{workload:<12} {name:<9} {per_request[workload] / 1e6:6.2f} M instructions a request"
                  + (f" ({failed} failed)" if failed else ""), flush=True)
            if args.dump:
                for dump in folder.glob("callgrind.out.*"):
                    shutil.copy(dump, Path(args.dump) / f"{name}-{workload}-{dump.name}")
                    dump.unlink()
    finally:
        server.stop()
    return per_request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workload", action="append", help="default: chat, chat-stream")
    parser.add_argument("--dump", help="keep each run's callgrind file in this folder")
    parser.add_argument("--tls", action="store_true", help="Redis over TLS (rediss://)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH")
    if args.dump:
        Path(args.dump).mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-redis-instructions-") as tmp:
        work = Path(tmp)
        try:
            upstream = start_fake_upstream(work, REPO_ROOT)
            servers.append(upstream)
            redis_server, _, url = _start_redis(work, args.tls)
            servers.append(redis_server)
            results = {}
            for name in NAMES:
                redis_url = url if name == "redis" else None
                results[name] = _measure(name, upstream.url, redis_url, work, args)
            for workload, embedded in results["embedded"].items():
                with_redis = results["redis"][workload]
                print(f"{workload:<12} instructions a request: embedded {embedded / 1e6:.2f} M, redis "
                      f"{with_redis / 1e6:.2f} M, ratio {with_redis / embedded:.2f}", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()


if __name__ == "__main__":
    main()
