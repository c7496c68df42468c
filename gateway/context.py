"""What the gateway knows about one request while it is being served."""

from __future__ import annotations

import ipaddress
import itertools
import os
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from aiohttp import web

from gateway.anthropic.requests import reserved_tokens as messages_reserved
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.protocols import ANTHROPIC_ROUTES
from gateway.router import Deployment, Route
from gateway.usage import Usage, reserved_tokens

if TYPE_CHECKING:
    from gateway.admission import Claim
    from gateway.end_users import EndUser
    from gateway.limits.deployments import Admission
    from gateway.mock_request import MockRequest
    from gateway.stream_usage import StreamMeter

MAX_REQUEST_ID = 128
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BudgetStanding(NamedTuple):
    """One budget a request falls under, as it stood when the request was admitted."""

    counter: str  # `key:<token>`, `team:<id>`, ...
    limit: float
    spent_before: float


class Ctx:
    """One request. Plugins keep their own per-request objects in `plugin_state` (through
    Plugin.hold / Plugin.held), never in another plugin's; what they share is a typed slot here."""

    __slots__ = (
        "request", "request_id", "endpoint", "body", "requested_model", "model_group",
        "deployment", "upstream_model", "stream", "status", "error", "started",
        "upstream_headers_at", "first_byte_at", "ended", "_client_ip", "trusted", "reached", "caller",
        "plugin_state", "usage", "cost", "started_wall", "output", "sent_at", "admission",
        "budgets", "_reserved", "meter", "response", "client_left", "mock", "retries", "fallbacks",
        "timeout_s", "end_user", "max_retries", "claims", "pinned", "stored", "whole",
    )

    def __init__(self, request: web.Request, endpoint: str, trusted: tuple[IPNetwork, ...], plugins: int) -> None:
        self.request = request
        headers = request.headers
        self.request_id = _request_id(headers.get("X-Request-ID") or headers.get("x-litellm-call-id"))
        self.endpoint = endpoint
        self.body: dict[str, Any] | None = None
        self.requested_model: str | None = None
        self.model_group: str | None = None
        self.deployment: Deployment | None = None
        self.upstream_model: str | None = None
        self.stream = False
        self.status = 0
        self.error: ApiError | None = None
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.sent_at: float | None = None  # the last attempt's request left for the upstream
        self.upstream_headers_at: float | None = None
        self.first_byte_at: float | None = None
        self.ended: float | None = None
        self.trusted = trusted
        self._client_ip: str | None = None
        self.reached = 0
        self.caller: Caller | None = None  # once auth has run
        self.plugin_state: list[object | None] = [None] * plugins
        self.usage: Usage | None = None  # known before the headers go out (non-streaming answers)
        self.cost = 0.0
        self.output: bytes | None = None  # the answer as sent, kept only when a plugin needs_output
        self.admission: Admission | None = None  # what the request holds of its deployment's rpm/tpm
        self.budgets: tuple[BudgetStanding, ...] = ()
        self.pinned: Route | None = None  # /v1/responses: to the deployment holding previous_response_id
        self.stored = False  # /v1/responses: the answer is kept upstream, and its id routed back to it
        self.claims: list[Claim] = []  # limits and budgets asked for, taken in one step with the deployment's
        self.mock: MockRequest | None = None  # LiteLLM's testing parameters, when the body had any
        self.retries = 0  # attempts after the first, within a group
        self.fallbacks = 0  # fallback groups tried
        self.timeout_s: float | None = None  # the last attempt's overall timeout
        self.max_retries = 0  # retries the group being tried allows
        self._reserved: tuple[int, int] | None = None
        self.meter: StreamMeter | None = None  # once a stream's headers are out
        self.response: web.StreamResponse | None = None  # once prepared: the answer has started
        self.client_left = False
        self.whole = False  # the client has had the whole answer (a translated stream's end before the upstream's)
        self.end_user: EndUser | None = None  # the customer the request names, once the end_user plugin ran

    def reserved_tokens(self) -> tuple[int, int]:
        """The prompt's tokens and the answer's max_tokens, as limits and budgets reserve them; worked out
        once, when first asked (an Anthropic body's system prompt and tools count too)."""
        if self._reserved is None:
            body = self.body or {}
            self._reserved = messages_reserved(body) if self.endpoint in ANTHROPIC_ROUTES else reserved_tokens(body)
        return self._reserved

    @property
    def client_ip(self) -> str:
        if self._client_ip is None:
            self._client_ip = client_ip(self.request, self.trusted)
        return self._client_ip

    def elapsed_ms(self, since: float | None = None) -> float:
        return ((self.ended or time.perf_counter()) - (since or self.started)) * 1000


# Unique without a syscall per request: a random per-process prefix and a counter.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _request_id(given: str | None) -> str:
    if given and len(given) <= MAX_REQUEST_ID and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def client_ip(request: web.Request, trusted: tuple[IPNetwork, ...]) -> str:
    """The peer, or, when the peer is a trusted proxy, the nearest untrusted hop it reports.

    X-Forwarded-For is read right to left so that a client cannot claim an
    address by sending the header itself: only hops added by trusted proxies
    are skipped.
    """
    peer = request.remote or ""
    if not trusted or not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not is_trusted(hop, trusted):
            return hop
    return peer


def is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def parse_networks(entries: list[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)
