"""litellm-as-code (PyPI), a declarative admin tool of LiteLLM's ecosystem, reconciling users, teams,
members and keys from a YAML spec against a running gateway, then finding nothing left to change.

The tool lives in a venv of its own (`.venv-litellm-as-code`, made on first use; LITELLM_AS_CODE_VENV
names another). Without network to make it, the test is skipped, except under CI=true.

It lists budgets, models, credentials, organizations, users, teams, keys, guardrails and policies on
every run, whatever the spec holds, and stops at the first list that answers 404, so this test also
keeps every one of those listings served."""

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
                  "general_settings": {"master_key": MASTER, "store_model_in_db": True}}) as gw:
        yield gw


def reconcile(tool: Path, gw: Gateway, spec: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_BASE_URL": gw.url, "LITELLM_API_KEY": MASTER, "HOME": str(gw.dir)}
    return subprocess.run([str(tool), str(spec), *flags], capture_output=True, text=True, env=env, timeout=120)


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


async def test_budgets_credentials_models_and_organizations_are_applied_then_unchanged(
        tool: Path, gateway: Gateway) -> None:
    """The tool applies models before the credentials they name: the model is served once both exist."""
    tag = uuid.uuid4().hex[:8]
    model, org = f"stored-{tag}", f"org-{tag}"
    spec = gateway.dir / f"spec-{tag}.yml"
    spec.write_text(yaml.safe_dump({
        "budgets": [{"budget_id": f"budget-{tag}", "max_budget": 5, "budget_duration": "30d", "rpm_limit": 100}],
        "credentials": [{"credential_name": f"cred-{tag}", "credential_info": {"description": "mock"},
                         "credential_values": {"api_key": "sk-upstream-secret"}}],
        "models": [{"model_name": model, "model_info": {"id": f"id-{tag}"},
                    "litellm_params": {"model": "mock/stored", "litellm_credential_name": f"cred-{tag}"}}],
        "organizations": [{"organization_alias": org, "models": ["echo", model],
                           "members_with_roles": [{"user_id": f"member-{tag}", "role": "org_admin"}]}],
        "users": [{"user_id": f"member-{tag}", "user_role": "internal_user"}],
    }))
    applied = reconcile(tool, gateway, spec)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = reconcile(tool, gateway, spec, "--dry-run")
    assert again.returncode == 0 and "0 to create, 0 to update" in again.stdout, again.stdout + again.stderr

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MASTER}"}) as http:
        async with http.post(f"{gateway.url}/budget/info", json={"budgets": [f"budget-{tag}"]}) as r:
            assert r.status == 200, await r.text()
            assert [b["max_budget"] for b in await r.json()] == [5.0]
        async with http.get(f"{gateway.url}/organization/list") as r:
            listed = [o for o in await r.json() if o["organization_alias"] == org]
        assert len(listed) == 1 and listed[0]["models"] == ["echo", model]
        assert [m["user_id"] for m in listed[0]["members"]] == [f"member-{tag}"]
        async with http.post(f"{gateway.url}/v1/chat/completions",
                             json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
        async with http.get(f"{gateway.url}/credentials") as r:
            shown = str(await r.json())
        assert "sk-upstream-secret" not in shown
