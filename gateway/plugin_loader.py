"""Build the chain from `gateway_settings.plugins`: built-ins by name, others by dotted path."""

from __future__ import annotations

import importlib
from typing import Any

from gateway.config import ConfigError, PluginSpec
from gateway.plugin import Chain, Plugin
from gateway.services import Services

# The order requests meet them in: who is calling, what it cost (reached by every authenticated
# request, so failures are recorded too), may they use this model, which model they mean, are
# they within their rate limits, and does its cost fit their budgets.
DEFAULT_PLUGINS = ("auth", "spend", "model_access", "model_alias", "rate_limit", "budget")


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


def specs(entries: list[str | PluginSpec] | None) -> list[tuple[PluginSpec, str]]:
    if entries is None:
        return [(PluginSpec(name=n), f"gateway_settings.plugins (default) {n}") for n in DEFAULT_PLUGINS]
    found = []
    for i, entry in enumerate(entries):
        spec = PluginSpec(name=entry) if isinstance(entry, str) else entry
        if spec.enabled:
            found.append((spec, f"gateway_settings.plugins[{i}]"))
    names = [s.name for s, _ in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"gateway_settings.plugins: {', '.join(duplicates)} listed more than once")
    return found


def check_plugins(entries: list[str | PluginSpec] | None) -> None:
    """Fail the start early, naming the entry, if a plugin cannot be found."""
    for spec, where in specs(entries):
        plugin_class(spec, where)


def build_chain(entries: list[str | PluginSpec] | None, services: Services) -> Chain:
    plugins: list[Plugin] = []
    for spec, where in specs(entries):
        cls = plugin_class(spec, where)
        try:
            plugin: Any = cls(services, spec.settings)  # type: ignore[call-arg]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: plugin {spec.name!r} rejected its settings: {exc}") from None
        plugins.append(plugin)
    return Chain(plugins)
