"""`--workers 2` without Redis is one gateway: every limit holds for the node as a whole, exactly as
one process enforces it. Each request comes on a new connection so that both workers serve (the
kernel spreads connections over SO_REUSEPORT listeners), and each test checks that both did."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import msgspec
import pytest

from gateway.config import parse_config
from gateway.limits.buckets import Bucket, SlotsFull
from gateway.node import wire
from gateway.node.client import NodeClient, NodeLimiter
from gateway.node.server import NodeServer
from gateway.router import Router
from gateway.shared_link import SharedStateDown
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, free_port

MASTER = "sk-workers-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]
IN_PRICE, OUT_PRICE = 0.001, 0.002
# The mock counts 4 characters a token, rounded up: 9 prompt tokens, 2 answer tokens, and the
# reservation estimates the same, so each request reserves exactly what it costs.
COST = 9 * IN_PRICE + 2 * OUT_PRICE


def node_config(upstream: FakeUpstream, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_list": [
            {"model_name": "metered", "litellm_params": {
                "model": "mock/metered", "mock_response": "ok ok ok",
                "input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}},
            {"model_name": "limited", "litellm_params": {"model": "mock/limited", "rpm": 5}},
            deployment("held", upstream.base_url),
            deployment("pair", f"http://127.0.0.1:{free_port()}/v1", model_info={"id": "dead"}),
            deployment("pair", upstream.base_url, model_info={"id": "alive"}),
        ],
        "general_settings": {"master_key": MASTER},
        "router_settings": {"num_retries": 0, "allowed_fails": 2, "cooldown_time": 600},
    }
    config.update(sections)
    return config


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeUpstream]]:
    upstream = FakeUpstream("workers").start()
    with Gateway(node_config(upstream), "--workers", "2") as gw:
        gw.wait_for_workers(2)
        yield gw, upstream
    upstream.stop()


def workers_that_answered(gw: Gateway) -> set[str]:
    return set(re.findall(r"gateway\.access\[(\d+)\]", gw.log()))


async def fresh_chat(gw: Gateway, key: str, model: str = "metered", **extra: Any) -> int:
    """One request on a connection of its own, so that either worker may take it."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                             json={"model": model, "messages": MESSAGES, "max_tokens": 2, **extra}) as r:
            await r.read()
            return r.status


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


async def test_both_workers_share_the_node_counters(node: tuple[Gateway, FakeUpstream],
                                                    http: aiohttp.ClientSession) -> None:
    gw, _ = node
    assert "limits and budgets: shared by the node's workers" in gw.log()
    key = await new_key(http, gw)
    deadline = time.monotonic() + 30  # the access log is written every 0.2 s: count by time, not by requests
    while len(workers_that_answered(gw)) < 2 and time.monotonic() < deadline:
        assert await fresh_chat(gw, key) == 200
        await asyncio.sleep(0.01)
    assert len(workers_that_answered(gw)) == 2, "the kernel gave every connection to one worker"


async def test_rpm_holds_for_the_node(node: tuple[Gateway, FakeUpstream], http: aiohttp.ClientSession) -> None:
    gw, _ = node
    key = await new_key(http, gw, rpm_limit=6)
    statuses = [await fresh_chat(gw, key) for _ in range(14)]
    assert statuses.count(200) == 6 and statuses.count(429) == 8, statuses


async def test_rpm_holds_for_the_node_under_a_concurrent_burst(node: tuple[Gateway, FakeUpstream],
                                                               http: aiohttp.ClientSession) -> None:
    gw, _ = node
    key = await new_key(http, gw, rpm_limit=10)
    statuses = await asyncio.gather(*(fresh_chat(gw, key) for _ in range(40)))
    assert statuses.count(200) in (10, 11), statuses  # 11 if a refill lands mid-burst


async def test_tpm_holds_for_the_node(node: tuple[Gateway, FakeUpstream], http: aiohttp.ClientSession) -> None:
    gw, _ = node
    # Each request is admitted on 11 tokens (9 of prompt, max_tokens 2) and uses 11.
    key = await new_key(http, gw, tpm_limit=55)
    statuses = [await fresh_chat(gw, key) for _ in range(12)]
    assert statuses.count(200) == 5, statuses


async def test_parallel_slots_hold_for_the_node(node: tuple[Gateway, FakeUpstream],
                                                http: aiohttp.ClientSession) -> None:
    gw, upstream = node
    key = await new_key(http, gw, max_parallel_requests=2)
    gate = uuid.uuid4().hex
    sessions = [aiohttp.ClientSession() for _ in range(6)]
    held = []
    try:
        body = {"model": "held", "messages": MESSAGES, "stream": True, "fake": {"chunks": 2, "gate": gate}}
        for session in sessions[:2]:
            response = await session.post(f"{gw.url}/v1/chat/completions", json=body,
                                          headers={"Authorization": f"Bearer {key}"})
            assert response.status == 200
            await response.content.readuntil(b"\n\n")
            held.append(response)
        # Two streams are open, on whichever workers took them: every further request is one too many.
        statuses = [await fresh_chat(gw, key, "held") for _ in range(6)]
        assert statuses == [429] * 6
        upstream.open_gate(gate)
        for response in held:
            await response.read()
        assert await fresh_chat(gw, key, "held") == 200
    finally:
        for response in held:
            response.release()
        for session in sessions:
            await session.close()


async def test_budget_holds_for_the_node(node: tuple[Gateway, FakeUpstream], http: aiohttp.ClientSession) -> None:
    gw, _ = node
    key = await new_key(http, gw, max_budget=10.5 * COST)
    statuses = await asyncio.gather(*(fresh_chat(gw, key) for _ in range(60)))
    assert statuses.count(200) == 10 and statuses.count(429) == 50, statuses
    assert [await fresh_chat(gw, key) for _ in range(4)] == [429] * 4


async def test_deployment_rpm_holds_for_the_node(node: tuple[Gateway, FakeUpstream],
                                                 http: aiohttp.ClientSession) -> None:
    gw, _ = node
    statuses = [await fresh_chat(gw, MASTER, "limited") for _ in range(12)]
    assert statuses.count(200) == 5 and statuses.count(429) == 7, statuses


async def test_cooldown_counts_failures_of_the_node(node: tuple[Gateway, FakeUpstream],
                                                    http: aiohttp.ClientSession) -> None:
    """allowed_fails 2: the dead deployment's third failure, on whichever worker, puts it to rest for
    both; one process would have let exactly three requests reach it."""
    gw, _ = node
    statuses = [await fresh_chat(gw, MASTER, "pair") for _ in range(40)]
    assert statuses.count(502) == 3, statuses
    assert statuses[-20:] == [200] * 20


PAIR = parse_config({
    "model_list": [{"model_name": "pair", "litellm_params": {"model": "mock/a"}, "model_info": {"id": "a"}},
                   {"model_name": "pair", "litellm_params": {"model": "mock/b"}, "model_info": {"id": "b"}}],
    "router_settings": {"allowed_fails": 0, "cooldown_time": 600}})


def pair_node() -> NodeServer:
    """A node for PAIR's two deployments (the first failure cools one down), on a socket in a folder of its own."""
    server = NodeServer(os.path.join(tempfile.mkdtemp(prefix="gwnode-"), "counters.sock"), Router(PAIR))
    server.start()
    return server


def stop_node(server: NodeServer) -> None:
    server.stop()
    shutil.rmtree(os.path.dirname(server.path), ignore_errors=True)


async def test_a_failure_report_returns_once_every_worker_has_the_cooldown() -> None:
    """The failing request's answer waits for the report, so the client's next request, on whichever
    worker, cannot reach the deployment again: when the report returns, the cooldown is already in the
    other worker's socket (here a bare one, read without waiting), and in the reporter's router."""
    server = pair_node()
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.settimeout(5)
    other.connect(server.path)
    other.sendall(wire.frame(wire.Ping(1)))
    frames = wire.Frames(msgspec.msgpack.Decoder(wire.ToWorker))
    assert frames.feed(other.recv(4096)) == [wire.Reply(1, True)]  # the node has taken its connection
    failing = Router(PAIR)
    client = NodeClient(server.path, failing, timeout=5.0, fail_open=True)
    await client.start()
    try:
        await failing.record_failure(failing.by_id["a"], None)
        other.setblocking(False)
        pushed = frames.feed(other.recv(4096))
        assert [(type(m), m.deployment) for m in pushed] == [(wire.Cooldown, "a")]
        assert pushed[0].until > time.monotonic() + 500
        assert failing.by_id["a"].cooldown_until == pushed[0].until
    finally:
        await client.close()
        other.close()
        stop_node(server)


async def test_a_worker_that_connects_late_learns_the_cooldowns_still_running() -> None:
    """A worker that starts, or finds the node again, after a deployment was put to rest: the node tells it
    at once, rather than at the cooldown's next change, so it does not send the deployment more requests."""
    server = pair_node()
    first, late = Router(PAIR), Router(PAIR)
    reporter = NodeClient(server.path, first, timeout=5.0, fail_open=True)
    newcomer = NodeClient(server.path, late, timeout=5.0, fail_open=True)
    await reporter.start()
    try:
        await first.record_failure(first.by_id["a"], None)
        assert first.by_id["a"].cooldown_until > time.monotonic() + 500
        await newcomer.start()
        deadline = time.monotonic() + 5
        while late.by_id["a"].cooldown_until != first.by_id["a"].cooldown_until:
            assert time.monotonic() < deadline, "the late worker was not told of the cooldown"
            await asyncio.sleep(0.01)
        assert late.by_id["b"].cooldown_until <= time.monotonic()
    finally:
        await newcomer.close()
        await reporter.close()
        stop_node(server)


async def test_a_worker_that_loses_the_node_follows_the_policy_and_finds_it_again() -> None:
    """The node's counters behind the same guard as Redis: a lost connection marks them down, calls
    then fail at once (SharedStateDown: the caller applies fail_open), and a probe reconnects."""
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    folder = tempfile.mkdtemp(prefix="gwnode-")
    path = os.path.join(folder, "counters.sock")
    server = NodeServer(path, Router(config))
    server.start()
    client = NodeClient(path, Router(config), timeout=1.0, fail_open=True)
    await client.start()
    limiter = NodeLimiter(client)
    bucket = Bucket("rpm:key:lost", 5.0)
    try:
        assert await limiter.admit([bucket], [1.0], [], "r1") == [pytest.approx(4.0)]
        server.stop()
        with pytest.raises((ConnectionError, SharedStateDown)):
            await limiter.admit([bucket], [1.0], [], "r2")
        with pytest.raises(SharedStateDown):
            await limiter.admit([bucket], [1.0], [], "r3")
        server = NodeServer(path, Router(config))
        server.start()
        deadline = time.monotonic() + 10
        while client.link.down:
            assert time.monotonic() < deadline, "the worker did not find the node again"
            await asyncio.sleep(0.05)
        assert await limiter.admit([bucket], [1.0], [], "r4") == [pytest.approx(4.0)]  # a new node starts full
    finally:
        await client.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def test_slots_of_a_worker_that_dies_go_back_at_once() -> None:
    config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]})
    folder = tempfile.mkdtemp(prefix="gwnode-")
    server = NodeServer(os.path.join(folder, "counters.sock"), Router(config))
    server.start()
    clients = [NodeClient(server.path, Router(config), timeout=1.0, fail_open=True) for _ in range(2)]
    for client in clients:
        await client.start()
    dying, living = (NodeLimiter(client) for client in clients)
    one_slot = [("par:key:crash", 1)]
    try:
        assert await dying.admit([], [], one_slot, "held") == []
        assert await living.admit([], [], one_slot, "waiting") == SlotsFull("par:key:crash", 1)
        assert clients[0].transport is not None
        clients[0].transport.abort()  # the worker is gone, its stream with it
        deadline = time.monotonic() + 10
        while await living.admit([], [], one_slot, "waiting") != []:
            assert time.monotonic() < deadline, "the dead worker's slot was not given back"
            await asyncio.sleep(0.05)
    finally:
        for client in clients:
            await client.close()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
