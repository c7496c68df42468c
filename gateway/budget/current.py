"""A key's, user's or team's spend as of now, for the routes that report it.

The store's total trails the spend writer (a batch every half second, longer while the store is
down); the ledger's counter for the current period holds every request answered since it was made
(in Redis for a fleet, in the node for its workers). Both only ever lag the truth, so the larger
of the two is the current spend.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec

from gateway.budget import windows
from gateway.budget.counters import spend_counter
from gateway.budget.ledger import Ledger
from gateway.store.records import KeyRecord, Limited

log = logging.getLogger("gateway.budget")

R = TypeVar("R", bound=Limited)


async def current(ledger: Ledger, kind: str, ref: str, record: R, now: float) -> R:
    name, same_period = spend_counter(kind, ref, record.budget_reset_at, record.budget_duration, now)
    stored = record.spend if same_period else 0.0
    try:
        counted = await ledger.spent(name)
    except Exception as exc:  # noqa: BLE001 - the store's total is still an answer
        log.debug("spend of %s %s from the store only: %s: %s", kind, ref, type(exc).__name__, exc)
        counted = None
    spend = stored if counted is None else max(stored, counted)
    return record if spend == record.spend else msgspec.structs.replace(record, spend=spend)


async def window_usage(ledger: Ledger, key: KeyRecord, now: float) -> dict[str, float]:
    """Each budget window's spend in its current period, by budget_duration: the larger of the spend
    logs' sum (`key.window_spend`) and the window's ledger counter, as for `current`."""
    usage: dict[str, float] = {}
    for window in key.budget_limits:
        start, end, stored = windows.period(window, now)
        spend = key.window_spend.get(window.budget_duration, 0.0) if stored else 0.0
        try:
            counted = await ledger.spent(windows.counter_name(key.token, window.budget_duration, end))
        except Exception as exc:  # noqa: BLE001 - the spend logs' sum is still an answer
            log.debug("window spend of %s from the store only: %s: %s", key.key_name, type(exc).__name__, exc)
            counted = None
        usage[window.budget_duration] = spend if counted is None else max(spend, counted)
    return usage
