"""A listing a page at a time: the page asked for, read leniently (a page past the end is the last one's
neighbour, a size not offered is clamped), and the links to the pages either side, keeping the filters."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlencode

from multidict import MultiMapping

PAGE_SIZES = (25, 50, 100)
DEFAULT_SIZE = 50
MAX_PAGE = 1_000_000
MAX_TEXT = 256  # longer filter text is cut: nothing stored is longer


def whole(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return min(max(value, low), high)


def typed(query: MultiMapping[str], name: str) -> str:
    return query.get(name, "").strip()[:MAX_TEXT]


class Page(NamedTuple):
    number: int
    size: int


def asked(query: MultiMapping[str], default_size: int = DEFAULT_SIZE) -> Page:
    return Page(whole(query.get("page"), 1, 1, MAX_PAGE), whole(query.get("size"), default_size, 1, max(PAGE_SIZES)))


class Pager(NamedTuple):
    previous: str | None
    next: str | None


def pager(path: str, kept: dict[str, str], number: int, pages: int) -> Pager:
    """Links to the pages either side, relative to `path` (the page's own name), with the filters in `kept`
    (empty ones left out)."""

    def link(to_page: int) -> str:
        return f"{path}?" + urlencode({k: v for k, v in {**kept, "page": str(to_page)}.items() if v and v != "1"})

    return Pager(link(number - 1) if number > 1 else None, link(number + 1) if number < pages else None)
