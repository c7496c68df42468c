"""LiteLLM's own admin CLI (`litellm-proxy` from the litellm package) driven against a running gateway:
keys, users, teams and models as an operator used to LiteLLM runs them.

The CLI lives in a venv of its own (`.venv-litellm-cli`, made on first use; LITELLM_CLI_VENV names
another), since litellm's dependency tree must not shape the gateway's. Without network to make it,
the test is skipped, except under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.harness import ROOT, Gateway

LITELLM = "litellm[proxy]==1.108.7"
MASTER = "sk-cli-master-key"


@pytest.fixture(scope="module")
def cli() -> Path:
    venv = Path(os.environ.get("LITELLM_CLI_VENV") or ROOT / ".venv-litellm-cli")
    tool = venv / "bin" / "litellm-proxy"
    stamp = venv / f".installed-{LITELLM}"
    if not stamp.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", LITELLM], check=True, capture_output=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"cannot install {LITELLM} for its CLI: {exc}")
        stamp.touch()
    return tool


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                  "general_settings": {"master_key": MASTER}}) as gw:
        yield gw


def run(cli: Path, gw: Gateway, *args: str) -> str:
    env = {**os.environ, "LITELLM_PROXY_URL": gw.url, "LITELLM_PROXY_API_KEY": MASTER, "HOME": str(gw.dir),
           "NO_COLOR": "1", "COLUMNS": "250"}
    done = subprocess.run([str(cli), *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def json_of(output: str) -> dict[str, object]:
    """The CLI prints a JSON object, then may add a line of its own (a deprecation notice)."""
    start, end = output.index("{"), output.rindex("}")
    found = orjson.loads(output[start:end + 1])
    assert isinstance(found, dict)
    return found


def test_keys_users_teams_and_models_from_litellms_cli(cli: Path, gateway: Gateway) -> None:
    alias = f"cli-{uuid.uuid4().hex[:8]}"
    made = json_of(run(cli, gateway, "keys", "generate", "--key-alias", alias, "--models", "echo"))
    assert made["key_alias"] == alias and str(made["key"]).startswith("sk-") and made["models"] == ["echo"]
    assert alias in run(cli, gateway, "keys", "list")
    assert json_of(run(cli, gateway, "keys", "delete", "--keys", str(made["key"])))["deleted_keys"] == [made["key"]]
    assert alias not in run(cli, gateway, "keys", "list")

    email = f"{alias}@example.com"
    user = json_of(run(cli, gateway, "users", "create", "--email", email))
    assert user["user_email"] == email
    assert email in run(cli, gateway, "users", "list")
    assert json_of(run(cli, gateway, "users", "get", "--id", str(user["user_id"])))["user_id"] == user["user_id"]

    assert "echo" in run(cli, gateway, "models", "list")
    assert "mock/echo" in run(cli, gateway, "models", "info")
    assert "echo" in run(cli, gateway, "model-groups", "list")
    assert "Server Version: 0.1.0" in run(cli, gateway, "version")


def test_models_add_and_delete_from_litellms_cli(cli: Path) -> None:
    """`litellm-proxy models add/delete` against /model/new and /model/delete (store_model_in_db on)."""
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                  "general_settings": {"master_key": MASTER, "store_model_in_db": True}}) as gw:
        name = f"cli-model-{uuid.uuid4().hex[:6]}"
        made = json_of(run(cli, gw, "models", "add", name, "--param", "model=mock/cli", "--param", "rpm=5",
                           "--param", "api_key=sk-not-shown", "--info", "mode=chat"))
        assert made["model_name"] == name and made["litellm_params"]["rpm"] == 5, made
        assert "sk-not-shown" not in str(made)
        assert name in run(cli, gw, "models", "list")
        deleted = json_of(run(cli, gw, "models", "delete", str(made["model_id"])))
        assert deleted["message"] == f"Model: {made['model_id']} deleted successfully"
        assert name not in run(cli, gw, "models", "list")
