"""Model access groups: a name that stands for a set of model groups, as LiteLLM has them.

Two sources, one map: `model_info.access_groups` on config deployments (fixed at start) and the
groups made through `/access_group/*` and `/v1/access_group` (the store, reloaded when the change
log names one). A key or team whose `models` holds a group's name may use every model of it; a
stored group may also be assigned to keys and teams directly (`assigned_key_ids`,
`assigned_team_ids`, or their own `access_group_ids`). Everything the request path asks is a dict
look-up on maps built here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from gateway.store.records import AccessGroupRecord

log = logging.getLogger("gateway.access_groups")

EMPTY: frozenset[str] = frozenset()


class AccessGroups:
    __slots__ = ("config", "config_deployments", "by_name", "by_id", "by_key", "by_team", "of_model", "stored",
                 "load", "_reloading", "_again")

    def __init__(self, config: Mapping[str, frozenset[str]], config_deployments: Mapping[str, int]) -> None:
        self.config = dict(config)
        self.config_deployments = dict(config_deployments)
        self.stored: list[AccessGroupRecord] = []
        self.by_name: dict[str, frozenset[str]] = {}
        self.by_id: dict[str, frozenset[str]] = {}
        self.by_key: dict[str, frozenset[str]] = {}
        self.by_team: dict[str, frozenset[str]] = {}
        self.of_model: dict[str, tuple[str, ...]] = {}
        self.load: Callable[[], Awaitable[list[AccessGroupRecord]]] | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._again = False
        self.install([])

    @classmethod
    def from_deployments(cls, deployments: Iterable[tuple[str, Any]]) -> AccessGroups:
        """(model group, model_info.access_groups) for each config deployment."""
        members: dict[str, set[str]] = {}
        counts: dict[str, int] = {}
        for group, names in deployments:
            if not isinstance(names, list):
                continue
            for name in names:
                if isinstance(name, str) and name:
                    members.setdefault(name, set()).add(group)
                    counts[name] = counts.get(name, 0) + 1
        return cls({name: frozenset(models) for name, models in members.items()}, counts)

    def install(self, records: list[AccessGroupRecord]) -> None:
        """Rebuild every map from the config groups and these stored ones, then swap them in at once."""
        by_name: dict[str, set[str]] = {name: set(models) for name, models in self.config.items()}
        by_id: dict[str, frozenset[str]] = {}
        by_key: dict[str, set[str]] = {}
        by_team: dict[str, set[str]] = {}
        for record in records:
            models = frozenset(record.access_model_names)
            by_name.setdefault(record.access_group_name, set()).update(models)
            by_id[record.access_group_id] = models
            for token in record.assigned_key_ids:
                by_key.setdefault(token, set()).update(models)
            for team_id in record.assigned_team_ids:
                by_team.setdefault(team_id, set()).update(models)
        of_model: dict[str, list[str]] = {}
        for name, members in sorted(by_name.items()):
            for model in members:
                of_model.setdefault(model, []).append(name)
        self.stored = records
        self.by_name = {name: frozenset(models) for name, models in by_name.items()}
        self.by_id = by_id
        self.by_key = {token: frozenset(models) for token, models in by_key.items()}
        self.by_team = {team: frozenset(models) for team, models in by_team.items()}
        self.of_model = {model: tuple(names) for model, names in of_model.items()}

    def stored_named(self, name: str) -> AccessGroupRecord | None:
        return next((r for r in self.stored if r.access_group_name == name), None)

    def granted(self, ids: Any) -> frozenset[str]:
        """Models of the stored groups a key's or team's own `access_group_ids` name."""
        if not isinstance(ids, list) or not ids:
            return EMPTY
        found: set[str] = set()
        for group_id in ids:
            if isinstance(group_id, str):
                found |= self.by_id.get(group_id, EMPTY)
        return frozenset(found)

    def attach(self, load: Callable[[], Awaitable[list[AccessGroupRecord]]]) -> None:
        self.load = load

    async def reload(self) -> None:
        if self.load is not None:
            self.install(await self.load())

    def changed(self, ref: str) -> None:
        """The change log (from any instance) named a stored group: read them again. One reload runs
        at a time; a change during it makes it read once more, so the last one is seen."""
        if self.load is None:
            return
        if self._reloading is not None and not self._reloading.done():
            self._again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload(), name="access-groups-reload")

    async def _reload(self) -> None:
        while True:
            self._again = False
            try:
                await self.reload()
            except Exception as exc:  # the store is down: keep the groups we have; the next change retries
                log.warning("access groups not reloaded: %s: %s", type(exc).__name__, exc)
            if not self._again:
                return
