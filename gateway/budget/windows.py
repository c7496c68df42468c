"""A key's `budget_limits`: several budgets at once ($10 a day and $100 a month), each over a period of
its own. Each window is a ledger counter named for its period, as `max_budget` is, so it holds across
instances and workers; its stored `reset_at` moves on when the reset job reaches it, and a window whose
reset time has passed is already in its next period, from zero, whether or not the job has run."""

from __future__ import annotations

from typing import NamedTuple

from gateway import durations
from gateway.budget.ledger import Counter
from gateway.store.records import BudgetWindow, KeyRecord

KIND = "keywindow"


class Period(NamedTuple):
    start: float
    end: float
    stored: bool  # the period the stored reset time ends, not a later one the reset job has yet to reach


def period(window: BudgetWindow, now: float) -> Period:
    end = window.reset_at if window.reset_at is not None else durations.add(now, window.budget_duration)
    start, stored = durations.subtract(end, window.budget_duration), True
    while end <= now:
        start, end, stored = end, durations.add(end, window.budget_duration), False
    return Period(start, end, stored)


def opened(windows: list[BudgetWindow], now: float) -> list[BudgetWindow]:
    """Windows as a request set them, each starting a period now."""
    return [BudgetWindow(budget_duration=w.budget_duration, max_budget=w.max_budget,
                         reset_at=durations.add(now, w.budget_duration)) for w in windows]


def soonest(windows: list[BudgetWindow]) -> float | None:
    return min((w.reset_at for w in windows if w.reset_at is not None), default=None)


def advanced(windows: list[BudgetWindow], now: float) -> list[BudgetWindow] | None:
    """The windows with every reset time that has come moved to the end of the current period; None if
    none has come."""
    if not any(w.reset_at is not None and w.reset_at <= now for w in windows):
        return None
    return [BudgetWindow(budget_duration=w.budget_duration, max_budget=w.max_budget, reset_at=period(w, now).end)
            for w in windows]


def counter_name(token: str, duration: str, end: float) -> str:
    return f"{KIND}:{token}:{duration}:{end}"


def counters(key: KeyRecord, now: float) -> list[Counter]:
    found = []
    for window in key.budget_limits:
        start, end, stored = period(window, now)
        spent = key.window_spend.get(window.budget_duration, 0.0) if stored else 0.0
        found.append(Counter(counter_name(key.token, window.budget_duration, end), window.max_budget, spent, end))
    return found


def duration_of(counter: Counter) -> str:
    parts = counter.name.split(":", 3)
    return parts[2] if len(parts) == 4 else ""
