"""The spend writer of this checkout against other commits', in the same run: records a second through
Store.write_spend_lines, each commit on a fresh scratch schema (or SQLite file) of its own.

    python -m benchmarks.spend_writer d8efd4d main             # PostgreSQL, 9 rounds
    python -m benchmarks.spend_writer main --database sqlite

Each round runs every commit once, in an order that turns round each round, one after the other (never
two at once), as a child process that imports that commit's gateway package: it migrates a new schema,
seeds it (--seed records over 30 days, the daily totals filled, and the 1,000 keys, 200 users and 20
teams the records name, unless --no-accounts), then times --records new records in --batch-record segments
and the same segments replayed (all duplicates). Each side's CPU time a record is read from /proc for the writer's
process and for its PostgreSQL backend: it moves less with the shared machine's load than records/s
does. Prints each round and, for each commit, the median paired ratio (this checkout / that commit) and
its range.

The child part (--child) imports nothing from benchmarks/, so that it runs against any commit's tree.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
KEYS, USERS, TEAMS, END_USERS, MODELS = 1000, 200, 20, 20, 5
DAY = 86400

SEED = {
    "postgres": f"""
INSERT INTO gw_spend_logs (request_id, api_key, user_id, team_id, end_user, model, model_group, call_type, stream,
    prompt_tokens, completion_tokens, total_tokens, usage_estimated, spend, start_time, end_time, status,
    status_code, tags)
SELECT md5($1::text || '-' || g), lpad(to_hex(g % {KEYS}), 64, '0'), 'user-' || (g % {KEYS}) % {USERS},
    'team-' || (g % {KEYS}) % {TEAMS}, CASE WHEN g % 10 = 0 THEN 'customer-' || (g % {KEYS}) % {END_USERS} END,
    'model-' || g % {MODELS}, 'model-' || g % {MODELS}, 'chat/completions', FALSE, 100 + g % 50, 20 + g % 30,
    120 + g % 50 + g % 30, FALSE, (g % 97) * 0.00001, $2 + g * $3, $2 + g * $3 + 1.0, 'success', 200, '[]'
FROM generate_series(0, $4 - 1) AS g""",
    "sqlite": f"""
WITH RECURSIVE s(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < $4)
INSERT INTO gw_spend_logs (request_id, api_key, user_id, team_id, end_user, model, model_group, call_type, stream,
    prompt_tokens, completion_tokens, total_tokens, usage_estimated, spend, start_time, end_time, status,
    status_code, tags)
SELECT $1 || '-' || g, printf('%064x', g % {KEYS}), 'user-' || (g % {KEYS}) % {USERS},
    'team-' || (g % {KEYS}) % {TEAMS}, CASE WHEN g % 10 = 0 THEN 'customer-' || (g % {KEYS}) % {END_USERS} END,
    'model-' || g % {MODELS}, 'model-' || g % {MODELS}, 'chat/completions', FALSE, 100 + g % 50, 20 + g % 30,
    120 + g % 50 + g % 30, FALSE, (g % 97) * 0.00001, $2 + g * $3, $2 + g * $3 + 1.0, 'success', 200, '[]'
FROM s""",
}
DAY_OF_START = {
    "postgres": "to_char(to_timestamp(start_time) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "sqlite": "date(start_time, 'unixepoch')",
}
DAILY_FILL = (
    "INSERT INTO gw_spend_daily SELECT {day} AS d, COALESCE(api_key, ''), COALESCE(user_id, ''), "
    "COALESCE(team_id, ''), COALESCE(end_user, ''), COALESCE(model_group, ''), COALESCE(model, ''), SUM(spend), "
    "SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), COUNT(*) FROM gw_spend_logs "
    "GROUP BY 1, 2, 3, 4, 5, 6, 7")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the child: one commit's writer on one fresh database -----------------------------------------------

async def child(url: str, seed_records: int, records: int, batch: int, accounts: bool) -> dict[str, Any]:
    from gateway.spend.record import SpendRecord, spool_line
    from gateway.store.database import PostgresDatabase, SQLiteDatabase
    from gateway.store.records import KeyRecord, TeamRecord, UserRecord
    from gateway.store.store import KEYS as KEY_TABLE
    from gateway.store.store import TEAMS as TEAM_TABLE
    from gateway.store.store import USERS as USER_TABLE
    from gateway.store.store import Store

    postgres = url.startswith("postgresql://")
    db: Any = await PostgresDatabase.connect(url, 1, 1) if postgres else SQLiteDatabase(url.removeprefix("sqlite:///"))
    store = Store(db)
    dialect = "postgres" if postgres else "sqlite"
    try:
        await store.start()
        now = time.time()
        today = int(now // DAY)
        if hasattr(store, "ensure_spend_partitions"):
            await store.ensure_spend_partitions(set(range(today - 29, today + 3)))
        per_day = seed_records // 30
        for day in range(today - 29, today + 1):
            await db.execute(SEED[dialect], f"d{day}", float(day * DAY), DAY / max(per_day, 1) * 0.999, per_day)
        daily = await db.fetchrow("SELECT COUNT(*) AS n FROM gw_spend_logs")  # a read, so the seed is settled
        has_daily = await db.fetchrow(
            "SELECT to_regclass('gw_spend_daily') IS NOT NULL AS yes" if postgres else
            "SELECT COUNT(*) > 0 AS yes FROM sqlite_master WHERE name = 'gw_spend_daily'")
        if has_daily and has_daily["yes"]:
            await db.execute(DAILY_FILL.format(day=DAY_OF_START[dialect]))
        for i in range(KEYS if accounts else 0):
            await store.insert(KEY_TABLE, KeyRecord(token=f"{i:064x}", key_name=f"sk-...{i:04x}",
                                                    user_id=f"user-{i % USERS}", team_id=f"team-{i % TEAMS}"))
        for i in range(USERS if accounts else 0):
            await store.insert(USER_TABLE, UserRecord(user_id=f"user-{i}"))
        for i in range(TEAMS if accounts else 0):
            await store.insert(TEAM_TABLE, TeamRecord(team_id=f"team-{i}"))
        await db.execute("ANALYZE")
        backend = int((await db.fetchrow("SELECT pg_backend_pid() AS pid"))["pid"]) if postgres else None
        lines = [spool_line(SpendRecord(request_id=uuid.uuid4().hex, api_key=f"{i % KEYS:064x}",
                                        user_id=f"user-{i % USERS}", team_id=f"team-{i % TEAMS}",
                                        model=f"model-{i % MODELS}", model_group=f"model-{i % MODELS}",
                                        end_user=f"customer-{i % END_USERS}" if i % 10 == 0 else None,
                                        prompt_tokens=100, completion_tokens=20, total_tokens=120, spend=0.0001,
                                        start_time=now + i * 0.001, end_time=now + i * 0.001 + 1))
                 for i in range(records)]
        segments = [b"".join(lines[i:i + batch]) for i in range(0, records, batch)]
        result: dict[str, Any] = {"seeded": int(daily["n"]) if daily else 0}
        for label in ("new", "replayed"):
            own, server = cpu_seconds(os.getpid()), cpu_seconds(backend) if backend else 0.0
            started = time.perf_counter()
            written = 0
            for segment in segments:
                written += await store.write_spend_lines(segment)
            elapsed = time.perf_counter() - started
            result[label] = {"records_per_s": records / elapsed, "written": written,
                             "client_cpu_us": (cpu_seconds(os.getpid()) - own) / records * 1e6,
                             "server_cpu_us": ((cpu_seconds(backend) - server) / records * 1e6) if backend else None}
        keys = await db.fetchrow("SELECT SUM(spend) AS s FROM gw_keys")
        result["key_spend"] = float(keys["s"]) if keys and keys["s"] is not None else 0.0
        return result
    finally:
        if postgres:
            await db.execute(f'DROP SCHEMA "{url.rsplit("schema=", 1)[1]}" CASCADE')
        await store.close()


# ---- the parent: rounds over the commits ---------------------------------------------------------------

def checkout(commit: str, where: Path) -> Path:
    """The commit's tree, unpacked from `git archive` (no worktree is registered)."""
    root = where / commit.replace("/", "_")
    root.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, check=True,
                             capture_output=True).stdout
    path = where / f"{root.name}.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(root, filter="data")
    return root


def run_one(root: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    name = f"gw_bench_writer_{uuid.uuid4().hex[:8]}"
    if args.database == "postgres":
        url = f"{args.database_url}{'&' if '?' in args.database_url else '?'}schema={name}"
    else:
        url = f"sqlite:///{work / f'{name}.db'}"
    done = subprocess.run([sys.executable, "-P", str(Path(__file__).resolve()), "--child", url, "--seed",
                           str(args.seed), "--records", str(args.records), "--batch", str(args.batch),
                           *(["--no-accounts"] if args.no_accounts else [])],
                          env={**os.environ, "PYTHONPATH": str(root)}, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{root}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bases", nargs="*", help="commits to compare this checkout with (e.g. d8efd4d main)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seed", type=int, default=200_000, help="records in the log before the writer runs")
    parser.add_argument("--records", type=int, default=20_000, help="records pushed through the writer")
    parser.add_argument("--batch", type=int, default=2_000, help="records per spooled segment")
    parser.add_argument("--no-accounts", action="store_true",
                        help="no key, user or team rows for the writer to add to (as spend_scale.py has it)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--out", type=Path, help="also write every round's numbers here (JSON)")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.seed, args.records, args.batch, not args.no_accounts))))
        return
    with tempfile.TemporaryDirectory(prefix="spend-writer-") as tmp:
        work = Path(tmp)
        sides = {"this": REPO_ROOT, **{base: checkout(base, work) for base in args.bases}}
        names = list(sides)
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(args.rounds):
            order = names[number % len(names):] + names[:number % len(names)]
            measured = {name: run_one(sides[name], args, work) for name in (order if number % 2 == 0 else order[::-1])}
            rounds.append(measured)
            print(f"round {number + 1}: " + "  ".join(
                f"{name} {m['new']['records_per_s']:,.0f}/s (cpu {m['new']['client_cpu_us']:.0f}"
                f"+{m['new']['server_cpu_us'] or 0:.0f} us, replay {m['replayed']['records_per_s']:,.0f}/s)"
                for name, m in measured.items()), flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\n{args.database}, {args.seed:,} records seeded, {args.records:,} written in {args.batch:,}-record "
          f"segments, {'no' if args.no_accounts else 'with'} key/user/team rows, {args.rounds} rounds, load average "
          f"{' '.join(load)}")
    for name in names:
        new = [r[name]["new"]["records_per_s"] for r in rounds]
        replay = [r[name]["replayed"]["records_per_s"] for r in rounds]
        cpu = [r[name]["new"]["client_cpu_us"] + (r[name]["new"]["server_cpu_us"] or 0) for r in rounds]
        print(f"{name:>10}: median {statistics.median(new):,.0f} new records/s (range {min(new):,.0f}-"
              f"{max(new):,.0f}), replayed {statistics.median(replay):,.0f}/s, CPU {statistics.median(cpu):.0f} "
              f"us a record (writer + database)")
    for base in names[1:]:
        ratios = [r["this"]["new"]["records_per_s"] / r[base]["new"]["records_per_s"] for r in rounds]
        replays = [r["this"]["replayed"]["records_per_s"] / r[base]["replayed"]["records_per_s"] for r in rounds]
        cpu = [(r["this"]["new"]["client_cpu_us"] + (r["this"]["new"]["server_cpu_us"] or 0))
               / (r[base]["new"]["client_cpu_us"] + (r[base]["new"]["server_cpu_us"] or 0)) for r in rounds]
        print(f"this / {base}: new records/s {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-"
              f"{max(ratios):.2f}), replayed {statistics.median(replays):.2f}x (range {min(replays):.2f}-"
              f"{max(replays):.2f}), CPU a record {statistics.median(cpu):.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "load": load,
                                        "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
