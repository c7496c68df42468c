"""A key's form: what the browser posts, as text to show back, and the /key/generate or /key/update request
it makes, checked by the same validation the JSON API uses."""

from __future__ import annotations

from typing import Any

import msgspec
from multidict import MultiDictProxy

from gateway.management.common import validated
from gateway.management.keys import GenerateKey, UpdateKey
from gateway.store.records import KeyRecord
from gateway.ui import form_values

NAMES = ("key_alias", "user_id", "team_id", "budget_duration", "max_budget", "soft_budget", "tpm_limit",
         "rpm_limit", "max_parallel_requests", "models", "tags", "metadata")


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
    return form_values.posted(data, KeyForm)


def shown(record: KeyRecord) -> KeyForm:
    """A stored key as its edit form starts."""
    return form_values.shown(record, KeyForm)


def generate_request(form: KeyForm) -> GenerateKey:
    wanted = form_values.given(form_values.values(form, NAMES))
    if form.duration:
        wanted["duration"] = form.duration
    return validated(wanted, GenerateKey)


def update_request(form: KeyForm, record: KeyRecord) -> UpdateKey:
    """Only what the form changed; a field emptied is cleared."""
    changes = form_values.changed(form, record, NAMES)
    if form.no_expiry:
        changes["duration"] = None
    elif form.duration:
        changes["duration"] = form.duration
    return validated({"key": record.token, **changes}, UpdateKey, keep_nulls=True)
