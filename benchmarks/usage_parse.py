"""What reading an answer's usage costs, per usage shape: the micro-benchmark behind gateway/usage.py.

    python -m benchmarks.usage_parse [--number N] [--repeat R] [--case TEXT]

Each case is timed `R` times over `N` calls and the fastest run is reported (the others only add the
machine's noise), in nanoseconds a call. `from_object` is what a stream's usage event costs once
decoded; `from_json_body` is what a whole non-streaming answer costs, found from its end and parsed.
Run it from a checkout to compare that checkout's parser with another's. On a shared machine the times
swing with its load; instruction counts do not: run one case (`--case`) under `valgrind --tool=callgrind`
with N calls and with none, and divide the difference by N.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from gateway.usage import from_json_body, from_object

PLAIN = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
OPENAI = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
          "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
          "completion_tokens_details": {"reasoning_tokens": 192, "audio_tokens": 0,
                                        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
# What OpenAI sends for most answers: details present, all zero.
OPENAI_ZERO = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
               "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
DEEPSEEK = {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024}, "prompt_cache_hit_tokens": 1024,
            "prompt_cache_miss_tokens": 176}
ANTHROPIC = {"input_tokens": 20, "cache_creation_input_tokens": 180, "cache_read_input_tokens": 1000,
             "cache_creation": {"ephemeral_5m_input_tokens": 180, "ephemeral_1h_input_tokens": 0},
             "output_tokens": 300, "service_tier": "standard"}


def _body(usage: dict[str, Any]) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-AxR7tQ2mN9vK4pL8sW3zY6bC1dE5f", "object": "chat.completion", "created": 1731700000,
        "model": "gpt-4o-2024-11-20", "system_fingerprint": "fp_b705f0c291",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! " * 40, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage})


def cases() -> dict[str, Callable[[], object]]:
    found: dict[str, Callable[[], object]] = {}
    for name, usage in (("plain", PLAIN), ("openai zero details", OPENAI_ZERO), ("openai details", OPENAI),
                        ("deepseek", DEEPSEEK),
                        ("anthropic", ANTHROPIC)):
        found[f"from_object {name}"] = lambda usage=usage: from_object(usage)
        body = _body(usage)
        found[f"from_json_body {name}"] = lambda body=body: from_json_body(body)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--case", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    for name, call in cases().items():
        if args.case not in name:
            continue
        best = min(timeit.repeat(call, number=args.number, repeat=args.repeat))
        print(f"{name:32} {best / max(args.number, 1) * 1e9:8.1f} ns")


if __name__ == "__main__":
    main()
