"""LiteLLM's config.yaml, parsed into typed structs.

Every section LiteLLM users write is accepted. Keys we know are typed and
checked; keys we do not know are reported as warnings so an existing config
starts, while a wrong type, a missing environment variable or an unknown
provider stops the start with one message that names the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from gateway.durations import PATTERN as DURATION

ENV_PREFIX = "os.environ/"
# Where the store and the spool were, whatever the config's name, before they were named after it.
LEGACY_DATABASE = "gateway.db"
LEGACY_SPOOL = "spool"

RoutingStrategy = Literal["simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing",
                          "usage-based-routing-v2", "cost-based-routing"]


class ConfigError(Exception):
    """A config that must not start; the message names the offending field."""


class Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class LiteLLMParams(Struct):
    model: str
    api_base: str | None = None
    api_key: str | None = None
    custom_llm_provider: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    weight: float | None = None
    max_retries: int | None = None
    num_retries: int | None = None  # this deployment's retries, over router_settings' (LiteLLM's order)
    max_parallel_requests: int | None = None
    ssl_verify: bool | str | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    output_cost_per_image: float | None = None
    # Media and rerank prices, LiteLLM's names: audio transcribed (a second), speech made (a character of
    # `input`), a rerank query (a search unit). See gateway/media.py.
    input_cost_per_second: float | None = None
    input_cost_per_character: float | None = None
    input_cost_per_query: float | None = None
    # What cached, cache-written and reasoning tokens cost; each left out costs as input (or output) does.
    cache_read_input_token_cost: float | None = None
    cache_creation_input_token_cost: float | None = None
    cache_creation_input_token_cost_above_1hr: float | None = None
    output_cost_per_reasoning_token: float | None = None
    mock_response: str | None = None
    organization: str | None = None
    api_version: str | None = None
    extra_headers: dict[str, str] | None = None
    litellm_credential_name: str | None = None  # api_key, api_base, api_version from this credential
    # Azure (gateway/azure.py): a static Entra ID token, or a service principal's client credentials.
    azure_ad_token: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    azure_scope: str | None = None
    azure_authority_host: str | None = None
    # Vertex AI (gateway/vertex.py); LiteLLM reads each under both names.
    vertex_project: str | None = None
    vertex_location: str | None = None
    vertex_credentials: str | dict[str, Any] | None = None  # a service-account JSON: a path, the JSON, or a map
    vertex_ai_project: str | None = None
    vertex_ai_location: str | None = None
    vertex_ai_credentials: str | dict[str, Any] | None = None
    # AWS Bedrock (gateway/bedrock/auth.py): SigV4 credentials, else api_key as a Bedrock API key, else
    # botocore's chain (the AWS_* variables, the profile); the region names the endpoint unless one is given.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    aws_region_name: str | None = None
    aws_profile_name: str | None = None
    aws_bedrock_runtime_endpoint: str | None = None


class ModelEntry(Struct):
    model_name: str
    litellm_params: LiteLLMParams
    # Free-form in LiteLLM (id, mode, base_model, descriptions, prices...): kept
    # as written so /model/info shows it back; the keys we use are checked in
    # router.py.
    model_info: dict[str, Any] = {}


class CredentialConfig(Struct):
    """LiteLLM's `credential_list` entry: settings models name with litellm_credential_name."""

    credential_name: str
    credential_values: dict[str, Any] = {}
    credential_info: dict[str, Any] = {}


class AliasTarget(Struct):
    model: str
    hidden: bool = False


class RouterSettings(Struct):
    routing_strategy: RoutingStrategy = "simple-shuffle"
    model_group_alias: dict[str, str | AliasTarget] = {}
    num_retries: int | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    retry_after: float | None = None
    allowed_fails: int | None = None
    cooldown_time: float | None = None
    fallbacks: list[dict[str, list[str]]] = []
    context_window_fallbacks: list[dict[str, list[str]]] = []
    content_policy_fallbacks: list[dict[str, list[str]]] = []
    enable_pre_call_checks: bool | None = None
    default_max_parallel_requests: int | None = None
    redis_host: str | None = None
    redis_port: int | None = None
    redis_password: str | None = None
    redis_url: str | None = None


class ClusterNodeAddress(Struct):
    host: str
    port: int


class RedisConnection(Struct):
    """A Redis as LiteLLM's `litellm_settings.cache_params` and `general_settings.coordination_redis` name
    one: a URL, a host, Sentinel's nodes and service name, or a Cluster's startup nodes (read in redis_client.py)."""

    type: str | None = None  # cache_params: "redis"; LiteLLM's other cache types name no Redis
    url: str | None = None
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    ssl: bool | None = None
    # TLS details, under redis-py's names as LiteLLM passes them on (read in redis_tls.py)
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool | None = None
    db: int | None = None
    max_connections: int | None = None  # commands in flight per process; more wait for one to finish
    # Cluster: cache_params calls them redis_startup_nodes, coordination_redis startup_nodes.
    redis_startup_nodes: list[ClusterNodeAddress] | None = None
    startup_nodes: list[ClusterNodeAddress] | None = None
    service_name: str | None = None
    sentinel_nodes: list[tuple[str, int]] | None = None
    sentinel_password: str | None = None


class GeneralSettings(Struct):
    master_key: str | None = None
    database_url: str | None = None
    max_request_size_mb: float | None = None
    max_response_size_mb: float | None = None
    litellm_key_header_name: str | None = None
    use_x_forwarded_for: bool | None = None
    health_check_interval: float | None = None
    background_health_checks: bool | None = None
    store_model_in_db: bool | None = None
    # Where else a request's end user may be named: a header, or LiteLLM's mappings with role "customer".
    user_header_name: str | None = None
    user_header_mappings: list[dict[str, Any]] = []
    moderation_model: str | None = None  # what /moderations uses when the request names no model
    custom_key_generate: str | None = None  # `module.function`: an async function that may refuse /key/generate
    # LiteLLM adds the master key's caller (user `default_user_id`) to each team it makes, as an admin, unless this.
    disable_auto_add_proxy_admin_to_teams: bool | None = None
    # Spend records older than this are dropped ("30d"); how often that runs (a day unless set).
    maximum_spend_logs_retention_period: str | None = None
    maximum_spend_logs_retention_interval: str | None = None
    maximum_spend_logs_cleanup_cron: str | None = None  # accepted; the interval above is what schedules
    coordination_redis: RedisConnection | None = None  # LiteLLM's Redis for limits, budgets and sync


class TeamKeyGeneration(Struct):
    allowed_team_member_roles: list[str] | None = None
    required_params: list[str] | None = None


class PersonalKeyGeneration(Struct):
    allowed_user_roles: list[str] | None = None
    required_params: list[str] | None = None


class KeyGenerationSettings(Struct):
    """Who other than an admin may call /key/generate, and what they must set (LiteLLM's names)."""

    team_key_generation: TeamKeyGeneration | None = None
    personal_key_generation: PersonalKeyGeneration | None = None


class LiteLLMSettings(Struct):
    drop_params: bool | None = None
    modify_params: bool | None = None
    num_retries: int | None = None
    request_timeout: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    success_callback: list[str] = []
    failure_callback: list[str] = []
    callbacks: list[str] = []
    set_verbose: bool | None = None
    json_logs: bool | None = None
    turn_off_message_logging: bool | None = None
    ssl_verify: bool | str | None = None
    require_auth_for_metrics_endpoint: bool | None = None
    default_key_generate_params: dict[str, Any] = {}
    upperbound_key_generate_params: dict[str, Any] = {}
    # The budget of end users that have none of their own: an amount, or a budget made with /budget/new.
    max_end_user_budget: float | None = None
    max_end_user_budget_id: str | None = None
    public_model_groups: list[str] = []
    key_generation_settings: KeyGenerationSettings | None = None
    # Response caching is not done here; a Redis named in cache_params is still the one limits are shared in.
    cache: bool | None = None
    cache_params: RedisConnection | None = None


class PluginSpec(Struct):
    """A plugin in the chain: a built-in by name, or any class by dotted path (`pkg.mod:Class`)."""

    name: str
    path: str | None = None
    enabled: bool = True
    settings: dict[str, Any] = {}


class TeamConfig(Struct):
    """A team declared in config.yaml; it is written to the store at every start."""

    team_id: str
    team_alias: str | None = None
    models: list[str] = []
    max_budget: float | None = None
    budget_limit: float | None = None  # the older name operators still write
    budget_duration: str | None = None
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    max_parallel_requests: int | None = None
    blocked: bool = False
    metadata: dict[str, Any] = {}


class GatewaySettings(Struct):
    """Settings of ours that LiteLLM has no key for."""

    # None: the default chain. A list: exactly these plugins, in this order.
    plugins: list[str | PluginSpec] | None = None
    # The embedded SQLite store, used when no database_url is set; relative to the config file.
    # Empty: named after the config file, so prod.yaml's store is prod.db.
    database_path: str = ""
    # Spend records wait here until the store has them; relative to the config file. Empty: prod.spool.
    spool_dir: str = ""
    # LiteLLM has answered an exceeded budget with 400, 422 and 429 over the years.
    budget_exceeded_status: int = 429
    # Output tokens reserved against budgets when a request gives no max_tokens.
    reserve_output_tokens: int = 1024
    # Prefix of every Redis key this gateway writes, so several gateways can share one Redis.
    redis_key_prefix: str = "llmgw"
    # The longest a request waits for Redis (or the node's shared state) before the failure policy applies.
    redis_timeout: Annotated[float, msgspec.Meta(gt=0)] = 0.25
    # When Redis is unreachable, rate limits, budgets and deployment limits are kept by each process
    # (true), or requests that need them get 503 (false).
    fail_open: bool = True
    # When every deployment of a group is cooling down: 503, or 429 as LiteLLM answers.
    cooldown_status: int = 503
    # Beyond this many requests in flight in one process, new ones get 503 at once (None: no cap).
    max_in_flight: int | None = None
    # How often the store's change log is read for changes made on other instances.
    change_poll_interval: float = 0.25
    # How often spooled spend records are written to the store, in one batch.
    spend_write_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.5

    path_prefixes: list[str] = []
    trusted_proxies: list[str] = []
    # Origins a browser app may call the gateway from, as LiteLLM allows every one; [] turns CORS off.
    cors_allow_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    tracking_header_prefix: str = "x-litellm-"
    drain_timeout: float = 30.0
    connect_timeout: float = 10.0
    # How long an idle upstream connection is kept for the next request.
    upstream_keepalive_timeout: float = 15.0
    health_check_timeout: float = 10.0


class Config(Struct):
    model_list: list[ModelEntry] = []
    general_settings: GeneralSettings = msgspec.field(default_factory=GeneralSettings)
    litellm_settings: LiteLLMSettings = msgspec.field(default_factory=LiteLLMSettings)
    router_settings: RouterSettings = msgspec.field(default_factory=RouterSettings)
    environment_variables: dict[str, str] = {}
    gateway_settings: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    teams: list[TeamConfig] = []
    credential_list: list[CredentialConfig] = []
    # Filled as the file is read, never from it: the settings written as os.environ/NAME, by their dotted
    # path (model_list[0].litellm_params.api_key), so what shows the config can name the variable, not its value.
    env_references: dict[str, str] = {}


def load_config(path: str | Path, warn: list[str] | None = None) -> Config:
    """Read, resolve and type-check a config file; unknown keys go to `warn`."""
    path = Path(path)
    config = _parse(_with_includes(_read_yaml(path), path, {path.resolve()}), warn)
    settings = config.gateway_settings
    folder = path.resolve().parent
    database = folder / (settings.database_path or f"{path.stem}.db")
    spool = folder / (settings.spool_dir or f"{path.stem}.spool")
    uses_database_path = not (config.general_settings.database_url or os.environ.get("DATABASE_URL"))
    if warn is not None and uses_database_path and not settings.database_path:
        warning = legacy_store_warning(database, spool)
        if warning is not None:
            warn.append(warning)
    settings.database_path, settings.spool_dir = str(database), str(spool)
    return config


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None


def _with_includes(raw: Any, path: Path, seen: set[Path]) -> Any:
    """LiteLLM's `include:` (a file or a list, relative to the including file): lists such as
    model_list are joined, mappings merged with the including file's keys winning, and an included
    file may include others."""
    if not isinstance(raw, dict) or "include" not in raw:
        return raw if raw is not None else {}
    raw = dict(raw)
    names = raw.pop("include")
    for name in names if isinstance(names, list) else [names]:
        if not isinstance(name, str):
            raise ConfigError(f"{path}: include: expected file names, got {name!r}")
        included_path = (path.parent / name).resolve()
        if included_path in seen:
            raise ConfigError(f"{path}: include: {name} includes itself")
        included = _with_includes(_read_yaml(included_path), included_path, seen | {included_path})
        if not isinstance(included, dict):
            raise ConfigError(f"{included_path}: an included file must be a mapping at the top level")
        raw = _merged(included, raw)
    return raw


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        before = merged.get(key)
        if isinstance(before, list) and isinstance(value, list):
            merged[key] = before + value
        elif isinstance(before, dict) and isinstance(value, dict):
            merged[key] = _merged(before, value)
        else:
            merged[key] = value
    return merged


def legacy_store_warning(database: Path, spool: Path) -> str | None:
    """Why a store named after its config is new while the one older versions named gateway.db is next to it."""
    legacy = database.with_name(LEGACY_DATABASE)
    if database.exists() or not legacy.exists():
        return None
    keep = f"gateway_settings.database_path: {LEGACY_DATABASE}"
    legacy_spool = database.with_name(LEGACY_SPOOL)
    if legacy_spool.is_dir() and legacy_spool != spool:
        keep += f" and spool_dir: {LEGACY_SPOOL}"
    return (f"the SQLite store is now named after the config: this start opens a new store at {database}, "
            f"not {legacy}, the one older versions used; set {keep} to keep using the old store")


def parse_config(raw: object, warn: list[str] | None = None) -> Config:
    """A config with no file to name its state after: gateway.db and spool, as before, relative to the working
    directory."""
    config = _parse(raw, warn)
    settings = config.gateway_settings
    settings.database_path = settings.database_path or LEGACY_DATABASE
    settings.spool_dir = settings.spool_dir or LEGACY_SPOOL
    return config


def _parse(raw: object, warn: list[str] | None) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping at the top level")
    # An empty section (`general_settings:` with everything commented out) is YAML null; LiteLLM reads {}.
    raw = {k: v for k, v in raw.items() if v is not None}
    env = raw.get("environment_variables") or {}
    if not isinstance(env, dict):
        raise ConfigError("environment_variables: expected a mapping of NAME: value")
    for name, value in env.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"environment_variables.{name}: expected a plain value")
        os.environ[str(name)] = str(value).lower() if isinstance(value, bool) else str(value)
    raw["environment_variables"] = {str(k): os.environ[str(k)] for k in env}
    raw.pop("env_references", None)
    references: dict[str, str] = {}
    resolved = _resolve_env(raw, "", references)
    if warn is not None:
        warn.extend(unknown_keys(Config, resolved, ""))
    try:
        config = msgspec.convert(resolved, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_with_valid_values(_readable(str(exc)), str(exc))) from None
    config.env_references = references
    general = config.general_settings
    for name in ("maximum_spend_logs_retention_period", "maximum_spend_logs_retention_interval"):
        value = getattr(general, name)
        if value is not None and not DURATION.match(str(value).strip()):
            raise ConfigError(f"general_settings.{name}: {value!r} is not a duration; write a number and a unit: "
                              "7d, 24h, 60m, 3600s")
    if not config.model_list and not config.general_settings.store_model_in_db:
        strays = [k for k in resolved if k not in Config.__struct_fields__]
        hint = f" (unknown top-level keys: {', '.join(strays)}; a typo?)" if strays else ""
        raise ConfigError(f"model_list is empty: the gateway would serve no model{hint}. List deployments under "
                          "model_list, or set general_settings.store_model_in_db: true to add them later")
    if warn is not None and (ignored := ignored_settings(resolved)):
        warn.append(f"accepted for LiteLLM compatibility, but the gateway does not act on: {', '.join(ignored)}")
    return config


# LiteLLM settings a config may carry that change nothing here (the gateway passes bodies through,
# logs at its own level, and reads client addresses from trusted_proxies).
IGNORED_SETTINGS = {
    "litellm_settings": ("drop_params", "set_verbose", "modify_params", "cache"),
    "router_settings": ("enable_pre_call_checks",),
    "general_settings": ("max_response_size_mb", "use_x_forwarded_for", "health_check_interval",
                         "background_health_checks", "maximum_spend_logs_cleanup_cron"),
}


def ignored_settings(raw: dict[str, Any]) -> list[str]:
    found = []
    for section, names in IGNORED_SETTINGS.items():
        values = raw.get(section)
        if isinstance(values, dict):
            found += [f"{section}.{name}" for name in names if values.get(name) not in (None, False)]
    return found


def _with_valid_values(readable: str, message: str) -> str:
    """An invalid enum value's error, with the values the field takes."""
    text, sep, at = message.rpartition(" - at `")
    if not sep or not text.startswith("Invalid enum value"):
        return readable
    node: Any = msgspec.inspect.type_info(Config)
    for part in at.rstrip("`").removeprefix("$.").split("."):
        name = part.split("[")[0]
        fields = {f.name: f.type for f in node.fields} if isinstance(node, msgspec.inspect.StructType) else {}
        node = fields.get(name)
        while isinstance(node, (msgspec.inspect.UnionType, msgspec.inspect.ListType)):
            inner = node.types if isinstance(node, msgspec.inspect.UnionType) else (node.item_type,)
            node = next((t for t in inner if not isinstance(t, msgspec.inspect.NoneType)), None)
    if isinstance(node, msgspec.inspect.LiteralType):
        return f"{readable}; valid values: {', '.join(str(v) for v in node.values)}"
    return readable


def _resolve_env(value: Any, where: str, references: dict[str, str]) -> Any:
    """`os.environ/NAME` replaced by the variable's value; where each was, kept in `references`."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if name not in os.environ:
            raise ConfigError(f"{where or 'config'}: environment variable {name} is not set")
        references[where] = name
        return os.environ[name]
    if isinstance(value, dict):
        return {k: _resolve_env(v, _join(where, str(k)), references) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, f"{where}[{i}]", references) for i, v in enumerate(value)]
    return value


def unknown_keys(struct_type: type, data: Any, where: str) -> list[str]:
    """Keys in `data` that `struct_type` does not declare, as dotted paths."""
    if not isinstance(data, dict):
        return []
    info = msgspec.inspect.type_info(struct_type)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {f.encode_name: f.type for f in info.fields}
    found = []
    for key, value in data.items():
        path = _join(where, str(key))
        if key not in fields:
            found.append(f"unknown key {path} is ignored")
            continue
        found.extend(_unknown_in(fields[key], value, path))
    return found


def _unknown_in(field: msgspec.inspect.Type, value: Any, where: str) -> list[str]:
    if isinstance(field, msgspec.inspect.StructType):
        return unknown_keys(field.cls, value, where)
    if isinstance(field, msgspec.inspect.ListType) and isinstance(value, list):
        return [w for i, v in enumerate(value) for w in _unknown_in(field.item_type, v, f"{where}[{i}]")]
    if isinstance(field, msgspec.inspect.DictType) and isinstance(value, dict):
        return [w for k, v in value.items() for w in _unknown_in(field.value_type, v, _join(where, str(k)))]
    if isinstance(field, msgspec.inspect.UnionType):
        structs = [t for t in field.types if isinstance(t, msgspec.inspect.StructType)]
        if len(structs) == 1 and isinstance(value, dict):
            return _unknown_in(structs[0], value, where)
    return []


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _readable(message: str) -> str:
    """msgspec says `... - at `$.model_list[0].rpm``; lead with the field instead."""
    text, sep, at = message.rpartition(" - at `")
    if not sep:
        return message
    return f"{at.rstrip('`').removeprefix('$.').removeprefix('$')}: {text}"
