"""Counts kept in plain dicts, keyed by label values: a request's update is a few dict operations.

prometheus-client's own metric objects take a lock and a label lookup per call;
at a dozen updates per request that was a measurable share of the gateway's own
work, so the hot path writes here and the client library only formats what is
here when /metrics is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any

Labels = tuple[str, ...]

# Seconds; what a chat completion takes spans milliseconds (cached, local) to minutes (long streams).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    """Counts per bucket (not cumulative; the last slot is +Inf) and the sum of observations."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class Tallies:
    """One process's metrics. Counters and histograms only grow; gauges keep the time they were set."""

    __slots__ = ("counters", "histograms", "gauges")

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = {}
        self.histograms: dict[str, dict[Labels, Histogram]] = {}
        self.gauges: dict[str, dict[Labels, tuple[float, float]]] = {}

    def add(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        series = self.counters.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + amount

    def observe(self, name: str, labels: Labels, value: float, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        series = self.histograms.setdefault(name, {})
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = Histogram(bounds)
        histogram.observe(value)

    def set(self, name: str, labels: Labels, value: float) -> None:
        self.gauges.setdefault(name, {})[labels] = (value, time.time())

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able data, for another worker to merge."""
        return {
            "counters": {n: [[list(k), v] for k, v in s.items()] for n, s in self.counters.items()},
            "histograms": {n: [[list(k), list(h.bounds), h.counts, h.total] for k, h in s.items()]
                           for n, s in self.histograms.items()},
            "gauges": {n: [[list(k), v, t] for k, (v, t) in s.items()] for n, s in self.gauges.items()},
        }


def merge(snapshots: list[dict[str, Any]], live: list[bool], combine: dict[str, str]) -> Tallies:
    """Counters and histograms add up over every worker that ever ran (a restarted worker's counts
    are not lost); gauges come from live workers only, each combined as `combine` says: "sum",
    "max", or (the default) the most recently set value."""
    merged = Tallies()
    for snapshot, alive in zip(snapshots, live):
        for name, series in snapshot.get("counters", {}).items():
            for labels, value in series:
                merged.add(name, tuple(labels), value)
        for name, series in snapshot.get("histograms", {}).items():
            target = merged.histograms.setdefault(name, {})
            for labels, bounds, counts, total in series:
                key = tuple(labels)
                histogram = target.get(key)
                if histogram is None:
                    histogram = target[key] = Histogram(tuple(bounds))
                if len(histogram.counts) != len(counts):
                    continue  # written by a build with other buckets
                histogram.counts = [a + b for a, b in zip(histogram.counts, counts)]
                histogram.total += total
        if not alive:
            continue
        for name, series in snapshot.get("gauges", {}).items():
            how = combine.get(name, "latest")
            target_gauges = merged.gauges.setdefault(name, {})
            for labels, value, stamp in series:
                key = tuple(labels)
                seen = target_gauges.get(key)
                if seen is None:
                    target_gauges[key] = (value, stamp)
                elif how == "sum":
                    target_gauges[key] = (seen[0] + value, max(seen[1], stamp))
                elif how == "max":
                    target_gauges[key] = (max(seen[0], value), max(seen[1], stamp))
                elif seen[1] <= stamp:
                    target_gauges[key] = (value, stamp)
    return merged
