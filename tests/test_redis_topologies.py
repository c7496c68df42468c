"""Redis Cluster and Redis Sentinel, started here on loopback ports, each shared by two gateways: one rpm
limit and one budget hold exactly across both, a change made on one reaches the other over pub/sub,
and the master holding the gateway's keys is killed mid-load. `fail_open: true` serves throughout,
`fail_open: false` refuses with the shared-state error while there is no master, both find the
promoted replica by themselves, and afterwards every served request is counted once: in the store
exactly, in Redis never more."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.config import parse_config
from gateway.management.keys import token_of
from gateway.redis_client import RedisTarget, redis_target
from gateway.redis_keys import shared_key
from tests.harness import Gateway, run_cli
from tests.redis_servers import (
    ADMIN,
    COST,
    MASTER,
    SHARED_STATE_DOWN,
    RedisProcess,
    chat,
    cluster_master_of,
    cluster_node,
    create_cluster,
    eventually,
    metered,
    new_key,
    shared_limits_hold,
)

SERVICE = "gwmaster"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                                reason="redis-server and redis-cli are not installed")


class Topology:
    """What the tests need of a topology: how gateways name it, which process holds the gateway's keys
    (to kill it), and a client on the master that holds them now."""

    name: str
    processes: list[RedisProcess]

    async def start(self) -> None:
        raise NotImplementedError

    def settings(self, variant: int) -> tuple[dict[str, Any], dict[str, str]]:
        """The config sections and environment variables of one of LiteLLM's ways of naming it."""
        raise NotImplementedError

    async def master_of(self, prefix: str) -> RedisProcess:
        raise NotImplementedError

    async def replica_synced(self, master: RedisProcess) -> bool:
        raise NotImplementedError

    async def failover_done(self) -> bool:
        """Whether the topology's own view has settled on the promoted replica."""
        return True

    def stop(self) -> None:
        for process in self.processes:
            process.kill()


class Cluster(Topology):
    """Three masters, each with a replica that takes over once it is found dead (after a second)."""

    name = "cluster"

    def __init__(self, workdir: Path) -> None:
        self.processes = [cluster_node(workdir, "--cluster-replica-validity-factor", "0") for _ in range(6)]

    async def start(self) -> None:
        await create_cluster(self.processes, replicas=1)

    def settings(self, variant: int) -> tuple[dict[str, Any], dict[str, str]]:
        # LiteLLM's ways of naming a Cluster: a cache's redis_startup_nodes, the coordination block's, the variable.
        nodes = [{"host": "127.0.0.1", "port": str(node.port)} for node in self.processes[:3]]
        if variant == 0:
            return {"litellm_settings": {"cache": True, "cache_params": {"type": "redis",
                                                                          "redis_startup_nodes": nodes}}}, {}
        if variant == 1:
            return {"general_settings": {"coordination_redis": {"startup_nodes": nodes}}}, {}
        return {}, {"REDIS_CLUSTER_NODES": json.dumps(nodes)}

    async def master_of(self, prefix: str) -> RedisProcess:
        return await cluster_master_of(self.processes, prefix)

    async def replica_synced(self, master: RedisProcess) -> bool:
        info = await master.info("replication")
        return info.get("connected_slaves") == 1 and info["slave0"]["state"] == "online"


class Sentinels(Topology):
    """One master, one replica, one sentinel with quorum 1: it alone may declare the master dead and
    promote the replica (a majority of one), a second after the master stops answering."""

    name = "sentinel"

    def __init__(self, workdir: Path) -> None:
        self.master = RedisProcess(workdir)
        self.replica = RedisProcess(workdir, "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinel = RedisProcess(workdir)
        self.config = workdir / "sentinel.conf"
        self.config.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 1\n"
                               f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                               f"sentinel failover-timeout {SERVICE} 10000\n")
        self.processes = [self.master, self.replica, self.sentinel]

    async def start(self) -> None:
        self.master.start()
        self.replica.start()
        self.sentinel.args = ("--sentinel",)
        self.sentinel.start("redis-server", str(self.config))
        await eventually(lambda: self.replica_synced(self.master))

        async def sentinel_knows_the_replica() -> bool:
            async with self.sentinel.client() as client:
                replicas = await client.sentinel_slaves(SERVICE)
            return len(replicas) == 1 and not replicas[0]["is_sdown"]

        await eventually(sentinel_knows_the_replica)

    def settings(self, variant: int) -> tuple[dict[str, Any], dict[str, str]]:
        # LiteLLM's ways of naming Sentinel: a redis+sentinel:// URL, a cache's sentinel_nodes, the variables.
        if variant == 0:
            return {"router_settings": {"redis_url": f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{SERVICE}"}}, {}
        nodes = [["127.0.0.1", self.sentinel.port]]
        if variant == 1:
            return {"litellm_settings": {"cache_params": {"type": "redis", "service_name": SERVICE,
                                                          "sentinel_nodes": nodes}}}, {}
        return {}, {"REDIS_SENTINEL_NODES": json.dumps(nodes), "REDIS_SERVICE_NAME": SERVICE}

    async def failover_done(self) -> bool:
        # Until the sentinel has reached the promoted replica it lists it as "master,disconnected", and
        # on a busy machine that can last past down-after-milliseconds: it then reports it down, and a
        # gateway that asks at that moment is told there is no master.
        async with self.sentinel.client() as client:
            flags = (await client.sentinel_master(SERVICE))["flags"]
        return (flags if isinstance(flags, set) else set(flags.split(","))) == {"master"}

    async def master_of(self, prefix: str) -> RedisProcess:
        async with self.sentinel.client() as client:
            host, port = await client.sentinel_get_master_addr_by_name(SERVICE)
        return next(p for p in (self.master, self.replica) if p.port == int(port))

    async def replica_synced(self, master: RedisProcess) -> bool:
        other = self.replica if master is self.master else self.master
        return (await other.info("replication")).get("master_link_status") == "up"


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
async def topology(request: pytest.FixtureRequest) -> AsyncIterator[Topology]:
    workdir = Path(tempfile.mkdtemp(prefix="redis-topology-"))
    started: Topology = Cluster(workdir) if request.param == "cluster" else Sentinels(workdir)
    try:
        await started.start()
        yield started
    finally:
        started.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def gateway(topology: Topology, variant: int, database_url: str, prefix: str, fail_open: bool = True,
            **settings: Any) -> Gateway:
    config: dict[str, Any] = {
        "model_list": [metered()], "general_settings": {"master_key": MASTER, "database_url": database_url},
        # The change log is read once an hour: a change seen sooner on the other gateway came by pub/sub.
        "gateway_settings": {"redis_key_prefix": prefix, "fail_open": fail_open, "change_poll_interval": 3600,
                             "redis_timeout": 10.0, **settings}}
    sections, env = topology.settings(variant)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return Gateway(config, env=env)


async def test_two_gateways_share_limits_budgets_and_changes(topology: Topology, postgres_url: str,
                                                             http: aiohttp.ClientSession) -> None:
    prefix = f"share-{topology.name}"
    with gateway(topology, 0, postgres_url, prefix, redis_timeout=30.0) as first, \
            gateway(topology, 1, postgres_url, prefix, redis_timeout=30.0) as second:
        for gw in (first, second):
            assert "limits and budgets: shared through Redis" in gw.log()
            assert f"Redis {'Cluster' if topology.name == 'cluster' else 'master'}" in gw.log()
        await shared_limits_hold(http, (first, second))

        # Blocked on the first gateway, refused by the second long before its change log poll.
        key = await new_key(http, first)
        assert (await chat(http, second, key["key"]))[0] == 200
        async with http.post(f"{first.url}/key/block", json={"key": key["key"]}, headers=ADMIN) as r:
            assert r.status == 200, await r.text()

        async def refused_on_second() -> bool:
            return (await chat(http, second, key["key"]))[0] == 401

        await eventually(refused_on_second, patience=10)
        assert "change channel lost" not in first.log() + second.log()
        assert "Traceback" not in first.log() + second.log()

    master = await topology.master_of(prefix)
    async with master.client() as client:
        keys = [k async for k in client.scan_iter(match=shared_key(prefix, "*"), count=1000)]
        if topology.name == "cluster":
            slot = int(await client.execute_command("CLUSTER", "KEYSLOT", shared_key(prefix, "x")))
            assert int(await client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == len(keys)
    kinds = {k.split(":")[1] + ":" + k.split(":")[2] for k in keys}
    assert {"bucket:rpm", "budget:key", "budget:team"} <= kinds, kinds


class Load:
    """Requests one after another on one gateway until stopped; every answer kept in order."""

    def __init__(self, http: aiohttp.ClientSession, gw: Gateway, key: str) -> None:
        self.answers: list[tuple[int, Any]] = []
        self.running = True
        self.task = asyncio.ensure_future(self._run(http, gw, key))

    async def _run(self, http: aiohttp.ClientSession, gw: Gateway, key: str) -> None:
        while self.running:
            self.answers.append(await chat(http, gw, key))

    @property
    def statuses(self) -> list[int]:
        return [status for status, _ in self.answers]

    async def more(self, count: int) -> list[int]:
        start = len(self.answers)
        await eventually(lambda: asyncio.sleep(0, len(self.answers) >= start + count))
        return self.statuses[start:]

    async def stop(self) -> None:
        """After the request under way is answered: one cut off would be served unseen."""
        self.running = False
        await asyncio.gather(self.task, return_exceptions=True)


async def key_spend(http: aiohttp.ClientSession, gw: Gateway, key: str) -> float:
    async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
        return float((await r.json())["info"]["spend"])


async def test_master_killed_under_load(topology: Topology, postgres_url: str,
                                        http: aiohttp.ClientSession) -> None:
    prefix = f"failover-{topology.name}"
    master = await topology.master_of(prefix)
    await eventually(lambda: topology.replica_synced(master))
    with gateway(topology, 0, postgres_url, prefix, fail_open=True) as open_gw, \
            gateway(topology, 2, postgres_url, prefix, fail_open=False) as closed_gw:
        # Limits and a budget far above what the test sends: only the outage can turn a request away.
        key = (await new_key(http, open_gw, rpm_limit=100_000, max_budget=1000.0))["key"]
        loads = [Load(http, gw, key) for gw in (open_gw, closed_gw)]
        try:
            for load in loads:
                await load.more(5)
            master.kill()
            cut = len(loads[1].answers)

            async def closed_gateway_recovered() -> bool:
                refused = [i for i, status in enumerate(loads[1].statuses) if status == 503]
                return bool(refused) and set(loads[1].statuses[refused[-1] + 1:]) == {200} \
                    and len(loads[1].statuses) > refused[-1] + 5

            await eventually(closed_gateway_recovered)
            await eventually(topology.failover_done)
            for gw in (open_gw, closed_gw):
                await eventually(lambda gw=gw: asyncio.sleep(0, _shared_link_up(gw)))
            assert set(await loads[0].more(5)) == {200}
        finally:
            for load in loads:
                await load.stop()

        assert set(loads[0].statuses) == {200}  # fail_open: served throughout, on the process's own counts
        assert "(fail_open: true)" in open_gw.log()
        assert set(loads[1].statuses[:cut]) == {200}
        refusals = [body for status, body in loads[1].answers if status == 503]
        assert set(loads[1].statuses) == {200, 503} and refusals
        assert all(SHARED_STATE_DOWN in body["error"]["message"] for body in refusals), refusals[0]

        # Every served request is in the store once: the key's spend is exactly what was served.
        served = loads[0].statuses.count(200) + loads[1].statuses.count(200)
        try:
            await eventually(lambda: _equals(key_spend(http, open_gw, key), served * COST))
        except AssertionError:
            stored = await key_spend(http, open_gw, key) / COST
            raise AssertionError(f"{served} served, {stored} in the store") from None
        # Counted in the table: a slow run serves more than /spend/logs returns at once (10,000), and the
        # closed gateway's refusals are logged too, at no cost.
        records, total = await _costed_records(postgres_url, key)
        assert records == served and total == pytest.approx(served * COST)
        # Redis's counter never holds more than that: what the dead master had not passed on to its
        # replica, and what was served on this process's own counts while there was no master, are
        # missing from it; nothing is in it twice.
        new_master = await topology.master_of(prefix)
        assert new_master is not master
        async with new_master.client() as client:
            counters = [await client.hgetall(name) async for name in
                        client.scan_iter(match=shared_key(prefix, "budget", "key", "*"))]
        assert counters
        assert sum(float(c["spent"]) for c in counters) <= served * COST + 1e-9

        # The promoted replica is the shared state now, for both gateways: limits hold exactly again.
        await shared_limits_hold(http, (open_gw, closed_gw))
        for gw in (open_gw, closed_gw):
            async with http.get(f"{gw.url}/health/readiness") as r:
                assert r.status == 200, await r.text()
            # Connections failed, and nothing else: no client state broken by the failover.
            broken = [line for line in gw.log().splitlines()
                      if {"Traceback", "AttributeError", "RuntimeError"} & set(line.replace(":", " ").split())]
            assert not broken, "\n".join(broken)


def _shared_link_up(gw: Gateway) -> bool:
    said = [line for line in gw.log().splitlines() if "gateway.shared:" in line]
    return bool(said) and "reachable again" in said[-1]


async def _costed_records(postgres_url: str, key: str) -> tuple[int, float]:
    base, schema = postgres_url.split("?schema=")
    conn = await asyncpg.connect(base)
    try:
        row = await conn.fetchrow(f'SELECT count(*) AS records, coalesce(sum(spend), 0) AS total '
                                  f'FROM "{schema}".gw_spend_logs WHERE api_key = $1 AND spend > 0', token_of(key))
    finally:
        await conn.close()
    assert row is not None
    return int(row["records"]), float(row["total"])


async def _equals(pending: Awaitable[float], expected: float) -> bool:
    return abs(await pending - expected) < 1e-9


REFUSED = [
    pytest.param({"router_settings": {"redis_url": "memcached://127.0.0.1:11211"}}, {}, "is not a Redis URL",
                 id="scheme"),
    pytest.param({"router_settings": {"redis_url": "redis+sentinel://127.0.0.1:26379"}}, {}, "service_name[/db]",
                 id="sentinel-url-without-service"),
    pytest.param({"litellm_settings": {"cache_params": {"type": "redis", "sentinel_nodes": [["127.0.0.1", 26379]]}}},
                 {}, "Sentinel needs service_name", id="sentinel-without-service"),
    pytest.param({"litellm_settings": {"cache_params": {
        "type": "redis", "redis_startup_nodes": [{"host": "127.0.0.1", "port": 7001}], "service_name": "m",
        "sentinel_nodes": [["127.0.0.1", 26379]]}}}, {}, "startup_nodes and sentinel_nodes", id="cluster-and-sentinel"),
    pytest.param({"general_settings": {"coordination_redis": {"url": "redis://127.0.0.1:6379",
                                                              "startup_nodes": [{"host": "127.0.0.1", "port": 7001}]}}},
                 {}, "url and startup_nodes", id="url-and-cluster"),
    pytest.param({"general_settings": {"coordination_redis": {"namespace": "x"}}}, {}, "name a Redis",
                 id="coordination-without-target"),
    pytest.param({}, {"REDIS_CLUSTER_NODES": "127.0.0.1:7001"}, "REDIS_CLUSTER_NODES: expected a JSON list",
                 id="cluster-nodes-not-json"),
    pytest.param({"router_settings": {"redis_url": "redis://127.0.0.1:6379"},
                  "gateway_settings": {"redis_key_prefix": "a{b}"}}, {}, "without braces", id="prefix-with-braces"),
]


@pytest.mark.parametrize(("settings", "env", "message"), REFUSED)
def test_a_badly_named_redis_is_a_config_error(settings: dict[str, Any], env: dict[str, str], message: str) -> None:
    config: dict[str, Any] = {"model_list": [metered()], **settings}
    result = run_cli(config, env=env, timeout=10)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("gateway: config error: ") and message in result.stderr, result.stderr


def test_how_each_place_names_a_redis_is_read() -> None:
    def target(settings: dict[str, Any], **env: str) -> RedisTarget | None:
        return redis_target(parse_config({"model_list": [metered()], **settings}), env)

    sentinel = target({"router_settings": {
        "redis_url": "redis+sentinel://:s%40cret@10.0.0.1,10.0.0.2:26380/main/2?sentinel_password=watch"}})
    assert sentinel == RedisTarget(topology="sentinel", source="router_settings",
                                   nodes=(("10.0.0.1", 26379), ("10.0.0.2", 26380)), service_name="main",
                                   password="s@cret", sentinel_password="watch", db=2)
    # The variables fill in what the place leaves out; a Sentinel master with no password of its own
    # takes the sentinels', as in LiteLLM.
    cached = target({"litellm_settings": {"cache_params": {"type": "redis", "service_name": "m",
                                                           "sentinel_nodes": [["h", "26379"]]}}},
                    REDIS_SENTINEL_PASSWORD="p", REDIS_HOST="ignored")
    assert cached is not None
    assert (cached.nodes, cached.password, cached.sentinel_password) == ((("h", 26379),), "p", "p")
    host = target({"router_settings": {"redis_host": "r1"}}, REDIS_PASSWORD="a:b", REDIS_PORT="6380", REDIS_SSL="True")
    assert host is not None and host.url == "rediss://:a%3Ab@r1:6380/0"
    cluster = target({}, REDIS_CLUSTER_NODES='[{"host": "c1", "port": "7001"}]', REDIS_USERNAME="u")
    assert cluster == RedisTarget(topology="cluster", source="REDIS_CLUSTER_NODES", nodes=(("c1", 7001),), username="u")
    assert target({"litellm_settings": {"cache_params": {"type": "local"}}}) is None
    assert target({}, REDIS_URL="redis://r2:6379/1", REDIS_HOST="r3") == RedisTarget(
        topology="single", source="REDIS_URL", url="redis://r2:6379/1")
