"""Which Redis the gateway shares its limits, budgets and change notices through, and the client for it:
one server (`redis://`, `rediss://`), a master found through Sentinel, or a Redis Cluster.

The first place that names one wins, as LiteLLM resolves its coordination Redis:
`general_settings.coordination_redis`, `router_settings.redis_url` / `redis_host`,
`litellm_settings.cache_params` (a Redis cache), then the environment (`REDIS_URL`,
`REDIS_CLUSTER_NODES`, `REDIS_SENTINEL_NODES` with `REDIS_SERVICE_NAME`, `REDIS_HOST`). Where a place
names one target, a password, user name, port or TLS it leaves out comes from the environment
(`REDIS_PASSWORD`, `REDIS_USERNAME`, `REDIS_PORT`, `REDIS_SSL` and `REDIS_SSL_*`,
`REDIS_SENTINEL_PASSWORD`, `REDIS_MAX_CONNECTIONS`), as LiteLLM reads them. A place that names two
targets at once, or half of Sentinel, is a config error.

Every topology gets the same client behaviour: at most `max_connections` (LiteLLM's name; 64 unless
set) commands in flight, a Cluster's pipelines among them (more wait for a free connection, up to the
request's timeout, rather than fail under a burst), connect and socket timeouts of `redis_timeout`,
and the same TLS settings (gateway/redis_tls.py) on every connection. A command whose connection
broke is sent once more on a fresh one (a restarted server, Sentinel's new master); on a Cluster it
is not, since the Cluster client would resend after a timeout as well, and the slots are reloaded for
the next command instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import msgspec

from gateway.config import Config, ConfigError, RedisConnection
from gateway.redis_keys import shared_key
from gateway.redis_tls import NAMES as TLS_NAMES
from gateway.redis_tls import RedisTls, read_tls, shared_context, tls_context
from gateway.shared_link import unreachable

REDIS_CONNECTIONS = 64
SENTINEL_PORT = 26379

Topology = Literal["single", "sentinel", "cluster"]

# Whether this task holds a place among a Cluster client's commands in flight.
_HOLDING: ContextVar[bool] = ContextVar("holding_a_redis_place", default=False)


class RedisTarget(msgspec.Struct, frozen=True, kw_only=True):
    topology: Topology
    source: str  # where it was named, for errors and the startup log
    url: str | None = None  # single
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels, or the Cluster's startup nodes
    service_name: str | None = None
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: RedisTls | None = None  # to the master, the sentinels and every Cluster node alike
    db: int = 0
    max_connections: int = REDIS_CONNECTIONS

    def describe(self) -> str:
        how = f"{self.source}{', TLS' if self.tls else ''}"
        if self.topology == "single":
            address = urlsplit(self.url or "")
            return f"Redis at {address.hostname}:{address.port or 6379} ({how})"
        nodes = ", ".join(f"{host}:{port}" for host, port in self.nodes)
        if self.topology == "sentinel":
            return f"Redis master {self.service_name!r} through Sentinel {nodes} ({how})"
        return f"Redis Cluster from {nodes} ({how})"


class _Named(msgspec.Struct, kw_only=True):
    """What one place says, before the environment fills in the rest."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    ssl: bool | None = None
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool | None = None
    db: int | None = None
    max_connections: int | None = None
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
                  ssl_cert_reqs=connection.ssl_cert_reqs, ssl_ca_certs=connection.ssl_ca_certs,
                  ssl_certfile=connection.ssl_certfile, ssl_keyfile=connection.ssl_keyfile,
                  ssl_check_hostname=connection.ssl_check_hostname, max_connections=connection.max_connections,
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
    place = {name: getattr(named, name) for name in TLS_NAMES}
    variables = {name: environ.get(f"REDIS_{name.upper()}") for name in TLS_NAMES}

    def secured(on: bool, query: Mapping[str, str]) -> RedisTarget:
        """The TLS settings (and the cap on commands in flight) that go with the target."""
        given = [name for name, value in place.items() if value is not None]
        if not on and given:
            raise ConfigError(f"{source}: {', '.join(given)} given, but the connection is not TLS: "
                              "set ssl: true or write rediss://")
        tls = read_tls([query, place, variables], source) if on else None
        most = next((value for value in (query.get("max_connections"), named.max_connections,
                                         environ.get("REDIS_MAX_CONNECTIONS")) if value not in (None, "")), None)
        return RedisTarget(topology="single", source=source, tls=tls,
                           max_connections=REDIS_CONNECTIONS if most is None else _positive(most, source))

    if named.url:
        return _from_url(named.url, source, username, password, sentinel_password, ssl, secured)
    common = secured(ssl, {})
    if named.startup_nodes:
        if db:
            raise ConfigError(f"{source}: a Redis Cluster has only database 0, not {db}")
        return msgspec.structs.replace(common, topology="cluster", nodes=tuple(named.startup_nodes),
                                       username=username, password=password)
    if named.sentinel_nodes:
        service = named.service_name or environ.get("REDIS_SERVICE_NAME")
        if not service:
            raise ConfigError(f"{source}: Sentinel needs service_name, the name its sentinels know the master by")
        return msgspec.structs.replace(common, topology="sentinel", nodes=tuple(named.sentinel_nodes),
                                       service_name=service, username=username,
                                       password=password or sentinel_password,
                                       sentinel_password=sentinel_password, db=db)
    port = named.port or int(environ.get("REDIS_PORT") or 6379)
    auth = ""
    if username or password:
        auth = f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"
    scheme = "rediss" if ssl else "redis"
    return msgspec.structs.replace(common, url=f"{scheme}://{auth}{named.host}:{port}/{db}", db=db)


def _positive(value: object, source: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{source}: max_connections {value!r} must be a whole number of at least 1")
    return number


def _from_url(url: str, source: str, username: str | None, password: str | None,
              sentinel_password: str | None, ssl: bool,
              secured: Callable[[bool, Mapping[str, str]], RedisTarget]) -> RedisTarget:
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        if ssl and scheme == "redis":
            raise ConfigError(f"{source}: ssl is on but the URL is redis://; write rediss:// for TLS")
        options = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
        return msgspec.structs.replace(secured(scheme == "rediss", options), url=url, username=username,
                                       password=password)
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
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    sentinel_password = options.get("sentinel_password", sentinel_password or "") or None
    return msgspec.structs.replace(
        secured(scheme == "rediss+sentinel" or ssl, options), topology="sentinel", nodes=tuple(nodes),
        service_name=unquote(parts[0]), username=username, password=password or sentinel_password,
        sentinel_password=sentinel_password, db=int(parts[1]) if len(parts) == 2 else 0)


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


def open_redis(target: RedisTarget, timeout: float, tls: ssl.SSLContext | None = None) -> Any:
    """The asyncio client for `target` (redis.asyncio.Redis, or RedisCluster); nothing is connected yet.
    The TLS settings go to every connection, the master's, the sentinels', each Cluster node's, and
    all of them share one context: `tls`, or one built from the settings."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # A command on a connection the server closed is sent once more on a new one; a timeout is not
    # retried (the script may have run: a second run would count twice), so an unreachable Redis
    # costs one timeout.
    common: dict[str, Any] = {
        "socket_connect_timeout": timeout, "socket_timeout": timeout, "health_check_interval": 10,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        **(target.tls.redis_py() if target.tls else {}),
    }
    if target.tls is not None and tls is None:
        tls = tls_context(target.tls)
    if target.topology == "single":
        return _single(target, timeout, common, tls)
    if target.topology == "sentinel":
        return _sentinel(target, timeout, common, tls)
    return _cluster(target, timeout, common, tls)


def _single(target: RedisTarget, timeout: float, common: dict[str, Any], tls: ssl.SSLContext | None) -> Any:
    import redis.asyncio
    from redis.asyncio.connection import SSLConnection

    assert target.url is not None
    credentials: dict[str, Any] = {k: v for k, v in (("username", target.username), ("password", target.password)) if v}
    if tls is not None:
        credentials["connection_class"] = shared_context(SSLConnection, tls)
    # A bounded pool that makes callers wait for a free connection rather than fail under a burst.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        target.url, max_connections=target.max_connections, timeout=timeout, **credentials, **common)
    return redis.asyncio.Redis.from_pool(pool)


def _sentinel(target: RedisTarget, timeout: float, common: dict[str, Any], tls: ssl.SSLContext | None) -> Any:
    from redis.asyncio.connection import BlockingConnectionPool, SSLConnection
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
        """Sentinel's pool (asks the sentinels where the master is) with the single server's waiting."""

    # The sentinels are asked as the master is: one retry, at once. (redis-py's default backs off for
    # seconds between three, and takes a wrong sentinel_password for a connection to try again.)
    asked: dict[str, Any] = {"socket_connect_timeout": timeout, "socket_timeout": timeout,
                             "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))}
    if target.sentinel_password:
        asked["password"] = target.sentinel_password
    if target.tls:
        asked.update(ssl=True, **target.tls.redis_py())
    assert target.service_name is not None
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=asked)  # type: ignore[no-untyped-call]
    master: dict[str, Any] = {}
    if tls is not None:
        master["connection_class"] = shared_context(SentinelManagedSSLConnection, tls)
        for each in sentinel.sentinels:  # their pools are empty yet; redis-py's Redis takes no class
            each.connection_pool.connection_class = shared_context(SSLConnection, tls)
    return sentinel.master_for(
        target.service_name, connection_pool_class=BlockingSentinelPool, max_connections=target.max_connections,
        timeout=timeout, username=target.username, password=target.password, db=target.db,
        ssl=target.tls is not None, **master, **common)


def _cluster(target: RedisTarget, timeout: float, common: dict[str, Any], tls: ssl.SSLContext | None) -> Any:
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.connection import ConnectionPool, SSLConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException

    secured = shared_context(SSLConnection, tls) if tls is not None else None

    class BoundedCluster(RedisCluster):
        """At most `max_connections` commands and pipelines (the batched settlements) at once; more
        wait, as on the single server's pool (a Cluster node's own pool refuses past its size instead,
        failing the command)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if secured is not None:
                # RedisCluster takes no connection class: its nodes made so far get it, and the
                # arguments it makes later ones with (one dict, shared with its NodesManager).
                self.connection_kwargs["connection_class"] = secured
                for node in self.startup_nodes:
                    node.connection_class = secured
            self._in_flight = asyncio.Semaphore(target.max_connections)
            self._next_subscriber = 0
            self._loading = asyncio.Lock()

        @asynccontextmanager
        async def _admitted(self) -> AsyncIterator[None]:
            """A place among those in flight, with the slots loaded; a failure for want of a node has
            them reloaded for the next command (not every failing path of redis-py's asks for it, a
            split EXISTS or a pipeline without retries does not)."""
            if _HOLDING.get():
                # A pipeline sends a command whose slot moved through execute_command from inside its
                # own place: taking a second could wait for ever on pipelines doing the same.
                yield
                return
            async with self._in_flight:
                holding = _HOLDING.set(True)
                try:
                    if self._initialize:
                        # Commands that find the slots unloaded together break each other's
                        # connections (redis-py 8.1): one loads them, the others wait for it.
                        async with self._loading:
                            if self._initialize:
                                await self._load_slots()
                    yield
                except Exception as exc:
                    if unreachable(exc):
                        self._initialize = True
                    raise
                finally:
                    _HOLDING.reset(holding)

        async def _load_slots(self) -> None:
            try:
                await self.initialize()
            except RedisClusterException as exc:
                # No startup node answered (down, or turned the gateway away): an outage to the link
                # and to fail_open, not a fault of the request.
                if exc.__cause__ is not None and unreachable(exc.__cause__):
                    raise RedisConnectionError(str(exc)) from exc.__cause__
                raise

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            async with self._admitted():
                return await super().execute_command(*args, **kwargs)

        def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
            pipe = super().pipeline(transaction, shard_hint)
            execute = pipe.execute

            async def execute_admitted(*args: Any, **kwargs: Any) -> Any:
                async with self._admitted():
                    return await execute(*args, **kwargs)

            pipe.execute = execute_admitted  # type: ignore[method-assign]
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
            connection: dict[str, Any] = {}
            if target.tls is not None and secured is not None:
                connection = {"connection_class": secured, **target.tls.redis_py()}
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
        password=target.password, ssl=target.tls is not None,
        # Room beside the commands in flight for the connection that loads the slots.
        max_connections=target.max_connections + 4,
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

