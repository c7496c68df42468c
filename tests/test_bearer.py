"""The shared bearer-token source on an injected clock: when it fetches, who waits, and what a failure does."""

from __future__ import annotations

import asyncio

import pytest

from gateway.bearer import REFRESH_BEFORE, RETRY_AFTER, Token, TokenSource, TokenUnavailable


class Endpoint:
    """A token endpoint the test answers by hand: each fetch waits until the test releases it."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.fail = False

    async def fetch(self) -> Token:
        self.calls += 1
        await self.release.wait()
        if self.fail:
            raise TokenUnavailable("AADSTS7000215: Invalid client secret provided.")
        return Token(f"tok-{self.calls}", 3600.0)


async def settle() -> None:
    """Let every task that is ready run (the header calls, then the fetch task they started)."""
    for _ in range(5):
        await asyncio.sleep(0)


def source(endpoint: Endpoint, now: list[float]) -> TokenSource:
    return TokenSource(endpoint.fetch, "the test", clock=lambda: now[0])


async def test_concurrent_first_requests_share_one_fetch_and_then_hit_the_cache() -> None:
    endpoint, now = Endpoint(), [1000.0]
    tokens = source(endpoint, now)
    waiting = [asyncio.ensure_future(tokens.header()) for _ in range(20)]
    await settle()
    assert endpoint.calls == 1 and not any(w.done() for w in waiting)
    endpoint.release.set()
    assert set(await asyncio.gather(*waiting)) == {b"Authorization: Bearer tok-1\r\n"}
    now[0] += 3600 - REFRESH_BEFORE - 1
    assert await tokens.header() == b"Authorization: Bearer tok-1\r\n" and endpoint.calls == 1


async def test_a_token_near_expiry_is_refreshed_behind_the_requests() -> None:
    endpoint, now = Endpoint(), [1000.0]
    tokens = source(endpoint, now)
    endpoint.release.set()
    await tokens.header()
    endpoint.release.clear()
    now[0] += 3600 - REFRESH_BEFORE + 1  # in the last five minutes: still valid
    for _ in range(5):
        assert await tokens.header() == b"Authorization: Bearer tok-1\r\n"  # no request waits
    await settle()
    assert endpoint.calls == 2  # one refresh under way for all of them
    endpoint.release.set()
    await settle()
    assert await tokens.header() == b"Authorization: Bearer tok-2\r\n"


async def test_a_failed_refresh_keeps_the_valid_token_and_waits_before_asking_again() -> None:
    endpoint, now = Endpoint(), [1000.0]
    tokens = source(endpoint, now)
    endpoint.release.set()
    await tokens.header()
    endpoint.fail = True
    now[0] += 3600 - 10
    assert await tokens.header() == b"Authorization: Bearer tok-1\r\n"
    await settle()
    assert endpoint.calls == 2
    assert await tokens.header() == b"Authorization: Bearer tok-1\r\n" and endpoint.calls == 2  # left alone
    now[0] += 20  # expired, and past RETRY_AFTER: the next request waits for a fetch, which fails
    assert 20 > RETRY_AFTER
    with pytest.raises(TokenUnavailable, match="AADSTS7000215"):
        await tokens.header()
    assert endpoint.calls == 3
    with pytest.raises(TokenUnavailable, match="AADSTS7000215"):  # at once, from the last failure
        await tokens.header()
    assert endpoint.calls == 3
    endpoint.fail = False
    now[0] += RETRY_AFTER
    assert await tokens.header() == b"Authorization: Bearer tok-4\r\n"
