"""What every form of the UI shares: its fields as typed (a Struct of text, ticked lists and check boxes,
shown back when the form has to be corrected), read into the values a management request carries, and
only those an edit changed. A field is read by its name: money, whole numbers, comma-separated lists and
JSON objects each have one reading, the same on every form."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import orjson
from multidict import MultiDictProxy

from gateway.errors import bad_request

F = TypeVar("F", bound=msgspec.Struct)

MONEY = frozenset({"max_budget", "soft_budget"})
COUNTS = frozenset({"tpm_limit", "rpm_limit", "max_parallel_requests"})
LISTS = frozenset({"tags", "teams"})  # typed as "a, b, c"
JSON_OBJECTS = frozenset({"metadata"})
LABELS = {"max_budget": "Max budget", "soft_budget": "Soft budget", "tpm_limit": "TPM limit",
          "rpm_limit": "RPM limit", "max_parallel_requests": "Parallel requests", "metadata": "Metadata"}


def posted(data: MultiDictProxy[Any], shape: type[F]) -> F:
    """The browser's form as `shape`: text stripped, a list from every box ticked, a check box on or off."""
    fields: dict[str, Any] = {}
    for field in msgspec.structs.fields(shape):
        if field.type is bool:
            fields[field.name] = data.get(field.name) == "on"
        elif field.type == list[str]:
            fields[field.name] = [v for v in data.getall(field.name, []) if isinstance(v, str) and v]
        else:
            value = data.get(field.name)
            fields[field.name] = value.strip() if isinstance(value, str) else ""
    return shape(**fields)


def shown(record: msgspec.Struct, shape: type[F], **overrides: Any) -> F:
    """A stored record as its edit form starts."""
    fields: dict[str, Any] = {}
    for field in msgspec.structs.fields(shape):
        if not hasattr(record, field.name):
            continue
        value = getattr(record, field.name)
        if field.type == list[str]:
            fields[field.name] = list(value)
        elif field.type is str:
            fields[field.name] = _text(value)
    return shape(**{**fields, **overrides})


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if value else ""
    return str(value)


def values(form: msgspec.Struct, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields as a request carries them; None where the form leaves one empty."""
    return {name: value(name, getattr(form, name)) for name in names}


def value(name: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if name in MONEY:
        try:
            return float(raw) if raw else None
        except ValueError:
            raise bad_request(f"{LABELS[name]} must be a number of dollars, not {raw!r}", name) from None
    if name in COUNTS:
        try:
            return int(raw) if raw else None
        except ValueError:
            raise bad_request(f"{LABELS[name]} must be a whole number, not {raw!r}", name) from None
    if name in LISTS:
        return list(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    if name in JSON_OBJECTS:
        return json_object(raw, name)
    return raw or None


def json_object(text: str, name: str) -> dict[str, Any]:
    if not text:
        return {}
    label = LABELS.get(name, name)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"{label} is not valid JSON: {exc}", name) from None
    if not isinstance(parsed, dict):
        raise bad_request(f"{label} must be a JSON object, such as {{\"team\": \"search\"}}", name)
    return parsed


def stored(record: msgspec.Struct, name: str) -> Any:
    found = getattr(record, name)
    return float(found) if name in MONEY and found is not None else found


def changed(form: msgspec.Struct, record: msgspec.Struct, names: tuple[str, ...]) -> dict[str, Any]:
    """Only what the form changed, so an edit never rewrites a field it did not touch; a field emptied is
    sent as null (cleared)."""
    return {name: typed for name, typed in values(form, names).items() if typed != stored(record, name)}


def given(typed: dict[str, Any]) -> dict[str, Any]:
    """What a new record's form set: empty fields left out, so each takes its default."""
    return {name: value for name, value in typed.items() if value not in (None, [], {})}
