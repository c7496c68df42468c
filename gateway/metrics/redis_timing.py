"""Redis calls timed and their failures counted, for litellm_redis_latency and litellm_redis_fails;
each bounded by the link's timeout, and not made at all while the link is down."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Coroutine
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.metrics.tallies import REDIS_BUCKETS, Tallies
from gateway.shared_link import SharedLink, SharedStateDown


class TimedRedis:
    """Stands in for a redis.asyncio.Redis: each awaited command is timed under `operation`.

    Scripts registered through it run through it too, so a Lua check counts as one call.
    """

    def __init__(self, redis: Any, tallies: Tallies, operation: str, link: SharedLink) -> None:
        self._redis = redis
        self._link = link
        self._tallies = tallies
        self._labels = (operation,)

    def register_script(self, script: str) -> AsyncScript:
        return AsyncScript(self, script)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._redis, name)
        if not callable(command):
            return command

        def timed(*args: Any, **kwargs: Any) -> Any:
            # redis-py's commands are plain methods that return a coroutine: time the awaiting.
            result = command(*args, **kwargs)
            return self._measure(result) if inspect.iscoroutine(result) else result

        setattr(self, name, timed)  # found directly from now on
        return timed

    async def _measure(self, pending: Coroutine[Any, Any, Any]) -> Any:
        link = self._link
        if link.down:
            pending.close()
            raise SharedStateDown("Redis is unreachable")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(link.timeout):
                return await pending
        except NoScriptError:
            raise  # the script is not cached on this server yet: redis-py loads it and retries
        except Exception as exc:
            self._tallies.add("litellm_redis_fails", self._labels)
            link.failed(exc)
            raise
        finally:
            self._tallies.observe("litellm_redis_latency", self._labels, time.perf_counter() - started,
                                  REDIS_BUCKETS)
