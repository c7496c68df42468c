"""Draw a benchmark run as one PNG: throughput, calm latency, memory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.aggregate import DIRECT, TARGET_LABELS, TARGETS, Row
from benchmarks.report import Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLORS = {"direct": "#4c72b0", "floor": "#8c8c8c", "gateway": "#dd8452", "litellm": "#8172b3", "portkey": "#64b5cd"}


def _grouped_bars(
    ax: Axes,
    rows: list[Row],
    labels: dict[str, str],
    targets: tuple[str, ...],
    value: str,
    fmt: str,
    ylabel: str,
    title: str,
) -> None:
    workloads = list(dict.fromkeys(r.workload for r in rows))
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        xs, heights = [], []
        for j, workload in enumerate(workloads):
            row = next((r for r in rows if r.workload == workload and r.target == target), None)
            height = getattr(row, value) if row is not None else None
            xs.append(j + (i - (len(targets) - 1) / 2) * width)
            heights.append(height or 0.0)
        bars = ax.bar(xs, heights, width, label=TARGET_LABELS[target], color=COLORS[target])
        ax.bar_label(bars, fmt=fmt, fontsize=7, padding=1)
    ax.set_xticks(range(len(workloads)), [labels.get(w, w) for w in workloads], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def draw(report: Report, path: Path) -> None:
    # Imported here so the Agg backend is chosen only when a chart is drawn,
    # not as a side effect of importing this module.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(report.workload_labels)
    present = tuple(t for t in TARGETS if any(r.target == t for r in report.load))
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _grouped_bars(
        axes[0], list(report.load), labels, present, "rps", "%.0f", "requests/s",
        f"Throughput, concurrency {report.load_concurrency} (higher is better)",
    )  # fmt: skip
    # Absolute latencies span 0.1 ms to tens of ms across workloads; the cost
    # a proxy adds is the comparable quantity.
    _grouped_bars(
        axes[1], list(report.moderate), labels, tuple(t for t in present if t != DIRECT), "added_p50_vs_direct_ms",
        "%.2f",
        "added p50 latency over direct, ms",
        f"Added latency, concurrency {report.moderate_concurrency} (lower is better)",
    )  # fmt: skip
    axes[1].axhline(0, color="black", linewidth=0.6)
    mem_ax = axes[2]
    names = [TARGET_LABELS[m.target] for m in report.memory]
    series = (("idle", "idle_mb", "#bbbbbb"), ("peak", "peak_mb", "#c44e52"), ("after load", "after_mb", "#55a868"))
    width = 0.8 / len(series)
    for i, (label, attr, color) in enumerate(series):
        xs = [j + (i - 1) * width for j in range(len(names))]
        heights = [getattr(m, attr) or 0.0 for m in report.memory]
        bars = mem_ax.bar(xs, heights, width, label=label, color=color)
        mem_ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    mem_ax.set_xticks(range(len(names)), names, fontsize=8)
    mem_ax.set_ylabel("RSS, MB")
    mem_ax.set_title("Memory (lower is better)", fontsize=10)
    mem_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
