"""The running config as the settings page shows it: every section of gateway.config's Config as YAML,
with no secret in it. A setting written as os.environ/NAME shows as that, never the value; the master key,
API keys, passwords and tokens show as a mask; a URL keeps everything but its password. Free-form maps
(model_info, plugin settings, metadata, credential values, headers) are masked by their keys' names, and
any string equal to a secret found elsewhere is masked wherever it appears."""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import msgspec
import yaml

from gateway.config import Config

MASK = "••••••••"
# Typed settings that hold a secret, by field name.
SECRET_FIELDS = frozenset({"master_key", "api_key", "password", "redis_password", "sentinel_password"})
# Maps whose every value may be a secret (an env var's value, a credential, a header such as Authorization).
SECRET_MAPS = frozenset({"environment_variables", "credential_values", "extra_headers"})
# In a free-form map, a key whose name says it holds a secret.
SECRET_NAME = re.compile(r"key|secret|passw|token|auth|credential|cookie|signature|private", re.IGNORECASE)
NOT_SECRET_IN_MAPS = frozenset({"api_base", "api_version"})  # credential_values that only say where
URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#@:]*:)([^/?#@]*)(@)")
URL_SECRET_QUERY = re.compile(r"([?&](?:password|sslpassword|pass|secret|token|key|api_key)=)[^&#]*",
                              re.IGNORECASE)


class Section(NamedTuple):
    name: str
    text: str  # YAML


def masked_url(text: str) -> str:
    return URL_SECRET_QUERY.sub(rf"\g<1>{MASK}", URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text))


class Masker:
    def __init__(self, config: Config, known_secrets: set[str]) -> None:
        self.references = config.env_references
        self.secrets = {s for s in known_secrets if s and len(s) >= 4}

    def walk(self, value: Any, path: str, secret: bool = False, free_form: bool = False) -> Any:
        if path in self.references:
            return f"os.environ/{self.references[path]}"
        if isinstance(value, msgspec.Struct):
            shown: dict[str, Any] = {}
            for name in value.__struct_fields__:
                item = getattr(value, name)
                if _empty(item) or name == "env_references":
                    continue
                shown[name] = self.walk(item, _join(path, name), name in SECRET_FIELDS,
                                        free_form=isinstance(item, dict))
            return shown
        if isinstance(value, dict):
            every = path.rsplit(".", 1)[-1] in SECRET_MAPS
            return {str(k): self.walk(v, _join(path, str(k)),
                                      secret or (every and k not in NOT_SECRET_IN_MAPS)
                                      or (free_form and bool(SECRET_NAME.search(str(k)))), free_form)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.walk(v, f"{path}[{i}]", secret, free_form) for i, v in enumerate(value)]
        if isinstance(value, str):
            if secret or value in self.secrets:
                return MASK
            return masked_url(value) if "://" in value else value
        if secret and value is not None and not isinstance(value, bool):
            return MASK
        return value


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (list, dict, tuple)) and not value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def known_secrets(config: Config, master_key: str | None) -> set[str]:
    """Secret values, so that one copied into some other setting is masked there too."""
    found = {master_key or "", os.environ.get("UI_PASSWORD", ""), config.general_settings.master_key or ""}
    for entry in config.model_list:
        found.add(entry.litellm_params.api_key or "")
    for credential in config.credential_list:
        found.update(str(v) for k, v in credential.credential_values.items() if k not in NOT_SECRET_IN_MAPS)
    found.update(config.environment_variables.values())
    return found


def sections(config: Config, master_key: str | None) -> list[Section]:
    """Each section of the config that sets anything, as YAML with its secrets masked."""
    masker = Masker(config, known_secrets(config, master_key))
    shown = []
    for name in Config.__struct_fields__:
        value = getattr(config, name)
        if name == "env_references" or _empty(value):
            continue
        text = yaml.safe_dump({name: masker.walk(value, name, free_form=isinstance(value, dict))},
                              sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
        shown.append(Section(name, text))
    return shown
