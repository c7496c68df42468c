"""Scheduled key rotation, set by LiteLLM's environment variables: every key with `auto_rotate` gets a new
value once its `rotation_interval` has passed, made exactly as /key/regenerate makes one; the old value
keeps working for LITELLM_KEY_ROTATION_GRACE_PERIOD (empty: it stops at once). Every instance may run
the job: a due key is claimed in one locked step before it is rotated, so it is rotated once."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import NamedTuple

from aiohttp import web

from gateway import durations
from gateway.accounts import new_raw_key
from gateway.config import ConfigError
from gateway.management.keys import regenerate_key
from gateway.services import Services
from gateway.store.store import KEYS

log = logging.getLogger("gateway.management")

DEFAULT_CHECK_INTERVAL = 86400.0


class RotationSettings(NamedTuple):
    enabled: bool
    check_interval: float  # seconds between looks for due keys
    grace_period: str | None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> RotationSettings:
        enabled = env.get("LITELLM_KEY_ROTATION_ENABLED", "false").strip().lower() == "true"
        raw = env.get("LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS", "").strip()
        try:
            interval = float(raw) if raw else DEFAULT_CHECK_INTERVAL
        except ValueError:
            interval = -1.0
        if not interval > 0:
            raise ConfigError(f"LITELLM_KEY_ROTATION_CHECK_INTERVAL_SECONDS must be a number of seconds above 0, "
                              f"not {raw!r}")
        grace = env.get("LITELLM_KEY_ROTATION_GRACE_PERIOD", "").strip() or None
        if grace is not None:
            try:
                durations.check(grace)
            except durations.DurationError as exc:
                raise ConfigError(f"LITELLM_KEY_ROTATION_GRACE_PERIOD: {exc}") from None
        return cls(enabled, interval, grace)


class KeyRotation:
    def __init__(self, services: Services, settings: RotationSettings) -> None:
        self.services = services
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    def start(self) -> KeyRotation:
        self._task = asyncio.create_task(self._run(), name="key-rotation")
        log.info("key rotation: looking for due keys every %gs", self.settings.check_interval)
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)

    async def _run(self) -> None:
        while True:
            try:
                await self.rotate_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("key rotation: could not look for due keys: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.check_interval)

    async def rotate_due(self) -> int:
        svc = self.services
        store = svc.store
        rotated = 0
        for token in await store.due_rotations(svc.clock()):
            now = svc.clock()
            key = await store.claim_rotation(token, now)
            if key is None:
                continue  # another instance has it, or it changed
            fields = {"grace_period": self.settings.grace_period} if self.settings.grace_period else {}
            following = durations.add(now, key.rotation_interval) if key.auto_rotate and key.rotation_interval else None
            try:
                new = await regenerate_key(svc, key, fields, new_raw_key(), overrides={
                    "key_rotation_at": following, "last_rotation_at": now, "rotation_count": key.rotation_count + 1})
            except Exception as exc:
                log.warning("key rotation: %s was not rotated (tried again next time): %s: %s", key.key_name,
                            type(exc).__name__, exc)
                await store.update(KEYS, token, {"key_rotation_at": key.key_rotation_at})
                continue
            if new is not None:
                rotated += 1
                log.info("key rotation: %s rotated to %s", key.key_alias or key.key_name, new.key_name)
        return rotated


KEY_ROTATION = web.AppKey("key_rotation", KeyRotation)
