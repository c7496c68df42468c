"""Connection pools to the upstreams: sized and verified per deployment.

Requests go through gateway.upstream_http's pools; health probes, which are rare, go through
one aiohttp session, with each deployment's TLS settings.

A deployment with a `pool_size` (LiteLLM's max_parallel_requests, see router._pool_size) has a
pool of its own holding at most that many connections: a request beyond it waits for one to
come free, within its timeout, so the upstream never sees more in parallel. TLS settings
(`ssl_verify: false`, or a CA bundle) are the deployment's own. The rest share one unbounded
pool. Idle connections are kept `gateway_settings.upstream_keepalive_timeout` seconds.
"""

from __future__ import annotations

import aiohttp

from gateway.config import Config
from gateway.router import Deployment, Router
from gateway.upstream_http import Endpoint, Pool


class Pools:
    __slots__ = ("probes", "pools", "shared", "keepalive")

    def __init__(self, config: Config, router: Router) -> None:
        """Called inside the running loop: the pools and the session belong to it."""
        keepalive = self.keepalive = config.gateway_settings.upstream_keepalive_timeout
        # Bytes pass through as the upstream sent them: no decompression.
        self.probes = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=keepalive),
                                            auto_decompress=False)
        self.shared = Pool(None, keepalive)
        self.pools = [self.shared]
        for deployment in router.deployments:
            self.attach(deployment)

    def attach(self, deployment: Deployment) -> None:
        """Give a deployment (from the config, or added at runtime) its endpoint and pool."""
        if deployment.base_url:
            deployment.endpoint = Endpoint(deployment.base_url, deployment.headers, deployment.ssl_verify)
        if deployment.pool_size is None:
            deployment.pool = self.shared
        else:
            deployment.pool = Pool(deployment.pool_size, self.keepalive)
            self.pools.append(deployment.pool)

    def retire(self, deployment: Deployment) -> None:
        """The deployment is no longer served: its own pool keeps no connection once the requests
        still using it are done. The shared pool is left alone."""
        if deployment.pool is not self.shared and deployment.pool in self.pools:
            self.pools.remove(deployment.pool)
            deployment.pool.retire()

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
        await self.probes.close()
