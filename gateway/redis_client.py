"""Which Redis the gateway shares its limits, budgets and change notices through, and the client for it:
one server (`redis://`, `rediss://`), a master found through Sentinel, or a Redis Cluster.

The first place that names one wins, as LiteLLM resolves its coordination Redis:
`general_settings.coordination_redis`, `router_settings.redis_url` / `redis_host`,
`litellm_settings.cache_params` (a Redis cache), then the environment (`REDIS_URL`,
`REDIS_CLUSTER_NODES`, `REDIS_SENTINEL_NODES` with `REDIS_SERVICE_NAME`, `REDIS_HOST`). Where a place
names one target, a password, user name, port or TLS it leaves out comes from the environment
(`REDIS_PASSWORD`, `REDIS_USERNAME`, `REDIS_PORT`, `REDIS_SSL`, `REDIS_SENTINEL_PASSWORD`), as LiteLLM
reads them. A place that names two targets at once, or half of Sentinel, is a config error.

Every topology gets the same client behaviour: at most `REDIS_CONNECTIONS` commands in flight (more
wait for a free connection, up to the request's timeout, rather than fail under a burst), connect and
socket timeouts of `redis_timeout`. A command whose connection broke is sent once more on a fresh one
(a restarted server, Sentinel's new master); on a Cluster it is not, since the Cluster client would
resend after a timeout as well, and the slots are reloaded for the next command instead.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import msgspec

from gateway.config import Config, ConfigError, RedisConnection
from gateway.redis_keys import shared_key
from gateway.shared_link import UNREACHABLE

REDIS_CONNECTIONS = 64
SENTINEL_PORT = 26379

Topology = Literal["single", "sentinel", "cluster"]


class RedisTarget(msgspec.Struct, frozen=True, kw_only=True):
    topology: Topology
    source: str  # where it was named, for errors and the startup log
    url: str | None = None  # single
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels, or the Cluster's startup nodes
    service_name: str | None = None
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False
    db: int = 0

    def describe(self) -> str:
        if self.topology == "single":
            address = urlsplit(self.url or "")
            return f"Redis at {address.hostname}:{address.port or 6379} ({self.source})"
        nodes = ", ".join(f"{host}:{port}" for host, port in self.nodes)
        if self.topology == "sentinel":
            return f"Redis master {self.service_name!r} through Sentinel {nodes} ({self.source})"
        return f"Redis Cluster from {nodes} ({self.source})"


class _Named(msgspec.Struct, kw_only=True):
    """What one place says, before the environment fills in the rest."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    ssl: bool | None = None
    db: int | None = None
    startup_nodes: list[tuple[str, int]] | None = None
    sentinel_nodes: list[tuple[str, int]] | None = None
    service_name: str | None = None
    sentinel_password: str | None = None


def redis_target(config: Config, environ: Mapping[str, str] = os.environ) -> RedisTarget | None:
    """The Redis the config (or the environment) names; None if none. ConfigError if it is named badly."""
    prefix = config.gateway_settings.redis_key_prefix
    found = _named(config, environ)
    if found is None:
        return None
    named, source = found
    if not prefix or "{" in prefix or "}" in prefix:
        raise ConfigError(f"gateway_settings.redis_key_prefix: {prefix!r} must be non-empty and without braces: "
                          "it is the Redis Cluster hash tag that keeps all the gateway's keys in one slot")
    return _target(named, source, environ)


def _named(config: Config, environ: Mapping[str, str]) -> tuple[_Named, str] | None:
    coordination = config.general_settings.coordination_redis
    if coordination is not None:
        where = "general_settings.coordination_redis"
        named = _from_connection(coordination, where)
        if not _has_target(named):
            raise ConfigError(f"{where}: name a Redis with url, host, startup_nodes or sentinel_nodes")
        return named, where
    router = config.router_settings
    if router.redis_url or router.redis_host:
        return _Named(url=router.redis_url, host=router.redis_host, port=router.redis_port,
                      password=router.redis_password), "router_settings"
    cache = config.litellm_settings.cache_params
    if cache is not None and cache.type in (None, "redis"):
        named = _from_connection(cache, "litellm_settings.cache_params")
        if _has_target(named):
            return named, "litellm_settings.cache_params"
    return _from_environment(environ)


def _from_connection(connection: RedisConnection, where: str) -> _Named:
    if connection.startup_nodes and connection.redis_startup_nodes:
        raise ConfigError(f"{where}: give the Cluster's nodes once, as redis_startup_nodes or startup_nodes")
    startup = connection.startup_nodes or connection.redis_startup_nodes
    return _Named(url=connection.url, host=connection.host, port=connection.port, username=connection.username,
                  password=connection.password, ssl=connection.ssl, db=connection.db,
                  startup_nodes=[(n.host, n.port) for n in startup] if startup else None,
                  sentinel_nodes=connection.sentinel_nodes, service_name=connection.service_name,
                  sentinel_password=connection.sentinel_password)


def _has_target(named: _Named) -> bool:
    return bool(named.url or named.host or named.startup_nodes or named.sentinel_nodes)


def _from_environment(environ: Mapping[str, str]) -> tuple[_Named, str] | None:
    if url := environ.get("REDIS_URL"):
        return _Named(url=url), "REDIS_URL"
    if nodes := environ.get("REDIS_CLUSTER_NODES"):
        return _Named(startup_nodes=_json_nodes("REDIS_CLUSTER_NODES", nodes)), "REDIS_CLUSTER_NODES"
    if nodes := environ.get("REDIS_SENTINEL_NODES"):
        return _Named(sentinel_nodes=_json_nodes("REDIS_SENTINEL_NODES", nodes),
                      service_name=environ.get("REDIS_SERVICE_NAME")), "REDIS_SENTINEL_NODES"
    if host := environ.get("REDIS_HOST"):
        return _Named(host=host), "REDIS_HOST"
    return None


def _json_nodes(name: str, text: str) -> list[tuple[str, int]]:
    """LiteLLM's JSON lists: `[{"host": "h", "port": 7001}]` for Cluster, `[["h", 26379]]` for Sentinel."""
    try:
        value = json.loads(text)
        nodes = [(str(n["host"]), int(n["port"])) if isinstance(n, dict) else (str(n[0]), int(n[1]))
                 for n in value]
    except (ValueError, TypeError, KeyError, IndexError):
        raise ConfigError(f"{name}: expected a JSON list of nodes, like "
                          '[{"host": "10.0.0.1", "port": 7001}] or [["10.0.0.1", 26379]]') from None
    if not nodes:
        raise ConfigError(f"{name}: the list of nodes is empty")
    return nodes


def _target(named: _Named, source: str, environ: Mapping[str, str]) -> RedisTarget:
    # A host beside one of the others is passed over, as LiteLLM does (its sample blocks carry one).
    chosen = [name for name, value in (("url", named.url), ("startup_nodes", named.startup_nodes),
                                       ("sentinel_nodes", named.sentinel_nodes)) if value]
    if len(chosen) > 1:
        raise ConfigError(f"{source}: {' and '.join(chosen)} name different Redis servers; keep one")
    if named.service_name and not named.sentinel_nodes and not (named.url and "+sentinel" in named.url):
        raise ConfigError(f"{source}: service_name is for Sentinel: give sentinel_nodes too")
    username = named.username or environ.get("REDIS_USERNAME") or None
    password = named.password or environ.get("REDIS_PASSWORD") or None
    sentinel_password = named.sentinel_password or environ.get("REDIS_SENTINEL_PASSWORD") or None
    ssl = named.ssl if named.ssl is not None else environ.get("REDIS_SSL", "").lower() == "true"
    db = named.db or 0
    if named.url:
        return _from_url(named.url, source, username, password, sentinel_password, ssl)
    if named.startup_nodes:
        if db:
            raise ConfigError(f"{source}: a Redis Cluster has only database 0, not {db}")
        return RedisTarget(topology="cluster", source=source, nodes=tuple(named.startup_nodes),
                           username=username, password=password, ssl=ssl)
    if named.sentinel_nodes:
        service = named.service_name or environ.get("REDIS_SERVICE_NAME")
        if not service:
            raise ConfigError(f"{source}: Sentinel needs service_name, the name its sentinels know the master by")
        return RedisTarget(topology="sentinel", source=source, nodes=tuple(named.sentinel_nodes),
                           service_name=service, username=username,
                           password=password or sentinel_password, sentinel_password=sentinel_password,
                           ssl=ssl, db=db)
    port = named.port or int(environ.get("REDIS_PORT") or 6379)
    auth = ""
    if username or password:
        auth = f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"
    scheme = "rediss" if ssl else "redis"
    return RedisTarget(topology="single", source=source, url=f"{scheme}://{auth}{named.host}:{port}/{db}",
                       ssl=ssl, db=db)


def _from_url(url: str, source: str, username: str | None, password: str | None,
              sentinel_password: str | None, ssl: bool) -> RedisTarget:
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        if ssl and scheme == "redis":
            raise ConfigError(f"{source}: ssl is on but the URL is redis://; write rediss:// for TLS")
        return RedisTarget(topology="single", source=source, url=url, username=username, password=password,
                           ssl=scheme == "rediss")
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ConfigError(f"{source}: {scheme}:// is not a Redis URL; use redis://, rediss:// (TLS) or "
                          "redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]")
    # urlsplit cannot read a list of hosts as one netloc: the parts are taken apart here.
    rest = url.partition("://")[2]
    netloc, _, path_and_query = rest.partition("/")
    path, _, query = path_and_query.partition("?")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, _, secret = userinfo.partition(":")
        username = unquote(user) or username
        password = unquote(secret) or password
    nodes = [_address(part, source) for part in hosts.split(",") if part]
    parts = [p for p in path.split("/") if p]
    if not nodes or not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ConfigError(f"{source}: expected redis+sentinel://[:password@]host:port[,host:port...]/"
                          "service_name[/db]")
    options = parse_qs(query)
    sentinel_password = options.get("sentinel_password", [sentinel_password or ""])[0] or None
    return RedisTarget(topology="sentinel", source=source, nodes=tuple(nodes), service_name=unquote(parts[0]),
                       username=username, password=password or sentinel_password,
                       sentinel_password=sentinel_password, ssl=scheme == "rediss+sentinel" or ssl,
                       db=int(parts[1]) if len(parts) == 2 else 0)


def _address(text: str, source: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if not host or (port and not port.isdigit()):
        raise ConfigError(f"{source}: {text!r} is not host:port")
    return host, int(port) if port else SENTINEL_PORT


def open_redis(target: RedisTarget, timeout: float) -> Any:
    """The asyncio client for `target` (redis.asyncio.Redis, or RedisCluster); nothing is connected yet."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # A command on a connection the server closed is sent once more on a new one; a timeout is not
    # retried (the script may have run: a second run would count twice), so an unreachable Redis
    # costs one timeout.
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout, "socket_timeout": timeout, "health_check_interval": 10,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    if target.topology == "single":
        return _single(target, timeout, common)
    if target.topology == "sentinel":
        return _sentinel(target, timeout, common)
    return _cluster(target, timeout, common)


def _single(target: RedisTarget, timeout: float, common: dict[str, Any]) -> Any:
    import redis.asyncio

    assert target.url is not None
    credentials = {k: v for k, v in (("username", target.username), ("password", target.password)) if v}
    # A bounded pool that makes callers wait for a free connection rather than fail under a burst.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        target.url, max_connections=REDIS_CONNECTIONS, timeout=timeout, **credentials, **common)
    return redis.asyncio.Redis.from_pool(pool)


def _sentinel(target: RedisTarget, timeout: float, common: dict[str, Any]) -> Any:
    from redis.asyncio.connection import BlockingConnectionPool
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

    class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
        """Sentinel's pool (asks the sentinels where the master is) with the single server's waiting."""

    asked: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    if target.sentinel_password:
        asked["password"] = target.sentinel_password
    if target.ssl:
        asked["ssl"] = True
    assert target.service_name is not None
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=asked)  # type: ignore[no-untyped-call]
    return sentinel.master_for(
        target.service_name, connection_pool_class=BlockingSentinelPool, max_connections=REDIS_CONNECTIONS,
        timeout=timeout, username=target.username, password=target.password, db=target.db, ssl=target.ssl,
        **common)


def _cluster(target: RedisTarget, timeout: float, common: dict[str, Any]) -> Any:
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import ConnectionPool, SSLConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    class BoundedCluster(RedisCluster):
        """At most REDIS_CONNECTIONS commands at once; more wait, as on the single server's pool (a
        Cluster node's own pool refuses past its size instead)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_flight = asyncio.Semaphore(REDIS_CONNECTIONS)
            self._next_subscriber = 0
            self._loading = asyncio.Lock()

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            async with self._in_flight:
                if self._initialize:
                    # Commands that find the slots unloaded together break each other's connections
                    # (redis-py 8.1): one loads them, the others wait for it.
                    async with self._loading:
                        if self._initialize:
                            await self.initialize()
                try:
                    return await super().execute_command(*args, **kwargs)
                except UNREACHABLE:
                    self._initialize = True  # not every failing path asks for it (a split EXISTS does not)
                    raise

        def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
            """Pipelines (the batched settlements) that fail for want of a node have the slots reloaded
            too: with no retry, redis-py's pipeline would leave them as they were."""
            pipe = super().pipeline(transaction, shard_hint)
            execute = pipe.execute

            async def execute_then_reload(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await execute(*args, **kwargs)
                except UNREACHABLE:
                    self._initialize = True
                    raise

            pipe.execute = execute_then_reload  # type: ignore[method-assign]
            return pipe

        def pubsub(self, **kwargs: Any) -> PubSub:  # type: ignore[override]
            """A subscription on one node, on a connection of its own: a Cluster passes every PUBLISH to
            all its nodes, so any node hears every change. Each new subscription (after a lost one) tries
            the next node known, so a dead master is left behind. (redis-py's cluster subscription
            lends the node's command connections out, and needs the slots loaded first.)"""
            known = {(n.host, n.port) for n in self.get_nodes()} | set(target.nodes)
            nodes = sorted(known)
            host, port = nodes[self._next_subscriber % len(nodes)]
            self._next_subscriber += 1
            connection: dict[str, Any] = {"connection_class": SSLConnection} if target.ssl else {}
            pool = ConnectionPool(host=host, port=port, username=target.username, password=target.password,
                                  socket_connect_timeout=timeout, socket_timeout=timeout, **connection)
            return PubSub(pool, **kwargs)

    # No command is sent twice: the Cluster client would send one again after a timeout too, and
    # its pipelines (the batched settlements) likewise, where the first may have run. A command that
    # finds its node gone fails (the request follows fail_open) and has the slots reloaded, so the
    # next one goes to the promoted replica; a moved slot is followed without a retry.
    options = {**common, "retry": Retry(NoBackoff(), 0)}
    return BoundedCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in target.nodes], username=target.username,
        password=target.password, ssl=target.ssl,
        # The change listener holds a connection of its own beside the commands in flight.
        max_connections=REDIS_CONNECTIONS + 4,
        # Every key of the gateway is in one slot: a shard without a master elsewhere does not stop it.
        require_full_coverage=False, **options)


def probe_key(prefix: str) -> str:
    """A key read (GET) to see whether the gateway's slot answers (on a Cluster, PING asks every node)."""
    return shared_key(prefix, "probe")


async def close_redis(client: Any) -> None:
    await client.aclose()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
