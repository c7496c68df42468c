"""Start the real gateway as a subprocess on a free loopback port, the way users run it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent


# Variables the gateway reads on its own; a test that wants one passes it explicitly, so a
# developer's shell (or CI's) cannot point test gateways at a real database or Redis.
GATEWAY_VARIABLES = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_USERNAME",
                     "REDIS_SSL", "REDIS_CLUSTER_NODES", "REDIS_SENTINEL_NODES", "REDIS_SERVICE_NAME",
                     "REDIS_SENTINEL_PASSWORD", "REDIS_SSL_CERT_REQS", "REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE",
                     "REDIS_SSL_KEYFILE", "REDIS_SSL_CHECK_HOSTNAME", "REDIS_MAX_CONNECTIONS",
                     "LITELLM_MASTER_KEY", "SERVER_ROOT_PATH", "CONFIG_FILE_PATH", "PORT", "LOG_LEVEL",
                     "SSL_VERIFY")


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in GATEWAY_VARIABLES}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, config: dict[str, Any] | str, *args: str, env: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gateway-test-"))
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        self.port = free_port()
        self.log_path = self.dir / "gateway.log"
        self.args = args
        self.env = {**clean_environment(), **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Gateway:
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(self.config_path), "--host", "127.0.0.1",
             "--port", str(self.port), *self.args],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_workers(self, count: int, timeout: float = 30.0) -> None:
        """The port answers once the first worker listens; wait for `count` of them."""
        deadline = time.monotonic() + timeout
        while len(re.findall(r"gateway(\[\d+\])?: serving", self.log())) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not start:\n{self.log()}")
            time.sleep(0.05)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.returncode is not None and self._log.closed:
            return self.process.returncode
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def __enter__(self) -> Gateway:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_cli(config: dict[str, Any] | str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run `gateway` to completion (for configs that must not start)."""
    gateway = Gateway(config, env=env)
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(gateway.config_path), "--port", str(gateway.port), *args],
        cwd=ROOT, env=gateway.env, capture_output=True, text=True, timeout=timeout,
    )


async def spend_record(http: aiohttp.ClientSession, gw: Gateway, request_id: str, admin: dict[str, str],
                       patience: float = 10.0) -> dict[str, Any]:
    """A request's record from /spend/logs, once the spend writer has moved it from the spool to the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        async with http.get(f"{gw.url}/spend/logs", params={"request_id": request_id}, headers=admin) as r:
            found = await r.json()
        if found:
            return dict(found[0])
        assert loop.time() < deadline, f"no spend record for {request_id}"
        await asyncio.sleep(0.05)


async def new_virtual_key(http: aiohttp.ClientSession, gw: Gateway, admin: dict[str, str], **fields: Any) -> str:
    """A key from /key/generate with these fields."""
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=admin) as r:
        assert r.status == 200, await r.text()
        key: str = (await r.json())["key"]
        return key


def deployment(name: str, base_url: str, model: str | None = None, model_info: dict[str, Any] | None = None,
               **params: Any) -> dict[str, Any]:
    """A model_list entry for an OpenAI-style upstream; the upstream sees `<name>-upstream` unless told."""
    entry: dict[str, Any] = {"model_name": name, "litellm_params": {
        "model": model or f"openai/{name}-upstream", "api_base": base_url, "api_key": "sk-upstream-secret",
        **params}}
    if model_info:
        entry["model_info"] = model_info
    return entry
