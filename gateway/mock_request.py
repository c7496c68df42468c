"""LiteLLM's testing parameters in a request body: `mock_response` (answer with this text, call no
upstream), `mock_testing_fallbacks` (the group asked for fails, so its fallbacks are tried),
`mock_testing_rate_limit_error` (the first attempt gets a 429, retries go on as LiteLLM's do) and
`mock_timeout` (every attempt times out). They are taken out of the body, since no upstream knows
them, and acted on at each attempt, so retries, fallbacks, cooldowns, settlement and spend see them as
they would see the real thing."""

from __future__ import annotations

from typing import Any

from gateway.errors import ApiError, bad_request

PARAMS = ("mock_response", "mock_testing_fallbacks", "mock_testing_rate_limit_error", "mock_timeout")


class MockRequest:
    __slots__ = ("response", "failing_group", "rate_limited", "timed_out")

    def __init__(self, response: str | None, failing_group: str | None, rate_limited: bool,
                 timed_out: bool) -> None:
        self.response = response
        self.failing_group = failing_group
        self.rate_limited = rate_limited
        self.timed_out = timed_out

    def failure(self, group: str, model: str) -> tuple[ApiError, float | None] | None:
        """The error this attempt gets, with its retry-after, or None if it goes on."""
        if self.timed_out:
            return ApiError(408, f"litellm.Timeout: mock_timeout: model={model} did not answer in time",
                            "timeout_error"), None
        if self.rate_limited:
            self.rate_limited = False
            return ApiError(429, f"litellm.RateLimitError: This is a mock exception for model={group}, to trigger "
                            "a rate limit error.", "rate_limit_error"), None
        if group == self.failing_group:
            return ApiError(500, f"litellm.InternalServerError: This is a mock exception for model={model}, "
                            "to trigger a fallback.", "api_error"), None
        return None


def take(body: dict[str, Any], group: str) -> MockRequest | None:
    """The testing parameters, out of the body; None (and nothing done) when it has none."""
    if ("mock_response" not in body and "mock_testing_fallbacks" not in body
            and "mock_testing_rate_limit_error" not in body and "mock_timeout" not in body):
        return None
    response = body.pop("mock_response", None)
    if response is not None and not isinstance(response, str):
        raise bad_request("mock_response must be a string: the text to answer with", "mock_response")
    flags = {name: body.pop(name, None) for name in PARAMS[1:]}
    for name, value in flags.items():
        if value is not None and not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false", name)
    return MockRequest(response, group if flags["mock_testing_fallbacks"] else None,
                       bool(flags["mock_testing_rate_limit_error"]), bool(flags["mock_timeout"]))
