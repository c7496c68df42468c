"""redis-server processes of a test's own on loopback ports (plain, TLS, with a password, as a Cluster),
and the checks that two gateways sharing one hold a limit and a budget exactly between them."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio

from gateway.redis_keys import shared_key
from tests.harness import Gateway, free_port

MASTER = "sk-topology-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 0.001, 0.002
MESSAGES = [{"role": "user", "content": "hi!"}]  # 9 tokens in, "ok ok ok" 2 out: the estimate is the cost
COST = 9 * IN_PRICE + 2 * OUT_PRICE
ROOM_FOR_TEN = 10.5 * COST
PATIENCE = 30.0
SHARED_STATE_DOWN = "cannot be checked right now (their shared store is unreachable; fail_open: false)"


async def eventually(probe: Callable[[], Awaitable[Any]], patience: float = PATIENCE) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            if found := await probe():
                return found
        except Exception:  # noqa: BLE001 - not there yet
            pass
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway authority's certificate, a server's certificate and key, and a client's."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


class RedisProcess:
    """One redis-server of this test's own, nothing persisted; killed, not stopped, to play a crash.
    With `tls` it listens for TLS only (and asks clients for a certificate); with `password` every
    client must give it."""

    def __init__(self, workdir: Path, *args: str, tls: TlsFiles | None = None, password: str | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.args = args
        self.tls = tls
        self.password = password
        self.log_path = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *command: str) -> RedisProcess:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                      "--tls-auth-clients", "yes"]
        secret = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*(command or ("redis-server",)), *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), *secret, *self.args], stdout=log, stderr=subprocess.STDOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> redis.asyncio.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), "ssl_certfile": str(self.tls.client_cert),
                   "ssl_keyfile": str(self.tls.client_key)}
        return redis.asyncio.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=1,
                                   socket_timeout=5, decode_responses=True, **tls)

    async def ping(self) -> bool:
        async with self.client() as client:
            return bool(await client.ping())

    async def info(self, section: str) -> dict[str, Any]:
        async with self.client() as client:
            return dict(await client.info(section))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def cluster_node(workdir: Path, *args: str, password: str | None = None, tls: TlsFiles | None = None) -> RedisProcess:
    if tls is not None:
        args += ("--tls-cluster", "yes", "--tls-replication", "yes")
    node = RedisProcess(workdir, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000", *args,
                        password=password, tls=tls)
    # The bus port defaults to port + 10000, past 65535 for most free ports: one of its own.
    node.args += ("--cluster-config-file", f"nodes-{node.port}.conf", "--cluster-port", str(free_port()))
    return node


async def create_cluster(nodes: list[RedisProcess], replicas: int) -> None:
    """Start the nodes and join them into one Cluster; back once every node sees it whole."""
    for node in nodes:
        node.start()
    for node in nodes:
        await eventually(node.ping)
    addresses = [f"127.0.0.1:{node.port}" for node in nodes]
    secret = ["-a", nodes[0].password, "--no-auth-warning"] if nodes[0].password else []
    tls = nodes[0].tls
    if tls is not None:
        secret += ["--tls", "--cacert", str(tls.ca), "--cert", str(tls.client_cert), "--key", str(tls.client_key)]
    created = await asyncio.to_thread(
        subprocess.run, ["redis-cli", *secret, "--cluster", "create", *addresses, "--cluster-replicas",
                         str(replicas), "--cluster-yes"], capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stdout + created.stderr

    async def agrees(node: RedisProcess) -> bool:
        async with node.client() as client:
            state = str(await client.execute_command("CLUSTER", "INFO"))
        return "cluster_state:ok" in state and f"cluster_known_nodes:{len(nodes)}" in state

    for node in nodes:
        await eventually(lambda node=node: agrees(node))


async def cluster_master_of(nodes: list[RedisProcess], prefix: str) -> RedisProcess:
    """The node that holds the slot of the gateway's keys under `prefix` now."""
    for node in nodes:
        if node.process is None or node.process.poll() is not None:
            continue
        async with node.client() as client:
            slot = int(await client.execute_command("CLUSTER", "KEYSLOT", shared_key(prefix, "x")))
            for start, end, master, *_ in await client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return next(n for n in nodes if n.port == int(master[1]))
    raise AssertionError("no live node answers")


def start_together(*gateways: Gateway) -> None:
    """Start every gateway, then wait for each: their starts overlap."""
    for gw in gateways:
        gw.start(wait=False)
    for gw in gateways:
        gw.wait_ready()


def metered(name: str = "metered") -> dict[str, Any]:
    # The deployment's own rpm is counted in the same Redis, in the same slot.
    return {"model_name": name, "litellm_params": {"model": f"mock/{name}", "mock_response": "ok ok ok", "rpm": 100_000,
                                                   "input_cost_per_token": IN_PRICE,
                                                   "output_cost_per_token": OUT_PRICE}}


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> dict[str, Any]:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str) -> tuple[int, Any]:
    body = {"model": "metered", "messages": MESSAGES, "max_tokens": 2}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.json()


async def admitted(http: aiohttp.ClientSession, gateways: tuple[Gateway, Gateway], key: str, count: int) -> int:
    """How many of `count` concurrent requests, spread over both gateways, were served."""
    results = await asyncio.gather(*(chat(http, gateways[i % 2], key) for i in range(count)))
    assert {status for status, _ in results} <= {200, 429}, results
    return [status for status, _ in results].count(200)


async def shared_limits_hold(http: aiohttp.ClientSession, gateways: tuple[Gateway, Gateway]) -> None:
    limited = await new_key(http, gateways[0], rpm_limit=5)
    assert await admitted(http, gateways, limited["key"], 20) in (5, 6)  # 6 if a refill lands mid-burst
    # A key's budget and its team's, checked together by one script: both counters in one slot.
    async with http.post(f"{gateways[0].url}/team/new", json={"max_budget": 1000.0}, headers=ADMIN) as r:
        team = (await r.json())["team_id"]
    budgeted = await new_key(http, gateways[1], max_budget=ROOM_FOR_TEN, team_id=team)
    assert await admitted(http, gateways, budgeted["key"], 60) == 10
