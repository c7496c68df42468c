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
_START, _SPEND, _PROMPT, _COMPLETION, _TOTAL = (
    COLUMNS.index(c) for c in ("start_time", "spend", "prompt_tokens", "completion_tokens", "total_tokens"))


class DailyDeltas:
    """Spend, prompt, completion and total tokens, and requests, per day and DIMENSIONS as the records have
    them: None and '' stay apart here (the daily totals count both as none, an end user named '' is one of
    its own), to be merged by whoever writes them, at a cost per sum rather than per record."""

    __slots__ = ("sums",)

    def __init__(self, rows: Sequence[Sequence[Any]]) -> None:
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

    def days(self) -> set[int]:
        """The days since the epoch (UTC) the records started on."""
        return {int(day) for day, _ in self.sums}

    def rows(self) -> list[list[Any]]:
        """Day (YYYY-MM-DD), DIMENSIONS, spend, prompt, completion and total tokens, requests; in no order."""
        names = {day: partitions.iso_day(int(day)) for day in {day for day, _ in self.sums}}
        return [[names[day], *dimensions, *sums] for (day, dimensions), sums in self.sums.items()]
