"""What a request cost: the deployment's own prices, else the bundled table, else zero (said once)."""

from __future__ import annotations

import logging
import math
from importlib import resources
from typing import Any

import msgspec

from gateway.image_prices import ImageAsk, PixelPrices, pixel_prices, sized_price
from gateway.router import Deployment
from gateway.usage import Usage

log = logging.getLogger("gateway.pricing")


class Price(msgspec.Struct, frozen=True):
    """A model's prices per token (LiteLLM's field names). A cache or reasoning price left out (None) is
    the price of the tokens it is a kind of: cache reads and writes cost the input price, a one-hour
    cache write the five-minute one, reasoning the output price."""

    input_cost_per_token: float
    output_cost_per_token: float
    source: str  # "config", "table" or "none"
    cost_per_image: float = 0.0  # each image generated, as LiteLLM's output_cost_per_image
    cost_per_second: float = 0.0  # of audio transcribed or translated (input_cost_per_second)
    cost_per_character: float = 0.0  # of the text spoken by /audio/speech (input_cost_per_character)
    cost_per_query: float = 0.0  # a rerank search unit (input_cost_per_query)
    cache_read_input_token_cost: float | None = None
    cache_creation_input_token_cost: float | None = None
    cache_creation_input_token_cost_above_1hr: float | None = None
    output_cost_per_reasoning_token: float | None = None
    pixel_prices: PixelPrices = ()  # the table's, by size and quality: they come before cost_per_image

    def cost(self, usage: Usage, images: ImageAsk | None = None) -> float:
        if usage.cache_read_tokens or usage.cache_creation_tokens or usage.reasoning_tokens:
            tokens = self._itemised(usage)
        else:
            tokens = (usage.prompt_tokens * self.input_cost_per_token
                      + usage.completion_tokens * self.output_cost_per_token)
        return tokens + self.image_cost(images) if images is not None else tokens

    def image_cost(self, ask: ImageAsk) -> float:
        sized = sized_price(self.pixel_prices, ask)
        return ask.count * (self.cost_per_image if sized is None else sized)

    @property
    def by_units(self) -> bool:
        """Priced per second, character or query as well as (or rather than) per token."""
        return bool(self.cost_per_second or self.cost_per_character or self.cost_per_query)

    def units_cost(self, seconds: float = 0.0, characters: int = 0, queries: float = 0.0) -> float:
        return (seconds * self.cost_per_second + characters * self.cost_per_character
                + queries * self.cost_per_query)

    def _itemised(self, usage: Usage) -> float:
        given_in, given_out = self.input_cost_per_token, self.output_cost_per_token
        read = self.cache_read_input_token_cost
        write = self.cache_creation_input_token_cost
        write = given_in if write is None else write
        write_hour = self.cache_creation_input_token_cost_above_1hr
        reasoning = self.output_cost_per_reasoning_token
        hour = usage.cache_creation_1h_tokens
        uncached = usage.prompt_tokens - usage.cache_read_tokens - usage.cache_creation_tokens
        return (uncached * given_in
                + usage.cache_read_tokens * (given_in if read is None else read)
                + (usage.cache_creation_tokens - hour) * write
                + hour * (write if write_hour is None else write_hour)
                + (usage.completion_tokens - usage.reasoning_tokens) * given_out
                + usage.reasoning_tokens * (given_out if reasoning is None else reasoning))


FREE = Price(0.0, 0.0, "none")
# LiteLLM's names for the price of one generated image, in the order its image cost calculator reads them.
IMAGE_PRICE_FIELDS = ("output_cost_per_image", "cost_per_image")
# LiteLLM's names for the media and rerank prices, as Price names them.
UNIT_PRICE_FIELDS = {"input_cost_per_second": "cost_per_second", "input_cost_per_character": "cost_per_character",
                     "input_cost_per_query": "cost_per_query"}
# LiteLLM's names for what cached, cache-written and reasoning tokens cost, as Price names them too.
PART_PRICE_FIELDS = ("cache_read_input_token_cost", "cache_creation_input_token_cost",
                     "cache_creation_input_token_cost_above_1hr", "output_cost_per_reasoning_token")
MAX_REMEMBERED = 10_000


def bundled_table() -> dict[str, dict[str, Any]]:
    text = resources.files("gateway").joinpath("data/model_prices.json").read_text()
    table: dict[str, dict[str, Any]] = msgspec.json.decode(text)["models"]
    return table


def price_for(upstream_model: str, provider: str, params: dict[str, Any], model_info: dict[str, Any],
              table: dict[str, dict[str, Any]]) -> Price:
    """Config first (litellm_params, then model_info, as LiteLLM reads them), then the table. A config
    that prices only cached or reasoning tokens changes those on the table's price. An image model's
    table price carries the table's per-pixel prices by size and quality; a config price has none."""
    parts: dict[str, float] = {}
    for source in (params, model_info):
        given_in = _number(source.get("input_cost_per_token"))
        given_out = _number(source.get("output_cost_per_token"))
        per_image = _image_price(source)
        units = _unit_prices(source)
        if given_in is not None or given_out is not None or per_image or units:
            return Price(given_in or 0.0, given_out or 0.0, "config", per_image, **units, **_part_prices(source),
                         pixel_prices=())
        parts = _part_prices(source) | parts
    base = model_info.get("base_model")
    names = (upstream_model, base, f"{provider}/{upstream_model}", upstream_model.rsplit("/", 1)[-1])
    for name in (name for name in names if isinstance(name, str)):
        entry = table.get(name)
        if entry is not None:
            per_image = _image_price(entry)
            return Price(_number(entry.get("input_cost_per_token")) or 0.0,
                         _number(entry.get("output_cost_per_token")) or 0.0, "table", per_image,
                         **_unit_prices(entry), **(_part_prices(entry) | parts),
                         pixel_prices=pixel_prices(table, name) if per_image else ())
    return FREE


def _number(value: Any) -> float | None:
    """A price as given; model_info is free-form, and YAML reads `3e-07` (no dot) as a string."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _part_prices(source: dict[str, Any]) -> dict[str, float]:
    """The cache and reasoning prices `source` names (0 is a price: free cache writes are)."""
    return {name: found for name in PART_PRICE_FIELDS
            if (found := _number(source.get(name))) is not None and found >= 0}


def _unit_prices(source: dict[str, Any]) -> dict[str, float]:
    return {ours: found for theirs, ours in UNIT_PRICE_FIELDS.items()
            if (found := _number(source.get(theirs))) is not None and found > 0}


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
