"""Where a Bedrock request goes: LiteLLM's route prefixes in the model name, and the operation's path."""

from __future__ import annotations

from urllib.parse import quote

ROUTES = ("converse", "invoke")


def split_route(model: str) -> tuple[str, str]:
    """`converse/<id>` and `invoke/<id>` name the API (LiteLLM's `bedrock/converse/...`); ("", <id>) otherwise."""
    head, sep, rest = model.partition("/")
    if sep and head in ROUTES:
        return head, rest
    return "", model


def operation_path(model_id: str, operation: str) -> str:
    """`model/{modelId}/{operation}`, the id percent-encoded as botocore sends it (`:` as %3A, an ARN's `/`)."""
    return f"model/{quote(model_id, safe='')}/{operation}"
