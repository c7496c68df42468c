"""What `--workers 2` buys over one worker, with every limit kept by the node's counters.

    python -m benchmarks.workers [--rounds N] [--duration S] [--workload W ...]

Starts one fake upstream and two gateways on the same config without Redis, one with one worker
and one with `--workers 2`, and measures them in alternation, round after round. The load uses a
virtual key with rpm, tpm, parallel-request limits and a budget, so that each request of the two
workers goes through the node's counters (a rate-limit check, a budget reservation and their
settlements), as one process would count them. Prints each round's req/s and the median of the
paired ratios (2 workers / 1 worker). On a 2-core machine the load generator and the upstream
share the cores with the gateway, so the ratio shows what is left for a second worker, not the
ceiling of a larger machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks import gateway_config
from benchmarks.compare import paired_rounds
from benchmarks.servers import Server, free_port, start_fake_upstream, start_server
from benchmarks.workloads import CHAT_MODEL, EMBED_MODEL, PACED_CHAT_MODEL

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"rpm_limit": 100_000_000, "tpm_limit": 10_000_000_000, "max_parallel_requests": 10_000,
          "max_budget": 1_000_000.0}


def limited_key(gateway_url: str) -> str:
    body = json.dumps({"models": [CHAT_MODEL, PACED_CHAT_MODEL, EMBED_MODEL], "key_alias": "limited",
                       **LIMITS}).encode()
    request = urllib.request.Request(f"{gateway_url}/key/generate", data=body, method="POST", headers={
        "Authorization": f"Bearer {gateway_config.MASTER_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["key"])


def _gateway(name: str, workers: int, upstream: str, work: Path) -> tuple[Server, str]:
    folder = work / name
    folder.mkdir()
    config = gateway_config.write_config(folder, upstream, None)
    port = free_port()
    server = start_server(name, [sys.executable, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning", "--workers", str(workers)],
                          port, folder, REPO_ROOT)
    return server, limited_key(server.url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per gateway per workload per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workload", action="append", help="default: chat, chat-stream")
    args = parser.parse_args(argv)
    workloads = args.workload or ["chat", "chat-stream"]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-workers-") as tmp:
        work = Path(tmp)
        try:
            upstream = start_fake_upstream(work, REPO_ROOT)
            servers.append(upstream)
            gateways = {}
            for name, workers in (("one", 1), ("two", 2)):
                server, key = _gateway(name, workers, upstream.url, work)
                servers.append(server)
                gateways[name] = (server, key)
            for workload in workloads:
                ratios = []
                node_us = []
                for number, measured in enumerate(paired_rounds(gateways, workload, args.rounds, args.concurrency,
                                                                 args.duration), 1):
                    rps, cpu_us = measured
                    ratios.append(rps["two"] / rps["one"])
                    # The supervisor of two workers does nothing on a request but keep the node's counters.
                    node_us.append(cpu_us["two"])
                    print(f"{workload:<12} round {number}: 1 worker {rps['one']:8.0f}  2 workers "
                          f"{rps['two']:8.0f} req/s  ratio {ratios[-1]:.3f}", flush=True)
                print(f"{workload:<12} median paired ratio 2 workers / 1 worker: {statistics.median(ratios):.3f} "
                      f"(range {min(ratios):.3f}-{max(ratios):.3f}); the node's counters: "
                      f"{statistics.median(node_us):.0f} us of CPU a request", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()


if __name__ == "__main__":
    main()
