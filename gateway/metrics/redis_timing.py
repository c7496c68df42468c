"""Redis calls timed and their failures counted, for litellm_redis_latency and litellm_redis_fails;
each bounded by the link's timeout, and not made at all while the link is down.

Scripts go over the gateway's own pipelined connection (gateway/redis_wire.py) when there is one,
other commands through redis-py."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Coroutine
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from gateway.metrics.tallies import REDIS_BUCKETS, Tallies
from gateway.redis_wire import RedisWire
from gateway.shared_link import SharedLink, SharedStateDown


class WireScript:
    """A Lua script run by its SHA over the wire, sent whole when Redis does not know it yet."""

    __slots__ = ("timed", "script", "sha")

    def __init__(self, timed: TimedRedis, script: str) -> None:
        self.timed = timed
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(self, keys: list[str] | tuple[()] = (), args: list[Any] | tuple[()] = ()) -> Any:
        return await self.timed.run(self, keys, args)


Script = AsyncScript | WireScript


async def run_script(wire: RedisWire, script: Script, keys: list[str] | tuple[()], args: list[Any] | tuple[()],
                     timeout: float) -> Any:
    """The script's answer; an error reply is raised."""
    reply = await wire.call(("EVALSHA", script.sha, len(keys), *keys, *args), timeout)
    if isinstance(reply, NoScriptError):
        reply = await wire.call(("EVAL", script.script, len(keys), *keys, *args), timeout)
    if isinstance(reply, RedisError):  # an error reply; NOAUTH and WRONGPASS are not ResponseErrors
        raise reply
    return reply


class TimedRedis:
    """Stands in for a redis.asyncio.Redis: each awaited command is timed under `operation`.

    Scripts registered through it run through it too, so a Lua check counts as one call.
    """

    def __init__(self, redis: Any, tallies: Tallies, operation: str, link: SharedLink,
                 wire: RedisWire | None = None) -> None:
        self._redis = redis
        self._link = link
        self._tallies = tallies
        self._labels = (operation,)
        self._wire = wire

    def register_script(self, script: str) -> Script:
        if self._wire is not None:
            return WireScript(self, script)
        return AsyncScript(self, script)  # type: ignore[arg-type]

    async def run(self, script: WireScript, keys: list[str] | tuple[()], args: list[Any] | tuple[()]) -> Any:
        """A script over the wire, as one timed call whether or not Redis had it cached."""
        link = self._link
        if link.down:
            raise SharedStateDown("Redis is unreachable")
        assert self._wire is not None
        started = time.perf_counter()
        try:
            return await run_script(self._wire, script, keys, args, link.timeout)
        except Exception as exc:
            self._tallies.add("litellm_redis_fails", self._labels)
            link.failed(exc)
            raise
        finally:
            self._tallies.observe("litellm_redis_latency", self._labels, time.perf_counter() - started,
                                  REDIS_BUCKETS)

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
