"""Who is calling: the master key, a virtual key (with its user and team), or nobody in an open proxy."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from multidict import CIMultiDictProxy

from gateway.accounts import Accounts, hash_key, key_name
from gateway.durations import iso
from gateway.errors import ApiError
from gateway.store.records import KeyRecord, OrgRecord, TeamRecord, UserRecord

log = logging.getLogger("gateway.auth")

PROXY_ADMIN = "proxy_admin"
PROXY_ADMIN_USER = "default_user_id"  # the user LiteLLM takes the master key's caller to be
# LiteLLM's own header, for clients whose Authorization carries something else (a provider's key): it wins.
LITELLM_KEY_HEADER = "x-litellm-api-key"
# Checked after the configured header, LiteLLM's and Authorization, in this order: Azure, Anthropic and
# Google clients.
KEY_HEADERS = ("api-key", "x-api-key", "x-goog-api-key")


class Caller:
    __slots__ = ("key", "token", "is_master", "role", "user", "team", "org")

    def __init__(self, key: KeyRecord | None = None, token: str | None = None, is_master: bool = False,
                 role: str = PROXY_ADMIN, user: UserRecord | None = None, team: TeamRecord | None = None,
                 org: OrgRecord | None = None) -> None:
        self.key = key
        self.token = token
        self.is_master = is_master
        self.role = role
        self.user = user
        self.team = team
        self.org = org

    @property
    def is_admin(self) -> bool:
        return self.is_master or self.role == PROXY_ADMIN

    @property
    def user_id(self) -> str | None:
        return self.key.user_id if self.key else None

    @property
    def author(self) -> str:
        """Who a record this caller writes is by (created_by, updated_by): LiteLLM's name for the master key."""
        return self.user_id or PROXY_ADMIN_USER

    @property
    def label(self) -> str:
        """For logs and metrics: the alias, or the abbreviated key name; never the key."""
        if self.is_master:
            return "master"
        if self.key is None:
            return "anonymous"
        return self.key.key_alias or self.key.key_name


def auth_error(message: str, type: str = "auth_error", param: str | None = None, status: int = 401) -> ApiError:
    return ApiError(status, message, type, param)


def abbreviate(raw: str) -> str:
    return key_name(raw) if len(raw) > 8 else "****"


MAX_REMEMBERED_HASHES = 10_000


class Authenticator:
    def __init__(self, accounts: Accounts, master_key: str | None, key_header: str | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.accounts = accounts
        self.master_key = master_key
        self.key_header = key_header
        self.clock = clock
        # The hashes of keys that were found, so a key in use is hashed once, not per request; keys
        # nobody has are never kept, so a flood of made-up ones does not grow it.
        self.hashes: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        return self.master_key is None

    def extract(self, headers: CIMultiDictProxy[str]) -> str | None:
        """The raw key the client sent, from the first header that carries one."""
        for name in (self.key_header, LITELLM_KEY_HEADER):
            value = headers.get(name) if name else None
            if value:
                return _strip_scheme(value) or value.strip()
        authorization = headers.get("Authorization")
        if authorization is not None:
            key = _strip_scheme(authorization)
            if key is None:
                raise auth_error("Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix.")
            return key
        for name in KEY_HEADERS:
            value = headers.get(name)
            if value:
                return value.strip()
        return None

    async def authenticate(self, headers: CIMultiDictProxy[str]) -> Caller:
        raw = self.extract(headers)
        if self.master_key is None:
            # An open proxy: everyone may do everything, but a known key is still credited.
            if raw and raw.startswith("sk-"):
                caller = await self._virtual(raw, strict=False)
                if caller is not None:
                    return caller
            return Caller()
        if not raw:
            raise auth_error("Authentication Error, No api key passed in.")
        if hmac.compare_digest(raw.encode(), self.master_key.encode()):
            return Caller(is_master=True)
        if not raw.startswith("sk-"):
            raise auth_error(f"Authentication Error, LiteLLM Virtual Key expected. Received={abbreviate(raw)}, "
                             "expected to start with 'sk-'.")
        caller = await self._virtual(raw, strict=True)
        assert caller is not None
        return caller

    async def _virtual(self, raw: str, strict: bool) -> Caller | None:
        token = self.hashes.get(raw) or hash_key(raw)
        key = await self.accounts.keys.get(token)
        if key is None:
            self.hashes.pop(raw, None)
            if not strict:
                return None
            raise auth_error(
                f"Authentication Error, Invalid proxy server token passed. Received API Key = {abbreviate(raw)}, "
                f"Key Hash (Token) ={token}. Unable to find token in cache or `LiteLLM_VerificationTokenTable`",
                "token_not_found_in_db", "key")
        if raw not in self.hashes:
            if len(self.hashes) >= MAX_REMEMBERED_HASHES:
                self.hashes.clear()
            self.hashes[raw] = token
        return await self._standing(key, token)

    async def by_token(self, token: str) -> Caller:
        """The caller a key's hash stands for, held to the same checks as a request with the key (the admin
        UI's sessions keep the hash, never the key)."""
        key = await self.accounts.keys.get(token)
        if key is None:
            raise auth_error("Authentication Error, the key of this session no longer exists.",
                             "token_not_found_in_db", "key")
        return await self._standing(key, token)

    async def _standing(self, key: KeyRecord, token: str) -> Caller:
        """A found key's caller, unless the key, its team or its organization is blocked or it has expired."""
        if key.blocked:
            raise auth_error("Authentication Error, Key is blocked. Update via `/key/unblock` if you're an admin.")
        now = self.clock()
        if key.expires is not None and key.expires <= now:
            raise auth_error(f"Authentication Error - Expired Key. Key Expiry time {iso(key.expires)} and current "
                             f"time {iso(now)}", "expired_key", "key")
        team = await self.accounts.teams.get(key.team_id) if key.team_id else None
        if team is not None and team.blocked:
            raise auth_error(f"Authentication Error, Team={team.team_id} is blocked. Update via `/team/unblock` "
                             "if you're an admin.")
        user = await self.accounts.users.get(key.user_id) if key.user_id else None
        role = user.user_role if user is not None else "internal_user"
        org_id = team.organization_id if team is not None and team.organization_id else key.organization_id
        org = await self.accounts.orgs.get(org_id) if org_id else None
        if org is not None and org.blocked:
            raise auth_error(f"Authentication Error, Organization={org.organization_id} is blocked.")
        return Caller(key=key, token=token, role=role, user=user, team=team, org=org)


def _strip_scheme(value: str) -> str | None:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    return None
