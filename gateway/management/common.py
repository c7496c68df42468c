"""What every management route needs: the caller, a typed body, the admin check, wire shapes."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from gateway.config import _readable
from gateway.durations import DurationError, check, iso
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.services import Services
from gateway.store.records import Record

T = TypeVar("T")

SERVICES = web.AppKey("services", Services)

# Bounds that keep a request from storing something absurd or overflowing a BIGINT column.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Names = Annotated[list[Name], msgspec.Meta(max_length=1000)]
MAX_METADATA_BYTES = 65536


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


CALLER_LABEL = "caller_label"  # what the access log names the caller by


async def caller(request: web.Request) -> Caller:
    who = await services(request).authenticator.authenticate(request.headers)
    request[CALLER_LABEL] = who.label
    return who


async def admin(request: web.Request) -> Caller:
    """The caller, who must be the master key or a proxy admin."""
    who = await caller(request)
    if not who.is_admin:
        raise ApiError(403, "Authentication Error, Only proxy admin can be used to generate, delete, update info "
                       f"for new keys/users/teams. Route={request.path}. Your role={who.role}.", "auth_error")
    return who


async def body(request: web.Request, shape: type[T]) -> T:
    try:
        raw = await request.read()
    except (HttpProcessingError, RequestPayloadError) as exc:
        # A body that does not match its Content-Encoding, or a broken chunked body.
        raise bad_request(f"request body could not be read: {exc}", "request_body") from None
    if not raw.strip():
        raw = b"{}"
    try:
        parsed = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise bad_request(f"Invalid JSON payload: {exc}", "request_body") from None
    return validated(parsed, shape, may_hold_nul=b"\\u0000" in raw)


def validated(parsed: Any, shape: type[T], may_hold_nul: bool = True, keep_nulls: bool = False) -> T:
    """A decoded body as `shape`, checked as every management route checks it: shared with the admin UI,
    whose forms become the same Structs. `keep_nulls` keeps a null as a value (a field cleared), where the
    JSON API reads it as left out."""
    try:
        # What is stored is shown back through orjson, which writes no integer past 64 bits: one such
        # number kept in metadata would make every later listing of the record fail.
        orjson.dumps(parsed)
    except TypeError:
        raise bad_request("a number in the request body is out of range: integers must fit in 64 bits",
                          "request_body") from None
    if may_hold_nul and holds_nul(parsed):
        raise bad_request("a string in the request body holds a NUL character (\\u0000), which cannot be stored",
                          "request_body")
    try:
        # As LiteLLM's request models read it: null is the same as leaving a field out (pydantic clients
        # send null for every field they do not set), and "10" is 10 where a number is wanted.
        value = msgspec.convert(parsed if keep_nulls else without_nulls(parsed), type=shape, strict=False)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid request body: {_readable(str(exc))}", _field_of(str(exc))) from None
    metadata = getattr(value, "metadata", None)
    if isinstance(metadata, dict) and len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
        raise bad_request(f"metadata is larger than {MAX_METADATA_BYTES} bytes", "metadata")
    for field in ("duration", "budget_duration", "grace_period"):
        text = getattr(value, field, None)
        if isinstance(text, str):
            try:
                check(text)
            except DurationError as exc:
                raise bad_request(str(exc), field) from None
    return value


def holds_nul(parsed: Any) -> bool:
    """PostgreSQL keeps no text (and no JSON) with a NUL character in it; SQLite would, and the two
    stores would disagree."""
    if isinstance(parsed, str):
        return "\x00" in parsed
    if isinstance(parsed, dict):
        return any("\x00" in k or holds_nul(v) for k, v in parsed.items())
    if isinstance(parsed, list):
        return any(holds_nul(v) for v in parsed)
    return False


def without_nulls(parsed: Any) -> Any:
    """The body's own fields, and those of objects in its lists (team members), with nulls left out;
    free-form maps (metadata) are kept as sent."""
    if not isinstance(parsed, dict):
        return parsed
    kept: dict[str, Any] = {}
    for name, value in parsed.items():
        if value is None:
            continue
        if isinstance(value, list):
            value = [{k: v for k, v in item.items() if v is not None} if isinstance(item, dict) else item
                     for item in value]
        elif isinstance(value, dict) and name in NESTED_BODIES:
            value = without_nulls(value)
        kept[name] = value
    return kept


NESTED_BODIES = frozenset({"member"})  # fields that hold a request model of their own, not free-form data


def _field_of(message: str) -> str | None:
    """The field a msgspec validation message is about: its path, or the field it names."""
    text, sep, at = message.rpartition(" - at `")
    path = at.rstrip("`").removeprefix("$.").removeprefix("$") if sep else ""
    named = re.search(r"(?:unknown|required) field `([^`]+)`", text if sep else message)
    if named:
        return f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"query parameter {name} must be a whole number", name) from None
    if not low <= value <= high:
        raise bad_request(f"query parameter {name} must be between {low} and {high}", name)
    return value


def total_pages(total: int, size: int) -> int:
    return math.ceil(total / size) if total else 0


TIME_FIELDS = ("created_at", "updated_at", "expires", "budget_reset_at", "key_rotation_at", "last_rotation_at")
# Kept for the gateway's own use, not part of LiteLLM's shapes.
INTERNAL_FIELDS = ("window_spend", "budget_limits_reset_at")


def view(record: Record) -> dict[str, Any]:
    """A record as LiteLLM shows it: every field, times as ISO 8601."""
    data: dict[str, Any] = msgspec.to_builtins(record)
    for name, value in data.pop("extra", {}).items():
        data.setdefault(name, value)
    for field in TIME_FIELDS:
        if field in data:
            data[field] = iso(data[field])
    for field in INTERNAL_FIELDS:
        data.pop(field, None)
    for window in data.get("budget_limits") or ():
        if isinstance(window, dict) and isinstance(window.get("reset_at"), float):
            window["reset_at"] = iso(window["reset_at"])
    return data


def json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def with_extra(fields: dict[str, Any], extra_names: frozenset[str], kept: dict[str, Any]) -> dict[str, Any]:
    """Fields of LiteLLM's that are only kept (`extra_names`) moved into `extra`, over what was `kept`."""
    extra = {name: fields.pop(name) for name in list(fields) if name in extra_names}
    if extra:
        fields["extra"] = {**kept, **extra}
    return fields


def set_fields(request: msgspec.Struct) -> dict[str, Any]:
    """The fields the client actually sent (UNSET ones left out), as plain values."""
    return {name: getattr(request, name) for name in request.__struct_fields__
            if getattr(request, name) is not msgspec.UNSET}
