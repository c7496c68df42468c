"""What an /images/generations request is charged, as LiteLLM's default_image_cost_calculator charges it:
`n` images, each its width times its height times the table's per-pixel price for its quality and size
("hd/1024-x-1792/dall-e-3"), else for its size alone ("256-x-256/dall-e-2"). A size with neither costs the
model's one-image price, the entry LiteLLM's lookup reaches last."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

DEFAULT_SIZE = "1024x1024"  # LiteLLM's default, and OpenAI's for dall-e-2 and dall-e-3
DEFAULT_QUALITY = "standard"
SIZE = re.compile(r"(\d+)(?:x|-x-)(\d+)")  # as sent ("1024x1792") or as the table writes it ("1024-x-1792")
SIZED_KEY = re.compile(r"(?:[a-z]+/)?\d+-x-\d+")  # what comes before the model in a per-pixel entry's name

PixelPrices = tuple[tuple[str, float], ...]  # ("hd/1024-x-1792", 6.539e-08), ("256-x-256", 2.4414e-07)


class ImageAsk(msgspec.Struct, kw_only=True):
    """What an /images/generations request asks for that its price depends on."""

    n: int | None = None
    size: str | None = None
    quality: str | None = None

    @property
    def count(self) -> int:
        return self.n if self.n is not None and self.n > 0 else 1


def read_ask(body: dict[str, Any]) -> ImageAsk:
    """The request's n, size and quality; a size or quality of another type is read as left out."""
    try:
        return msgspec.convert(body, ImageAsk)
    except msgspec.ValidationError:
        n = body.get("n")
        return ImageAsk(n=n if isinstance(n, int) and not isinstance(n, bool) else None)


def pixel_prices(table: dict[str, dict[str, Any]], model: str) -> PixelPrices:
    """The table's per-pixel prices for `model`, each under the quality and size (or size) it names."""
    suffix = "/" + model
    found = []
    for name, entry in table.items():
        if not name.endswith(suffix) or not SIZED_KEY.fullmatch(prefix := name[:-len(suffix)]):
            continue
        price = entry.get("input_cost_per_pixel")
        if isinstance(price, (int, float)) and not isinstance(price, bool) and math.isfinite(price) and price >= 0:
            found.append((prefix, float(price)))
    return tuple(found)


def sized_price(prices: PixelPrices, ask: ImageAsk) -> float | None:
    """One image of the asked size and quality, when the table prices that size; else None."""
    dims = SIZE.fullmatch(ask.size or DEFAULT_SIZE)
    if dims is None or not prices:
        return None
    width, height = int(dims[1]), int(dims[2])
    size = f"{width}-x-{height}"
    by_key = dict(prices)
    per_pixel = by_key.get(f"{ask.quality or DEFAULT_QUALITY}/{size}", by_key.get(size))
    return None if per_pixel is None else per_pixel * width * height
