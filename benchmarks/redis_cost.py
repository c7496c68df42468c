"""What sharing limits and budgets through Redis costs, against the same chain without Redis.

    python -m benchmarks.redis_cost [--rounds N] [--duration S] [--workload W ...] [--tls]

Starts one fake upstream, a Redis of its own (a `redis-server` on a free loopback port, so that its
command counts are this run's alone) and two gateways on the same config: one keeping every limit
in its own process (the embedded default), one sharing them through that Redis. Each gets a
virtual key with rpm, tpm, parallel-request limits and a budget, and the chat deployment has rpm
and tpm of its own, so every request is admitted by the caller's limits, the budget and the
deployment's limits, and settles all three. The two are measured in alternation, round after
round; each round prints req/s, p50, and the Redis commands (from `INFO commandstats`, the INFO
itself left out) per request of the Redis gateway, and the median paired ratio (Redis / embedded)
closes each workload. `--tls` serves that Redis over TLS only (a throwaway authority's certificate)
and names it `rediss://...?ssl_ca_certs=...`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
import yaml

from benchmarks import gateway_config
from benchmarks.compare import cpu_seconds
from benchmarks.loadgen import LoadSpec, measure
from benchmarks.servers import Server, free_port, start_fake_upstream, start_server
from benchmarks.workloads import CHAT_MODEL, EMBED_MODEL, PACED_CHAT_MODEL

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"rpm_limit": 100_000_000, "tpm_limit": 10_000_000_000, "max_parallel_requests": 10_000,
          "max_budget": 1_000_000.0}
DEPLOYMENT_LIMITS = {"rpm": 100_000_000, "tpm": 10_000_000_000}
NAMES = ("embedded", "redis")
# Commands the gateway sends itself on the request path; commandstats also counts those a script runs
# (the ZREMs of a settlement batch run inside its script).
CALLED = frozenset({"evalsha", "eval"})


def _config(upstream: str, redis_url: str | None) -> dict[str, Any]:
    config = gateway_config.default_config(upstream)
    for entry in config["model_list"]:
        if entry["model_name"] == CHAT_MODEL:
            entry["litellm_params"].update(DEPLOYMENT_LIMITS)
    if redis_url is not None:
        config["router_settings"] = {"redis_url": redis_url}
    return config


def _limited_key(gateway_url: str) -> str:
    body = json.dumps({"models": [CHAT_MODEL, PACED_CHAT_MODEL, EMBED_MODEL], "key_alias": "limited",
                       **LIMITS}).encode()
    request = urllib.request.Request(f"{gateway_url}/key/generate", data=body, method="POST", headers={
        "Authorization": f"Bearer {gateway_config.MASTER_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["key"])


def _gateway(name: str, upstream: str, redis_url: str | None, work: Path, extra: list[str]) -> tuple[Server, str]:
    folder = work / name
    folder.mkdir()
    config = folder / "gateway.yaml"
    config.write_text(yaml.safe_dump(_config(upstream, redis_url), sort_keys=False))
    port = free_port()
    server = start_server(name, [sys.executable, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "warning", *extra], port, folder, REPO_ROOT)
    return server, _limited_key(server.url)


def _start_redis(work: Path, tls: bool = False) -> tuple[Server, redis.Redis, str]:
    """The server, a client of the benchmark's own on it, and the URL the gateway is given."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH")
    port = free_port()
    listen = ["--port", str(port)]
    client = {}
    url = f"redis://127.0.0.1:{port}/0"
    if tls:
        import trustme

        authority = trustme.CA()
        issued = authority.issue_cert("127.0.0.1")
        ca, cert, key = work / "ca.pem", work / "redis.pem", work / "redis.key"
        authority.cert_pem.write_to_path(str(ca))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                  "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        client = {"ssl": True, "ssl_ca_certs": str(ca)}
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    server = start_server("redis", [binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                    "--dir", str(work)], port, work, REPO_ROOT)
    return server, redis.Redis(host="127.0.0.1", port=port, **client), url


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, INFO's own left out."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()
            if name != "cmdstat_info"}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per gateway per workload per round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workload", action="append", help="default: chat, chat-stream")
    parser.add_argument("--gateway-arg", action="append", default=[], help="appended to both gateways' command")
    parser.add_argument("--tls", action="store_true", help="Redis over TLS (rediss://)")
    args = parser.parse_args(argv)
    workloads = args.workload or ["chat", "chat-stream"]
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-redis-cost-") as tmp:
        work = Path(tmp)
        try:
            upstream = start_fake_upstream(work, REPO_ROOT)
            servers.append(upstream)
            redis_server, client, url = _start_redis(work, args.tls)
            servers.append(redis_server)
            gateways = {}
            for name in NAMES:
                redis_url = url if name == "redis" else None
                server, key = _gateway(name, upstream.url, redis_url, work, args.gateway_arg)
                servers.append(server)
                gateways[name] = (server, key)
            for workload in workloads:
                _measure_workload(gateways, client, workload, args)
        finally:
            for server in reversed(servers):
                server.stop()


def _measure_workload(gateways: dict[str, tuple[Server, str]], client: redis.Redis, workload: str,
                      args: argparse.Namespace) -> None:
    ratios: list[float] = []
    p50s: dict[str, list[float]] = {name: [] for name in NAMES}
    cpu: dict[str, list[float]] = {name: [] for name in NAMES}
    per_request: list[float] = []
    calls: list[float] = []
    mix: dict[str, int] = {}
    requests_total = 0
    for round_ in range(args.rounds):
        rps: dict[str, float] = {}
        for name in NAMES if round_ % 2 == 0 else NAMES[::-1]:
            server, key = gateways[name]
            before, cpu_before = commands(client), cpu_seconds(server.pid)
            result = measure(LoadSpec(server.url, workload, args.concurrency, args.duration, api_key=key))
            # Settlements still on their way are this round's: wait for the count to stop moving.
            after = commands(client)
            while name == "redis":
                time.sleep(0.2)
                later = commands(client)
                if later == after:
                    break
                after = later
            if result.errors:
                print(f"{name}: {result.errors} errors ({result.first_error})", flush=True)
            rps[name] = result.rps
            p50s[name].append(result.p50_ms or 0.0)
            cpu[name].append((cpu_seconds(server.pid) - cpu_before) / max(result.requests, 1) * 1e6)
            if name == "redis":
                delta = _delta(before, after)
                per_request.append(sum(delta.values()) / max(result.requests, 1))
                calls.append(sum(n for c, n in delta.items() if c in CALLED) / max(result.requests, 1))
                requests_total += result.requests
                for command, count in delta.items():
                    mix[command] = mix.get(command, 0) + count
        ratios.append(rps["redis"] / rps["embedded"])
        print(f"{workload:<12} round {round_ + 1}: embedded {rps['embedded']:7.0f}  redis {rps['redis']:7.0f} req/s "
              f"ratio {ratios[-1]:.3f}; p50 {p50s['embedded'][-1]:.1f} / {p50s['redis'][-1]:.1f} ms; "
              f"{calls[-1]:.2f} calls ({per_request[-1]:.1f} commands) to Redis a request", flush=True)
    shares = ", ".join(f"{command} {count / max(requests_total, 1):.2f}"
                       for command, count in sorted(mix.items(), key=lambda item: -item[1]))
    print(f"{workload:<12} median paired ratio redis/embedded: {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}); p50 embedded {statistics.median(p50s['embedded']):.1f} ms, "
          f"redis {statistics.median(p50s['redis']):.1f} ms; CPU a request embedded "
          f"{statistics.median(cpu['embedded']):.0f} us, redis {statistics.median(cpu['redis']):.0f} us; "
          f"calls to Redis a request {statistics.median(calls):.2f}, commands a request (those its scripts run "
          f"included) {statistics.median(per_request):.1f} ({shares})", flush=True)


if __name__ == "__main__":
    main()
