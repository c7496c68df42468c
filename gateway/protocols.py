"""Which API a request speaks on its way in, which its deployment speaks upstream, and the one place
that decides what happens when the two differ.

Inbound, every route speaks OpenAI's API but /v1/messages and /v1/messages/count_tokens, which speak
Anthropic's, and /v1/responses, which speaks OpenAI's Responses API: relayed as it is to a deployment that
serves it (`Deployment.serves_responses`), translated to chat completions for any other (and on to
Anthropic's Messages API for an `anthropic/` one). Upstream, every provider speaks OpenAI's but
`anthropic/`, which speaks Anthropic's Messages API, and `bedrock/`, which speaks AWS Bedrock's own. When
both sides speak one API the answer is relayed as the upstream sent it; when they differ it is translated
(gateway/crossing.py): the Messages API to an OpenAI-compatible deployment's chat completions, chat
completions to an `anthropic/` deployment's Messages API, and both to a Bedrock deployment's Converse (or,
for Claude's Messages, InvokeModel). Any other route to a deployment of another API is refused here, naming
the deployment, before anything is sent.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from gateway.errors import ApiError

if TYPE_CHECKING:
    from gateway.router import Deployment


class Api(enum.Enum):
    """An HTTP API a request or an upstream speaks."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    RESPONSES = "responses"
    BEDROCK = "bedrock"  # AWS Bedrock's Converse and InvokeModel: only ever reached across (gateway/crossing.py)


ANTHROPIC_ROUTES = frozenset({"messages", "messages/count_tokens"})
API_NAMES = {Api.OPENAI: "OpenAI's API", Api.ANTHROPIC: "Anthropic's Messages API",
             Api.RESPONSES: "OpenAI's Responses API", Api.BEDROCK: "AWS Bedrock's Converse and InvokeModel APIs"}
RESPONSES_ROUTE = "responses"


def inbound(endpoint: str) -> Api:
    if endpoint == RESPONSES_ROUTE:
        return Api.RESPONSES
    return Api.ANTHROPIC if endpoint in ANTHROPIC_ROUTES else Api.OPENAI


def untranslated(endpoint: str, asked: Api, deployment: Deployment, speaks: Api) -> ApiError:
    """The answer to a request whose deployment speaks another API than the caller (`speaks`: the
    upstream's), on a route that has no counterpart in that API."""
    return ApiError(400, f"/v1/{endpoint} speaks {API_NAMES[asked]}, but model group {deployment.group!r} sent it "
                    f"to deployment {deployment.id[:12]} ({deployment.provider.name}/{deployment.model_template}), "
                    f"which speaks {API_NAMES[speaks]}; only chat completions and the Messages API are translated "
                    "between the two. Use a deployment that speaks the caller's API.", "invalid_request_error",
                    "model")
