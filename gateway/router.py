"""Model groups, aliases, wildcards and the choice of a deployment within a group."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import msgspec
import orjson
from aiohttp import ClientTimeout

from gateway.access_groups import AccessGroups
from gateway.azure import azure_ai_shape, azure_shape
from gateway.config import Config, ConfigError, LiteLLMParams, ModelEntry
from gateway.limits.buckets import Bucket
from gateway.protocols import Api
from gateway.providers import PROVIDERS, Provider, split_model, upstream_base
from gateway.upstream_shape import Shape
from gateway.vertex import vertex_shape

if TYPE_CHECKING:
    from gateway.bedrock.auth import Signer
    from gateway.upstream_http import Endpoint, Pool

DEFAULT_TIMEOUT = 600.0
MODES = ("chat", "completion", "embedding", "moderation", "image_generation", "audio_transcription", "audio_speech",
         "rerank")
LATENCY_SMOOTHING = 0.3


class Deployment:
    """One upstream model behind a group name, with the live numbers routing reads."""

    __slots__ = (
        "id", "group", "entry", "provider", "model_template", "api_base", "base_url",
        "headers", "timeout", "stream_timeout", "weight", "mode", "in_flight", "latency",
        "failures", "failures_since", "cooldown_until", "alone", "cooldowns",
        "total_seconds", "stream_seconds", "connect_seconds", "rpm", "tpm", "limits", "limited_until",
        "pool_size", "ssl_verify", "endpoint", "pool", "usage_minute", "usage_tokens", "unit_cost",
        "num_retries", "declared", "from_store", "fingerprint", "protocol", "shape", "serves_responses", "signer",
    )

    def __init__(self, entry: ModelEntry, index: int | str, connect_timeout: float, default_timeout: float | None,
                 default_stream_timeout: float | None, default_parallel: int | None = None,
                 default_ssl_verify: bool | str = True, default_retries: int = 0,
                 declared: ModelEntry | None = None, from_store: bool = False, fingerprint: bytes = b"") -> None:
        """`entry` as routed (a credential's settings filled in); `declared` as written, which is what is
        shown and what the id derives from. `index` names it in errors: its place in model_list, or a prefix."""
        params = entry.litellm_params
        where = f"model_list[{index}]" if isinstance(index, int) else index
        self.declared = declared or entry
        self.from_store = from_store
        self.fingerprint = fingerprint
        provider_name, self.model_template = split_model(params.model, params.custom_llm_provider)
        provider = PROVIDERS.get(provider_name)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            raise ConfigError(
                f"{_dot(where)}litellm_params.model: unknown provider {provider_name!r} in {params.model!r}; "
                f"write the model as <provider>/<name> with one of: {known}"
            )
        self.provider: Provider = provider
        self.protocol = provider.protocol  # the API it speaks upstream
        self.serves_responses = serves_responses(provider, entry.model_info)
        self.entry = entry
        self.group = entry.model_name
        self.id = _deployment_id(self.declared, where)
        self.signer: Signer | None = None
        shaper = SHAPES.get(provider_name)
        self.shape: Shape | None = None
        if shaper is not None:
            shape = self.shape = shaper(self.model_template, params,
                                        _upstream_headers(provider, None, params.organization, params.extra_headers),
                                        f"{_dot(where)}litellm_params.")
            self.api_base, self.base_url, self.headers = shape.api_base, shape.base_url, shape.headers
            self.model_template, self.protocol = shape.model, shape.protocol
        else:
            api_base = (params.api_base or (os.environ.get(provider.api_base_env) if provider.api_base_env else None)
                        or provider.default_api_base)
            api_key = params.api_key
            if provider.protocol is Api.BEDROCK:
                from gateway.bedrock.auth import bedrock_signer  # botocore: imported only when Bedrock is used
                self.signer = bedrock_signer(params, f"{_dot(where)}litellm_params")
                api_base = api_base or params.aws_bedrock_runtime_endpoint or os.environ.get(
                    "AWS_BEDROCK_RUNTIME_ENDPOINT") or f"https://bedrock-runtime.{self.signer.region}.amazonaws.com"
                api_key = self.signer.bearer  # None when each request is signed instead
            if api_base is None and not provider.is_mock:
                raise ConfigError(f"{_dot(where)}litellm_params.api_base: provider {provider_name!r} needs an "
                                  "api_base")
            if api_base is not None and not api_base.startswith(("http://", "https://")):
                raise ConfigError(f"{_dot(where)}litellm_params.api_base: {api_base!r} is not an http(s) URL")
            self.api_base = api_base or ""
            self.base_url = upstream_base(provider, api_base) if api_base else ""
            self.headers = _upstream_headers(provider, api_key, params.organization, params.extra_headers)
        mode = entry.model_info.get("mode", "chat")
        if mode not in MODES:
            raise ConfigError(f"{_dot(where)}model_info.mode: {mode!r} is not one of {', '.join(MODES)}")
        self.mode: str = mode
        total = self.total_seconds = params.timeout or default_timeout or DEFAULT_TIMEOUT
        self.stream_seconds = params.stream_timeout or default_stream_timeout  # None: `total` applies
        self.connect_seconds = connect_timeout
        self.timeout = ClientTimeout(total=total, sock_connect=connect_timeout)
        # `connect` bounds the wait for a free connection when the deployment's pool is full.
        self.stream_timeout = ClientTimeout(total=None, connect=total, sock_connect=connect_timeout,
                                            sock_read=self.stream_seconds or total)
        self.rpm = params.rpm
        self.tpm = params.tpm
        if params.num_retries is not None and params.num_retries < 0:
            raise ConfigError(f"{where}.litellm_params.num_retries: must be 0 or more")
        # Attempts after the first when a request to this deployment fails: its own, else the router's.
        self.num_retries = params.num_retries if params.num_retries is not None else default_retries
        for name, value in (("rpm", params.rpm), ("tpm", params.tpm)):
            if value is not None and value <= 0:
                raise ConfigError(f"{_dot(where)}litellm_params.{name}: must be above 0")
        # Requests first, then tokens; None when the config sets neither, so routing pays nothing.
        self.limits: list[Bucket] | None = [
            Bucket(f"{kind}:deployment:{self.id}", float(value))
            for kind, value in (("rpm", params.rpm), ("tpm", params.tpm)) if value is not None] or None
        self.limited_until = 0.0  # full for its rpm/tpm until then, as far as this instance knows
        self.pool_size = _pool_size(params.max_parallel_requests, params.rpm, params.tpm, default_parallel)
        if self.pool_size is not None and self.pool_size <= 0:
            raise ConfigError(f"{_dot(where)}litellm_params.max_parallel_requests: must be above 0")
        self.ssl_verify = (ssl_verify_setting(params.ssl_verify, f"{_dot(where)}litellm_params.ssl_verify")
                           if params.ssl_verify is not None else default_ssl_verify)
        self.endpoint: Endpoint  # where requests go, and the pool they go through; set by upstreams.Pools
        self.pool: Pool
        self.weight = float(params.weight or params.rpm or params.tpm or 1)
        if self.weight <= 0:
            raise ConfigError(f"{_dot(where)}litellm_params.weight: must be above 0")
        self.in_flight = 0
        self.failures = 0
        self.failures_since = 0.0
        self.cooldown_until = 0.0
        self.cooldowns = 0  # times it was put to rest, for metrics
        self.alone = True
        self.latency: float | None = None
        self.usage_minute = 0  # the minute (epoch seconds // 60) that usage_tokens counts
        self.usage_tokens = 0.0
        self.unit_cost = 0.0  # input plus output price of a token, for cost-based routing; set with the prices

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.group

    def upstream_model(self, requested: str) -> str:
        if "*" not in self.model_template:
            return self.model_template
        captured = _capture(self.group, requested)
        return self.model_template.replace("*", captured)

    def record_usage(self, tokens: float, now: float) -> None:
        minute = int(now // 60)
        if minute != self.usage_minute:
            self.usage_minute, self.usage_tokens = minute, 0.0
        self.usage_tokens += tokens

    def tokens_this_minute(self, now: float) -> float:
        return self.usage_tokens if int(now // 60) == self.usage_minute else 0.0

    def record_latency(self, seconds: float) -> None:
        previous = self.latency
        self.latency = seconds if previous is None else previous + LATENCY_SMOOTHING * (seconds - previous)

    def public_params(self) -> dict[str, object]:
        """litellm_params as /model/info shows them: as declared, without the keys, tokens and credentials."""
        params: dict[str, object] = msgspec.to_builtins(self.declared.litellm_params)
        for secret in SECRET_PARAMS:
            params.pop(secret, None)
        return params


# How each cloud provider's deployments reach it (gateway/upstream_shape.py); the rest post `{api_base}/{endpoint}`.
SHAPES: dict[str, Callable[[str, LiteLLMParams, dict[str, str], str], Shape]] = {
    "azure": azure_shape, "azure_ai": azure_ai_shape, "vertex_ai": vertex_shape}
SECRET_PARAMS = ("api_key", "extra_headers", "azure_ad_token", "client_secret", "vertex_credentials",
                 "vertex_ai_credentials", "aws_secret_access_key", "aws_session_token")


class CoolingDown(Exception):
    """No deployment of the group is available; `retry_after` is when the first one is back.
    `at_limit`: some are only at their rpm/tpm, rather than all resting after failures."""

    def __init__(self, group: str, retry_after: float, at_limit: bool = False) -> None:
        super().__init__(group)
        self.group = group
        self.retry_after = retry_after
        self.at_limit = at_limit


FAILURE_WINDOW = 60.0
# A deployment found full is left out at least this long, so a refill due any moment cannot spin routing.
MIN_LIMITED = 0.05


class Route(NamedTuple):
    group: str
    deployment: Deployment
    upstream_model: str


Strategy = Callable[[list[Deployment]], Deployment]


def simple_shuffle(deployments: list[Deployment]) -> Deployment:
    if len(deployments) == 1:
        return deployments[0]
    return random.choices(deployments, weights=[d.weight for d in deployments])[0]


def least_busy(deployments: list[Deployment]) -> Deployment:
    fewest = min(d.in_flight for d in deployments)
    return random.choice([d for d in deployments if d.in_flight == fewest])


def lowest_latency(deployments: list[Deployment]) -> Deployment:
    # An unmeasured deployment goes first so that every one gets a latency.
    untried = [d for d in deployments if d.latency is None]
    if untried:
        return random.choice(untried)
    return min(deployments, key=lambda d: d.latency or 0.0)


def lowest_usage(deployments: list[Deployment]) -> Deployment:
    """LiteLLM's usage-based routing: the fewest tokens this minute, as this process counted them
    (those at their rpm/tpm are left out before); requests in flight break ties."""
    now = time.time()
    least = min(d.tokens_this_minute(now) for d in deployments)
    fewest = [d for d in deployments if d.tokens_this_minute(now) == least]
    return least_busy(fewest) if len(fewest) > 1 else fewest[0]


def cheapest(deployments: list[Deployment]) -> Deployment:
    """LiteLLM's cost-based routing: the lowest price a token (input plus output), ties at random."""
    lowest = min(d.unit_cost for d in deployments)
    return random.choice([d for d in deployments if d.unit_cost == lowest])


STRATEGIES: dict[str, Strategy] = {
    "simple-shuffle": simple_shuffle,
    "least-busy": least_busy,
    "latency-based-routing": lowest_latency,
    "usage-based-routing": lowest_usage,
    "usage-based-routing-v2": lowest_usage,
    "cost-based-routing": cheapest,
}


class FailurePeers(Protocol):
    """The other processes of the node, when there are: failures are counted for all of them at once."""

    async def failure(self, deployment: Deployment, retry_after: float | None) -> bool:
        """Counted by the node, once every process has any cooldown it caused: True; False if the node
        cannot be told (or does not answer in time)."""

    def success(self, deployment: Deployment) -> None: ...


class Router:
    def __init__(self, config: Config) -> None:
        settings = config.router_settings
        gateway = config.gateway_settings
        self.pick: Strategy = STRATEGIES[settings.routing_strategy]
        self.clock = time.monotonic
        self.allowed_fails = settings.allowed_fails if settings.allowed_fails is not None else 3
        self.cooldown_time = settings.cooldown_time if settings.cooldown_time is not None else 5.0
        self.num_retries = (settings.num_retries if settings.num_retries is not None
                            else config.litellm_settings.num_retries or 0)
        if self.num_retries < 0:
            raise ConfigError("router_settings.num_retries: must be 0 or more")
        self.retry_after = settings.retry_after or 0.0
        self.cooldown_status = config.gateway_settings.cooldown_status
        self.fallbacks = _fallback_map(settings.fallbacks)
        self.context_window_fallbacks = _fallback_map(settings.context_window_fallbacks)
        self.content_policy_fallbacks = _fallback_map(settings.content_policy_fallbacks)
        self.deployments: list[Deployment] = []
        self.by_id: dict[str, Deployment] = {}
        self.groups: dict[str, list[Deployment]] = {}
        self.wildcards: list[tuple[str, list[Deployment]]] = []
        self.has_tpm = False  # some deployment settles tokens, so usage is read for every request
        self.peers: FailurePeers | None = None
        if settings.default_max_parallel_requests is not None and settings.default_max_parallel_requests <= 0:
            raise ConfigError("router_settings.default_max_parallel_requests: must be above 0")
        self.connect_timeout = gateway.connect_timeout
        self.default_timeout = settings.timeout or config.litellm_settings.request_timeout
        self.default_stream_timeout = settings.stream_timeout
        self.default_parallel = settings.default_max_parallel_requests
        self.default_ssl_verify = default_ssl_verify(config)
        self.config_credentials = {c.credential_name: c.credential_values for c in config.credential_list}
        built: list[Deployment] = []
        seen_ids: dict[str, int] = {}
        for index, entry in enumerate(config.model_list):
            resolved = with_credential(entry, self.config_credentials)
            if resolved is None:
                continue  # its credential is in the store: built once the store is read (gateway.catalog)
            deployment = self.build(resolved, index, entry)
            if deployment.id in seen_ids:
                raise ConfigError(
                    f"model_list[{index}].model_info.id: {deployment.id!r} is already used by "
                    f"model_list[{seen_ids[deployment.id]}]"
                )
            seen_ids[deployment.id] = index
            built.append(deployment)
        self.replace(built)
        for setting, mapping in (("fallbacks", self.fallbacks),
                                 ("context_window_fallbacks", self.context_window_fallbacks),
                                 ("content_policy_fallbacks", self.content_policy_fallbacks)):
            for source, targets in mapping.items():
                for target in targets:
                    if target not in self.groups and self._wildcard(target) is None:
                        raise ConfigError(f"router_settings.{setting}.{source}: {target!r} is not a model_name "
                                          "in model_list")
        self.aliases: dict[str, str] = {}
        self.hidden_aliases: set[str] = set()
        for alias, given in settings.model_group_alias.items():
            name = given if isinstance(given, str) else given.model
            if name not in self.groups and self._wildcard(name) is None:
                raise ConfigError(
                    f"router_settings.model_group_alias.{alias}: {name!r} is not a model_name in model_list"
                )
            self.aliases[alias] = name
            if not isinstance(given, str) and given.hidden:
                self.hidden_aliases.add(alias)
        self.access_groups = AccessGroups.from_deployments(
            (d.group, d.entry.model_info.get("access_groups")) for d in self.deployments)

    def build(self, entry: ModelEntry, where: int | str, declared: ModelEntry | None = None,
              from_store: bool = False) -> Deployment:
        """A deployment with this router's defaults; ConfigError when the entry is not valid."""
        return Deployment(entry, where, self.connect_timeout, self.default_timeout, self.default_stream_timeout,
                          self.default_parallel, self.default_ssl_verify, self.num_retries, declared, from_store,
                          msgspec.json.encode((entry, from_store)))

    def replace(self, wanted: list[Deployment]) -> tuple[list[Deployment], list[Deployment]]:
        """Serve exactly `wanted` from now on; (added, removed). A deployment whose id and settings are
        unchanged keeps its object, so its live numbers (in flight, latency, cooldown) and pool carry on.
        Requests under way keep the deployment they picked, removed or not, until they end."""
        kept: list[Deployment] = []
        added: list[Deployment] = []
        for deployment in wanted:
            current = self.by_id.get(deployment.id)
            if current is not None and current.fingerprint == deployment.fingerprint:
                kept.append(current)
            else:
                kept.append(deployment)
                added.append(deployment)
        staying = {id(d) for d in kept}
        removed = [d for d in self.deployments if id(d) not in staying]
        groups: dict[str, list[Deployment]] = {}
        for deployment in kept:
            groups.setdefault(deployment.group, []).append(deployment)
        for members in groups.values():
            for deployment in members:
                deployment.alone = len(members) == 1
        wildcards = [(name, groups.pop(name)) for name in [g for g in groups if "*" in g]]
        # The most specific pattern wins: `openai/*` before `*`.
        wildcards.sort(key=lambda item: len(item[0].replace("*", "")), reverse=True)
        # All at once, between two awaits: a request sees the old set or the new one, never a mix.
        self.deployments, self.by_id, self.groups, self.wildcards = kept, {d.id: d for d in kept}, groups, wildcards
        self.has_tpm = any(d.tpm is not None for d in kept)
        return added, removed

    def resolve(self, requested: str, exclude: frozenset[str] | set[str] = frozenset()) -> Route | None:
        """A deployment for this name, leaving out those cooling down and, while others remain, those
        in `exclude` (already tried). None for an unknown name; CoolingDown when none is available.
        Deployments at their rpm/tpm are left out like those cooling down."""
        name = self.aliases.get(requested, requested)
        group = self.groups.get(name)
        wildcard = None if group is not None else self._wildcard(name)
        candidates = group if group is not None else wildcard
        if candidates is None:
            return None
        now = self.clock()
        ready = [d for d in candidates if d.cooldown_until <= now and d.limited_until <= now]
        if not ready:
            raise CoolingDown(name, min(max(d.cooldown_until, d.limited_until) for d in candidates) - now,
                              any(d.limited_until > now for d in candidates))
        untried = [d for d in ready if d.id not in exclude] or ready
        deployment = self.pick(untried)
        if group is not None:
            return Route(name, deployment, deployment.model_template)
        return Route(name, deployment, deployment.upstream_model(name))

    def speaks(self, requested: str, api: Api, exclude: frozenset[str] | set[str]) -> bool:
        """Whether a deployment for this name that is not in `exclude`, cooling down or at its limits
        speaks `api`: one that can take a request the others' APIs cannot express."""
        name = self.aliases.get(requested, requested)
        now = self.clock()
        return any(d.protocol is api and d.id not in exclude and d.cooldown_until <= now and d.limited_until <= now
                   for d in self.groups.get(name, ()))

    async def record_failure(self, deployment: Deployment, retry_after: float | None) -> None:
        """An upstream failed: past `allowed_fails` in a minute, or when it asked us to wait, it cools down.
        With peers, this returns once every process has the cooldown, so that the failed request's answer
        cannot reach the client before the next request could reach the deployment again."""
        # The node's parent knows only the config's deployments: a stored one is counted per process.
        if self.peers is not None and not deployment.alone and not deployment.from_store \
                and await self.peers.failure(deployment, retry_after):
            return
        self.count_failure(deployment, retry_after)

    def count_failure(self, deployment: Deployment, retry_after: float | None) -> None:
        """A failure counted in this process (the node's, or one without peers)."""
        if deployment.alone:
            return  # as in LiteLLM: cooling the only deployment of a group would only turn errors into 503s
        now = self.clock()
        if now - deployment.failures_since > FAILURE_WINDOW:
            deployment.failures, deployment.failures_since = 0, now
        deployment.failures += 1
        if retry_after is not None:
            if deployment.cooldown_until <= now:
                deployment.cooldowns += 1
            deployment.cooldown_until = max(deployment.cooldown_until, now + retry_after)
        elif deployment.failures > self.allowed_fails:
            if deployment.cooldown_until <= now:
                deployment.cooldowns += 1
            deployment.cooldown_until = now + self.cooldown_time
            deployment.failures = 0

    def record_success(self, deployment: Deployment) -> None:
        if deployment.failures:
            deployment.failures = 0
            if self.peers is not None:
                self.peers.success(deployment)

    def cool_down(self, deployment_id: str, until: float, counted: bool) -> None:
        """The node put a deployment to rest until `until` (this clock); `counted` in this process's metrics."""
        deployment = self.by_id.get(deployment_id)
        if deployment is None:
            return
        if counted and deployment.cooldown_until <= self.clock():
            deployment.cooldowns += 1
        deployment.cooldown_until = max(deployment.cooldown_until, until)

    def record_at_limit(self, deployment: Deployment, retry_after: float) -> None:
        """Its rpm/tpm is used up: routing passes it over until it has refilled."""
        deployment.limited_until = self.clock() + max(retry_after, MIN_LIMITED)

    def candidates(self, requested: str) -> list[tuple[Deployment, str]]:
        """Every deployment a request for this name could go to, with the model it would be sent."""
        name = self.aliases.get(requested, requested)
        group = self.groups.get(name)
        if group is not None:
            return [(d, d.model_template) for d in group]
        return [(d, d.upstream_model(name)) for d in self._wildcard(name) or []]

    def _wildcard(self, name: str) -> list[Deployment] | None:
        for pattern, deployments in self.wildcards:
            if matches_pattern(pattern, name):
                return deployments
        return None

    def public_names(self) -> Iterable[str]:
        """Model names a client may ask for: groups, then aliases that are not hidden."""
        yield from self.groups
        yield from (a for a in self.aliases if a not in self.hidden_aliases and a not in self.groups)

    def knows(self, name: str) -> bool:
        name = self.aliases.get(name, name)
        return name in self.groups or self._wildcard(name) is not None


def _fallback_map(entries: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """LiteLLM writes fallbacks as a list of one-key maps: [{"gpt-4o": ["claude", "qwen"]}]."""
    found: dict[str, list[str]] = {}
    for entry in entries:
        for group, targets in entry.items():
            found.setdefault(group, []).extend(targets)
    return found


def matches_pattern(pattern: str, name: str) -> bool:
    head, _, tail = pattern.partition("*")
    return len(name) >= len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def _capture(pattern: str, name: str) -> str:
    head, _, tail = pattern.partition("*")
    return name[len(head): len(name) - len(tail)]


def with_credential(entry: ModelEntry, credentials: dict[str, dict[str, Any]]) -> ModelEntry | None:
    """The entry with its litellm_credential_name's settings (api_key, api_base, api_version and the clouds'
    own: Azure's, Vertex's and AWS's) where it sets none itself (as LiteLLM fills them); None when that
    credential is not among `credentials`."""
    name = entry.litellm_params.litellm_credential_name
    if name is None:
        return entry
    values = credentials.get(name)
    if values is None:
        return None
    params = entry.litellm_params
    filled = {field: values[field] for field in CREDENTIAL_FIELDS
              if getattr(params, field) is None and isinstance(values.get(field), str)}
    return msgspec.structs.replace(entry, litellm_params=msgspec.structs.replace(params, **filled)) if filled else entry


CREDENTIAL_FIELDS = ("api_key", "api_base", "api_version", "azure_ad_token", "tenant_id", "client_id", "client_secret",
                     "vertex_project", "vertex_location", "vertex_credentials", "aws_access_key_id",
                     "aws_secret_access_key", "aws_session_token", "aws_region_name")


def _dot(where: str) -> str:
    return f"{where}." if where else ""


def serves_responses(provider: Provider, model_info: dict[str, Any]) -> bool:
    """Whether /v1/responses is relayed to the deployment as it is, rather than translated to its chat
    completions. LiteLLM's rule: an OpenAI-compatible deployment whose `model_info.supported_endpoints` lists
    /v1/responses (or /responses) serves it; without that list, only `openai/` and `azure/` do. A list
    without it makes even an `openai/` deployment (a llama.cpp behind it, say) translated."""
    if provider.protocol is not Api.OPENAI:
        return False
    listed = model_info.get("supported_endpoints")
    if isinstance(listed, list):
        return any(isinstance(e, str) and e.strip("/") in ("v1/responses", "responses") for e in listed)
    return provider.name in ("openai", "azure")


def _deployment_id(entry: ModelEntry, where: str) -> str:
    given = entry.model_info.get("id")
    if given is not None:
        if not isinstance(given, (str, int)) or isinstance(given, bool):
            raise ConfigError(f"{_dot(where)}model_info.id: expected a string")
        return str(given)
    # Stable across restarts and workers, as LiteLLM derives its ids.
    fingerprint = orjson.dumps(
        {"model_name": entry.model_name, "litellm_params": msgspec.to_builtins(entry.litellm_params)},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(fingerprint).hexdigest()


def _pool_size(given: int | None, rpm: int | None, tpm: int | None, default: int | None) -> int | None:
    """LiteLLM's max_parallel_requests for a deployment: its own, else its rpm, else tpm/1000*6, else
    router_settings.default_max_parallel_requests; None for no bound."""
    if given is not None:
        return given
    if rpm is not None:
        return rpm
    if tpm is not None:
        return max(1, int(tpm / 1000 * 6))
    return default


FALSE_WORDS = ("false", "0", "no", "off")
TRUE_WORDS = ("true", "1", "yes", "on")


def ssl_verify_setting(value: bool | str, where: str) -> bool | str:
    """True, False, or the path of a CA bundle to verify against (LiteLLM's three forms)."""
    if isinstance(value, bool):
        return value
    if value.strip().lower() in FALSE_WORDS:
        return False
    if value.strip().lower() in TRUE_WORDS:
        return True
    if not os.path.isfile(value):
        raise ConfigError(f"{where}: {value!r} is neither true, false nor a CA bundle file")
    return value


def default_ssl_verify(config: Config) -> bool | str:
    """SSL_VERIFY in the environment (it wins, as in LiteLLM), else litellm_settings.ssl_verify, else on."""
    from_env = os.environ.get("SSL_VERIFY")
    if from_env:
        return ssl_verify_setting(from_env, "SSL_VERIFY")
    setting = config.litellm_settings.ssl_verify
    return ssl_verify_setting(setting, "litellm_settings.ssl_verify") if setting is not None else True


def _upstream_headers(provider: Provider, api_key: str | None, organization: str | None,
                      extra: dict[str, str] | None) -> dict[str, str]:
    key = api_key or (os.environ.get(provider.api_key_env) if provider.api_key_env else None)
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if key and provider.protocol is Api.ANTHROPIC:
        headers["x-api-key"] = key
    elif key:
        headers["Authorization"] = f"Bearer {key}"
    if organization:
        headers["OpenAI-Organization"] = organization
    if extra:
        headers.update(extra)
    return headers
