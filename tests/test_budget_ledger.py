"""The budget ledger's contract on both backends, and budget periods with an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import durations
from gateway.budget.counters import aligned_period, counters_for, current_period
from gateway.budget.ledger import Counter, Denied, LocalLedger, RedisLedger
from gateway.identity import Caller
from gateway.node.client import NodeLedger
from gateway.store.records import KeyRecord, TeamRecord
from gateway.store.store import KEYS, TEAMS, Store


@pytest.fixture
def ledger(backend: str, shared_state: tuple[str, str] | None, redis_client: Any,
           request: pytest.FixtureRequest) -> Any:
    if shared_state is not None:
        return RedisLedger(redis_client, shared_state[1])
    if backend == "node":
        return NodeLedger(request.getfixturevalue("node_client"))
    return LocalLedger()


def counter(name: str, limit: float, baseline: float = 0.0) -> Counter:
    return Counter(name, limit, baseline, None)


async def test_reserve_until_full_then_deny(ledger: Any) -> None:
    budget = counter("key:a:all", 1.0)
    assert await ledger.reserve([budget], 0.4) == [0.0]
    assert await ledger.reserve([budget], 0.4) == [0.0]
    denied = await ledger.reserve([budget], 0.4)
    assert isinstance(denied, Denied) and denied.counter == budget
    await ledger.settle([budget.name], 0.4, 0.1)  # the first one cost less than reserved
    assert await ledger.reserve([budget], 0.4) == [pytest.approx(0.1)]
    assert await ledger.spent(budget.name) == pytest.approx(0.1)


async def test_a_counter_is_carried_to_a_new_name_and_none_is_made_up(ledger: Any) -> None:
    assert await ledger.spent("key:unknown:all") is None
    assert await ledger.copy("key:unknown:all", "key:other:all", None) is None
    old = counter("key:old:all", 1.0, baseline=0.25)
    await ledger.reserve([old], 0.5)
    await ledger.settle([old.name], 0.5, 0.5)
    assert await ledger.copy(old.name, "key:new:all", None) == pytest.approx(0.75)
    assert await ledger.spent("key:new:all") == pytest.approx(0.75)
    # The carried counter holds no reservation; its baseline is what was spent, not a new one.
    assert await ledger.reserve([counter("key:new:all", 1.0, baseline=0.0)], 0.25) == [pytest.approx(0.75)]


async def test_every_counter_must_fit_and_none_is_touched_when_one_does_not(ledger: Any) -> None:
    roomy, tight = counter("key:b:all", 10.0), counter("team:t:all", 1.0, baseline=0.9)
    denied = await ledger.reserve([roomy, tight], 0.5)
    assert isinstance(denied, Denied) and denied.counter == tight and denied.spent == pytest.approx(0.9)
    assert await ledger.reserve([roomy], 9.5) == [0.0]  # nothing was reserved on `roomy` by the denial


async def test_zero_budget_admits_nothing(ledger: Any) -> None:
    assert isinstance(await ledger.reserve([counter("proxy:all", 0.0)], 0.0), Denied)


async def test_a_spent_budget_admits_nothing_even_at_no_cost(ledger: Any) -> None:
    """LiteLLM refuses at spend >= max_budget: a request estimated at 0 (an upload charged by the second)
    is refused too, once the budget is spent; before that it goes on, however little is left."""
    budget = counter("key:spent:all", 0.3, baseline=0.1)
    assert await ledger.reserve([budget], 0.0) == [pytest.approx(0.1)]
    assert await ledger.reserve([budget], 0.2) == [pytest.approx(0.1)]
    await ledger.settle([budget.name], 0.2, 0.2)
    denied = await ledger.reserve([budget], 0.0)
    assert isinstance(denied, Denied) and denied.spent == pytest.approx(0.3)


async def test_baseline_is_taken_once(ledger: Any) -> None:
    first = counter("user:u:all", 5.0, baseline=4.0)
    assert await ledger.reserve([first], 0.5) == [4.0]
    # A later baseline (a stale cached record) does not reset a counter already in use.
    assert await ledger.reserve([counter("user:u:all", 5.0, baseline=0.0)], 0.5) == [4.0]
    assert isinstance(await ledger.reserve([first], 0.5), Denied)


async def test_concurrent_reservations_never_overshoot(ledger: Any) -> None:
    budget = counter("key:c:all", 1.0)
    outcomes = await asyncio.gather(*(ledger.reserve([budget], 0.1) for _ in range(200)))
    assert sum(1 for o in outcomes if not isinstance(o, Denied)) == 10


def test_current_period_rolls_with_the_clock() -> None:
    reset_at = datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    assert current_period(reset_at, "1d", reset_at - 5) == (reset_at, True)
    end, same = current_period(reset_at, "1d", reset_at + 1)
    assert end == reset_at + 86400 and same is False
    end, _ = current_period(reset_at, "1mo", reset_at + 1)
    assert datetime.fromtimestamp(end, UTC) == datetime(2026, 2, 28, tzinfo=UTC)
    assert current_period(None, "1d", 0) == (None, True)
    assert aligned_period("1h", 7200.5) == 10800
    march = datetime(2026, 3, 15, 12, tzinfo=UTC).timestamp()
    assert aligned_period("1mo", march) == datetime(2026, 4, 1, tzinfo=UTC).timestamp()


def test_counters_follow_the_caller_and_the_clock() -> None:
    now = 1_000_000.0
    key = KeyRecord(token="t", key_name="sk-...t", max_budget=5.0, spend=2.0, budget_duration="1d",
                    budget_reset_at=now + 10, model_max_budget={"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}})
    team = TeamRecord(team_id="team-1", max_budget=50.0, spend=7.0)
    caller = Caller(key=key, token="t", team=team)
    found = counters_for(caller, "gpt-4o", 100.0, "30d", now)
    assert [c.name.split(":")[0] for c in found] == ["proxy", "key", "keymodel", "team"]
    assert found[1].baseline == 2.0 and found[3].baseline == 7.0
    later = counters_for(caller, "gpt-4o", None, None, now + 11)  # the key's period has ended
    assert later[0].baseline == 0.0 and later[0].name != found[1].name
    assert counters_for(Caller(is_master=True), "gpt-4o", None, None, now) == []


async def test_reset_job_starts_new_periods_with_an_injected_clock(store: Store) -> None:
    start = 1_700_000_000.0
    await store.insert(KEYS, KeyRecord(token="k" * 64, key_name="sk-...kkkk", max_budget=1.0, spend=0.8,
                                       budget_duration="1d", budget_reset_at=start + 86400))
    await store.insert(TEAMS, TeamRecord(team_id="t1", max_budget=9.0, spend=3.0, budget_duration="1h",
                                         budget_reset_at=start + 3600))
    assert await store.reset_due_budgets(start + 100) == 0
    assert await store.reset_due_budgets(start + 3600) == 1  # the team's hour is over, the key's day is not
    team = await store.get(TEAMS, "t1")
    assert team is not None and team.spend == 0 and team.budget_reset_at == start + 7200
    clock = start + 86400 * 3 + 5  # three days later: periods skipped while nothing ran are skipped over
    assert await store.reset_due_budgets(clock) == 2
    key = await store.get(KEYS, "k" * 64)
    assert key is not None and key.spend == 0 and key.budget_reset_at == durations.add(start, "1d") + 3 * 86400
    assert await asyncio.gather(store.reset_due_budgets(clock), store.reset_due_budgets(clock)) == [0, 0]
