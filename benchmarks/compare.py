"""Two gateway commits side by side: did a change cost throughput?

    python -m benchmarks.compare BASE [--rounds N] [--duration S] [--workload W ...]

Checks BASE out into a temporary git worktree, starts its gateway and this
checkout's against one fake upstream, and measures them in alternation, round
after round (one idles while the other is measured), each with a virtual key
through the default chain. Prints each round's req/s and the median of the
paired ratios (this checkout / BASE): on a shared, noisy machine a pair taken
seconds apart is the fairest comparison there is.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import gateway_config
from benchmarks.loadgen import LoadSpec, measure
from benchmarks.servers import Server, free_port, start_server

REPO_ROOT = Path(__file__).resolve().parent.parent


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
            up_port = free_port()
            upstream = start_server("fake_upstream", [sys.executable, "-m", "benchmarks.fake_upstream",
                                                      "--port", str(up_port)], up_port, work, REPO_ROOT)
            servers.append(upstream)
            gateways = {}
            for name, root in (("base", base_root), ("this", REPO_ROOT)):
                server, key = _gateway(name, root, upstream.url, work)
                servers.append(server)
                gateways[name] = (server, key)
            for workload in workloads:
                ratios = []
                for round_ in range(args.rounds):
                    rps = {}
                    order = ("base", "this") if round_ % 2 == 0 else ("this", "base")
                    for name in order:
                        server, key = gateways[name]
                        result = measure(LoadSpec(server.url, workload, args.concurrency, args.duration,
                                                  api_key=key))
                        rps[name] = result.rps
                    ratios.append(rps["this"] / rps["base"])
                    print(f"{workload:<12} round {round_ + 1}: base {rps['base']:8.0f}  this {rps['this']:8.0f} "
                          f"req/s  ratio {ratios[-1]:.3f}", flush=True)
                print(f"{workload:<12} median paired ratio this/base: {statistics.median(ratios):.3f} "
                      f"(range {min(ratios):.3f}-{max(ratios):.3f})", flush=True)
        finally:
            for server in reversed(servers):
                server.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=REPO_ROOT, check=False)


if __name__ == "__main__":
    main()
