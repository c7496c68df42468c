"""One line per request, written in batches.

A write per request (what logging.StreamHandler does) cost more CPU than the
whole rest of the gateway's own work on a request; here a request appends a
short line to a list and the loop writes them all a few times a second.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from typing import TYPE_CHECKING, TextIO

import orjson

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.context import Ctx
    from gateway.settlement import Settlement

FLUSH_INTERVAL = 0.2
# A key in a path (/key/sk-.../regenerate) is logged by its last four characters, as keys are everywhere.
KEY_IN_PATH = re.compile(r"sk-[^/]*([^/]{4})")


def utc_stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def secret_free(path: str) -> str:
    return KEY_IN_PATH.sub(r"sk-...\1", path)


def printable(text: str | None) -> str | None:
    """A path or model name as one line: a decoded %0A (or any control character) in it would
    otherwise start a forged line of the log."""
    if text is None or text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


# Enabled when the `gateway.access` logger is on for INFO (the default; `--log-level warning` turns it off).
LOGGER = logging.getLogger("gateway.access")


class AccessLog:
    __slots__ = ("source", "stream", "lines", "timer", "stamp_second", "stamp", "json")

    def __init__(self, source: str = "gateway.access", stream: TextIO | None = None, json: bool = False) -> None:
        self.source = source
        self.json = json
        self.stream = stream or sys.stderr
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.stamp_second = -1
        self.stamp = ""

    @staticmethod
    def enabled() -> bool:
        return LOGGER.isEnabledFor(logging.INFO)

    def record(self, ctx: Ctx, settled: Settlement) -> None:
        if self.json:
            self._add(self._json_line(ctx, settled))
            return
        deployment = ctx.deployment
        caller = ctx.caller
        line = (f"{self._local_stamp()} INFO {self.source}: {ctx.request_id} "
                f"{ctx.request.method} {printable(ctx.request.path)} status={settled.status} "
                f"model={printable(ctx.requested_model)} "
                f"group={ctx.model_group} deployment={deployment.id[:12] if deployment else None} "
                f"stream={ctx.stream} ms={ctx.elapsed_ms():.1f} client={ctx.client_ip} "
                f"key={caller.label if caller is not None else None}")
        if settled.error is not None:
            line += f" error={settled.error.message!r}"
        self._add(line + "\n")

    def record_other(self, request: web.BaseRequest, status: int, seconds: float) -> None:
        """A request the proxy did not serve (management, info, health): method, path (keys in it
        shortened), status, latency and caller, never a secret."""
        path = secret_free(request.path)
        caller = request.get("caller_label")
        client = request.remote
        if self.json:
            entry = {
                "timestamp": utc_stamp(time.time()), "level": "INFO", "logger": self.source, "message": "request",
                "method": request.method, "path": path, "status": status, "latency_ms": round(seconds * 1000, 3),
                "client_ip": client, "key": caller,
            }
            self._add(orjson.dumps(entry).decode() + "\n")
        else:
            self._add(f"{self._local_stamp()} INFO {self.source}: {request.method} {printable(path)} status={status} "
                      f"ms={seconds * 1000:.1f} client={client} key={caller}\n")

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def _local_stamp(self) -> str:
        """Now as the logging module's default format writes it; the seconds part made once a second."""
        now = time.time()
        second = int(now)
        if second != self.stamp_second:
            self.stamp_second = second
            self.stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self.stamp},{int(now % 1 * 1000):03d}"

    def _json_line(self, ctx: Ctx, settled: Settlement) -> str:
        now = time.time()
        deployment = ctx.deployment
        caller = ctx.caller
        key = caller.key if caller is not None else None
        usage = settled.usage
        entry = {
            "timestamp": utc_stamp(now),
            "level": "INFO", "logger": self.source, "message": "request",
            "request_id": ctx.request_id, "method": ctx.request.method, "path": ctx.request.path,
            "status": settled.status, "model": ctx.requested_model, "model_group": ctx.model_group,
            "deployment": deployment.id if deployment is not None else None,
            "api_base": deployment.api_base.split("?")[0] or None if deployment is not None else None,
            "stream": ctx.stream,
            "latency_ms": round(ctx.elapsed_ms(), 3),
            "ttft_ms": round((ctx.first_byte_at - ctx.started) * 1000, 3) if ctx.first_byte_at is not None else None,
            "prompt_tokens": usage.prompt_tokens if usage is not None else None,
            "completion_tokens": usage.completion_tokens if usage is not None else None,
            "total_tokens": usage.total_tokens if usage is not None else None,
            "cost": settled.cost,
            "client_ip": ctx.client_ip,
            "key": caller.label if caller is not None else None,
            "key_alias": key.key_alias if key is not None else None,
            "user": key.user_id if key is not None else None,
            "team": key.team_id if key is not None else None,
            "error": settled.error.message if settled.error is not None else None,
        }
        return orjson.dumps(entry).decode() + "\n"

    def flush(self) -> None:
        self.timer = None
        if self.lines:
            text = "".join(self.lines)
            self.lines.clear()
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr gone (closed pipe, detached terminal): serving goes on

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.flush()
