"""Connection pools to the upstreams: sized and verified per deployment.

A deployment with a `pool_size` (LiteLLM's max_parallel_requests, see router._pool_size) has a
pool of its own holding at most that many connections: a request beyond it waits for one to
come free, within its timeout, so the upstream never sees more in parallel. So does one whose
TLS is not the default (`ssl_verify: false`, or a CA bundle). The rest share one unbounded
pool. Idle connections are kept `gateway_settings.upstream_keepalive_timeout` seconds.
"""

from __future__ import annotations

import ssl

import aiohttp

from gateway.config import Config
from gateway.router import Deployment, Router


class Pools:
    __slots__ = ("shared", "sessions")

    def __init__(self, config: Config, router: Router) -> None:
        """Called inside the running loop: sessions belong to it."""
        keepalive = config.gateway_settings.upstream_keepalive_timeout
        self.shared = _session(None, True, keepalive)
        self.sessions = [self.shared]
        for deployment in router.deployments:
            if deployment.pool_size is None and deployment.ssl_verify is True:
                deployment.session = self.shared
            else:
                deployment.session = _session(deployment.pool_size, _tls(deployment), keepalive)
                self.sessions.append(deployment.session)

    async def close(self) -> None:
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
