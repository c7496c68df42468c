"""Render a benchmark run as markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from benchmarks.aggregate import DIRECT, FLOOR, GATEWAY, PEERS, TARGET_LABELS, Row

MISSING = "–"


@dataclass(frozen=True, slots=True)
class MemoryRow:
    target: str
    idle_mb: float | None
    peak_mb: float | None
    after_mb: float | None


@dataclass(frozen=True, slots=True)
class Report:
    settings: Sequence[tuple[str, str]]
    workload_labels: Mapping[str, str]
    load_concurrency: int
    moderate_concurrency: int
    load: Sequence[Row]
    moderate: Sequence[Row]
    memory: Sequence[MemoryRow]
    problems: Sequence[str]
    peers: Sequence[str] = ()  # lines on the peers: version run, or why skipped


def _num(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None else f"{value:,.{digits}f}"


def _signed(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _find(rows: Sequence[Row], workload: str, target: str) -> Row | None:
    return next((r for r in rows if r.workload == workload and r.target == target), None)


def _headline(report: Report) -> list[str]:
    labels = report.workload_labels
    throughput = []
    for workload in dict.fromkeys(r.workload for r in report.load):
        floor = _find(report.load, workload, FLOOR)
        gw = _find(report.load, workload, GATEWAY)
        parts = []
        if floor is not None and floor.vs_direct is not None:
            parts.append(f"floor {floor.vs_direct:.0%} of direct")
        if gw is not None and gw.vs_direct is not None and gw.vs_floor is not None:
            parts.append(f"gateway {gw.vs_direct:.0%} of direct, {gw.vs_floor:.0%} of floor")
        else:
            parts.append("gateway not measured")
        for peer in PEERS:
            row = _find(report.load, workload, peer)
            if row is not None and row.vs_floor is not None:
                parts.append(f"{TARGET_LABELS[peer]} {row.vs_floor:.0%} of floor")
        throughput.append(f"{labels.get(workload, workload)}: " + ", ".join(parts))
    latency = []
    for workload in dict.fromkeys(r.workload for r in report.moderate):
        gw = _find(report.moderate, workload, GATEWAY)
        if gw is None or gw.added_p50_vs_direct_ms is None:
            latency.append(f"{labels.get(workload, workload)}: gateway not measured")
            continue
        text = (
            f"{labels.get(workload, workload)}: {gw.added_p50_vs_direct_ms:+.2f} ms p50 over direct "
            f"({_signed(gw.added_p50_vs_floor_ms)} ms over floor)"
        )
        if gw.added_ttfb_vs_direct_ms is not None:
            text += f", TTFB {gw.added_ttfb_vs_direct_ms:+.2f} ms"
        latency.append(text)
    return [
        f"- **Throughput at concurrency {report.load_concurrency}**",
        *(f"  - {line}" for line in throughput),
        f"- **Latency the gateway adds at concurrency {report.moderate_concurrency}**",
        *(f"  - {line}" for line in latency),
    ]


def _load_table(report: Report) -> list[str]:
    header = [
        "workload", "target", "tool", "req/s", "p50 ms", "p99 ms", "TTFB p50 ms",
        "req/s vs direct", "req/s vs floor", "+p50 vs direct ms", "CPU us/req", "errors",
    ]  # fmt: skip
    rows = [
        [
            report.workload_labels.get(r.workload, r.workload),
            TARGET_LABELS[r.target],
            r.tool or MISSING,
            _num(r.rps, 0),
            _num(r.p50_ms),
            _num(r.p99_ms),
            _num(r.ttfb_p50_ms),
            _num(r.vs_direct),
            _num(r.vs_floor),
            _signed(r.added_p50_vs_direct_ms) if r.target != DIRECT else MISSING,
            _num(r.cpu_us, 0),
            str(r.errors),
        ]
        for r in report.load
    ]
    return _table(header, rows)


def _moderate_table(report: Report) -> list[str]:
    header = [
        "workload", "target", "p50 ms", "p99 ms", "TTFB p50 ms",
        "+p50 vs direct ms", "+p50 vs floor ms", "+TTFB p50 vs direct ms",
    ]  # fmt: skip
    rows = [
        [
            report.workload_labels.get(r.workload, r.workload),
            TARGET_LABELS[r.target],
            _num(r.p50_ms),
            _num(r.p99_ms),
            _num(r.ttfb_p50_ms),
            _signed(r.added_p50_vs_direct_ms) if r.target != DIRECT else MISSING,
            _signed(r.added_p50_vs_floor_ms) if r.target not in (DIRECT, FLOOR) else MISSING,
            _signed(r.added_ttfb_vs_direct_ms) if r.target != DIRECT else MISSING,
        ]
        for r in report.moderate
    ]
    return _table(header, rows)


def _memory_table(report: Report) -> list[str]:
    header = ["process", "idle RSS MB", "peak RSS MB (VmHWM)", "RSS after load MB"]
    rows = [
        [TARGET_LABELS[m.target], _num(m.idle_mb, 1), _num(m.peak_mb, 1), _num(m.after_mb, 1)] for m in report.memory
    ]
    return _table(header, rows)


def render(report: Report) -> str:
    lines = ["# Gateway benchmark", ""]
    lines += [f"- {key}: {value}" for key, value in report.settings]
    lines += [f"- peer: {line}" for line in report.peers]
    lines += ["", "## Headline", "", *_headline(report), ""]
    lines += [f"## Throughput at concurrency {report.load_concurrency}", "", *_load_table(report), ""]
    lines += [
        f"## Latency at moderate load (concurrency {report.moderate_concurrency})",
        "",
        *_moderate_table(report),
        "",
    ]
    lines += ["## Memory", "", *_memory_table(report), ""]
    if report.problems:
        lines += ["## Problems", ""]
        for problem in report.problems:
            lines += ["```", problem.strip(), "```", ""]
    return "\n".join(lines)
