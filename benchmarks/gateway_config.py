"""The gateway config the benchmark runs with (LiteLLM `model_list` format).

Kept apart from the runner so the plugin chain under test (master key,
virtual keys, rate limits, ...) can grow here without touching measurement.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from benchmarks.workloads import (
    CHAT_MODEL,
    EMBED_MODEL,
    HELD_CHAT_MODEL,
    MESSAGES_MODEL,
    PACED_CHAT_MODEL,
    TRANSLATED_MODEL,
)

UPSTREAM_PLACEHOLDER = "{upstream}"
UPSTREAM_KEY = "sk-upstream"
MASTER_KEY = "sk-bench-master"


def _model(name: str, upstream: str, mode: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "model_name": name,
        "litellm_params": {"model": f"openai/{name}", "api_base": f"{upstream}/v1", "api_key": UPSTREAM_KEY},
    }
    if mode is not None:
        entry["model_info"] = {"mode": mode}
    return entry


def default_config(upstream: str) -> dict[str, Any]:
    """Every model the workloads name, all routed to the fake upstream at `upstream`.

    A master key turns on the whole default plugin chain (auth, model access,
    key aliases); the load is then sent with a virtual key from /key/generate.
    """
    return {
        "model_list": [
            _model(CHAT_MODEL, upstream),
            _model(PACED_CHAT_MODEL, upstream),
            _model(HELD_CHAT_MODEL, upstream),
            _model(EMBED_MODEL, upstream, mode="embedding"),
            # Anthropic's own API: the gateway appends /v1/messages to the root.
            {"model_name": MESSAGES_MODEL, "litellm_params": {
                "model": f"anthropic/{MESSAGES_MODEL}", "api_base": upstream, "api_key": UPSTREAM_KEY}},
            # OpenAI's API upstream, asked in Anthropic's: every request and stream event is translated.
            _model(TRANSLATED_MODEL, upstream),
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def issue_virtual_key(gateway_url: str) -> str:
    """A virtual key allowed the benchmark's models, made the way an operator would."""
    models = [CHAT_MODEL, PACED_CHAT_MODEL, HELD_CHAT_MODEL, EMBED_MODEL, MESSAGES_MODEL, TRANSLATED_MODEL]
    body = json.dumps({"models": models, "key_alias": "benchmark"}).encode()
    request = urllib.request.Request(f"{gateway_url}/key/generate", data=body, method="POST", headers={
        "Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["key"])


def write_config(directory: Path, upstream: str, template: Path | None = None) -> Path:
    """Write the config into directory and return its path.

    upstream is the fake upstream's base URL without /v1. A template file has
    every `{upstream}` replaced by it; plain str.replace, not str.format, since
    YAML flow mappings are full of braces.
    """
    if template is not None:
        text = template.read_text().replace(UPSTREAM_PLACEHOLDER, upstream)
    else:
        text = yaml.safe_dump(default_config(upstream), sort_keys=False)
    path = directory / "gateway.yaml"
    path.write_text(text)
    return path
