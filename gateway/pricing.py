"""What a request cost: the deployment's own prices, else the bundled table, else zero (said once)."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import msgspec

from gateway.router import Deployment
from gateway.usage import Usage

log = logging.getLogger("gateway.pricing")


class Price(msgspec.Struct, frozen=True):
    input_cost_per_token: float
    output_cost_per_token: float
    source: str  # "config", "table" or "none"
    cost_per_image: float = 0.0  # each image generated, as LiteLLM's output_cost_per_image

    def cost(self, usage: Usage, images: int = 0) -> float:
        tokens = usage.prompt_tokens * self.input_cost_per_token + usage.completion_tokens * self.output_cost_per_token
        return tokens + images * self.cost_per_image if images else tokens


FREE = Price(0.0, 0.0, "none")
# LiteLLM's names for the price of one generated image, in the order its image cost calculator reads them.
IMAGE_PRICE_FIELDS = ("output_cost_per_image", "cost_per_image")
MAX_REMEMBERED = 10_000


def bundled_table() -> dict[str, dict[str, Any]]:
    text = resources.files("gateway").joinpath("data/model_prices.json").read_text()
    table: dict[str, dict[str, Any]] = msgspec.json.decode(text)["models"]
    return table


def price_for(upstream_model: str, provider: str, params: dict[str, Any], model_info: dict[str, Any],
              table: dict[str, dict[str, Any]]) -> Price:
    """Config first (litellm_params, then model_info, as LiteLLM reads them), then the table."""
    for source in (params, model_info):
        given_in = source.get("input_cost_per_token")
        given_out = source.get("output_cost_per_token")
        per_image = _image_price(source)
        if isinstance(given_in, (int, float)) or isinstance(given_out, (int, float)) or per_image:
            return Price(float(given_in or 0.0), float(given_out or 0.0), "config", per_image)
    base = model_info.get("base_model")
    for name in (upstream_model, base, f"{provider}/{upstream_model}", upstream_model.rsplit("/", 1)[-1]):
        entry = table.get(name) if isinstance(name, str) else None
        if entry is not None:
            return Price(float(entry.get("input_cost_per_token", 0.0)),
                         float(entry.get("output_cost_per_token", 0.0)), "table", _image_price(entry))
    return FREE


def _image_price(source: dict[str, Any]) -> float:
    for name in IMAGE_PRICE_FIELDS:
        value = source.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return 0.0


class Pricing:
    """Prices per (deployment, upstream model), looked up once; an unpriced model is warned about once."""

    def __init__(self) -> None:
        self.table = bundled_table()
        self.known: dict[tuple[str, str], Price] = {}

    def price(self, deployment: Deployment, upstream_model: str) -> Price:
        key = (deployment.id, upstream_model)
        found = self.known.get(key)
        if found is None:
            if len(self.known) > MAX_REMEMBERED:
                self.known.clear()  # wildcard groups let clients name any model: stay bounded
            provider = deployment.provider.name
            found = price_for(upstream_model, provider, msgspec.to_builtins(deployment.entry.litellm_params),
                              deployment.entry.model_info, self.table)
            if found is FREE and provider != "mock":
                log.warning("no price for model %r (deployment %s): its requests cost 0; set "
                            "input_cost_per_token / output_cost_per_token in litellm_params",
                            upstream_model, deployment.id[:12])
            self.known[key] = found
        return found
