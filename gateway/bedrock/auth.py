"""How a Bedrock deployment's requests are authorised: SigV4 with AWS credentials, or a Bedrock API key.

The credentials are LiteLLM's: `aws_access_key_id` / `aws_secret_access_key` / `aws_session_token` in
litellm_params, else a Bedrock API key (`api_key`, else AWS_BEARER_TOKEN_BEDROCK) sent as a bearer
token, else botocore's own chain (the AWS_* variables, `aws_profile_name` or AWS_PROFILE in the shared
files, container and instance roles). Signing is botocore's `SigV4Auth` over an `AWSRequest` built from
the exact bytes sent: the body is in the signature, so each request is signed on its own (at about 60-70 µs
a request, measured in tests/test_bedrock.py's signing test, as README's "Signing" says; cheap enough to do
inline).
"""

from __future__ import annotations

import os

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from gateway.config import ConfigError, LiteLLMParams
from gateway.errors import ApiError

SIGNING_NAME = "bedrock"  # the service's signingName in botocore's model of bedrock-runtime
DEFAULT_REGION = "us-west-2"  # LiteLLM's, when neither the config nor the environment names one
# Sent by the Endpoint in every request, and so signed: the signature covers what goes on the wire.
SIGNED_CONTENT_TYPE = {"Content-Type": "application/json"}
SENT_HEADERS = ("X-Amz-Date", "X-Amz-Security-Token", "Authorization")


def region_of(given: str | None, profile: str | None) -> str:
    """litellm_params.aws_region_name, else AWS_REGION / AWS_DEFAULT_REGION, else the profile's region."""
    found = given or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if found:
        return found
    try:
        configured = Session(profile=profile).get_config_variable("region")
    except Exception:  # noqa: BLE001 - a broken shared config names no region; the default applies
        configured = None
    return configured if isinstance(configured, str) and configured else DEFAULT_REGION


class Signer:
    """Signs one deployment's requests. `bearer`: its Bedrock API key, sent by the Endpoint instead."""

    __slots__ = ("region", "credentials", "bearer", "where")

    def __init__(self, region: str, access_key: str | None, secret_key: str | None, session_token: str | None,
                 api_key: str | None, profile: str | None, where: str) -> None:
        self.region = region
        self.where = where
        self.bearer: str | None = None
        self.credentials: Credentials | None = None
        if access_key and secret_key:
            self.credentials = Credentials(access_key, secret_key, session_token)
            return
        self.bearer = api_key or os.environ.get("AWS_BEARER_TOKEN_BEDROCK") or None
        if self.bearer is None:
            # Refreshable credentials (a role, SSO) refresh themselves when read near their expiry.
            try:
                self.credentials = Session(profile=profile).get_credentials()
            except BotoCoreError as exc:  # a profile that is not there, a shared file that does not parse
                raise ConfigError(f"{where}: AWS credentials for Bedrock: {exc}") from None

    def headers(self, url: str, body: bytes) -> bytes:
        """The header lines that sign this request (none for a bearer token, which the Endpoint sends)."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.signed(url, body).items()).encode("latin-1")

    def signed(self, url: str, body: bytes) -> dict[str, str]:
        """The headers that sign a POST of `body` (as application/json) to `url`, its path as sent."""
        if self.bearer is not None:
            return {}
        credentials = self.credentials
        if credentials is None:
            raise ApiError(500, f"{self.where}: no AWS credentials for Bedrock: set aws_access_key_id and "
                           "aws_secret_access_key in litellm_params, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                           "an AWS profile, or a Bedrock API key (api_key or AWS_BEARER_TOKEN_BEDROCK)",
                           "authentication_error")
        request = AWSRequest(method="POST", url=url, data=body, headers=SIGNED_CONTENT_TYPE)
        SigV4Auth(credentials.get_frozen_credentials(), SIGNING_NAME, self.region).add_auth(request)
        signed = request.headers
        return {name: signed[name] for name in SENT_HEADERS if name in signed}


def bedrock_signer(params: LiteLLMParams, where: str) -> Signer:
    region = region_of(params.aws_region_name, params.aws_profile_name)
    return Signer(region, params.aws_access_key_id, params.aws_secret_access_key, params.aws_session_token,
                  params.api_key, params.aws_profile_name, where)
