"""Which failures count as Redis being unreachable: those the link waits out (and logs once) rather than
a fault logged where it struck."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.shared_link import SharedLink, reported, unreachable


def _write_after_close() -> BaseException:
    """What uvloop raises on a write to a connection already closed, as redis-py meets it when a Cluster
    master is killed under load."""

    async def attempt() -> BaseException:
        server = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.transport.close()
            await asyncio.sleep(0)
            try:
                writer.write(b"PING\r\n")
            except Exception as exc:  # noqa: BLE001 - the exception is the result
                return exc
            raise AssertionError("uvloop wrote to a closed transport without raising")
        finally:
            server.close()

    return uvloop.run(attempt())


def test_a_write_to_a_closed_connection_under_uvloop_is_an_outage() -> None:
    exc = _write_after_close()
    assert isinstance(exc, RuntimeError)
    assert unreachable(exc) and reported(exc)


@pytest.mark.parametrize("exc", [RuntimeError("Event loop is closed"), ValueError("handler is closed"), KeyError("x")])
def test_other_faults_are_not_outages(exc: BaseException) -> None:
    assert not unreachable(exc)


def test_connection_errors_are_outages() -> None:
    for exc in (RedisConnectionError("gone"), ConnectionResetError(), TimeoutError()):
        assert unreachable(exc)


async def test_the_link_goes_down_on_it_and_names_it_a_closed_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def never_answers() -> None:
        await asyncio.sleep(3600)

    link = SharedLink("Redis", never_answers, 0.1, fail_open=True, probe_interval=3600)
    with caplog.at_level(logging.WARNING, logger="gateway.shared"):
        link.failed(RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"))
    try:
        assert link.down
        assert "Redis unreachable (connection closed: unable to perform" in caplog.text
        assert "RuntimeError" not in caplog.text
    finally:
        await link.close()
