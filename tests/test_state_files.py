"""Where a gateway keeps its SQLite store and its spool: named after its config file, next to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import load_config, parse_config
from tests.harness import Gateway

MASTER = "sk-state-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}


def config(**gateway_settings: Any) -> dict[str, Any]:
    return {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
            "general_settings": {"master_key": MASTER}, "gateway_settings": gateway_settings}


def gateway_at(path: Path, settings: dict[str, Any]) -> Gateway:
    """A gateway started from `path`, wherever that is, rather than from the harness's own config.yaml."""
    gateway = Gateway(settings)
    path.write_text(yaml.safe_dump(settings))
    gateway.config_path = path
    return gateway


@contextmanager
def two_gateways(folder: Path, **settings: Any) -> Iterator[tuple[Gateway, Gateway]]:
    """prod.yaml and staging.yaml in one folder, both running."""
    with ExitStack() as stack:
        yield (stack.enter_context(gateway_at(folder / "prod.yaml", config(**settings))),
               stack.enter_context(gateway_at(folder / "staging.yaml", config(**settings))))


async def new_key(http: aiohttp.ClientSession, gateway: Gateway) -> str:
    async with http.post(f"{gateway.url}/key/generate", json={}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


async def models_status(http: aiohttp.ClientSession, gateway: Gateway, key: str) -> int:
    async with http.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status


def store_line(gateway: Gateway) -> str:
    return next(line for line in gateway.log().splitlines() if ": store: " in line)


# --- two configs in one folder ---------------------------------------------------------------

async def test_two_configs_in_one_folder_do_not_share_a_store(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    with two_gateways(tmp_path) as (prod, staging):
        key = await new_key(http, prod)
        assert await models_status(http, prod, key) == 200
        assert await models_status(http, staging, key) == 401
    folder = tmp_path.resolve()
    for gateway, stem in ((prod, "prod"), (staging, "staging")):
        assert store_line(gateway).endswith(f"store: sqlite {folder / f'{stem}.db'}")
        assert (folder / f"{stem}.db").is_file() and (folder / f"{stem}.spool").is_dir()
    state = {p.name for p in folder.iterdir()} - {"prod.yaml", "staging.yaml"}
    assert {name.removesuffix("-wal").removesuffix("-shm") for name in state} == {
        "prod.db", "prod.spool", "staging.db", "staging.spool"}


async def test_an_explicit_database_path_still_wins(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    with two_gateways(tmp_path, database_path="state/shared.db", spool_dir="state/spool") as gateways:
        key = await new_key(http, gateways[0])
        assert await models_status(http, gateways[1], key) == 200
    shared = tmp_path.resolve() / "state" / "shared.db"
    for gateway in gateways:
        assert store_line(gateway).endswith(f"store: sqlite {shared}")
    assert (tmp_path / "state" / "spool").is_dir()
    assert {p.name for p in tmp_path.iterdir()} == {"prod.yaml", "staging.yaml", "state"}


def test_a_store_left_by_an_older_version_is_named_in_one_warning(tmp_path: Path) -> None:
    (tmp_path / "gateway.db").write_bytes(b"")
    with gateway_at(tmp_path / "config.yaml", config()) as gateway:
        log = gateway.log()
        line = store_line(gateway)
    warnings = [line for line in log.splitlines() if "gateway.db" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], log
    folder = tmp_path.resolve()
    assert f"{folder / 'config.db'}" in warnings[0] and f"{folder / 'gateway.db'}" in warnings[0]
    assert line.endswith(f"store: sqlite {folder / 'config.db'}")


# --- the defaults, without a gateway ----------------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config()))
    return tmp_path.resolve()


def warnings_of(path: Path) -> list[str]:
    warn: list[str] = []
    load_config(path, warn)
    return warn


def test_the_state_is_named_after_the_config_file(folder: Path) -> None:
    (folder / "prod.v2.yaml").write_text(yaml.safe_dump(config()))
    settings = load_config(folder / "prod.v2.yaml").gateway_settings
    assert (settings.database_path, settings.spool_dir) == (str(folder / "prod.v2.db"), str(folder / "prod.v2.spool"))


def test_explicit_paths_are_relative_to_the_config_folder(folder: Path) -> None:
    (folder / "prod.yaml").write_text(yaml.safe_dump(config(database_path="gateway.db", spool_dir="/var/spool/gw")))
    settings = load_config(folder / "prod.yaml").gateway_settings
    assert (settings.database_path, settings.spool_dir) == (str(folder / "gateway.db"), "/var/spool/gw")


def test_a_config_without_a_file_keeps_the_old_names() -> None:
    settings = parse_config(config()).gateway_settings
    assert (settings.database_path, settings.spool_dir) == ("gateway.db", "spool")


def test_a_legacy_store_is_warned_about_and_not_opened(folder: Path) -> None:
    (folder / "gateway.db").write_bytes(b"")
    [warning] = warnings_of(folder / "config.yaml")
    assert str(folder / "gateway.db") in warning and str(folder / "config.db") in warning
    assert "set gateway_settings.database_path: gateway.db to keep using the old store" in warning
    assert load_config(folder / "config.yaml").gateway_settings.database_path == str(folder / "config.db")


def test_a_legacy_spool_is_named_in_the_advice(folder: Path) -> None:
    (folder / "gateway.db").write_bytes(b"")
    (folder / "spool").mkdir()
    [warning] = warnings_of(folder / "config.yaml")
    assert "set gateway_settings.database_path: gateway.db and spool_dir: spool to keep" in warning


@pytest.mark.parametrize("case", ["new store exists", "explicit database_path", "database_url", "DATABASE_URL"])
def test_no_legacy_warning_when_the_legacy_store_is_not_in_question(folder: Path, case: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "gateway.db").write_bytes(b"")
    if case == "new store exists":
        (folder / "config.db").write_bytes(b"")
    elif case == "explicit database_path":
        (folder / "config.yaml").write_text(yaml.safe_dump(config(database_path="other.db")))
    elif case == "database_url":
        settings = config()
        settings["general_settings"]["database_url"] = "sqlite:///elsewhere.db"
        (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    else:
        monkeypatch.setenv("DATABASE_URL", "postgresql://nowhere/gateway")
    assert warnings_of(folder / "config.yaml") == []
