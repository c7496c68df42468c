"""The process around the proxy: graceful drain, workers, entry points, the quick start, and garbage input."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yarl

from tests.fakes import FakeUpstream
from tests.harness import ROOT, Gateway, deployment

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
# Bounds on waits for events the test itself causes; never a measure of speed.
PATIENCE = 10.0
# A process asked to stop must be gone within this long; the drain deadlines under test are far shorter.
EXIT_PATIENCE = 15.0
JSON = {"Content-Type": "application/json"}


def envelope(body: Any) -> dict[str, Any]:
    """Assert the OpenAI error shape and return the inner object."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["code"], str), error
    return error


async def exit_code(gateway: Gateway, timeout: float = EXIT_PATIENCE) -> int | None:
    """The process's exit code, or None if it is still running after `timeout`."""
    assert gateway.process is not None
    try:
        return await asyncio.to_thread(gateway.process.wait, timeout)
    except subprocess.TimeoutExpired:
        return None


async def until_refused(port: int, timeout: float = PATIENCE) -> None:
    """Connect until the listener is gone; fail if it still accepts after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections {timeout}s after SIGTERM")


def sse_data(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    events = raw[:-2].split(b"\n\n")
    assert all(e.startswith(b"data: ") for e in events), events
    return [e.removeprefix(b"data: ") for e in events]


def end(gateway: Gateway) -> None:
    """After a failed test: kill a gateway still running rather than wait out another SIGTERM."""
    if gateway.process is not None and gateway.process.poll() is None:
        gateway.process.kill()
    gateway.stop()


def children(parent: int) -> dict[int, str]:
    """Live child processes of `parent`, with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(stat.parent.name)] = command
    return found


def is_running(pid: int) -> bool:
    """True while `pid` is a live process (a zombie left for init to reap counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


# --- SIGTERM and the drain ---------------------------------------------------------------------------------------


async def test_sigterm_drains_an_in_flight_stream_then_exits_0(upstream: FakeUpstream,
                                                               http: aiohttp.ClientSession) -> None:
    gate = f"drain-{uuid.uuid4().hex}"
    body = orjson.dumps({"model": "chat", **CHAT, "stream": True, "fake": {"gate": gate, "chunks": 4}})
    gateway = Gateway({"model_list": [deployment("chat", upstream.base_url)]}).start()
    try:
        async with http.post(f"{gateway.url}/v1/chat/completions", data=body, headers=JSON) as r:
            assert r.status == 200
            first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), PATIENCE)
            gateway.signal(signal.SIGTERM)
            await until_refused(gateway.port)
            assert gateway.process is not None and gateway.process.poll() is None, "exited with a stream in flight"
            upstream.open_gate(gate)
            rest = await asyncio.wait_for(r.read(), PATIENCE)
        events = sse_data(first + rest)
        assert events[-1] == b"[DONE]"
        chunks = [orjson.loads(e) for e in events[:-1]]
        assert [c["choices"][0]["delta"]["content"] for c in chunks] == [f"alpha says hi {i}" for i in range(4)]
        assert await exit_code(gateway) == 0
    finally:
        upstream.open_gate(gate)
        end(gateway)
    assert "draining" in gateway.log()


# 0 means no grace at all, as the gateway's own log line says ("get up to 0s").
@pytest.mark.parametrize("drain_timeout", [1, 0])
async def test_drain_timeout_ends_a_stream_that_never_finishes(upstream: FakeUpstream, http: aiohttp.ClientSession,
                                                               drain_timeout: float) -> None:
    gate = f"never-{uuid.uuid4().hex}"
    body = orjson.dumps({"model": "chat", **CHAT, "stream": True, "fake": {"gate": gate}})
    config = {"model_list": [deployment("chat", upstream.base_url)],
              "gateway_settings": {"drain_timeout": drain_timeout}}
    gateway = Gateway(config).start()
    try:
        async with http.post(f"{gateway.url}/v1/chat/completions", data=body, headers=JSON) as r:
            assert r.status == 200
            await asyncio.wait_for(r.content.readuntil(b"\n\n"), PATIENCE)
            gateway.signal(signal.SIGTERM)
            assert await exit_code(gateway) == 0
            try:
                rest = await asyncio.wait_for(r.read(), PATIENCE)
            except aiohttp.ClientPayloadError:
                rest = b""
        # The gate never opened, so the stream was cut, not finished.
        assert b"[DONE]" not in rest
    finally:
        upstream.open_gate(gate)
        end(gateway)


# --- Workers -----------------------------------------------------------------------------------------------------


async def test_two_workers_share_the_port_and_log_their_pid(upstream: FakeUpstream) -> None:
    access = re.compile(r"gateway\.access\[(\d+)\]: \S+ POST /v1/chat/completions status=200 ")
    pids: set[int] = set()
    with Gateway({"model_list": [deployment("chat", upstream.base_url)]}, "--workers", "2") as gateway:
        # A new connection per request, so that the kernel spreads them over both listeners;
        # the second worker may start listening a little after the first, hence the rounds.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            limit = asyncio.Semaphore(8)

            async def one() -> None:
                async with limit, http.post(f"{gateway.url}/v1/chat/completions",
                                            data=orjson.dumps({"model": "chat", **CHAT}), headers=JSON) as r:
                    assert r.status == 200
                    await r.read()

            deadline = time.monotonic() + PATIENCE
            while len(pids) < 2 and time.monotonic() < deadline:
                await asyncio.gather(*(one() for _ in range(100)))
                await asyncio.sleep(0.3)  # the access log is written in batches
                pids = {int(pid) for pid in access.findall(gateway.log())}
        assert len(pids) == 2, gateway.log()[-3000:]
        assert gateway.process is not None
        assert set(children(gateway.process.pid)) >= pids


async def test_sigterm_to_the_parent_stops_every_worker(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    gateway = Gateway({"model_list": [deployment("chat", upstream.base_url)]}, "--workers", "2").start()
    assert gateway.process is not None
    workers: list[int] = []
    try:
        deadline = time.monotonic() + PATIENCE
        while len(workers) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            workers = [pid for pid, command in children(gateway.process.pid).items() if "spawn_main" in command]
        assert len(workers) == 2, children(gateway.process.pid)
        async with http.get(f"{gateway.url}/health/liveliness") as r:
            assert r.status == 200
        left = children(gateway.process.pid)
        gateway.signal(signal.SIGTERM)
        assert await exit_code(gateway) == 0, gateway.log()[-3000:]
        # Every child (the workers, and multiprocessing's helper) goes with the parent.
        deadline = time.monotonic() + PATIENCE
        while [pid for pid in left if is_running(pid)] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [pid for pid in left if is_running(pid)] == []
    finally:
        end(gateway)
        for pid in workers:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)


# --- Entry points ------------------------------------------------------------------------------------------------


def console_script() -> str:
    """The installed `gateway` script: next to this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "gateway"
    if beside.is_file():
        return str(beside)
    found = shutil.which("gateway")
    if found is None:
        pytest.fail("the `gateway` console script is not installed (pip install -e .)")
    return found


class Launched(Gateway):
    """A gateway started by a given command line, from a directory outside the source tree."""

    def __init__(self, command: list[str], config: dict[str, Any] | str) -> None:
        super().__init__(config)
        self.command = command

    def start(self, wait: bool = True) -> Launched:
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*self.command, "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.dir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()
        return self


@pytest.mark.parametrize("entry", ["python -m gateway", "gateway"])
async def test_entry_points_start_and_answer(http: aiohttp.ClientSession, entry: str) -> None:
    command = [sys.executable, "-m", "gateway"] if entry == "python -m gateway" else [console_script()]
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m", "mock_response": "ok"}}]}
    with Launched(command, config) as gateway:
        async with http.get(f"{gateway.url}/health/liveliness") as r:
            assert r.status == 200
            assert await r.json() == "I'm alive!"
        async with http.post(f"{gateway.url}/v1/chat/completions", data=orjson.dumps({"model": "m", **CHAT})) as r:
            assert r.status == 200
            assert (await r.json())["choices"][0]["message"]["content"] == "ok"
    assert gateway.process is not None and gateway.process.returncode == 0


# --- The quick-start config --------------------------------------------------------------------------------------

QUICKSTART_ANSWER = "Hello! This answer comes from the gateway's mock provider."


@pytest.fixture(scope="module")
def quickstart() -> Iterator[Gateway]:
    gateway = Gateway((ROOT / "configs" / "quickstart.yaml").read_text())
    # Nothing from the caller's environment: no keys, no api bases, no settings.
    gateway.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with gateway:
        yield gateway


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o"])
async def test_quickstart_chat(quickstart: Gateway, http: aiohttp.ClientSession, model: str) -> None:
    async with http.post(f"{quickstart.url}/v1/chat/completions",
                         data=orjson.dumps({"model": model, **CHAT}), headers=JSON) as r:
        assert r.status == 200
        body = await r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": QUICKSTART_ANSWER}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.parametrize("include_usage", [False, True])
async def test_quickstart_streaming_chat(quickstart: Gateway, http: aiohttp.ClientSession,
                                         include_usage: bool) -> None:
    request: dict[str, Any] = {"model": "gpt-4o-mini", **CHAT, "stream": True}
    if include_usage:
        request["stream_options"] = {"include_usage": True}
    async with http.post(f"{quickstart.url}/v1/chat/completions", data=orjson.dumps(request), headers=JSON) as r:
        assert r.status == 200
        assert r.content_type == "text/event-stream"
        events = sse_data(await r.read())
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert len(with_choices) >= 3
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices) == QUICKSTART_ANSWER
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    usage_events = [c for c in chunks if c.get("usage")]
    if include_usage:
        assert len(usage_events) == 1 and usage_events[0] is chunks[-1] and chunks[-1]["choices"] == []
        usage = usage_events[0]["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    else:
        assert usage_events == []


async def test_quickstart_echo_repeats_the_last_user_message(quickstart: Gateway,
                                                             http: aiohttp.ClientSession) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "say this back"}]
    async with http.post(f"{quickstart.url}/v1/chat/completions",
                         data=orjson.dumps({"model": "echo", "messages": messages}), headers=JSON) as r:
        assert r.status == 200
        body = await r.json()
    assert body["choices"][0]["message"]["content"] == "say this back"


async def test_quickstart_embeddings(quickstart: Gateway, http: aiohttp.ClientSession) -> None:
    request = {"model": "text-embedding-3-small", "input": ["one", "two", "one"]}
    async with http.post(f"{quickstart.url}/v1/embeddings", data=orjson.dumps(request), headers=JSON) as r:
        assert r.status == 200
        body = await r.json()
    assert body["object"] == "list"
    data = body["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    vectors = [d["embedding"] for d in data]
    assert all(isinstance(v, list) and v and all(isinstance(x, float) for x in v) for v in vectors)
    assert len({len(v) for v in vectors}) == 1
    assert vectors[0] == vectors[2] != vectors[1]


# --- Garbage in --------------------------------------------------------------------------------------------------

POST_ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
               "/v1/embeddings", "/embeddings"]
GET_ROUTES = ["/v1/models", "/models", "/v1/models/chat", "/v1/model/info", "/model/info", "/health",
              "/health/liveliness", "/health/liveness", "/health/readiness"]
# Requests the HTTP parser itself refuses, before any route is matched.
MALFORMED = {
    "non-utf8-path": b"GET /v1/models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "non-utf8-post-path": b"POST /v1/chat/\xc3\x28completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    "no-method": b"GARBAGE\r\n\r\n",
    "bad-chunk-size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "negative-length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
}


@pytest.fixture(scope="module")
def target(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [
        deployment("chat", upstream.base_url),
        {"model_name": "mock", "litellm_params": {"model": "mock/m"}},
        {"model_name": "*", "litellm_params": {"model": "mock/*"}},
    ]}
    with Gateway(config) as gw:
        yield gw


def garbage_bodies() -> list[tuple[bytes, dict[str, str]]]:
    rng = random.Random(20240601)
    bodies: list[tuple[bytes, dict[str, str]]] = [
        (bytes(rng.randrange(256) for _ in range(size)), {}) for size in (1, 17, 4096)
    ]
    bodies += [(raw, JSON) for raw in (
        b"[" * 100_000, b"{" * 100_000, b'{"a":' * 100_000, b'{"model": "chat", "messages": ' + b"[" * 100_000,
        b"null", b"[]", b'"model"', b"1e999999", b"\x00" * 64, b'{"model": "\xff\xfe"}', b"\xef\xbb\xbf{}",
        b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "chat", "messages": "hello"}', b'{"model": ["chat"], "messages": []}',
        b'{"model": "chat", "messages": [null]}', b'{"model": "chat", "messages": [{"role": 1}]}',
        b'{"model": "chat", "input": {}, "prompt": 5}', b'{"model": "chat", "stream": "yes", "messages": [{}]}',
        b'{"model": "x", "messages": [{"role": "user"}], "stream_options": []}',
        b'{"model": "' + b"m" * 100_000 + b'"}',
    )]
    bodies += [
        (b"model=chat&messages=hi", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nchat\r\n--b--\r\n",
         {"Content-Type": "multipart/form-data; boundary=b"}),
        (b'{"model": "mock", "messages": [{"role": "user", "content": "x"}]}', {"Content-Type": "text/plain"}),
        (b"", {"Content-Type": "application/json"}),
        (b"", {}),
    ]
    return bodies


async def test_garbage_never_crashes_and_errors_keep_the_envelope(target: Gateway,
                                                                  http: aiohttp.ClientSession) -> None:
    calls: list[tuple[str, str, bytes, dict[str, str]]] = []
    for path in POST_ROUTES:
        calls += [("POST", path, body, headers) for body, headers in garbage_bodies()]
    for path in POST_ROUTES + GET_ROUTES + ["/", "/nope", "/v1/models/%ff%fe", "/%00", "/v1/" + "x" * 4000]:
        calls += [(method, path, b"junk", {}) for method in ("GET", "POST", "HEAD", "PUT", "DELETE", "PATCH",
                                                               "OPTIONS")]
    problems: list[str] = []
    # A connection per request, so that a request that breaks its connection is the one blamed.
    connector = aiohttp.TCPConnector(force_close=True, limit=16)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as fresh:

        async def one(method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
            where = f"{method} {path[:60]} body={body[:40]!r} headers={headers}"
            try:
                async with fresh.request(method, yarl.URL(f"{target.url}{path}", encoded=True), data=body,
                                         headers=headers) as r:
                    raw = await r.read()
            except aiohttp.ClientError as exc:
                problems.append(f"{where}: {exc!r}")
                return
            if r.status >= 500:
                problems.append(f"{where}: server error {r.status}: {raw[:300]!r}")
            if r.status >= 400 and method != "HEAD":
                try:
                    envelope(orjson.loads(raw))
                except (AssertionError, orjson.JSONDecodeError):
                    problems.append(f"{where}: {r.status} is not the OpenAI envelope: {raw[:300]!r}")

        await asyncio.gather(*(one(*call) for call in calls))
    assert problems == []
    await still_serving(target, http)


async def still_serving(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    assert gateway.process is not None and gateway.process.poll() is None, gateway.log()[-3000:]
    async with http.get(f"{gateway.url}/health/liveliness") as r:
        assert r.status == 200
    async with http.post(f"{gateway.url}/v1/chat/completions", data=orjson.dumps({"model": "chat", **CHAT}),
                         headers=JSON) as r:
        assert r.status == 200
        assert (await r.json())["choices"][0]["message"]["content"] == "alpha says hi"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_undecodable_content_encoding_is_a_client_error(target: Gateway, http: aiohttp.ClientSession,
                                                              encoding: str) -> None:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as fresh:
        async with fresh.post(f"{target.url}/v1/chat/completions", data=b"\x1f\x8b this is not compressed",
                              headers={**JSON, "Content-Encoding": encoding}) as r:
            status, raw = r.status, await r.read()
    await still_serving(target, http)
    envelope(orjson.loads(raw))
    assert status == 400, raw


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are and read the answer until the server closes or the body is complete."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
        length = re.search(rb"(?im)^content-length:\s*(\d+)\r$", head)
        if length is None:
            return head + await asyncio.wait_for(reader.read(), PATIENCE)
        return head + await asyncio.wait_for(reader.readexactly(int(length.group(1))), PATIENCE)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("kind", MALFORMED)
async def test_malformed_http_gets_a_4xx_envelope_and_serving_goes_on(target: Gateway, http: aiohttp.ClientSession,
                                                                      kind: str) -> None:
    answer = await raw_exchange(target.port, MALFORMED[kind])
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    await still_serving(target, http)
    assert 400 <= status < 500, answer
    assert re.search(rb"(?im)^content-type:\s*application/json", head), answer
    envelope(orjson.loads(body))


def test_uvloop_is_used_when_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}]}) as gw:
        assert "(event loop: uvloop)" in gw.log()


def test_the_log_names_the_sqlite_file_actually_used(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen" / "x.db"
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
              "general_settings": {"database_url": f"sqlite:///{chosen}"}}
    with Gateway(config) as gw:
        log_text = gw.log()
    assert f"store: sqlite {chosen}" in log_text
    assert chosen.exists() and not (gw.dir / "config.db").exists()
