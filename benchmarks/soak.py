"""A long run through the whole chain, looking for what only shows after many requests: memory that grows,
file descriptors or asyncio tasks that leak, spend records that go missing.

    python -m benchmarks.soak [--requests 100000] [--concurrency 32] [--database sqlite|postgres]
    python -m benchmarks.soak --requests 1000000          # the million

Starts the fake upstream and the gateway (master key, the Prometheus plugin on, a SQLite file or a
PostgreSQL schema of its own), makes a virtual key with rpm, tpm and budget limits set high enough never to
refuse, and sends a fixed mix: non-streaming chat, streams read to the end, embeddings, and streams the
client drops after the first chunk (on the paced model, so the drop lands mid-stream). Every few seconds it
samples the gateway's RSS and open descriptors from /proc and its asyncio task count from
`gateway_asyncio_tasks` on /metrics. At the end it waits for the spend writer and counts the rows: every
request sent, the dropped ones included, must have exactly one.

Verdicts: RSS after warm-up (the first tenth of the requests) within --rss-tolerance of its level then;
descriptors and tasks once idle no higher than after warm-up (plus a small slack for pooled connections);
spend rows == requests sent. Writes benchmarks/results/soak-<database>.json and .md and prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

import aiohttp
import orjson
import yaml

from benchmarks import gateway_config
from benchmarks.eventloop import run
from benchmarks.servers import Server, free_port, read_memory, start_fake_upstream, start_server
from benchmarks.workloads import CHAT_MODEL, EMBED_MODEL, PACED_CHAT_MODEL, all_workloads

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
POSTGRES_BASE = os.environ.get("GATEWAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Out of every 20 requests: 10 chat, 5 streams read whole, 3 embeddings, 2 streams dropped mid-way.
MIX = ("chat",) * 10 + ("stream",) * 5 + ("embeddings",) * 3 + ("cancel",) * 2
REQUEST_TIMEOUT_S = 30.0
FD_SLACK = 8  # pooled upstream and store connections may differ by a few between two idle moments
TASK_SLACK = 8
SPEND_WAIT_S = 120.0


@dataclass(slots=True)
class Sample:
    at_s: float
    sent: int
    rss_mb: float
    fds: int
    tasks: int | None


@dataclass(slots=True)
class Tally:
    sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _tasks(metrics_url: str) -> int | None:
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("gateway_asyncio_tasks "):
            return int(float(line.split()[1]))
    return None


def _sample(server: Server, started: float, sent: int) -> Sample:
    return Sample(round(time.monotonic() - started, 1), sent, round(read_memory(server.pid).rss_mb, 1),
                  _fds(server.pid), _tasks(server.url + "/metrics"))  # fmt: skip


def _config(upstream: str, tmp: Path, database_url: str | None) -> Path:
    config = gateway_config.default_config(upstream)
    config["litellm_settings"] = {"callbacks": ["prometheus"]}
    config["gateway_settings"] = {"database_path": str(tmp / "soak.db"), "spool_dir": str(tmp / "spool")}
    if database_url is not None:
        config["general_settings"]["database_url"] = database_url
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _make_key(gateway_url: str) -> str:
    """Limits and a budget that are checked and counted on every request but never reached."""
    body = orjson.dumps({"models": [CHAT_MODEL, PACED_CHAT_MODEL, EMBED_MODEL], "key_alias": "soak",
                         "rpm_limit": 1_000_000_000, "tpm_limit": 1_000_000_000_000, "max_budget": 1_000_000.0})
    request = urllib.request.Request(f"{gateway_url}/key/generate", data=body, method="POST", headers={
        "Authorization": f"Bearer {gateway_config.MASTER_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(orjson.loads(response.read())["key"])


async def _load(url: str, key: str, total: int, concurrency: int, tally: Tally) -> None:
    workloads = all_workloads()
    bodies = {
        "chat": ("/v1/chat/completions", workloads["chat"].body),
        "stream": ("/v1/chat/completions", workloads["chat-stream"].body),
        "embeddings": ("/v1/embeddings", workloads["embeddings"].body),
        "cancel": ("/v1/chat/completions", workloads["chat-stream-paced"].body),
    }
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    async def one(session: aiohttp.ClientSession, kind: str) -> None:
        path, body = bodies[kind]
        async with session.post(url + path, data=body, headers=headers) as response:
            if kind == "cancel":
                await response.content.readany()
                response.close()  # drop the connection with the stream still running
                if response.status != 200:
                    tally.errors[f"{kind} HTTP {response.status}"] += 1
                return
            await response.read()
            if response.status != 200:
                tally.errors[f"{kind} HTTP {response.status}"] += 1

    async def worker(session: aiohttp.ClientSession) -> None:
        while tally.sent < total:
            kind = MIX[tally.sent % len(MIX)]
            tally.sent += 1
            tally.by_kind[kind] += 1
            try:
                await one(session, kind)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                tally.errors[f"{kind} {type(exc).__name__}"] += 1

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


async def _drive(server: Server, key: str, opts: argparse.Namespace) -> tuple[Tally, list[Sample], float]:
    tally = Tally()
    samples: list[Sample] = []
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    load = asyncio.create_task(_load(server.url, key, opts.requests, opts.concurrency, tally))
    next_report = 0.0
    while not load.done():
        await asyncio.wait([load], timeout=opts.sample_interval)
        sample = await loop.run_in_executor(None, _sample, server, started, tally.sent)
        samples.append(sample)
        if sample.at_s >= next_report:
            next_report = sample.at_s + 30
            rate = tally.sent / max(sample.at_s, 0.001)
            print(f"  {sample.at_s:7.0f} s  sent {tally.sent:>9,}  {rate:6.0f} req/s  RSS {sample.rss_mb:6.1f} MB  "
                  f"fds {sample.fds}  tasks {sample.tasks}  errors {sum(tally.errors.values())}", flush=True)
        if not server.alive():
            load.cancel()
            break
    await asyncio.gather(load, return_exceptions=True)
    return tally, samples, time.monotonic() - started


def _count_sqlite(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM gw_spend_logs GROUP BY status").fetchall()
        distinct = conn.execute("SELECT COUNT(DISTINCT request_id) FROM gw_spend_logs").fetchone()[0]
    return {**{str(s): int(n) for s, n in rows}, "_distinct": int(distinct)}


async def _count_postgres(url: str) -> dict[str, int]:
    import asyncpg

    base, _, schema = url.partition("?schema=")
    conn = await asyncpg.connect(base)
    try:
        rows = await conn.fetch(f'SELECT status, COUNT(*) AS n FROM "{schema}".gw_spend_logs GROUP BY status')
        distinct = await conn.fetchval(f'SELECT COUNT(DISTINCT request_id) FROM "{schema}".gw_spend_logs')
    finally:
        await conn.close()
    return {**{str(r["status"]): int(r["n"]) for r in rows}, "_distinct": int(distinct)}


async def _drop_schema(url: str) -> None:
    import asyncpg

    base, _, schema = url.partition("?schema=")
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _count(tmp: Path, database_url: str | None) -> dict[str, int]:
    if database_url is None:
        return _count_sqlite(tmp / "soak.db")
    return run(_count_postgres(database_url))


def _wait_for_spend(tmp: Path, database_url: str | None, expected: int) -> dict[str, int]:
    """Row counts once they reach `expected` or stop moving for a while."""
    deadline, last, still = time.monotonic() + SPEND_WAIT_S, -1, 0
    while True:
        counts = _count(tmp, database_url)
        total = sum(v for k, v in counts.items() if not k.startswith("_"))
        if total >= expected or time.monotonic() > deadline:
            return counts
        still = still + 1 if total == last else 0
        if still >= 10:
            return counts
        last = total
        time.sleep(1.0)


def _level(samples: Sequence[Sample], attr: str) -> float:
    values = [float(v) for s in samples if (v := getattr(s, attr)) is not None and v >= 0]
    return median(values) if values else 0.0


def judge(samples: list[Sample], idle: Sample, sent: int, warmup: int, rows: int, distinct: int,
          rss_tolerance: float) -> dict[str, object]:
    after = [s for s in samples if s.sent >= warmup]
    if len(after) < 4:
        after = samples
    head, tail = after[: max(2, len(after) // 10)], after[-max(2, len(after) // 10):]
    rss_start, rss_end = _level(head, "rss_mb"), _level(tail, "rss_mb")
    rss_max = max(s.rss_mb for s in after)
    growth = (rss_end - rss_start) / rss_start if rss_start else 0.0
    fds_start, tasks_start = _level(head, "fds"), _level(head, "tasks")
    return {
        "rss_after_warmup_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_max_after_warmup_mb": rss_max,
        "rss_growth": round(growth, 4),
        "rss_flat": abs(growth) <= rss_tolerance,
        "fds_after_warmup": fds_start,
        "fds_idle_end": idle.fds,
        "fds_ok": idle.fds <= fds_start + FD_SLACK,
        "tasks_after_warmup": tasks_start,
        "tasks_idle_end": idle.tasks,
        "tasks_ok": idle.tasks is not None and idle.tasks <= tasks_start + TASK_SLACK,
        "spend_rows": rows,
        "spend_rows_distinct": distinct,
        "spend_ok": rows == sent and distinct == rows,
    }


def _markdown(result: dict[str, object]) -> str:
    verdict = result["verdict"]
    assert isinstance(verdict, dict)
    lines = [f"# Soak: {result['requests_sent']:,} requests, {result['database']}", ""]
    for key in ("date", "commit", "machine", "load_before", "load_after", "wall_s", "rate_rps", "concurrency",
                "by_kind", "errors", "spend_by_status"):
        lines.append(f"- {key}: {result[key]}")
    lines += ["", "| check | value | ok |", "|---|---|---|"]
    lines.append(f"| RSS after warm-up -> end (max) | {verdict['rss_after_warmup_mb']} -> {verdict['rss_end_mb']} MB "
                 f"({verdict['rss_max_after_warmup_mb']}), {float(str(verdict['rss_growth'])):+.1%} | "
                 f"{verdict['rss_flat']} |")
    lines.append(f"| open fds after warm-up -> idle at end | {verdict['fds_after_warmup']} -> "
                 f"{verdict['fds_idle_end']} | {verdict['fds_ok']} |")
    lines.append(f"| asyncio tasks after warm-up -> idle at end | {verdict['tasks_after_warmup']} -> "
                 f"{verdict['tasks_idle_end']} | {verdict['tasks_ok']} |")
    lines.append(f"| spend rows (distinct request ids) / requests sent | {verdict['spend_rows']} "
                 f"({verdict['spend_rows_distinct']}) / {result['requests_sent']} | {verdict['spend_ok']} |")
    return "\n".join(lines) + "\n"


def soak(opts: argparse.Namespace) -> dict[str, object]:
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    python = sys.executable
    database_url = None
    if opts.database == "postgres":
        separator = "&" if "?" in POSTGRES_BASE else "?"
        database_url = f"{POSTGRES_BASE}{separator}schema=gw_soak_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp_name:
        tmp = Path(tmp_name)
        servers: list[Server] = []
        try:
            upstream = start_fake_upstream(tmp, REPO_ROOT, python)
            servers.append(upstream)
            gw_port = free_port()
            config = _config(upstream.url, tmp, database_url)
            gateway = start_server("gateway", [python, "-m", "gateway", "--config", str(config), "--host", "127.0.0.1",
                                   "--port", str(gw_port), "--log-level", "warning"], gw_port, tmp, REPO_ROOT,
                                   timeout_s=60)  # fmt: skip
            servers.append(gateway)
            key = _make_key(gateway.url)
            print(f"soak: {opts.requests:,} requests at concurrency {opts.concurrency} on {opts.database}", flush=True)
            tally, samples, wall = run(_drive(gateway, key, opts))
            if not gateway.alive():
                raise SystemExit(f"the gateway died:\n{gateway.log_tail()}")
            time.sleep(opts.idle_wait)  # let pooled connections and background flushes settle
            idle = _sample(gateway, time.monotonic() - wall - opts.idle_wait, tally.sent)
            counts = _wait_for_spend(tmp, database_url, tally.sent)
            log_tail = gateway.log_tail(15)
        finally:
            for server in reversed(servers):
                server.stop()
            if database_url is not None and not opts.keep_schema:
                run(_drop_schema(database_url))
    rows = sum(v for k, v in counts.items() if not k.startswith("_"))
    verdict = judge(samples, idle, tally.sent, opts.requests // 10, rows, counts["_distinct"], opts.rss_tolerance)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": os.popen(f"git -C {REPO_ROOT} rev-parse --short HEAD").read().strip(),
        "machine": f"{os.cpu_count()} CPUs, shared with other work",
        "load_before": load_before,
        "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "database": opts.database,
        "concurrency": opts.concurrency,
        "requests_sent": tally.sent,
        "wall_s": round(wall, 1),
        "rate_rps": round(tally.sent / wall, 1) if wall else 0.0,
        "by_kind": dict(tally.by_kind),
        "errors": dict(tally.errors),
        "spend_by_status": {k: v for k, v in counts.items() if not k.startswith("_")},
        "verdict": verdict,
        "idle_sample": asdict(idle),
        "samples": [asdict(s) for s in samples],
        "gateway_log_tail": log_tail,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--rss-tolerance", type=float, default=0.05, help="allowed RSS change after warm-up")
    parser.add_argument("--idle-wait", type=float, default=20.0, help="seconds idle before the final sample")
    parser.add_argument("--keep-schema", action="store_true", help="leave the PostgreSQL schema for inspection")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    opts = parser.parse_args(argv)
    result = soak(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    stem = opts.out / f"soak-{opts.database}"
    stem.with_suffix(".json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    markdown = _markdown(result)
    stem.with_suffix(".md").write_text(markdown)
    print(markdown)
    verdict = result["verdict"]
    assert isinstance(verdict, dict)
    if not all(verdict[k] for k in ("rss_flat", "fds_ok", "tasks_ok", "spend_ok")):
        sys.exit("soak: a check failed (see above)")


if __name__ == "__main__":
    main()
