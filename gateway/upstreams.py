"""Connection pools to the upstreams: sized and verified per deployment.

Requests go through gateway.upstream_http's pools; health probes and model listings, which
are rare, go through aiohttp sessions with the same settings.

A deployment with a `pool_size` (LiteLLM's max_parallel_requests, see router._pool_size) has a
pool of its own holding at most that many connections: a request beyond it waits for one to
come free, within its timeout, so the upstream never sees more in parallel. TLS settings
(`ssl_verify: false`, or a CA bundle) are the deployment's own. The rest share one unbounded
pool. Idle connections are kept `gateway_settings.upstream_keepalive_timeout` seconds.
"""

from __future__ import annotations

import ssl

import aiohttp

from gateway.config import Config
from gateway.router import Deployment, Router
from gateway.upstream_http import Endpoint, Pool


class Pools:
    __slots__ = ("shared", "sessions", "pools")

    def __init__(self, config: Config, router: Router) -> None:
        """Called inside the running loop: sessions belong to it."""
        keepalive = config.gateway_settings.upstream_keepalive_timeout
        self.shared = _session(None, True, keepalive)
        self.sessions = [self.shared]
        shared_pool = Pool(None, keepalive)
        self.pools = [shared_pool]
        for deployment in router.deployments:
            if deployment.base_url:
                deployment.endpoint = Endpoint(deployment.base_url, deployment.headers, deployment.ssl_verify)
            if deployment.pool_size is None:
                deployment.pool = shared_pool
            else:
                deployment.pool = Pool(deployment.pool_size, keepalive)
                self.pools.append(deployment.pool)
            if deployment.pool_size is None and deployment.ssl_verify is True:
                deployment.session = self.shared
            else:
                deployment.session = _session(deployment.pool_size, _tls(deployment), keepalive)
                self.sessions.append(deployment.session)

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
        for session in self.sessions:
            await session.close()


def _tls(deployment: Deployment) -> bool | ssl.SSLContext:
    verify = deployment.ssl_verify
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _session(size: int | None, tls: bool | ssl.SSLContext, keepalive: float) -> aiohttp.ClientSession:
    # Bytes pass through as the upstream sent them: no decompression.
    connector = aiohttp.TCPConnector(limit=size or 0, ssl=tls, keepalive_timeout=keepalive, ttl_dns_cache=300,
                                     enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False)
