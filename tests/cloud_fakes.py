"""Fake Azure OpenAI, Entra ID, Google OAuth and Vertex AI endpoints on loopback, from the real services' shapes.

- `FakeAzure`: Azure OpenAI's data plane, `/openai/deployments/{deployment}/{chat/completions,completions,
  embeddings}?api-version=...`, checking the `api-version` query (404 "Resource not found" without it, as Azure
  answers) and the `api-key` header or an Entra bearer token it issued (401 in Azure's error shape otherwise).
  Its answers carry Azure's content-filter fields; its streams open with Azure's chunk of empty `choices`, empty
  `id`/`model` and `prompt_filter_results`, as Azure's content-filter streaming reference shows them, and end
  with the usage chunk when asked for it.
- The same server is the Entra ID token endpoint, `/{tenant}/oauth2/v2.0/token`: a client-credentials grant
  with the right client and secret gets `tok-<n>`, lasting `token_lifetime` seconds (RFC 6749 4.4, as
  Microsoft's identity platform answers it); a wrong secret gets AADSTS7000215 in the OAuth error shape.
- `FakeGoogle`: the service account's `token_uri`, exchanging a signed JWT (RFC 7523) for `ya29.<n>`: the
  assertion's signature is verified with the service account's public key, its claims (iss, aud: Google's token
  endpoint, scope, iat/exp an hour apart) checked.
- `FakeVertexGemini`: Vertex's OpenAI-compatible `/v1/projects/{p}/locations/{l}/endpoints/openapi/chat/completions`
  (tests/fakes.FakeUpstream's answers), for a Google bearer token and a `google/...` model only.
- `FakeVertexClaude`: Anthropic on Vertex, `/v1/projects/{p}/locations/{l}/publishers/anthropic/models/
  {model}:rawPredict|streamRawPredict` and `count-tokens:rawPredict`: the body has `anthropic_version:
  vertex-2023-10-16` and no `model` (the URL names it); everything else is tests/anthropic_fake's checks and
  answers.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.anthropic_fake import FakeAnthropic, Invalid
from tests.fakes import FakeUpstream
from tests.loopback import Loopback

AZURE_KEY = "azure-upstream-secret"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
CLIENT_SECRET = "entra-client-secret"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
SAFE = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}
PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": SAFE}]
AZURE_MODEL = "gpt-4o-2024-08-06"
GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class AzureSeen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    sent: bytes = b""


class FakeAzure(Loopback):
    def __init__(self, api_version: str = "2024-10-21", token_lifetime: int = 3599) -> None:
        super().__init__("fake-azure")
        self.api_version = api_version
        self.token_lifetime = token_lifetime
        self.usage = {"prompt_tokens": 900, "completion_tokens": 600, "total_tokens": 1500}
        self.seen: list[AzureSeen] = []
        self.token_requests: list[dict[str, str]] = []
        self.issued: list[str] = []

    def __repr__(self) -> str:
        return f"FakeAzure(port={self.port})"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/openai/deployments/{deployment}/{endpoint:.+}", self._data_plane)
        app.router.add_post("/openai/responses", self._data_plane)
        app.router.add_get("/openai/responses/{response_id}", self._stored)
        app.router.add_delete("/openai/responses/{response_id}", self._stored)
        app.router.add_get("/openai/responses/{response_id}/input_items", self._stored)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)

    @property
    def authority(self) -> str:
        return self.url

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if request.match_info["tenant"] != TENANT or form.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "unauthorized_client", "error_description":
                                      "AADSTS700016: Application with identifier was not found in the directory."},
                                     status=400)
        if form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client", "error_description":
                                      "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                                      "in the request is the client secret value, not the client secret ID."},
                                     status=401)
        if form.get("grant_type") != "client_credentials" or form.get("scope") != AZURE_SCOPE:
            return web.json_response({"error": "invalid_request", "error_description": "AADSTS900144: bad grant"},
                                     status=400)
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                                  "ext_expires_in": self.token_lifetime, "access_token": token})

    async def _data_plane(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        seen = AzureSeen(request.path, dict(request.query), dict(request.headers), body)
        self.seen.append(seen)
        if request.query.get("api-version") != self.api_version:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        key = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key != AZURE_KEY and bearer not in self.issued:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription "
                                                "key or wrong API endpoint. Make sure to provide a valid key for an "
                                                "active subscription and use a correct regional API endpoint for "
                                                "your resource."}}, status=401)
        endpoint = request.match_info.get("endpoint", "responses")
        if endpoint == "responses":  # the deployment is named in the body, as the model
            return self._json(seen, {
                "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
                "created_at": 1741476542, "status": "completed", "error": None, "incomplete_details": None,
                "instructions": None, "max_output_tokens": None, "model": body["model"], "output": [{
                    "type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                    "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Color is light.", "annotations": []}]}],
                "parallel_tool_calls": True, "previous_response_id": None, "store": True, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                "truncation": "disabled", "metadata": {},
                "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123}})
        if endpoint == "embeddings":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return self._json(seen, {"object": "list", "model": "text-embedding-3-small", "data": [
                {"object": "embedding", "index": i, "embedding": [0.25, -0.5, 0.75]} for i in range(len(inputs))],
                "usage": {"prompt_tokens": 8 * len(inputs), "total_tokens": 8 * len(inputs)}})
        if endpoint == "completions":
            return self._json(seen, {
                "id": "cmpl-azure", "object": "text_completion", "created": 1730000000, "model": AZURE_MODEL,
                "prompt_filter_results": PROMPT_FILTER,
                "choices": [{"text": " completed", "index": 0, "finish_reason": "stop", "logprobs": None,
                             "content_filter_results": SAFE}], "usage": self.usage})
        if endpoint != "chat/completions":
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if body.get("stream"):
            return await self._stream(request, seen, body)
        return self._json(seen, {
            "id": "chatcmpl-AzureAbc123", "object": "chat.completion", "created": 1730000000, "model": AZURE_MODEL,
            "system_fingerprint": "fp_04751d0b65", "prompt_filter_results": PROMPT_FILTER,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "content_filter_results": SAFE,
                         "message": {"role": "assistant", "content": "Color is light.", "refusal": None}}],
            "usage": self.usage})

    async def _stored(self, request: web.Request) -> web.Response:
        """A response the fake made, read back or deleted, as Azure's data plane answers."""
        seen = AzureSeen(request.path, dict(request.query), dict(request.headers), {})
        self.seen.append(seen)
        key = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if request.query.get("api-version") != self.api_version or (key != AZURE_KEY and bearer not in self.issued):
            return web.json_response({"error": {"code": "401", "message": "Access denied"}}, status=401)
        response_id = request.match_info["response_id"]
        made = next((s for s in reversed(self.seen) if s.sent and orjson.loads(s.sent).get("id") == response_id),
                    None)
        if made is None:
            return web.json_response({"error": {"code": "404", "message": f"Response with id '{response_id}' "
                                                "not found."}}, status=404)
        if request.method == "DELETE":
            return self._json(seen, {"id": response_id, "object": "response", "deleted": True})
        if request.path.endswith("/input_items"):
            return self._json(seen, {"object": "list", "data": [
                {"id": "msg_input_1", "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": made.body["input"]}]}],
                "first_id": "msg_input_1", "last_id": "msg_input_1", "has_more": False})
        return web.Response(body=made.sent, content_type="application/json")

    def _json(self, seen: AzureSeen, answer: dict[str, Any]) -> web.Response:
        seen.sent = orjson.dumps(answer)
        return web.Response(body=seen.sent, content_type="application/json",
                            headers={"apim-request-id": "4f0c1e2a", "x-ms-region": "Sweden Central",
                                     "x-ratelimit-remaining-requests": "99"})

    async def _stream(self, request: web.Request, seen: AzureSeen, body: dict[str, Any]) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": "chatcmpl-AzureStream1", "object": "chat.completion.chunk", "created": 1730000000,
                "model": AZURE_MODEL, "system_fingerprint": "fp_04751d0b65"}
        usage_field: dict[str, Any] = {"usage": None} if include_usage else {}
        events: list[dict[str, Any]] = [
            {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": PROMPT_FILTER},
            {**base, "choices": [{"content_filter_results": {}, "delta": {"content": "", "role": "assistant",
                                                                          "refusal": None},
                                  "finish_reason": None, "index": 0, "logprobs": None}], **usage_field}]
        for word in ("Color", " is", " light."):
            events.append({**base, "choices": [{"content_filter_results": SAFE, "delta": {"content": word},
                                                "finish_reason": None, "index": 0, "logprobs": None}],
                           **usage_field})
        events.append({**base, "choices": [{"content_filter_results": {}, "delta": {}, "finish_reason": "stop",
                                            "index": 0, "logprobs": None}], **usage_field})
        if include_usage:
            events.append({**base, "choices": [], "usage": self.usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "apim-request-id": "4f0c1e2a"})
        await response.prepare(request)
        sent = bytearray()
        for event in events:
            frame = b"data: " + orjson.dumps(event) + b"\n\n"
            sent += frame
            await response.write(frame)
        await response.write(b"data: [DONE]\n\n")
        sent += b"data: [DONE]\n\n"
        seen.sent = bytes(sent)
        await response.write_eof()
        return response


def service_account(token_uri: str, project: str = "gateway-test-project") -> tuple[dict[str, Any], Any]:
    """A throwaway service-account JSON (the fields Google's key files have) and its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"gateway@{project}.iam.gserviceaccount.com"
    info = {"type": "service_account", "project_id": project, "private_key_id": "1f2e3d4c5b6a",
            "private_key": pem, "client_email": email, "client_id": "104857600000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com"}
    return info, key.public_key()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeGoogle(Loopback):
    """Google's OAuth token endpoint for one service account."""

    def __init__(self, token_lifetime: int = 3599) -> None:
        super().__init__("fake-google")
        self.token_lifetime = token_lifetime
        self.public_key: Any = None
        self.email = ""
        self.issued: list[str] = []
        self.assertions: list[dict[str, Any]] = []
        self.refusals: list[str] = []

    def __repr__(self) -> str:
        return f"FakeGoogle(port={self.port})"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def account(self, project: str = "gateway-test-project") -> dict[str, Any]:
        info, self.public_key = service_account(self.token_uri, project)
        self.email = info["client_email"]
        return info

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self._token)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        problem = self._check(form.get("grant_type"), form.get("assertion"))
        if problem is not None:
            self.refusals.append(problem)
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        token = f"ya29.fake-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    def _check(self, grant: object, assertion: object) -> str | None:
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not isinstance(assertion, str):
            return "Invalid grant_type or no assertion"
        try:
            header_part, claims_part, signature = assertion.split(".")
            header, claims = orjson.loads(_b64(header_part)), orjson.loads(_b64(claims_part))
            self.public_key.verify(_b64(signature), f"{header_part}.{claims_part}".encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
        except (ValueError, orjson.JSONDecodeError, InvalidSignature):
            return "Invalid JWT Signature."
        self.assertions.append(claims)
        if header.get("alg") != "RS256" or header.get("kid") != "1f2e3d4c5b6a":
            return f"Invalid JWT header: {header}"
        # google-auth signs for Google's token endpoint whatever token_uri it posts to, as Google expects.
        if claims.get("iss") != self.email or claims.get("aud") != GOOGLE_AUDIENCE:
            return f"Invalid JWT: iss/aud {claims.get('iss')}, {claims.get('aud')}"
        if claims.get("scope") != GOOGLE_SCOPE:
            return f"Invalid JWT scope: {claims.get('scope')}"
        now = time.time()
        if not (claims["iat"] - 300 <= now <= claims["exp"]) or claims["exp"] - claims["iat"] > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
        return None


PROJECT, LOCATION = "gateway-test-project", "europe-west4"


def _google_bearer(request: web.Request, google: FakeGoogle) -> bool:
    return request.headers.get("Authorization", "").removeprefix("Bearer ") in google.issued


@dataclass(repr=False)
class FakeVertexGemini(FakeUpstream):
    google: FakeGoogle | None = None
    paths: list[str] = field(default_factory=list)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions",
                            self._vertex_chat)

    async def _vertex_chat(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        assert self.google is not None
        if (request.match_info["project"], request.match_info["location"]) != (PROJECT, LOCATION):
            return web.json_response([{"error": {"code": 404, "message": "Project or location not found",
                                                 "status": "NOT_FOUND"}}], status=404)
        if not _google_bearer(request, self.google):
            return web.json_response([{"error": {
                "code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication "
                "credentials. Expected OAuth 2 access token, login cookie or other valid authentication "
                "credential."}}], status=401)
        model = orjson.loads(await request.read()).get("model", "")
        if not model.startswith("google/"):
            return web.json_response([{"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                 "message": f"Invalid model: {model}"}}], status=400)
        return await self._chat(request)


@dataclass(repr=False)
class FakeVertexClaude(FakeAnthropic):
    google: FakeGoogle | None = None
    paths: list[str] = field(default_factory=list)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{call}",
                            self._vertex)

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if (request.match_info["project"], request.match_info["location"]) != (PROJECT, LOCATION):
            return web.json_response({"error": {"code": 404, "status": "NOT_FOUND"}}, status=404)
        model, _, method = request.match_info["call"].rpartition(":")
        if model == "count-tokens" and method == "rawPredict":
            return await self._count_tokens(request)
        if method not in ("rawPredict", "streamRawPredict"):
            return web.json_response({"error": {"code": 404, "status": "NOT_FOUND"}}, status=404)
        return await self._messages(request)

    async def _record(self, request: web.Request) -> Any:
        seen = await super()._record(request)
        body = seen.body
        if body.pop("anthropic_version", None) != "vertex-2023-10-16":
            raise Invalid("anthropic_version: vertex-2023-10-16 is required in the body on Vertex AI")
        model, _, method = request.match_info["call"].rpartition(":")
        if model != "count-tokens":
            if "model" in body:
                raise Invalid("model: Extra inputs are not permitted (Vertex AI names the model in the URL)")
            if (method == "streamRawPredict") != (body.get("stream") is True):
                raise Invalid(f"{method} does not match stream={body.get('stream')}")
            body["model"] = model
        return seen

    def _check_headers(self, request: web.Request) -> None:
        assert self.google is not None
        if "x-api-key" in request.headers:
            raise Invalid("x-api-key: Vertex AI takes a Google access token")
        if not _google_bearer(request, self.google):
            raise Invalid("Request had invalid authentication credentials.", 401)
        if request.content_type != "application/json":
            raise Invalid("content-type: must be application/json")
