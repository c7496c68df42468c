"""A worker's side of the node's counters: the Limiter and Ledger of `--workers N` without Redis,
and the router's failure peers with or without it.

One Unix-socket connection per worker. What a loop iteration sends leaves in one write, and what
arrives in one read is answered in one write, so a busy node costs few system calls per request.
Calls are bounded and guarded by a SharedLink like Redis's: a node that does not answer in
`redis_timeout` is marked down, requests then follow `fail_open`, and a probe reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import msgspec

from gateway.budget.ledger import Counter, Denied
from gateway.limits.buckets import Bucket, Short, SlotsFull
from gateway.node import wire
from gateway.router import Deployment, Router
from gateway.shared_link import SharedLink, SharedStateDown

log = logging.getLogger("gateway.node")

SOCKET_VARIABLE = "GATEWAY_NODE_SOCKET"


class NodeClient(asyncio.Protocol):
    def __init__(self, path: str, router: Router, timeout: float, fail_open: bool) -> None:
        self.path = path
        self.router = router
        self.link = SharedLink("the node's shared counters", self._reconnect, timeout, fail_open)
        self.transport: asyncio.Transport | None = None
        self.frames = wire.Frames(msgspec.msgpack.Decoder(wire.ToWorker))
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.last_id = 0
        self.outbox: list[bytes] = []
        self.closing = False

    @classmethod
    def from_environment(cls, router: Router, timeout: float, fail_open: bool) -> NodeClient | None:
        path = os.environ.get(SOCKET_VARIABLE)
        return cls(path, router, timeout, fail_open) if path else None

    async def start(self) -> None:
        try:
            await self._connect()
        except OSError as exc:
            self.link.failed(exc)
        self.router.peers = self

    async def close(self) -> None:
        self.closing = True
        await self.link.close()
        if self.transport is not None:
            self._flush()
            self.transport.close()  # what is buffered is written first

    async def _connect(self) -> None:
        await asyncio.get_running_loop().create_unix_connection(lambda: self, self.path)

    async def _reconnect(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        await self._connect()
        await self._ask(lambda id: wire.Ping(id))

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.outbox.clear()
        lost = ConnectionResetError("the node's counters closed the connection")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(lost)
        self.pending.clear()
        if not self.closing:
            self.link.failed(lost)

    def data_received(self, data: bytes) -> None:
        for message in self.frames.feed(data):
            if type(message) is wire.Reply:
                future = self.pending.pop(message.id, None)
                if future is not None and not future.done():
                    future.set_result(message.value)
            elif type(message) is wire.Cooldown:
                self.router.cool_down(message.deployment, message.until, message.counted)
            elif type(message) is wire.Failing:
                deployment = self.router.by_id.get(message.deployment)
                if deployment is not None:
                    deployment.failures = 1 if message.failing else 0

    # Sending

    def _send(self, data: bytes) -> None:
        if not self.outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outbox.append(data)

    def _flush(self) -> None:
        if self.outbox and self.transport is not None:
            self.transport.write(b"".join(self.outbox))
        self.outbox.clear()

    async def call(self, make: Any) -> Any:
        """Send the message `make(id)` and wait for its answer, at most the link's timeout."""
        if self.link.down or self.transport is None:
            raise SharedStateDown("the node's shared counters are unreachable")
        try:
            return await self._ask(make)
        except Exception as exc:
            self.link.failed(exc)
            raise

    async def _ask(self, make: Any) -> Any:
        self.last_id += 1
        id = self.last_id
        future = asyncio.get_running_loop().create_future()
        self.pending[id] = future
        self._send(wire.frame(make(id)))
        try:
            async with asyncio.timeout(self.link.timeout):
                return await future
        finally:
            self.pending.pop(id, None)

    def cast(self, message: msgspec.Struct) -> None:
        if self.link.down or self.transport is None:
            raise SharedStateDown("the node's shared counters are unreachable")
        self._send(wire.frame(message))

    # FailurePeers

    async def failure(self, deployment: Deployment, retry_after: float | None) -> bool:
        try:
            await self.call(lambda id: wire.Failure(id, deployment.id, retry_after))
        except (SharedStateDown, OSError, TimeoutError):
            return False
        return True

    def success(self, deployment: Deployment) -> None:
        try:
            self.cast(wire.Success(deployment.id))
        except SharedStateDown:
            pass


class NodeLimiter:
    """The Limiter protocol on the node's buckets and slots."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client

    async def take(self, buckets: list[Bucket], amount: float) -> Short | list[float]:
        return await self.take_each(buckets, [amount] * len(buckets))

    async def take_each(self, buckets: list[Bucket], amounts: list[float]) -> Short | list[float]:
        answer = await self.client.call(lambda id: wire.Take(id, [b.name for b in buckets],
                                                              [b.capacity for b in buckets], amounts))
        if answer[0]:
            return Short(buckets[answer[1]], answer[2], answer[3])
        return [float(v) for v in answer[1:]]

    async def give(self, buckets: list[Bucket], amount: float) -> None:
        self.client.cast(wire.Give([b.name for b in buckets], [b.capacity for b in buckets], amount))

    async def acquire(self, slots: list[tuple[str, int]], token: str) -> tuple[str, int] | None:
        full = await self.client.call(lambda id: wire.Acquire(id, [n for n, _ in slots], [lim for _, lim in slots],
                                                               token))
        return slots[full - 1] if full else None

    async def release(self, names: list[str], token: str) -> None:
        self.client.cast(wire.Release(names, token))

    def settle_at_once(self, slots: list[str], token: str, buckets: list[Bucket], amount: float) -> bool:
        if slots:
            self.client.cast(wire.Release(slots, token))
        if buckets:
            self.client.cast(wire.Give([b.name for b in buckets], [b.capacity for b in buckets], amount))
        return True

    async def admit(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                    token: str) -> Short | SlotsFull | list[float]:
        names, capacities = [b.name for b in buckets], [b.capacity for b in buckets]
        slot_names, limits = [n for n, _ in slots], [lim for _, lim in slots]
        answer = await self.client.call(lambda id: wire.Admit(id, names, capacities, amounts, slot_names, limits,
                                                               token))
        if answer[0] == 1:
            return Short(buckets[answer[1]], answer[2], answer[3])
        if answer[0] == 2:
            return SlotsFull(*slots[answer[1]])
        return [float(v) for v in answer[1:]]


class NodeLedger:
    """The Ledger protocol on the node's budget counters."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client

    async def reserve(self, counters: list[Counter], amount: float) -> Denied | list[float]:
        if not counters:
            return []
        rows = [(c.name, c.limit, c.baseline, c.expires_at) for c in counters]
        answer = await self.client.call(lambda id: wire.Reserve(id, rows, amount))
        if answer[0]:
            return Denied(counters[answer[1]], answer[2], answer[3])
        return [float(v) for v in answer[1:]]

    async def settle(self, names: list[str], reserved: float, actual: float) -> None:
        if names:
            self.client.cast(wire.Settle(names, reserved, actual))

    def reserve_at_once(self, counters: list[Counter], amount: float) -> Denied | list[float] | None:
        return None

    def settle_at_once(self, names: list[str], reserved: float, actual: float) -> bool:
        if names:
            self.client.cast(wire.Settle(names, reserved, actual))
        return True

    async def spent(self, name: str) -> float | None:
        value = await self.client.call(lambda id: wire.Spent(id, name))
        return float(value) if value is not None else None

    async def copy(self, source: str, target: str, expires_at: float | None) -> float | None:
        value = await self.client.call(lambda id: wire.Copy(id, source, target, expires_at))
        return float(value) if value is not None else None

    async def close(self) -> None:
        pass
