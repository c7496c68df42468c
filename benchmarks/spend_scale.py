"""Spend logs at scale on PostgreSQL: seed N records, measure the spend writer's throughput and each
report endpoint's latency over HTTP against a gateway on that database.

    python -m benchmarks.spend_scale                       # 200k records, a couple of minutes
    python -m benchmarks.spend_scale --records 10000000    # the 10M run

Seeding is one INSERT ... SELECT over generate_series per day, generated in the server: faster than COPY,
which would first have to build every row in Python. The daily totals, then the rollup, are filled in one
GROUP BY each, as migrations 10 and 13 fill them. The writer is measured through Store.write_spend_lines,
the spooled segments' path, with new records and then with the same segments replayed (all duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.servers import free_port, start_server
from gateway.spend import partitions
from gateway.spend.record import SpendRecord, spool_line
from gateway.store.database import open_database
from gateway.store.migrations import DAY_OF_START, SPEND_DAILY_FILL, SPEND_ROLLUP_FILL
from gateway.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
MASTER = "sk-spend-bench"
KEYS, USERS, TEAMS, END_USERS, MODELS = 1000, 200, 20, 20, 5

SEED = f"""
INSERT INTO gw_spend_logs (request_id, api_key, user_id, team_id, end_user, model, model_group, call_type, stream,
    prompt_tokens, completion_tokens, total_tokens, usage_estimated, spend, start_time, end_time, status,
    status_code, tags)
SELECT md5($1::text || '-' || g), md5('k' || g % {KEYS}) || md5('K' || g % {KEYS}), 'user-' || (g % {KEYS}) % {USERS},
    'team-' || (g % {KEYS}) % {TEAMS}, CASE WHEN g % 10 = 0 THEN 'customer-' || (g % {KEYS}) % {END_USERS} END,
    'model-' || g % {MODELS}, 'model-' || g % {MODELS}, 'chat/completions', FALSE, 100 + g % 50, 20 + g % 30,
    120 + g % 50 + g % 30, FALSE, (g % 97) * 0.00001, $2 + g * $3, $2 + g * $3 + 1.0, 'success', 200, '[]'
FROM generate_series(0, $4 - 1) AS g
"""


async def seed(store: Store, records: int, days: int, now: float) -> float:
    started = time.perf_counter()
    today = partitions.day_of(now)
    span = range(today - days + 1, today + 1)
    await store.ensure_spend_partitions(set(span))
    per_day = records // days
    for day in span:
        count = per_day + (records - per_day * days if day == today else 0)
        await store.db.execute(SEED, f"d{day}", float(day * partitions.DAY), partitions.DAY / max(count, 1) * 0.999,
                               count)
    await store.db.execute(SPEND_DAILY_FILL.format(day=DAY_OF_START["postgres"]))
    await store.db.execute(SPEND_ROLLUP_FILL)
    await store.db.execute("ANALYZE gw_spend_logs")
    await store.db.execute("ANALYZE gw_spend_daily")
    await store.db.execute("ANALYZE gw_spend_rollup")
    return time.perf_counter() - started


async def writer_throughput(store: Store, records: int, batch: int) -> dict[str, float]:
    now = time.time()
    lines = [spool_line(SpendRecord(request_id=uuid.uuid4().hex, api_key=f"{i % KEYS:064x}",
                                    user_id=f"user-{i % USERS}", team_id=f"team-{i % TEAMS}",
                                    model=f"model-{i % MODELS}", model_group=f"model-{i % MODELS}",
                                    prompt_tokens=100, completion_tokens=20, total_tokens=120, spend=0.0001,
                                    start_time=now + i * 0.001, end_time=now + i * 0.001 + 1))
             for i in range(records)]
    segments = [b"".join(lines[i:i + batch]) for i in range(0, records, batch)]
    result = {}
    for label in ("new", "replayed"):
        started = time.perf_counter()
        written = 0
        for segment in segments:
            written += await store.write_spend_lines(segment)
        elapsed = time.perf_counter() - started
        result[f"{label}_records_per_s"] = records / elapsed
        result[f"{label}_written"] = written
    return result


async def raw_report_seconds(store: Store, days: int, now: float) -> float:
    """What /global/spend/report by team cost when it grouped the log itself (the query it ran before)."""
    day = DAY_OF_START["postgres"]
    started = time.perf_counter()
    await store.db.fetch(
        f"SELECT {day} AS day, team_id AS grp, model_group, SUM(spend) AS spend, SUM(total_tokens) AS total_tokens, "
        f"COUNT(*) AS requests FROM gw_spend_logs WHERE start_time >= $1 AND start_time < $2 "
        f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", float((partitions.day_of(now) - days + 1) * partitions.DAY),
        float((partitions.day_of(now) + 1) * partitions.DAY))
    return time.perf_counter() - started


async def endpoint_latency(url: str, calls: int, first_day: str, last_day: str,
                           sample_key: str) -> dict[str, dict[str, float]]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    dates = {"start_date": first_day, "end_date": last_day}
    endpoints: list[tuple[str, str, str, dict[str, str] | None, Any]] = [
        ("spend/logs summary", "GET", "/spend/logs", dates, None),
        ("spend/logs key listing (limit 100)", "GET", "/spend/logs",
         {"api_key": sample_key, "summarize": "false", "limit": "100"}, None),
        *((f"global/spend/report group_by={g}", "GET", "/global/spend/report", {**dates, "group_by": g}, None)
          for g in ("team", "api_key", "user", "customer", "model")),
        ("global/spend/keys", "GET", "/global/spend/keys", {"limit": "10"}, None),
        ("global/spend/models", "GET", "/global/spend/models", None, None),
        ("global/spend/teams", "GET", "/global/spend/teams", None, None),
        ("global/spend/end_users", "POST", "/global/spend/end_users", None, {}),
        ("global/all_end_users", "GET", "/global/all_end_users", None, None),
    ]
    results = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{url}/key/generate", json={}) as r:
            key = (await r.json())["key"]
        endpoints.append(("key/info", "GET", "/key/info", {"key": key}, None))
        for name, method, path, params, body in endpoints:
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                async with http.request(method, f"{url}{path}", params=params, json=body) as r:
                    payload = await r.read()
                    assert r.status == 200, (name, r.status, payload[:300])
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            results[name] = {"p50_ms": statistics.median(timings),
                             "p95_ms": timings[min(len(timings) - 1, int(len(timings) * 0.95))],
                             "bytes": len(payload)}
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="records seeded (10000000 for the 10M run)")
    parser.add_argument("--days", type=int, default=30, help="days the seeded records spread over")
    parser.add_argument("--write-records", type=int, default=20_000, help="records pushed through the writer")
    parser.add_argument("--batch", type=int, default=2_000, help="records per spooled segment")
    parser.add_argument("--calls", type=int, default=20, help="calls per endpoint")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    args = parser.parse_args()
    schema = f"gw_bench_spend_{uuid.uuid4().hex[:8]}"
    url = f"{args.database_url}{'&' if '?' in args.database_url else '?'}schema={schema}"
    store = Store(await open_database(url, "unused.db"))
    gateway = None
    try:
        await store.start()
        now = time.time()
        seconds = await seed(store, args.records, args.days, now)
        print(f"seeded {args.records:,} records in {seconds:.1f} s", file=sys.stderr)
        row = await store.db.fetchrow("SELECT COUNT(*) AS n FROM gw_spend_daily")
        daily_rows = int(row["n"]) if row else 0
        writes = await writer_throughput(store, args.write_records, args.batch)
        raw = await raw_report_seconds(store, args.days, now)
        workdir = Path(tempfile.mkdtemp(prefix="spend-bench-"))
        config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                  "general_settings": {"master_key": MASTER, "database_url": url}}
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        port = free_port()
        gateway = start_server("gateway", [sys.executable, "-m", "gateway", "--config", str(workdir / "config.yaml"),
                                           "--host", "127.0.0.1", "--port", str(port)], port, workdir, ROOT)
        sample = await store.db.fetchrow("SELECT api_key FROM gw_spend_daily LIMIT 1")
        first_day = partitions.iso_day(partitions.day_of(now) - args.days + 1)
        latency = await endpoint_latency(gateway.url, args.calls, first_day, partitions.iso_day(partitions.day_of(now)),
                                         str(sample["api_key"]) if sample else "")
    finally:
        if gateway is not None:
            gateway.stop()
        if not args.keep:
            await store.db.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()
    load = Path("/proc/loadavg").read_text().split()[:3]
    result = {"records": args.records, "days": args.days, "daily_rows": daily_rows, "seed_seconds": seconds,
              "writer": {**writes, "batch": args.batch, "records": args.write_records},
              "raw_report_by_team_ms": raw * 1000, "endpoints": latency, "loadavg": load}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "spend_scale.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Spend logs at {args.records:,} records over {args.days} days (PostgreSQL)", "",
             f"Load average while measuring: {' '.join(load)}. Daily-total rows: {daily_rows:,}.", "",
             f"- seeding: {seconds:.1f} s",
             f"- spend writer (write_spend_lines, {args.batch:,}-record segments): "
             f"{writes['new_records_per_s']:,.0f} new records/s; the same segments replayed: "
             f"{writes['replayed_records_per_s']:,.0f} records/s (all skipped)",
             f"- the old report query (grouping the raw log by day, team and model): {raw * 1000:,.0f} ms", "",
             "| endpoint | p50 ms | p95 ms | response bytes |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} | {int(v['bytes']):,} |"
              for name, v in latency.items()]
    (args.out / "spend_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
