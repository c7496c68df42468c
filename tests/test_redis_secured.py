"""Redis that asks who the gateway is, each started here on loopback ports: TLS with a client
certificate (`rediss://` and LiteLLM's `ssl` / `ssl_*` settings), one server with a password and an
ACL user, Sentinel with a password on the master, the replica and the sentinel, and a Cluster with a
password on every node, Sentinel and Cluster each plain and TLS-only. Two gateways, naming it two of
LiteLLM's ways, hold one rpm limit and one budget exactly between them. A certificate the gateway does
not trust, or a wrong password, is said at start as what to fix (no traceback), and `fail_open` decides
what requests get. A Cluster master that stalls while more settlement pipelines wait than
`max_connections` allows: they wait for a place, and every one lands."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from redis.exceptions import AuthenticationError

from gateway.config import parse_config
from gateway.metrics.redis_timing import WireScript, run_script
from gateway.redis_client import RedisTarget, redis_target
from gateway.redis_keys import shared_key
from gateway.redis_tls import RedisTls
from gateway.redis_wire import RedisWire
from tests.conftest import server_missing
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, run_cli
from tests.redis_servers import (
    ADMIN,
    MASTER,
    SHARED_STATE_DOWN,
    RedisProcess,
    TlsFiles,
    chat,
    cluster_master_of,
    cluster_node,
    create_cluster,
    eventually,
    metered,
    new_key,
    shared_limits_hold,
    start_together,
)

PASSWORD = "s3cret:pass@word"  # characters a URL must escape
SENTINEL_PASSWORD = "watch-word"
ACL_USER, ACL_PASSWORD = "gateway", "acl-pass"
SERVICE = "securedmaster"
UNTRUSTED = "Redis's TLS certificate is not trusted: check ssl_ca_certs"
REFUSED = "Redis refused the gateway's credentials"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        server_missing("redis-server", "redis-server and redis-cli are not installed")
    path = Path(tempfile.mkdtemp(prefix="redis-secured-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_files(workdir: Path) -> TlsFiles:
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    client = authority.issue_cert("gateway.test")
    files = TlsFiles(ca=workdir / "ca.pem", cert=workdir / "server.pem", key=workdir / "server.key",
                     client_cert=workdir / "client.pem", client_key=workdir / "client.key")
    authority.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    server.private_key_pem.write_to_path(str(files.key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    trustme.CA().cert_pem.write_to_path(str(workdir / "other-ca.pem"))
    return files


@pytest.fixture(scope="module")
async def tls_redis(workdir: Path, tls_files: TlsFiles) -> AsyncIterator[RedisProcess]:
    server = RedisProcess(workdir, tls=tls_files).start()
    try:
        try:
            await eventually(server.ping, patience=10)
        except AssertionError:
            server_missing("redis-server with TLS", f"it did not serve TLS: {server.log()[-400:]}")
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
async def password_redis(workdir: Path) -> AsyncIterator[RedisProcess]:
    # An ACL user that may touch only the keys and channels under its fleet's prefix.
    server = RedisProcess(workdir, "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~{acl}:*", "&{acl}:*", "+@all",
                          password=PASSWORD).start()
    try:
        await eventually(server.ping, patience=10)
        yield server
    finally:
        server.kill()


class Sentinels:
    """A master and its replica, each asking for PASSWORD, and a sentinel asking for its own. With `tls`
    all three listen for TLS only, and the replica and the sentinel reach the master over TLS."""

    def __init__(self, workdir: Path, tls: TlsFiles | None = None) -> None:
        outgoing = ("--tls-replication", "yes") if tls is not None else ()
        self.master = RedisProcess(workdir, "--repl-diskless-sync-delay", "0", password=PASSWORD, tls=tls)
        self.replica = RedisProcess(workdir, "--replicaof", "127.0.0.1", str(self.master.port), *outgoing,
                                    password=PASSWORD, tls=tls)
        self.sentinel = RedisProcess(workdir, "--sentinel", *outgoing, password=SENTINEL_PASSWORD, tls=tls)
        config = workdir / f"sentinel-{self.sentinel.port}.conf"  # the sentinel rewrites its own
        config.write_text(f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 1\n"
                          f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
                          f"sentinel down-after-milliseconds {SERVICE} 1000\n")
        self.config = config

    async def start(self) -> None:
        self.master.start()
        self.replica.start()
        self.sentinel.start("redis-server", str(self.config))

        async def replicating() -> bool:  # the replica got in with masterauth
            return (await self.replica.info("replication")).get("master_link_status") == "up"

        async def watching() -> bool:  # the sentinel got in with auth-pass
            async with self.sentinel.client() as client:
                return bool((await client.sentinel_master(SERVICE))["is_master"])

        await eventually(replicating)
        await eventually(watching)

    def stop(self) -> None:
        for process in (self.sentinel, self.replica, self.master):
            process.kill()


@pytest.fixture(scope="module")
async def sentinels(workdir: Path) -> AsyncIterator[Sentinels]:
    started = Sentinels(workdir)
    try:
        await started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def tls_sentinels(workdir: Path, tls_files: TlsFiles, tls_redis: RedisProcess) -> AsyncIterator[Sentinels]:
    """After tls_redis: skipped with it."""
    started = Sentinels(workdir, tls=tls_files)
    try:
        await started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def cluster(workdir: Path) -> AsyncIterator[list[RedisProcess]]:
    nodes = [cluster_node(workdir, password=PASSWORD) for _ in range(3)]
    try:
        await create_cluster(nodes, replicas=0)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture(scope="module")
async def tls_cluster(workdir: Path, tls_files: TlsFiles, tls_redis: RedisProcess) -> AsyncIterator[list[RedisProcess]]:
    """Three masters that speak TLS only, to clients and on the cluster bus, each asking for PASSWORD too
    (as a managed Cluster with encryption in transit and AUTH does). After tls_redis: skipped with it."""
    nodes = [cluster_node(workdir, password=PASSWORD, tls=tls_files) for _ in range(3)]
    try:
        await create_cluster(nodes, replicas=0)
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def gateway(database_url: str, prefix: str, settings: dict[str, Any], env: dict[str, str] | None = None,
            fail_open: bool = True, models: list[dict[str, Any]] | None = None) -> Gateway:
    config: dict[str, Any] = {
        "model_list": [metered(), *(models or [])],
        "general_settings": {"master_key": MASTER, "database_url": database_url},
        # The change log is read once an hour: a change seen sooner on the other gateway came by pub/sub.
        "gateway_settings": {"redis_key_prefix": prefix, "fail_open": fail_open, "change_poll_interval": 3600,
                             "redis_timeout": 5.0}}
    for section, values in settings.items():
        config.setdefault(section, {}).update(values)
    return Gateway(config, env=env)


async def change_reaches(http: aiohttp.ClientSession, first: Gateway, second: Gateway) -> None:
    """A key blocked on the first gateway is refused by the second long before its change log poll."""
    key = (await new_key(http, first))["key"]
    assert (await chat(http, second, key))[0] == 200
    async with http.post(f"{first.url}/key/block", json={"key": key}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()

    async def refused_on_second() -> bool:
        return (await chat(http, second, key))[0] == 401

    await eventually(refused_on_second, patience=10)


async def turned_away(http: aiohttp.ClientSession, open_gw: Gateway, closed_gw: Gateway, said: str) -> None:
    """Both said at start what to fix, with no traceback; fail_open: true serves on the process's own
    counts, fail_open: false refuses with the shared-state error."""
    for gw in (open_gw, closed_gw):
        await eventually(lambda gw=gw: asyncio.sleep(0, said in gw.log()), patience=10)
        assert "ERROR" in next(line for line in gw.log().splitlines() if said in line)
        assert "Traceback" not in gw.log()
    assert "(fail_open: true)" in open_gw.log() and "(fail_open: false)" in closed_gw.log()
    limited = {"rpm_limit": 100, "max_budget": 10.0}
    status, _ = await chat(http, open_gw, (await new_key(http, open_gw, **limited))["key"])
    assert status == 200
    status, body = await chat(http, closed_gw, (await new_key(http, closed_gw, **limited))["key"])
    assert status == 503 and SHARED_STATE_DOWN in body["error"]["message"], body
    for gw in (open_gw, closed_gw):
        async with http.get(f"{gw.url}/health/readiness") as r:
            assert r.status == 503, await r.text()
        assert "Traceback" not in gw.log()


def tls_settings(files: TlsFiles, ca: Path | None = None) -> dict[str, str]:
    return {"ssl_ca_certs": str(ca or files.ca), "ssl_certfile": str(files.client_cert),
            "ssl_keyfile": str(files.client_key)}


async def they_share(http: aiohttp.ClientSession, first: Gateway, second: Gateway) -> None:
    """Two gateways on one Redis: limits and a budget hold exactly across both, a change made on one reaches
    the other, and neither logged a traceback."""
    await shared_limits_hold(http, (first, second))
    await change_reaches(http, first, second)
    assert "Traceback" not in first.log() + second.log()


async def test_two_gateways_share_limits_over_tls(tls_redis: RedisProcess, tls_files: TlsFiles, postgres_url: str,
                                                  http: aiohttp.ClientSession) -> None:
    prefix = "tls"
    # A rediss:// URL with redis-py's ssl_* settings beside it; and LiteLLM's REDIS_SSL and REDIS_<setting>.
    by_url = {"general_settings": {"coordination_redis": {"url": f"rediss://127.0.0.1:{tls_redis.port}/0",
                                                          **tls_settings(tls_files)}}}
    by_environment = {f"REDIS_{name.upper()}": value for name, value in tls_settings(tls_files).items()}
    by_environment |= {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(tls_redis.port), "REDIS_SSL": "True"}
    first, second = gateway(postgres_url, prefix, by_url), gateway(postgres_url, prefix, {}, by_environment)
    try:
        start_together(first, second)
        for gw in (first, second):
            assert f"Redis at 127.0.0.1:{tls_redis.port} (" in gw.log() and ", TLS)" in gw.log()
            # The one-round-trip path: admission and settlement scripts on the gateway's own TLS connection.
            assert "its scripts pipelined on a connection of the gateway's own" in gw.log()
        await they_share(http, first, second)
    finally:
        first.stop()
        second.stop()
    async with tls_redis.client() as client:
        kinds = {k.split(":")[1] + ":" + k.split(":")[2]
                 async for k in client.scan_iter(match=shared_key(prefix, "*"), count=1000)}
    assert {"bucket:rpm", "budget:key", "budget:team"} <= kinds, kinds


async def test_a_certificate_from_another_authority_is_refused(tls_redis: RedisProcess, tls_files: TlsFiles,
                                                               postgres_url: str, http: aiohttp.ClientSession) -> None:
    other = tls_files.ca.parent / "other-ca.pem"
    cache = {"litellm_settings": {"cache_params": {"type": "redis", "host": "127.0.0.1", "port": tls_redis.port,
                                                   "ssl": True, **tls_settings(tls_files, other)}}}
    open_gw, closed_gw = gateway(postgres_url, "tls-untrusted", cache), \
        gateway(postgres_url, "tls-untrusted", cache, fail_open=False)
    try:
        start_together(open_gw, closed_gw)
        await turned_away(http, open_gw, closed_gw, UNTRUSTED)
    finally:
        open_gw.stop()
        closed_gw.stop()


async def test_one_server_with_a_password_and_an_acl_user(password_redis: RedisProcess, postgres_url: str,
                                                          http: aiohttp.ClientSession) -> None:
    # The ACL user in the URL; LiteLLM's router_settings with the default user's password.
    user = f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{password_redis.port}/0"
    router = {"router_settings": {"redis_host": "127.0.0.1", "redis_port": password_redis.port,
                                  "redis_password": PASSWORD}}
    first, second = gateway(postgres_url, "acl", {"router_settings": {"redis_url": user}}), \
        gateway(postgres_url, "acl", router)
    try:
        start_together(first, second)
        for gw in (first, second):
            assert "its scripts pipelined on a connection of the gateway's own" in gw.log()
        await they_share(http, first, second)
    finally:
        first.stop()
        second.stop()


async def test_a_wrong_or_missing_password_is_refused(password_redis: RedisProcess, postgres_url: str,
                                                      http: aiohttp.ClientSession) -> None:
    wrong = {"router_settings": {"redis_url": f"redis://{ACL_USER}:not-it@127.0.0.1:{password_redis.port}/0"}}
    missing = {"router_settings": {"redis_url": f"redis://127.0.0.1:{password_redis.port}/0"}}
    open_gw, closed_gw = gateway(postgres_url, "acl", wrong), gateway(postgres_url, "acl", missing, fail_open=False)
    try:
        start_together(open_gw, closed_gw)
        await turned_away(http, open_gw, closed_gw, REFUSED)
    finally:
        open_gw.stop()
        closed_gw.stop()


async def test_the_wire_raises_a_refusal_rather_than_returning_it(password_redis: RedisProcess) -> None:
    """A script sent unauthenticated gets NOAUTH, which redis-py's parser makes an AuthenticationError (not
    a ResponseError): raised, so that the link sees a refusal, never taken for the script's answer."""
    wire = RedisWire("127.0.0.1", password_redis.port)
    try:
        with pytest.raises(AuthenticationError):
            await run_script(wire, WireScript(None, "return 1"), [], [], 5.0)  # type: ignore[arg-type]
    finally:
        await wire.close()


async def test_sentinel_with_passwords(sentinels: Sentinels, postgres_url: str, http: aiohttp.ClientSession) -> None:
    quoted = PASSWORD.replace(":", "%3A").replace("@", "%40")
    url = f"redis+sentinel://:{quoted}@127.0.0.1:{sentinels.sentinel.port}/{SERVICE}" \
        f"?sentinel_password={SENTINEL_PASSWORD}"
    cache = {"litellm_settings": {"cache_params": {
        "type": "redis", "service_name": SERVICE, "sentinel_nodes": [["127.0.0.1", sentinels.sentinel.port]],
        "password": PASSWORD, "sentinel_password": SENTINEL_PASSWORD}}}
    wrong = {"litellm_settings": {"cache_params": {**cache["litellm_settings"]["cache_params"],
                                                   "sentinel_password": "not-it"}}}
    first, second = gateway(postgres_url, "sentinel", {"router_settings": {"redis_url": url}}), \
        gateway(postgres_url, "sentinel", cache)
    refused = gateway(postgres_url, "sentinel-refused", wrong, fail_open=False)
    try:
        start_together(first, second, refused)
        await they_share(http, first, second)
        await eventually(lambda: asyncio.sleep(0, REFUSED in refused.log()), patience=10)
        status, body = await chat(http, refused, (await new_key(http, refused, max_budget=10.0))["key"])
        assert status == 503 and SHARED_STATE_DOWN in body["error"]["message"], body
        assert "Traceback" not in refused.log()
    finally:
        for gw in (first, second, refused):
            gw.stop()


async def test_sentinel_over_tls(tls_sentinels: Sentinels, tls_files: TlsFiles, postgres_url: str,
                                 http: aiohttp.ClientSession) -> None:
    """The sentinel, the master it names and the replica speak TLS only and ask for a client
    certificate: the gateway reaches the sentinel and then the master with the same settings."""
    port = tls_sentinels.sentinel.port
    quoted = PASSWORD.replace(":", "%3A").replace("@", "%40")
    query = "&".join(f"{name}={value}" for name, value in tls_settings(tls_files).items())
    url = f"rediss+sentinel://:{quoted}@127.0.0.1:{port}/{SERVICE}?sentinel_password={SENTINEL_PASSWORD}&{query}"
    cache = {"litellm_settings": {"cache_params": {
        "type": "redis", "service_name": SERVICE, "sentinel_nodes": [["127.0.0.1", port]], "password": PASSWORD,
        "sentinel_password": SENTINEL_PASSWORD, "ssl": True, **tls_settings(tls_files)}}}
    first, second = gateway(postgres_url, "sentinel-tls", {"router_settings": {"redis_url": url}}), \
        gateway(postgres_url, "sentinel-tls", cache)
    try:
        start_together(first, second)
        for gw in (first, second):
            assert f"Redis master '{SERVICE}' through Sentinel 127.0.0.1:{port} (" in gw.log(), gw.log()
            assert ", TLS)" in gw.log()
            # Sentinel's TLS connection class is an SSLConnection, but it names no master to connect to.
            assert "pipelined on a connection of the gateway's own" not in gw.log()
        await they_share(http, first, second)
    finally:
        first.stop()
        second.stop()
    async with tls_sentinels.master.client() as client:
        kinds = {k.split(":")[1] + ":" + k.split(":")[2]
                 async for k in client.scan_iter(match=shared_key("sentinel-tls", "*"), count=1000)}
    assert {"bucket:rpm", "budget:key", "budget:team"} <= kinds, kinds


async def test_cluster_with_passwords(cluster: list[RedisProcess], postgres_url: str,
                                      http: aiohttp.ClientSession) -> None:
    nodes = [{"host": "127.0.0.1", "port": node.port} for node in cluster]
    cache = {"litellm_settings": {"cache_params": {"type": "redis", "redis_startup_nodes": nodes,
                                                   "password": PASSWORD}}}
    by_environment = {"REDIS_CLUSTER_NODES": json.dumps(nodes[:1]), "REDIS_PASSWORD": PASSWORD}
    wrong = {"REDIS_CLUSTER_NODES": json.dumps(nodes), "REDIS_PASSWORD": "not-it"}
    first, second = gateway(postgres_url, "cluster", cache), gateway(postgres_url, "cluster", {}, by_environment)
    refused = gateway(postgres_url, "cluster-refused", {}, wrong, fail_open=False)
    try:
        start_together(first, second, refused)
        await they_share(http, first, second)
        await eventually(lambda: asyncio.sleep(0, REFUSED in refused.log()), patience=10)
        status, body = await chat(http, refused, (await new_key(http, refused, max_budget=10.0))["key"])
        assert status == 503 and SHARED_STATE_DOWN in body["error"]["message"], body
        assert "Traceback" not in refused.log()
    finally:
        for gw in (first, second, refused):
            gw.stop()


async def test_cluster_over_tls(tls_cluster: list[RedisProcess], tls_files: TlsFiles, postgres_url: str,
                                http: aiohttp.ClientSession) -> None:
    nodes = [{"host": "127.0.0.1", "port": node.port} for node in tls_cluster]
    block = {"general_settings": {"coordination_redis": {"startup_nodes": nodes, "password": PASSWORD, "ssl": True,
                                                         **tls_settings(tls_files)}}}
    by_environment = {f"REDIS_{name.upper()}": value for name, value in tls_settings(tls_files).items()}
    by_environment |= {"REDIS_CLUSTER_NODES": json.dumps(nodes), "REDIS_PASSWORD": PASSWORD, "REDIS_SSL": "true"}
    first = gateway(postgres_url, "cluster-tls", block)
    second = gateway(postgres_url, "cluster-tls", {}, by_environment)
    try:
        start_together(first, second)
        for gw in (first, second):
            assert "Redis Cluster from" in gw.log() and ", TLS)" in gw.log()
        await shared_limits_hold(http, (first, second))
        await change_reaches(http, first, second)  # the subscription, on a node of its choosing, over TLS too
        assert "Traceback" not in first.log() + second.log()
        assert "settlements not sent" not in first.log() + second.log()
    finally:
        first.stop()
        second.stop()


async def test_cluster_pipelines_wait_for_a_place(cluster: list[RedisProcess], upstream: FakeUpstream,
                                                  postgres_url: str, http: aiohttp.ClientSession) -> None:
    """Requests admitted, then their master stalls (CLIENT PAUSE) while they finish: each finish sends a
    settlement batch of its own, far more pipelines than `max_connections: 2` (and the nodes' pools,
    2 + 4). They wait for a place rather than fail for want of a connection, and once the master
    answers every settlement lands: the budget counter holds exactly what was served, nothing reserved."""
    prefix = "cluster-cap"
    price = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
    cost = 5 * 0.001 + 3 * 0.002  # the fake upstream's usage: 5 tokens in, 3 out
    nodes = [{"host": "127.0.0.1", "port": node.port} for node in cluster]
    gw = gateway(postgres_url, prefix, {"litellm_settings": {"cache_params": {
        "type": "redis", "redis_startup_nodes": nodes, "password": PASSWORD, "max_connections": 2}}},
        models=[deployment("slow", upstream.base_url, **price)])
    count = 24
    master = await cluster_master_of(cluster, prefix)
    with gw:
        key = (await new_key(http, gw, max_budget=100.0))["key"]

        async def slow(hang: float) -> int:
            body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}], "fake": {"hang": hang}}
            async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as r:
                return r.status

        async def settled(served: int) -> bool:
            async with master.client() as client:
                counters = [await client.hgetall(name) async for name in
                            client.scan_iter(match=shared_key(prefix, "budget", "key", "*"))]
            return len(counters) == 1 and abs(float(counters[0]["spent"]) - served * cost) < 1e-9 \
                and abs(float(counters[0].get("reserved") or 0)) < 1e-9

        # One first, so that Redis has the settlement scripts: the batches under test load none (a load
        # is a command of its own, and would hold them back in line).
        assert await slow(0) == 200
        await eventually(lambda: settled(1), patience=10)
        # Each finishes 40 ms after the one before: a settlement batch of its own.
        requests = asyncio.gather(*(slow(1.0 + i * 0.04) for i in range(count)))
        await asyncio.sleep(0.5)
        async with master.client() as client:
            await client.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        assert await requests == [200] * count
        await eventually(lambda: settled(count + 1), patience=15)
        assert "settlements not sent" not in gw.log() and "unreachable" not in gw.log(), gw.log()


def test_how_tls_settings_and_max_connections_are_read() -> None:
    def target(settings: dict[str, Any], **env: str) -> RedisTarget:
        found = redis_target(parse_config({"model_list": [metered()], **settings}), env)
        assert found is not None
        return found

    # The URL's query first, then the block, then the variables; redis-py's defaults for the rest.
    by_url = target({"router_settings": {"redis_url": "rediss://r:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false"}},
                    REDIS_SSL_CA_CERTS="/ca.pem")
    assert by_url.tls == RedisTls(cert_reqs="none", ca_certs="/ca.pem", check_hostname=False)
    block = target({"general_settings": {"coordination_redis": {
        "host": "r", "ssl": True, "ssl_ca_certs": "/a.pem", "max_connections": 8}}}, REDIS_SSL_CA_CERTS="/b.pem")
    assert (block.url, block.tls, block.max_connections) == ("rediss://r:6379/0", RedisTls(ca_certs="/a.pem"), 8)
    # A variable for TLS is passed over while TLS is off (it may be there for another client).
    plain = target({}, REDIS_HOST="r", REDIS_SSL_CA_CERTS="/ca.pem", REDIS_MAX_CONNECTIONS="16")
    assert (plain.tls, plain.max_connections) == (None, 16)
    sentinel = target({"router_settings": {"redis_url": "rediss+sentinel://h:26379/m?ssl_ca_certs=/c.pem"}})
    assert (sentinel.topology, sentinel.tls) == ("sentinel", RedisTls(ca_certs="/c.pem"))
    cluster = target({}, REDIS_CLUSTER_NODES='[{"host": "c", "port": 7000}]', REDIS_SSL="true",
                     REDIS_SSL_CERTFILE="/client.pem", REDIS_SSL_KEYFILE="/client.key")
    assert cluster.tls == RedisTls(certfile="/client.pem", keyfile="/client.key")
    assert target({}, REDIS_HOST="r").max_connections == 64


BAD_SETTINGS = [
    pytest.param({"url": "rediss://127.0.0.1:6380/0", "ssl_ca_certs": "/nonexistent/ca.pem"},
                 "ssl_ca_certs: /nonexistent/ca.pem: No such file or directory", id="missing-ca-file"),
    pytest.param({"url": "rediss://127.0.0.1:6380/0", "ssl_cert_reqs": "sometimes"},
                 "ssl_cert_reqs 'sometimes' is not one of none, optional, required", id="cert-reqs"),
    pytest.param({"url": "redis://127.0.0.1:6380/0", "ssl_ca_certs": "/tmp/ca.pem"},
                 "ssl_ca_certs given, but the connection is not TLS", id="tls-settings-without-tls"),
    pytest.param({"host": "127.0.0.1", "max_connections": 0}, "max_connections 0 must be a whole number",
                 id="max-connections"),
]


@pytest.mark.parametrize(("settings", "message"), BAD_SETTINGS)
def test_bad_tls_settings_stop_the_start(settings: dict[str, Any], message: str) -> None:
    config = {"model_list": [metered()], "general_settings": {"coordination_redis": settings}}
    result = run_cli(config, timeout=20)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "gateway: config error: " in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
