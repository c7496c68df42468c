"""What one load measurement produced, whichever tool produced it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LoadResult:
    tool: str
    requests: int
    errors: int
    elapsed_s: float
    p50_ms: float | None
    p99_ms: float | None
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    first_error: str | None = None
    server_cpu_s: float | None = None  # CPU the target's processes spent during the run, warm-up included

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": self.rps}

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or self.requests + self.errors <= 0:
            return None
        return self.server_cpu_s / (self.requests + self.errors) * 1e6

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**fields)

    @classmethod
    def failed(cls, tool: str, error: str) -> LoadResult:
        return cls(tool=tool, requests=0, errors=1, elapsed_s=0.0, p50_ms=None, p99_ms=None, first_error=error)


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
