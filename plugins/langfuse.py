"""Langfuse logging: one trace with one generation per LLM call, sent in batches off the request path.

Turned on as in LiteLLM: `langfuse` in `litellm_settings.success_callback` (answers),
`failure_callback` (failed calls) or `callbacks` (both), with LANGFUSE_PUBLIC_KEY,
LANGFUSE_SECRET_KEY and LANGFUSE_HOST. Requests that never reached a deployment
(turned away by auth, budgets or limits, or naming no model) are not LLM calls
and are not logged.

`on_settle` only appends a few references to a bounded queue. One task per
process reads the answers back, builds the events and posts them to
`/api/public/ingestion`. When Langfuse is slow or down the queue fills and
what does not fit is dropped and counted (`litellm_langfuse_dropped_events_total`
and a warning at most every 10 seconds): requests never wait for Langfuse.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections import deque
from typing import Any

import aiohttp
import msgspec
import orjson
from prometheus_client import Counter

from gateway import __version__
from gateway.context import Ctx
from gateway.langfuse_events import Pending, events_of
from gateway.plugin import Plugin
from gateway.services import Services
from gateway.settlement import Settlement

log = logging.getLogger("gateway.langfuse")

DEFAULT_HOST = "https://cloud.langfuse.com"
# Langfuse refuses batches over 3.5 MB; an event alone over the smaller bound loses its input and output.
MAX_BATCH_BYTES = 3_000_000
MAX_EVENT_BYTES = 1_000_000
CONNECT_TIMEOUT = 3.0
WARN_INTERVAL = 10.0
MAX_BACKOFF = 8.0

DROPPED = Counter("litellm_langfuse_dropped_events", "Langfuse events lost: queue full, send failed after "
                  "retries, rejected by Langfuse, too large, or still queued at shutdown", ["reason"])
SENT_EVENTS = Counter("litellm_langfuse_sent_events", "Langfuse events accepted by the ingestion API")
SENT_BATCHES = Counter("litellm_langfuse_sent_batches", "Batches the Langfuse ingestion API answered with 2xx")
SEND_FAILURES = Counter("litellm_langfuse_send_failures", "Attempts to post a batch to Langfuse that failed "
                        "(timeout, connection error or an error status); each may be retried")


class LangfuseSettings(msgspec.Struct, forbid_unknown_fields=True):
    public_key: str | None = None  # else LANGFUSE_PUBLIC_KEY
    secret_key: str | None = None  # else LANGFUSE_SECRET_KEY
    host: str | None = None  # else LANGFUSE_HOST, else Langfuse Cloud
    flush_interval: float | None = None  # seconds; else LANGFUSE_FLUSH_INTERVAL, else 1
    flush_at: int | None = None  # requests per batch; else LANGFUSE_FLUSH_AT, else 100
    queue_size: int = 10000  # requests waiting to be sent; beyond it they are dropped
    max_retries: int = 3
    timeout: float = 10.0  # seconds for one attempt at one batch
    close_timeout: float = 5.0  # seconds shutdown waits for the queue to be sent


def _env_number(name: str, kind: type[float] | type[int], default: float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a{'n integer' if kind is int else ' number'}") from None


def _host(raw: str) -> str:
    host = raw.strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = f"http://{host}"  # as LiteLLM does: a bare name is a host on a private network
    return host


def _modes(services: Services) -> tuple[bool, bool]:
    """(log successes, log failures) as LiteLLM's callback lists say; both when listed as a plugin only."""
    settings = services.config.litellm_settings
    if "langfuse" in settings.callbacks:
        return True, True
    success, failure = "langfuse" in settings.success_callback, "langfuse" in settings.failure_callback
    return (success, failure) if success or failure else (True, True)


class Langfuse(Plugin):
    name = "langfuse"
    needs_usage = True
    needs_output = True

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        options = msgspec.convert(settings, LangfuseSettings)  # a ValidationError is a ValueError: a start error
        public_key = options.public_key or os.environ.get("LANGFUSE_PUBLIC_KEY")
        secret_key = options.secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
        missing = [n for n, v in (("LANGFUSE_PUBLIC_KEY", public_key), ("LANGFUSE_SECRET_KEY", secret_key)) if not v]
        if missing:
            raise ValueError(f"{' and '.join(missing)} must be set to log to Langfuse")
        self.flush_interval = options.flush_interval if options.flush_interval is not None else _env_number(
            "LANGFUSE_FLUSH_INTERVAL", float, 1.0)
        self.flush_at = options.flush_at if options.flush_at is not None else _env_number("LANGFUSE_FLUSH_AT", int, 100)
        for field, value, low in (("flush_interval", self.flush_interval, 0.001), ("flush_at", self.flush_at, 1),
                                  ("queue_size", options.queue_size, 1), ("max_retries", options.max_retries, 0),
                                  ("timeout", options.timeout, 0.001), ("close_timeout", options.close_timeout, 0)):
            if value < low:
                raise ValueError(f"{field} must be at least {low}, got {value}")
        self.queue_size = options.queue_size
        self.max_retries = options.max_retries
        self.timeout = options.timeout
        self.close_timeout = options.close_timeout
        host = _host(options.host or os.environ.get("LANGFUSE_HOST") or DEFAULT_HOST)
        self.url = f"{host}/api/public/ingestion"
        credentials = base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()
        self.headers = {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"}
        self.batch_metadata = orjson.dumps({"sdk_name": "llm-gateway", "sdk_version": __version__,
                                            "public_key": public_key})
        self.log_success, self.log_failure = _modes(services)
        self.redact = bool(services.config.litellm_settings.turn_off_message_logging)
        self.release = os.environ.get("LANGFUSE_RELEASE") or None
        self.queue: deque[Pending] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.in_hand = 0  # events taken from the queue and not yet sent or counted as dropped
        self.unreported: dict[str, int] = {}
        self.problem: str | None = None  # the last reason Langfuse did not take a batch, for the next warning
        self.warned_at = -WARN_INTERVAL
        log.info("langfuse: logging %s to %s", " and ".join(
            w for w, on in (("successes", self.log_success), ("failures", self.log_failure)) if on), host)

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        if ctx.deployment is None:
            return
        if not (self.log_failure if settled.failed or settled.client_left else self.log_success):
            return
        pending = Pending(ctx.request_id, ctx.endpoint, ctx.body, ctx.request.headers, ctx.requested_model,
                          ctx.model_group, ctx.deployment, ctx.upstream_model, ctx.stream, settled.status,
                          settled.error, ctx.started_wall, ctx.started, ctx.first_byte_at, settled.ended,
                          settled.usage, settled.cost, ctx.caller, ctx.output, ctx.client_ip)
        if self.closing or len(self.queue) >= self.queue_size:
            self._dropped(pending.event_count(), "shutdown" if self.closing else "queue_full")
            return
        self.queue.append(pending)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="langfuse-sender")
        elif len(self.queue) >= self.flush_at:
            self.wake.set()

    def _dropped(self, count: int, reason: str) -> None:
        if count <= 0:
            return
        DROPPED.labels(reason).inc(count)
        self.unreported[reason] = self.unreported.get(reason, 0) + count
        now = time.monotonic()
        if now - self.warned_at >= WARN_INTERVAL:
            self._report(now)

    def _report(self, now: float) -> None:
        if not self.unreported:
            return
        self.warned_at = now
        counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.unreported.items()))
        problem = f"; last problem: {self.problem}" if self.problem else ""
        self.unreported, self.problem = {}, None
        log.warning("langfuse: dropped events (%s)%s; litellm_langfuse_dropped_events_total has the running count",
                    counts, problem)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT))
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            while True:
                if not self.closing and len(self.queue) < self.flush_at:
                    self.wake.clear()
                    try:
                        async with asyncio.timeout(self.flush_interval):
                            await self.wake.wait()
                    except TimeoutError:
                        pass
                if self.queue:
                    try:
                        await self._flush(session)
                    except Exception:
                        log.exception("langfuse: sending a batch failed")
                        self._dropped(self.in_hand, "error")
                        self.in_hand = 0
                elif self.closing:
                    return

    async def _flush(self, session: aiohttp.ClientSession) -> None:
        batch: list[bytes] = []
        size = 0
        for _ in range(min(self.flush_at, len(self.queue))):
            pending = self.queue.popleft()
            try:
                encoded = [self._encode(event) for event in events_of(pending, self.redact, self.release)]
            except Exception:
                log.exception("langfuse: could not build the events of request %s", pending.request_id)
                self._dropped(pending.event_count(), "unreadable")
                continue
            self.in_hand += len(encoded)
            for raw in encoded:
                if raw is None:
                    self.in_hand -= 1
                    self._dropped(1, "too_large")
                    continue
                if batch and size + len(raw) > MAX_BATCH_BYTES:
                    await self._post(session, batch)
                    batch, size = [], 0
                batch.append(raw)
                size += len(raw) + 1
            # Answers are decoded here, on the loop the requests share: one at a time, letting them in between.
            await asyncio.sleep(0)
        if batch:
            await self._post(session, batch)

    @staticmethod
    def _encode(event: dict[str, Any]) -> bytes | None:
        raw = orjson.dumps(event)
        if len(raw) <= MAX_EVENT_BYTES:
            return raw
        body = event["body"]
        for field in ("input", "output"):
            if body.get(field) is not None:
                body[field] = f"<left out by the gateway: the event was over {MAX_EVENT_BYTES} bytes>"
        raw = orjson.dumps(event)
        return raw if len(raw) <= MAX_EVENT_BYTES else None

    async def _post(self, session: aiohttp.ClientSession, batch: list[bytes]) -> None:
        body = b'{"batch":[' + b",".join(batch) + b'],"metadata":' + self.batch_metadata + b"}"
        problem = ""
        try:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), MAX_BACKOFF))
                try:
                    async with session.post(self.url, data=body, headers=self.headers) as response:
                        answer = await response.read()
                        if response.status < 300:
                            self._accepted(len(batch), answer)
                            return
                        SEND_FAILURES.inc()
                        problem = f"HTTP {response.status}: {answer[:300].decode(errors='replace')}"
                        if response.status != 429 and response.status < 500:
                            break  # wrong keys or a request Langfuse will never take: retrying cannot help
                except (TimeoutError, aiohttp.ClientError) as exc:
                    SEND_FAILURES.inc()
                    problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.problem = f"POST {self.url}: {problem}"
            self._dropped(len(batch), "send_failed")
        finally:
            self.in_hand -= len(batch)

    def _accepted(self, count: int, answer: bytes) -> None:
        """Langfuse answers 207 with the events it took and those it refused, each by itself."""
        SENT_BATCHES.inc()
        try:
            parsed = orjson.loads(answer) if answer else {}
        except orjson.JSONDecodeError:
            parsed = {}
        errors = parsed.get("errors") if isinstance(parsed, dict) else None
        refused = len(errors) if isinstance(errors, list) else 0
        SENT_EVENTS.inc(count - refused)
        if refused:
            assert isinstance(errors, list)
            first = orjson.dumps(errors[0]).decode()[:500]
            self.problem = f"{refused} of {count} events refused, the first: {first}"
            self._dropped(refused, "rejected")

    async def close(self) -> None:
        self.closing = True
        task = self.task
        if task is not None:
            self.wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout)
            except TimeoutError:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                left = self.in_hand + sum(p.event_count() for p in self.queue)
                self.queue.clear()
                self._dropped(left, "shutdown")
            except Exception:
                log.exception("langfuse: the sender failed")
        self._report(time.monotonic())


PLUGIN = Langfuse
