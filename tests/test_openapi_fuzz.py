"""Schemathesis over every operation /openapi.json documents, against a real gateway (its SQLite store,
mock models and a fake upstream): valid and invalid bodies, query and path values, each answered by a
4xx in the envelope or a success, never a 5xx, a hang or a traceback in the gateway's log.

Bounded: a few examples per operation from a fixed seed, so a run takes seconds and repeats itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, clean_environment, deployment

MASTER = "sk-fuzz-master"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("chat", upstream.base_url),
                             {"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER},
              "litellm_settings": {"callbacks": ["prometheus"]},
              "gateway_settings": {"path_prefixes": ["/olla/litellm"]}}
    with Gateway(config) as gw:
        yield gw


def schemathesis(gateway: Gateway, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None:
        pytest.skip("schemathesis is not installed (the test extra has it)")
    command = str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis"
    return subprocess.run(
        [command, "run", f"{gateway.url}/olla/litellm/openapi.json", "--checks", "not_a_server_error",
         "--phases", "fuzzing", "--max-examples", "5", "--seed", "20261129", "--workers", "1",
         "--request-timeout", "10", "--generation-database", "none", "--no-color", *args],
        cwd=tmp_path, env=clean_environment(), capture_output=True, text=True, timeout=240,
    )


def server_trouble(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "Traceback" in line or " ERROR " in line or re.search(r" status=5\d\d ", line)]


async def test_no_operation_answers_a_5xx_or_logs_a_traceback(gateway: Gateway, tmp_path: Path) -> None:
    run = schemathesis(gateway, tmp_path, "-H", f"Authorization: Bearer {MASTER}")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    with urllib.request.urlopen(f"{gateway.url}/openapi.json") as response:
        documented = sum(len(operations) for operations in json.load(response)["paths"].values())
    assert f"Tested: {documented}\n" in run.stdout  # every operation, none skipped
    assert server_trouble(gateway.log()) == []
