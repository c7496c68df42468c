"""Usage objects as upstreams send them, details null, missing, zero or out of bounds: what is read from them
and what it costs. Properties over generated objects; the HTTP paths are in tests/test_pricing.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pricing import Price
from gateway.stream_usage import usage_in
from gateway.usage import Usage, from_json_body, from_object

MISSING = object()  # a member left out of the object
counts = st.integers(min_value=0, max_value=10**7)
# What a detail count may be on the wire: absent, null, zero, a count, or something that is not one.
values = st.one_of(st.none(), st.just(0), counts, st.integers(min_value=-(2**40), max_value=-1), st.just("12"),
                   st.just(1.5), st.booleans())
details = st.one_of(st.just(MISSING), values)
nested = st.one_of(st.just(MISSING), st.none(), st.just({}), st.just([]),
                   st.fixed_dictionaries({}, optional={"cached_tokens": values, "audio_tokens": values,
                                                        "cache_creation_tokens": values,
                                                        "cache_write_tokens": values}))
completion_details = st.one_of(st.just(MISSING), st.none(), st.just({}),
                               st.fixed_dictionaries({}, optional={"reasoning_tokens": values,
                                                                    "audio_tokens": values}))


def build(**members: Any) -> dict[str, Any]:
    return {name: value for name, value in members.items() if value is not MISSING}


openai_objects = st.builds(
    build, prompt_tokens=counts, completion_tokens=st.one_of(counts, st.none(), st.just(MISSING)),
    total_tokens=st.one_of(counts, st.none(), st.just(MISSING)), prompt_tokens_details=nested,
    completion_tokens_details=completion_details, prompt_cache_hit_tokens=details,
    cache_creation_input_tokens=details)
anthropic_objects = st.builds(
    build, input_tokens=counts, output_tokens=counts, cache_read_input_tokens=details,
    cache_creation_input_tokens=details,
    cache_creation=st.one_of(st.just(MISSING), st.none(),
                             st.fixed_dictionaries({}, optional={"ephemeral_5m_input_tokens": values,
                                                                  "ephemeral_1h_input_tokens": values})))
prices = st.floats(min_value=0, max_value=1e-3, allow_nan=False)
part_prices = st.one_of(st.none(), prices)


def within_bounds(usage: Usage) -> None:
    assert 0 <= usage.cache_read_tokens and 0 <= usage.cache_creation_tokens and 0 <= usage.reasoning_tokens
    assert usage.cache_read_tokens + usage.cache_creation_tokens <= max(usage.prompt_tokens, 0)
    assert 0 <= usage.cache_creation_1h_tokens <= usage.cache_creation_tokens
    assert usage.reasoning_tokens <= max(usage.completion_tokens, 0)


@settings(max_examples=400, deadline=None)
@given(raw=openai_objects)
def test_an_openai_shaped_object_is_read_whatever_its_details_hold(raw: dict[str, Any]) -> None:
    usage = from_object(raw)
    assert usage is not None
    assert usage.prompt_tokens == raw["prompt_tokens"]
    assert usage.completion_tokens == (raw.get("completion_tokens") or 0)
    assert usage.total_tokens == (raw["total_tokens"] if isinstance(raw.get("total_tokens"), int)
                                  else usage.prompt_tokens + usage.completion_tokens)
    within_bounds(usage)
    stated = raw.get("prompt_tokens_details")
    cached = stated.get("cached_tokens") if isinstance(stated, dict) else None
    if type(cached) is int and 0 < cached <= raw["prompt_tokens"]:
        assert usage.cache_read_tokens == cached


@settings(max_examples=300, deadline=None)
@given(raw=anthropic_objects)
def test_an_anthropic_object_counts_the_cache_into_the_prompt(raw: dict[str, Any]) -> None:
    usage = from_object(raw)
    assert usage is not None
    read, written = (raw.get(name) for name in ("cache_read_input_tokens", "cache_creation_input_tokens"))
    read = read if type(read) is int and read > 0 else 0
    written = written if type(written) is int and written > 0 else 0
    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_creation_tokens) == (
        raw["input_tokens"] + read + written, read, written)
    assert usage.total_tokens == usage.prompt_tokens + raw["output_tokens"]
    within_bounds(usage)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(openai_objects, anthropic_objects), given_in=prices, given_out=prices, read=part_prices,
       write=part_prices, hour=part_prices, reasoning=part_prices)
def test_cost_is_never_negative_and_without_part_prices_is_the_plain_one(
        raw: dict[str, Any], given_in: float, given_out: float, read: float | None, write: float | None,
        hour: float | None, reasoning: float | None) -> None:
    usage = from_object(raw)
    assert usage is not None
    price = Price(given_in, given_out, "config", cache_read_input_token_cost=read,
                  cache_creation_input_token_cost=write, cache_creation_input_token_cost_above_1hr=hour,
                  output_cost_per_reasoning_token=reasoning)
    assert price.cost(usage) >= 0
    plain = Price(given_in, given_out, "config")
    expected = usage.prompt_tokens * given_in + usage.completion_tokens * given_out
    assert plain.cost(usage) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    same = Price(given_in, given_out, "config", cache_read_input_token_cost=given_in,
                 cache_creation_input_token_cost=given_in, cache_creation_input_token_cost_above_1hr=given_in,
                 output_cost_per_reasoning_token=given_out)
    assert same.cost(usage) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(raw=openai_objects)
def test_a_body_and_a_stream_event_carrying_the_object_read_as_it_does(raw: dict[str, Any]) -> None:
    expected = from_object(raw)
    body = orjson.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "usage": raw})
    assert from_json_body(body) == expected
    event = b"data: " + orjson.dumps({"id": "chatcmpl-1", "choices": [], "usage": raw}) + b"\n\ndata: [DONE]\n\n"
    assert usage_in(event) == expected


@pytest.mark.parametrize("raw", [
    None, [], "usage", {}, {"prompt_tokens": None}, {"prompt_tokens": "5", "completion_tokens": 1},
    {"prompt_tokens": 5, "completion_tokens": "1"}, {"prompt_tokens": True, "completion_tokens": 1},
    {"output_tokens": 7},  # Anthropic's message_delta before it also carried the input counts
])
def test_an_object_without_token_counts_is_no_usage(raw: Any) -> None:
    assert from_object(raw) is None


def test_details_that_claim_more_than_their_total_are_held_to_it() -> None:
    usage = from_object({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                         "prompt_tokens_details": {"cached_tokens": 8, "cache_creation_tokens": 5},
                         "completion_tokens_details": {"reasoning_tokens": 9}})
    assert usage == Usage(10, 4, 14, cache_read_tokens=8, cache_creation_tokens=2, reasoning_tokens=4)
