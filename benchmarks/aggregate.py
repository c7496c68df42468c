"""Reduce repeated rounds to one row per (workload, target).

Targets ran back to back inside each round, so a ratio or a difference is
taken within a round first and the median of those is reported: a burst of
noise from a neighbour on the shared machine then moves one round's pair
together instead of skewing one target's median against another's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from benchmarks.load_result import LoadResult

DIRECT = "direct"
FLOOR = "floor"
GATEWAY = "gateway"
LITELLM = "litellm"
PORTKEY = "portkey"
PEERS = (LITELLM, PORTKEY)
TARGETS = (DIRECT, FLOOR, GATEWAY, *PEERS)
TARGET_LABELS = {
    DIRECT: "direct", FLOOR: "passthrough floor", GATEWAY: "gateway", LITELLM: "LiteLLM proxy", PORTKEY: "Portkey",
}

# rounds[(workload, target)][i] is round i's result, None when it was skipped
Rounds = dict[tuple[str, str], list[LoadResult | None]]


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    target: str
    tool: str
    rounds_ok: int
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    ttfb_p50_ms: float | None
    ttfb_p99_ms: float | None
    cpu_us: float | None  # the target's CPU time per request
    vs_direct: float | None
    vs_floor: float | None
    added_p50_vs_direct_ms: float | None
    added_p50_vs_floor_ms: float | None
    added_ttfb_vs_direct_ms: float | None
    errors: int
    first_error: str | None


def _ok(result: LoadResult | None) -> LoadResult | None:
    return result if result is not None and result.requests > 0 else None


def _median_of(results: Sequence[LoadResult | None], pick: Callable[[LoadResult], float | None]) -> float | None:
    values = [v for r in results if (ok := _ok(r)) is not None and (v := pick(ok)) is not None]
    return median(values) if values else None


def _paired(
    mine: Sequence[LoadResult | None],
    base: Sequence[LoadResult | None],
    combine: Callable[[LoadResult, LoadResult], float | None],
) -> float | None:
    values = []
    for a, b in zip(mine, base):
        ok_a, ok_b = _ok(a), _ok(b)
        if ok_a is not None and ok_b is not None and (v := combine(ok_a, ok_b)) is not None:
            values.append(v)
    return median(values) if values else None


def _ratio(a: LoadResult, b: LoadResult) -> float | None:
    return a.rps / b.rps if b.rps > 0 else None


def _p50_delta(a: LoadResult, b: LoadResult) -> float | None:
    return None if a.p50_ms is None or b.p50_ms is None else a.p50_ms - b.p50_ms


def _ttfb_delta(a: LoadResult, b: LoadResult) -> float | None:
    return None if a.ttfb_p50_ms is None or b.ttfb_p50_ms is None else a.ttfb_p50_ms - b.ttfb_p50_ms


def summarise(rounds: Rounds, workloads: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    present = {target for _, target in rounds}
    for workload in workloads:
        direct = rounds.get((workload, DIRECT), [])
        floor = rounds.get((workload, FLOOR), [])
        for target in (t for t in TARGETS if t in present):
            mine = rounds.get((workload, target), [])
            done = [r for r in mine if r is not None]
            rows.append(
                Row(
                    workload=workload,
                    target=target,
                    tool=done[0].tool if done else "",
                    rounds_ok=sum(1 for r in mine if _ok(r) is not None),
                    rps=_median_of(mine, lambda r: r.rps),
                    p50_ms=_median_of(mine, lambda r: r.p50_ms),
                    p99_ms=_median_of(mine, lambda r: r.p99_ms),
                    ttfb_p50_ms=_median_of(mine, lambda r: r.ttfb_p50_ms),
                    ttfb_p99_ms=_median_of(mine, lambda r: r.ttfb_p99_ms),
                    cpu_us=_median_of(mine, lambda r: r.cpu_us_per_request),
                    vs_direct=_paired(mine, direct, _ratio),
                    vs_floor=_paired(mine, floor, _ratio),
                    added_p50_vs_direct_ms=_paired(mine, direct, _p50_delta),
                    added_p50_vs_floor_ms=_paired(mine, floor, _p50_delta),
                    added_ttfb_vs_direct_ms=_paired(mine, direct, _ttfb_delta),
                    errors=sum(r.errors for r in done),
                    first_error=next((r.first_error for r in done if r.first_error), None),
                )
            )
    return rows
