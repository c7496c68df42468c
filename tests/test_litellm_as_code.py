"""litellm-as-code (PyPI), a declarative admin tool of LiteLLM's ecosystem, reconciling users, teams,
members and keys from a YAML spec against a running gateway, then finding nothing left to change.

The tool lives in a venv of its own (`.venv-litellm-as-code`, made on first use; LITELLM_AS_CODE_VENV
names another). Without network to make it, the test is skipped, except under CI=true.

It lists budgets, models, credentials, organizations, users, teams, keys, guardrails and policies on
every run, whatever the spec holds, and stops at the first list that answers 404: until /budget/list,
/credentials and /organization/list are served (work under way elsewhere), it stops at /budget/list."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.harness import ROOT, Gateway

TOOL = "litellm-as-code==0.5.0"
MASTER = "sk-as-code-master-key"


@pytest.fixture(scope="module")
def tool() -> Path:
    venv = Path(os.environ.get("LITELLM_AS_CODE_VENV") or ROOT / ".venv-litellm-as-code")
    binary = venv / "bin" / "litellm-as-code"
    stamp = venv / f".installed-{TOOL}"
    if not stamp.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", TOOL], check=True, capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"cannot install {TOOL}: {exc}")
        stamp.touch()
    return binary


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                  "general_settings": {"master_key": MASTER}}) as gw:
        yield gw


def reconcile(tool: Path, gw: Gateway, spec: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_BASE_URL": gw.url, "LITELLM_API_KEY": MASTER, "HOME": str(gw.dir)}
    return subprocess.run([str(tool), str(spec), *flags], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.xfail(strict=True, reason="litellm-as-code stops at GET /budget/list (404) before anything else; "
                   "/budget/list, /credentials and /organization/list come with the budgets, credentials and "
                   "organizations work")
async def test_a_spec_of_users_teams_and_keys_is_applied_then_unchanged(tool: Path, gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:8]
    admin, dev, team = f"admin-{tag}", f"dev-{tag}", f"team-{tag}"
    spec = gateway.dir / "spec.yml"
    spec.write_text(yaml.safe_dump({
        # Every user's role is given: a role left out reads as drift against the stored default.
        "users": [{"user_id": admin, "user_alias": admin, "user_role": "proxy_admin", "auto_create_key": "false"},
                  {"user_id": dev, "user_email": f"{dev}@example.com", "user_role": "internal_user"}],
        "teams": [{"team_id": team, "team_alias": team, "models": ["echo"],
                   "members_with_roles": [{"user_id": admin, "role": "admin"}, {"user_id": dev, "role": "user"}]}],
        "virtual_keys": [{"key_alias": f"cli-{tag}", "user_id": dev, "team_id": team, "models": ["echo"]}],
    }))
    applied = reconcile(tool, gateway, spec)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = reconcile(tool, gateway, spec, "--dry-run")  # exit 2 would mean something still differs
    assert again.returncode == 0 and "0 to create, 0 to update" in again.stdout, again.stdout + again.stderr

    headers = {"Authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{gateway.url}/team/info", params={"team_id": team}) as r:
            info = await r.json()
        members = {(m["user_id"], m["role"]) for m in info["team_info"]["members_with_roles"]}
        assert {(admin, "admin"), (dev, "user")} <= members
        async with http.get(f"{gateway.url}/key/list", params={"return_full_object": "true"}) as r:
            keys = [k for k in (await r.json())["keys"] if k.get("key_alias") == f"cli-{tag}"]
        assert len(keys) == 1 and keys[0]["team_id"] == team and keys[0]["user_id"] == dev
