"""Build the chain from `gateway_settings.plugins`: built-ins by name, others by dotted path."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from gateway.config import Config, ConfigError, PluginSpec
from gateway.plugin import Chain, Plugin
from gateway.services import Services

# The order requests meet them in: who is calling, what it cost (reached by every authenticated
# request, so failures are recorded too), who it is for (the end user), may they use this model,
# which model they mean, are they within their rate limits, and does its cost fit their budgets.
DEFAULT_PLUGINS = ("auth", "spend", "end_user", "model_access", "model_alias", "rate_limit", "budget")
# LiteLLM's callback names (litellm_settings.callbacks / success_callback / failure_callback) and the
# observer plugin each one turns on. Observers go first in the chain so that every request reaches
# them, those turned away by auth included.
CALLBACK_PLUGINS = {"prometheus": "metrics", "langfuse": "langfuse"}

log = logging.getLogger("gateway.plugins")


def plugin_class(spec: PluginSpec, where: str) -> type[Plugin]:
    target = spec.path or f"plugins.{spec.name}:PLUGIN"
    module_name, _, attribute = target.partition(":")
    if not attribute:
        module_name, _, attribute = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import plugin {spec.name!r} from {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if not (isinstance(found, type) and issubclass(found, Plugin)):
        raise ConfigError(f"{where}: {target!r} is not a gateway.plugin.Plugin subclass")
    return found


def callback_names(config: Config) -> list[str]:
    settings = config.litellm_settings
    names: list[str] = []
    for name in [*settings.callbacks, *settings.success_callback, *settings.failure_callback]:
        if name not in names:
            names.append(name)
    return names


def specs(entries: list[str | PluginSpec] | None, callbacks: Sequence[str] = ()) -> list[tuple[PluginSpec, str]]:
    listed = {(e if isinstance(e, str) else e.name) for e in entries or ()}
    observers = [(PluginSpec(name=CALLBACK_PLUGINS[c]), f"litellm_settings callback {c!r}") for c in callbacks
                 if c in CALLBACK_PLUGINS and CALLBACK_PLUGINS[c] not in listed]
    if entries is None:
        return observers + [(PluginSpec(name=n), f"gateway_settings.plugins (default) {n}") for n in DEFAULT_PLUGINS]
    found = observers
    for i, entry in enumerate(entries):
        spec = PluginSpec(name=entry) if isinstance(entry, str) else entry
        if spec.enabled:
            found.append((spec, f"gateway_settings.plugins[{i}]"))
    names = [s.name for s, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"gateway_settings.plugins: {', '.join(duplicates)} listed more than once")
    return found


def check_plugins(config: Config, warnings: list[str] | None = None) -> None:
    """Fail the start early, naming the entry, if a plugin cannot be found."""
    callbacks = callback_names(config)
    for spec, where in specs(config.gateway_settings.plugins, callbacks):
        plugin_class(spec, where)
    if warnings is not None:
        warnings.extend(f"litellm_settings: callback {c!r} is not supported here and is ignored (supported: "
                        f"{', '.join(CALLBACK_PLUGINS)})" for c in callbacks if c not in CALLBACK_PLUGINS)


def build_chain(config: Config, services: Services) -> Chain:
    plugins: list[Plugin] = []
    for spec, where in specs(config.gateway_settings.plugins, callback_names(config)):
        cls = plugin_class(spec, where)
        try:
            plugin: Any = cls(services, spec.settings)  # type: ignore[call-arg]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: plugin {spec.name!r} rejected its settings: {exc}") from None
        plugins.append(plugin)
    return Chain(plugins)
