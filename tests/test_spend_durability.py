"""No spend record is lost: not to a SIGKILL in the middle of load, not to a database outage."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment
from tests.tcp_relay import TcpRelay

MASTER = "sk-durable-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CONCURRENCY = 8
PATIENCE = 30.0


def config(upstream: FakeUpstream, database_url: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {"master_key": MASTER}
    if database_url is not None:
        settings["database_url"] = database_url
    return {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=0.001,
                                      output_cost_per_token=0.002)],
            "general_settings": settings}


async def make_key(http: aiohttp.ClientSession, gw: Gateway) -> dict[str, Any]:
    async with http.post(f"{gw.url}/key/generate", json={}, headers=ADMIN) as r:
        assert r.status == 200
        return await r.json()


async def one_request(http: aiohttp.ClientSession, gw: Gateway, key: str, stream: bool) -> str | None:
    """The request id if the whole answer arrived, else None."""
    request_id = uuid.uuid4().hex
    body = {"model": "priced", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    try:
        async with http.post(f"{gw.url}/v1/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}", "X-Request-ID": request_id}) as r:
            payload = await r.read()
            if r.status == 200 and (not stream or payload.endswith(b"data: [DONE]\n\n")):
                return request_id
    except (TimeoutError, aiohttp.ClientError):
        pass
    return None


async def records_of(http: aiohttp.ClientSession, gw: Gateway, token: str) -> list[dict[str, Any]]:
    async with http.get(f"{gw.url}/spend/logs", params={"api_key": token, "limit": "10000"}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return list(await r.json())


async def wait_for_records(http: aiohttp.ClientSession, gw: Gateway, token: str,
                           wanted: set[str]) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        found = await records_of(http, gw, token)
        if wanted <= {r["request_id"] for r in found}:
            return found
        assert loop.time() < deadline, f"{len(wanted - {r['request_id'] for r in found})} records never arrived"
        await asyncio.sleep(0.2)


async def key_spend(http: aiohttp.ClientSession, gw: Gateway, raw: str) -> float:
    async with http.get(f"{gw.url}/key/info", params={"key": raw}, headers=ADMIN) as r:
        return float((await r.json())["info"]["spend"])


async def test_sigkill_mid_load_loses_no_record(upstream: FakeUpstream, tmp_path: Path,
                                                http: aiohttp.ClientSession) -> None:
    settings = config(upstream)
    first = Gateway(settings).start()
    key = await make_key(http, first)
    served: list[str] = []
    stop = asyncio.Event()

    async def worker(index: int) -> None:
        while not stop.is_set():
            request_id = await one_request(http, first, key["key"], stream=index % 2 == 1)
            if request_id is not None:
                served.append(request_id)
            elif stop.is_set() or first.process is None or first.process.poll() is not None:
                return

    workers = [asyncio.create_task(worker(i)) for i in range(CONCURRENCY)]
    while len(served) < 200:
        await asyncio.sleep(0.01)
    first.signal(signal.SIGKILL)  # mid-load: requests are in flight
    stop.set()
    await asyncio.gather(*workers)
    first.stop()

    # The same config: the same SQLite file and spool directory, as a restarted service would have.
    second = Gateway(settings)
    second.dir, second.config_path = first.dir, first.config_path
    second.log_path = first.dir / "gateway-after-kill.log"
    with second:
        found = await wait_for_records(http, second, key["token"], set(served))
        ids = [r["request_id"] for r in found]
        assert len(ids) == len(set(ids)), "a record was written twice"
        unserved = set(ids) - set(served)
        # Records for answers that were cut off by the kill: at most one per request in flight.
        assert len(unserved) <= CONCURRENCY
        assert await key_spend(http, second, key["key"]) == pytest.approx(sum(r["spend"] for r in found))
        assert "taking over" in second.log()


async def test_database_outage_loses_no_record(upstream: FakeUpstream, postgres_url: str,
                                               http: aiohttp.ClientSession) -> None:
    parts = urlsplit(postgres_url)
    relay = TcpRelay(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    through = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    try:
        with Gateway(config(upstream, through)) as gw:
            key = await make_key(http, gw)
            served = [await one_request(http, gw, key["key"], stream=False)]  # the key is now in memory
            relay.cut()
            results = await asyncio.gather(*(one_request(http, gw, key["key"], stream=i % 2 == 1)
                                             for i in range(40)))
            assert None not in results, "the request path must not need the database"
            served += results
            await asyncio.sleep(2)  # the writer fails a few times meanwhile
            assert "wait in the spool" in gw.log()
            relay.restore()
            found = await wait_for_records(http, gw, key["token"], {s for s in served if s})
            assert len(found) == len(served) == len({r["request_id"] for r in found})
            assert await key_spend(http, gw, key["key"]) == pytest.approx(sum(r["spend"] for r in found))
    finally:
        relay.stop()
