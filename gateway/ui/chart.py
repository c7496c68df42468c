"""Stacked day bars drawn as SVG on the server: no chart script to ship, nothing to run in the browser,
and the figures are in the page (each bar's title) for anyone who reads it without the picture."""

from __future__ import annotations

import math
from typing import NamedTuple

from gateway.ui.base import money

WIDTH = 960
HEIGHT = 260
LEFT = 64  # room for the dollar ticks
BOTTOM = 24  # room for the dates
TOP = 10
SERIES_SHOWN = 8  # colours s0..s7; the rest together as s8, "other"


class Bar(NamedTuple):
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


class Tick(NamedTuple):
    at: float
    label: str


class Series(NamedTuple):
    name: str
    by_day: dict[str, float]


class Chart(NamedTuple):
    width: int
    height: int
    left: int
    bottom: float
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[tuple[int, str, float]]


def _nice_ceiling(value: float) -> float:
    """The top of the axis: 1, 2 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 5, 10) if step * power >= value))


def stacked(days: list[str], series: list[Series]) -> Chart:
    """One bar a day, each series stacked in order; series past the eighth are drawn as one."""
    shown = series[:SERIES_SHOWN]
    rest = series[SERIES_SHOWN:]
    if rest:
        other: dict[str, float] = {}
        for s in rest:
            for day, value in s.by_day.items():
                other[day] = other.get(day, 0.0) + value
        shown = [*shown, Series("other", other)]
    totals = [sum(s.by_day.get(day, 0.0) for s in shown) for day in days]
    top = _nice_ceiling(max(totals, default=0.0))
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(days), 1)
    width = max(slot * 0.78, 1.0)
    bars: list[Bar] = []
    for index, day in enumerate(days):
        base = float(HEIGHT - BOTTOM)
        for number, s in enumerate(shown):
            value = s.by_day.get(day, 0.0)
            if value <= 0:
                continue
            height = value / top * plot_height
            base = base - height
            colour = number if s.name != "other" or not rest else SERIES_SHOWN
            bars.append(Bar(round(LEFT + index * slot + (slot - width) / 2, 2), round(base, 2), round(width, 2),
                            round(max(height, 0.5), 2), colour, f"{day} · {s.name}: {money(value)}"))
    y_ticks = [Tick(round(HEIGHT - BOTTOM - f * plot_height, 2), money(top * f)) for f in (0, 0.2, 0.4, 0.6, 0.8, 1)]
    every = max(1, math.ceil(len(days) / 10))
    x_ticks = [Tick(round(LEFT + i * slot + slot / 2, 2), day[5:]) for i, day in enumerate(days) if i % every == 0]
    legend = [(number if s.name != "other" or not rest else SERIES_SHOWN, s.name, sum(s.by_day.values()))
              for number, s in enumerate(shown)]
    return Chart(WIDTH, HEIGHT, LEFT, HEIGHT - BOTTOM, bars, y_ticks, x_ticks, legend)
