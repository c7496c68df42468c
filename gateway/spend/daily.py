"""A batch of spend records summed per UTC day and (key, user, team, end user, model group, model): what the
batch adds to the daily totals, so that each daily row is written once a batch, whatever the batch holds."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from gateway.spend import partitions
from gateway.spend.record import COLUMNS

# What the daily totals are kept per (besides the day); spend can be filtered and grouped by any of them.
DIMENSIONS = ("api_key", "user_id", "team_id", "end_user", "model_group", "model")
_DIMENSIONS_OF = operator.itemgetter(*(COLUMNS.index(c) for c in DIMENSIONS))
_START, _END_USER, _SPEND, _PROMPT, _COMPLETION, _TOTAL = (
    COLUMNS.index(c) for c in ("start_time", "end_user", "spend", "prompt_tokens", "completion_tokens", "total_tokens"))


class DailyDeltas:
    """Spend, prompt, completion and total tokens, and requests, per day and DIMENSIONS."""

    __slots__ = ("sums", "blank_end_user")

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
        # Keyed by the day (a float, as start_time // DAY gives it) and the dimensions as the rows have them:
        # None and '' are told apart here, at a cost per row, only in columns(), at a cost per key.
        self.sums: dict[tuple[float, tuple[Any, ...]], list[Any]] = {}
        sums, found_in, day, dimensions_of = self.sums, self.sums.get, float(partitions.DAY), _DIMENSIONS_OF
        for row in rows:
            key = (row[_START] // day, dimensions_of(row))
            found = found_in(key)
            if found is None:
                sums[key] = [row[_SPEND], row[_PROMPT], row[_COMPLETION], row[_TOTAL], 1]
            else:
                found[0] += row[_SPEND]
                found[1] += row[_PROMPT]
                found[2] += row[_COMPLETION]
                found[3] += row[_TOTAL]
                found[4] += 1
        # An end user named '' is an end user of its own, though the daily totals count it as none.
        blank = [row[_SPEND] for row in rows if row[_END_USER] == ""]
        self.blank_end_user: float | None = sum(blank) if blank else None

    def days(self) -> set[int]:
        """The days since the epoch (UTC) the records started on."""
        return {int(day) for day, _ in self.sums}

    def rows(self) -> list[list[Any]]:
        """The rows to add to gw_spend_daily: day (YYYY-MM-DD), DIMENSIONS ('' for none), spend, prompt,
        completion and total tokens, requests; sorted, so that writers adding to the same rows lock them in
        the same order."""
        merged: dict[tuple[Any, ...], list[Any]] = {}
        for (day, dimensions), sums in self.sums.items():
            if None in dimensions:
                dimensions = tuple(value or "" for value in dimensions)
            key = (int(day), *dimensions)
            found = merged.get(key)
            merged[key] = sums if found is None else [a + b for a, b in zip(found, sums)]
        names = {day: partitions.iso_day(day) for day in {key[0] for key in merged}}
        return [[names[key[0]], *key[1:], *merged[key]] for key in sorted(merged)]
