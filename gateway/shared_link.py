"""Whether the shared counters (Redis, or the node's) can be asked right now, and how long a request
may wait for them.

Every call on the request path is bounded by `timeout` (gateway_settings.redis_timeout). The first
call that fails for want of the other side (refused, reset, or no answer in time: a network that
drops packets) marks the link down; from then on calls fail at once with `SharedStateDown`, so no
request waits on it again, and each caller applies `fail_open`. A background probe finds it again
and marks the link up. A request therefore waits at most one timeout for a broken link.

A link is also asked once as the process starts (`check`), so that a Redis that turns the gateway
away (a wrong password, a certificate it does not trust) is said at start, not at the first request;
`explain` tells such a refusal from an outage (None), and says it with what to fix, logged as an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("gateway.shared")

PROBE_INTERVAL = 0.5

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


def unreachable(exc: BaseException) -> bool:
    """Whether a command failed for want of its server. Under uvloop, writing to a connection the
    server has just closed raises RuntimeError ("... the handler is closed") where asyncio's own loop
    would raise nothing or OSError, and redis-py passes it on as it is (a Cluster master killed)."""
    return isinstance(exc, UNREACHABLE) or (isinstance(exc, RuntimeError) and "the handler is closed" in str(exc))


class SharedStateDown(Exception):
    """The shared counters (Redis, or the node's) were found unreachable and have not answered since."""


def reported(exc: BaseException) -> bool:
    """Whether a failure is an outage its link has logged already, rather than one to log where it struck."""
    return isinstance(exc, SharedStateDown) or unreachable(exc)


class SharedLink:
    __slots__ = ("name", "probe", "timeout", "fail_open", "down", "_probe", "probe_interval", "explain", "_check",
                 "on_found")

    def __init__(self, name: str, probe: Callable[[], Awaitable[object]], timeout: float, fail_open: bool,
                 probe_interval: float = PROBE_INTERVAL,
                 explain: Callable[[BaseException], str | None] | None = None,
                 on_found: Callable[[], Awaitable[object]] | None = None) -> None:
        """`on_found`: run when the link answers again, before requests use it (a pool drops the idle
        connections it made before the outage, which may lead to a master that failed over)."""
        self.name = name
        self.on_found = on_found
        self.probe = probe
        self.timeout = timeout
        self.fail_open = fail_open
        self.probe_interval = probe_interval
        self.explain = explain
        self.down = False
        self._probe: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None

    def check(self, probe: Callable[[], Awaitable[object]] | None = None) -> None:
        """Ask once (with `probe`, else the link's own), in the background; a failure marks the link down
        as a request's would."""
        self._check = asyncio.get_running_loop().create_task(self._first_check(probe or self.probe),
                                                             name="redis-check")

    async def _first_check(self, probe: Callable[[], Awaitable[object]]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await probe()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - said by failed(), and left to fail_open
            self.failed(exc)

    def failed(self, exc: BaseException) -> None:
        """A command failed; if for want of Redis, stop asking it until a ping answers."""
        if self.down or not unreachable(exc):
            return
        self.down = True
        policy = ("limits and budgets are kept by this process until then (fail_open: true)" if self.fail_open
                  else "requests that need it get 503 until then (fail_open: false)")
        explained = self.explain(exc) if self.explain is not None else None
        if explained is not None:
            log.error("%s; %s", explained, policy)
        else:
            cause = f"connection closed: {exc}" if isinstance(exc, RuntimeError) else \
                f"{type(exc).__name__}: {exc or 'no answer in time'}"
            log.warning("%s unreachable (%s); %s", self.name, cause, policy)
        self._probe = asyncio.get_running_loop().create_task(self._find_again(), name="redis-probe")

    async def _find_again(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - still unreachable; ask again
                continue
            if self.on_found is not None:
                try:
                    await self.on_found()
                except Exception as exc:  # noqa: BLE001 - the link answers; a stale connection fails once
                    log.warning("%s: dropping the connections made before the outage failed: %s", self.name, exc)
            self.down = False
            self._probe = None
            log.info("%s reachable again: limits and budgets are shared through it", self.name)
            return

    async def close(self) -> None:
        tasks = [task for task in (self._check, self._probe) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
