"""One request's spend record, as it goes to the spool and the store."""

from __future__ import annotations

import operator
from typing import Any

import msgspec


class SpendRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    request_id: str
    api_key: str | None = None  # the key's hash, never the key
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    model: str | None = None  # as the client asked for it
    model_group: str | None = None
    model_id: str | None = None  # the deployment
    upstream_model: str | None = None
    provider: str | None = None
    api_base: str | None = None
    call_type: str = "chat/completions"
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    usage_estimated: bool = False
    spend: float = 0.0
    start_time: float = 0.0  # epoch seconds
    end_time: float = 0.0
    ttft_ms: float | None = None
    status: str = "success"  # success | failure | cancelled
    status_code: int = 200
    error: str | None = None
    tags: list[str] = []
    client_ip: str | None = None
    end_user: str | None = None  # the customer the request named (body `user`, or LiteLLM's headers)
    # Parts of prompt_tokens and completion_tokens (see gateway/usage.py), shown in LiteLLM's usage_object.
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0


COLUMNS: tuple[str, ...] = tuple(SpendRecord.__struct_fields__)
ENCODER = msgspec.json.Encoder()
# A spool line is a JSON array: this version, then the columns in COLUMNS order. The store can
# then load a whole segment without Python touching each record (see Store.write_spend_lines).
SPOOL_VERSION = 3
# Lines written before a column was added are read with its default: what spooled before an upgrade is kept.
OLDER_LINES = {1: len(COLUMNS) - 4, 2: len(COLUMNS) - 3}
_FILL: list[Any] = [field.default for field in msgspec.structs.fields(SpendRecord)]  # older lines' tails
LINE_DECODER = msgspec.json.Decoder(list[Any])


_VALUES = operator.attrgetter(*COLUMNS)
_TAGS = COLUMNS.index("tags")


def row_values(record: SpendRecord) -> list[Any]:
    values = list(_VALUES(record))
    values[_TAGS] = ENCODER.encode(record.tags).decode()
    return values


def spool_line(record: SpendRecord) -> bytes:
    return ENCODER.encode([SPOOL_VERSION, *row_values(record)]) + b"\n"


def rows_of(lines: bytes) -> list[list[Any]]:
    """The rows in spool lines, one at a time: a line that is not whole (a crash mid-write) is skipped."""
    rows = []
    for line in lines.splitlines():
        try:
            values = LINE_DECODER.decode(line)
        except msgspec.DecodeError:
            continue
        if len(values) == len(COLUMNS) + 1 and values[0] == SPOOL_VERSION:
            rows.append(values[1:])
        elif values and isinstance(values[0], int) and OLDER_LINES.get(values[0]) == len(values) - 1:
            rows.append(values[1:] + _FILL[len(values) - 1:])
    return rows


def spend_record(row: dict[str, Any]) -> SpendRecord:
    data = {c: row[c] for c in COLUMNS}
    data["tags"] = msgspec.json.decode(row["tags"]) if row["tags"] else []
    return msgspec.convert(data, SpendRecord, strict=False)
