"""How a cloud provider's requests differ from a plain upstream's: where they go, and how they are signed.

A plain deployment posts `{api_base}/{endpoint}` with the body as the gateway built it and a fixed key.
Azure OpenAI puts the deployment and `api-version` in the URL; Vertex AI puts project, location and
(for Claude) the model in the path and the Anthropic version in the body; both may sign each request
with a bearer token that expires. A deployment with a `Shape` (gateway/azure.py, gateway/vertex.py)
has each attempt's path, body and header lines passed through `prepare` just before it goes out;
a plain deployment has none, and pays nothing.
"""

from __future__ import annotations

from gateway.bearer import TokenSource
from gateway.protocols import Api


class Shape:
    """What `Deployment` takes from a provider module: the base URL its Endpoint is built on, the header
    lines every request carries, the API it speaks, and `prepare` for what changes per request."""

    __slots__ = ("base_url", "api_base", "headers", "protocol", "model", "token")

    def __init__(self, base_url: str, api_base: str, headers: dict[str, str], model: str,
                 token: TokenSource | None, protocol: Api = Api.OPENAI) -> None:
        self.base_url = base_url
        self.api_base = api_base  # as shown in the model-api-base header and errors
        self.headers = headers
        self.model = model  # the model template sent upstream (Vertex prefixes Gemini's with `google/`)
        self.token = token
        self.protocol = protocol

    async def prepare(self, endpoint: str, payload: bytes, lines: bytes, model: str) -> tuple[str, bytes, bytes]:
        """The path under base_url, the body and the request's own header lines, for a request the gateway
        would have sent to `endpoint` with `payload` and `lines`; `model` is the upstream model."""
        raise NotImplementedError

    async def auth(self, lines: bytes) -> bytes:
        if self.token is None:
            return lines
        return lines + await self.token.header()
