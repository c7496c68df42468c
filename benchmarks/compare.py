"""Two gateway commits side by side: did a change cost throughput?

    python -m benchmarks.compare BASE [--rounds N] [--duration S] [--workload W ...]

Checks BASE out into a temporary git worktree, starts its gateway and this
checkout's against one fake upstream, and measures them in alternation, round
after round (one idles while the other is measured), each with a virtual key
through the default chain. Prints each round's req/s and the median of the
paired ratios (this checkout / BASE): on a shared, noisy machine a pair taken
seconds apart is the fairest comparison there is. The gateway's CPU time per request, read from /proc,
is printed beside it: it moves less with the machine's other load than req/s does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from benchmarks import gateway_config
from benchmarks.loadgen import LoadSpec, measure
from benchmarks.servers import Server, free_port, start_fake_upstream, start_server

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Round(NamedTuple):
    rps: dict[str, float]
    cpu_us: dict[str, float]  # CPU time of each server's own process (not its children) per request


def paired_rounds(gateways: dict[str, tuple[Server, str]], workload: str, rounds: int, concurrency: int,
                  duration: float) -> Iterator[Round]:
    """Every gateway measured once a round, in an order that alternates, so that each pair is taken
    seconds apart."""
    names = list(gateways)
    for round_ in range(rounds):
        rps: dict[str, float] = {}
        cpu_us: dict[str, float] = {}
        for name in names if round_ % 2 == 0 else names[::-1]:
            server, key = gateways[name]
            before = cpu_seconds(server.pid)
            result = measure(LoadSpec(server.url, workload, concurrency, duration, api_key=key))
            if result.errors:
                print(f"{name}: {result.errors} errors", flush=True)
            rps[name] = result.rps
            cpu_us[name] = (cpu_seconds(server.pid) - before) / max(result.requests, 1) * 1e6
        yield Round(rps, cpu_us)


def _worktree(base: str, where: Path) -> Path:
    path = where / "base-checkout"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), base], cwd=REPO_ROOT, check=True)
    return path


def _gateway(name: str, root: Path, upstream: str, work: Path) -> tuple[Server, str]:
    folder = work / name
    folder.mkdir()
    config = gateway_config.write_config(folder, upstream, None)
    port = free_port()
    server = start_server(name, [sys.executable, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning"], port, folder, root)
    return server, gateway_config.issue_virtual_key(server.url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare against, e.g. HEAD~3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per gateway per workload per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workload", action="append", help="default: chat, chat-stream, embeddings")
    args = parser.parse_args(argv)
    workloads = args.workload or ["chat", "chat-stream", "embeddings"]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-compare-") as tmp:
        work = Path(tmp)
        base_root = _worktree(args.base, work)
        try:
            upstream = start_fake_upstream(work, REPO_ROOT)
            servers.append(upstream)
            gateways = {}
            for name, root in (("base", base_root), ("this", REPO_ROOT)):
                server, key = _gateway(name, root, upstream.url, work)
                servers.append(server)
                gateways[name] = (server, key)
            for workload in workloads:
                ratios = []
                cpu_ratios = []
                for number, measured in enumerate(paired_rounds(gateways, workload, args.rounds, args.concurrency,
                                                                 args.duration), 1):
                    rps, cpu_us = measured
                    ratios.append(rps["this"] / rps["base"])
                    cpu_ratios.append(cpu_us["this"] / cpu_us["base"])
                    print(f"{workload:<12} round {number}: base {rps['base']:8.0f}  this {rps['this']:8.0f} "
                          f"req/s  ratio {ratios[-1]:.3f}; CPU a request base {cpu_us['base']:.0f} us  this "
                          f"{cpu_us['this']:.0f} us", flush=True)
                print(f"{workload:<12} median paired ratio this/base: {statistics.median(ratios):.3f} "
                      f"(range {min(ratios):.3f}-{max(ratios):.3f}); CPU a request this/base: "
                      f"{statistics.median(cpu_ratios):.3f}", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=REPO_ROOT, check=False)


if __name__ == "__main__":
    main()
