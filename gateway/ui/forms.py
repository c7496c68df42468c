"""A key's form: what the browser posts, as text to show back, and the /key/generate or /key/update request
it makes, checked by the same validation the JSON API uses."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
from multidict import MultiDictProxy

from gateway.errors import bad_request
from gateway.management.common import validated
from gateway.management.keys import GenerateKey, UpdateKey
from gateway.store.records import KeyRecord

TEXTS = ("key_alias", "user_id", "team_id", "budget_duration")
MONEY = ("max_budget", "soft_budget")
COUNTS = ("tpm_limit", "rpm_limit", "max_parallel_requests")
LABELS = {"max_budget": "Max budget", "soft_budget": "Soft budget", "tpm_limit": "TPM limit",
          "rpm_limit": "RPM limit", "max_parallel_requests": "Parallel requests"}


class KeyForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    key_alias: str = ""
    user_id: str = ""
    team_id: str = ""
    models: list[str] = []
    max_budget: str = ""
    soft_budget: str = ""
    budget_duration: str = ""
    duration: str = ""
    no_expiry: bool = False
    tpm_limit: str = ""
    rpm_limit: str = ""
    max_parallel_requests: str = ""
    tags: str = ""
    metadata: str = ""


def posted(data: MultiDictProxy[Any]) -> KeyForm:
    def text(name: str) -> str:
        value = data.get(name)
        return value.strip() if isinstance(value, str) else ""

    texts: dict[str, Any] = {name: text(name) for name in (*TEXTS, *MONEY, *COUNTS, "duration", "tags", "metadata")}
    return KeyForm(**texts, models=[m for m in data.getall("models", []) if isinstance(m, str) and m],
                   no_expiry=data.get("no_expiry") == "on")


def shown(record: KeyRecord) -> KeyForm:
    """A stored key as its edit form starts."""

    def text(value: object) -> str:
        return "" if value is None else str(value)

    texts: dict[str, Any] = {name: text(getattr(record, name)) for name in (*TEXTS, *MONEY, *COUNTS)}
    return KeyForm(**texts,
                   models=list(record.models), tags=", ".join(record.tags),
                   metadata=orjson.dumps(record.metadata, option=orjson.OPT_INDENT_2).decode()
                   if record.metadata else "")


def _values(form: KeyForm) -> dict[str, Any]:
    """Every field as the request would carry it; None where the form leaves it empty."""
    values: dict[str, Any] = {name: getattr(form, name) or None for name in TEXTS}
    for name in MONEY:
        raw = getattr(form, name)
        try:
            values[name] = float(raw) if raw else None
        except ValueError:
            raise bad_request(f"{LABELS[name]} must be a number of dollars, not {raw!r}", name) from None
    for name in COUNTS:
        raw = getattr(form, name)
        try:
            values[name] = int(raw) if raw else None
        except ValueError:
            raise bad_request(f"{LABELS[name]} must be a whole number, not {raw!r}", name) from None
    values["models"] = form.models
    values["tags"] = [t.strip() for t in form.tags.split(",") if t.strip()]
    values["metadata"] = _metadata(form.metadata)
    return values


def _metadata(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Metadata is not valid JSON: {exc}", "metadata") from None
    if not isinstance(parsed, dict):
        raise bad_request("Metadata must be a JSON object, such as {\"team\": \"search\"}", "metadata")
    return parsed


def generate_request(form: KeyForm) -> GenerateKey:
    wanted = {name: value for name, value in _values(form).items() if value not in (None, [], {})}
    if form.duration:
        wanted["duration"] = form.duration
    return validated(wanted, GenerateKey)


def update_request(form: KeyForm, record: KeyRecord) -> UpdateKey:
    """Only what the form changed, so an edit never rewrites a field it did not touch; a field emptied is
    cleared."""
    changes = {name: value for name, value in _values(form).items()
               if value != _stored(record, name)}
    if form.no_expiry:
        changes["duration"] = None
    elif form.duration:
        changes["duration"] = form.duration
    return validated({"key": record.token, **changes}, UpdateKey, keep_nulls=True)


def _stored(record: KeyRecord, name: str) -> Any:
    value = getattr(record, name)
    return float(value) if name in MONEY and value is not None else value
