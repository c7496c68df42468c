"""LiteLLM's duration strings: `30s`, `30m`, `30h`, `30d`, `2w`, `1mo`."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

PATTERN = re.compile(r"^(\d{1,6})(s|m|h|d|w|mo)$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class DurationError(ValueError):
    pass


def check(text: str) -> str:
    if not PATTERN.match(text.strip()):
        raise DurationError(f"{text!r} is not a duration; write a number and a unit: 30s, 30m, 30h, 30d, 1w, 1mo")
    return text.strip()


def add(start: float, text: str) -> float:
    """`start` (epoch seconds) plus the duration; months are calendar months, as LiteLLM counts them."""
    return _shift(start, text, 1)


def first_after(start: float, text: str, now: float) -> float:
    """The first of `start`, `start` + the duration, + twice the duration... that is later than `now`:
    when a budget period that ended at `start` is next due to end."""
    end = start
    while end <= now:
        end = add(end, text)
    return end


def subtract(end: float, text: str) -> float:
    """`end` (epoch seconds) less the duration: where a period of that length ending at `end` began."""
    return _shift(end, text, -1)


def _shift(start: float, text: str, sign: int) -> float:
    match = PATTERN.match(text.strip())
    if match is None:
        raise DurationError(f"{text!r} is not a duration; write a number and a unit: 30s, 30m, 30h, 30d, 1w, 1mo")
    count, unit = sign * int(match.group(1)), match.group(2)
    if unit != "mo":
        return start + count * SECONDS[unit]
    moment = datetime.fromtimestamp(start, UTC)
    month_index = moment.month - 1 + count
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day).timestamp()


def iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()
