"""TLS to Redis, set as LiteLLM sets it: `ssl: true` (or a `rediss://` URL) and redis-py's own `ssl_*`
names, in the place that names the Redis, in the URL's query, or as `REDIS_SSL_*` variables.

The settings are read once into `RedisTls`, and one `ssl.SSLContext` is built from them as redis-py
builds its own (`RedisSSLContext.get`), for the gateway's own connection (gateway/redis_wire.py) and
for every redis-py connection (`shared_context`): redis-py would build one per connection, loading
the system's authorities each time.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from gateway.config import ConfigError

CertReqs = Literal["none", "optional", "required"]
VERIFY: dict[str, ssl.VerifyMode] = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                                     "required": ssl.CERT_REQUIRED}
NAMES = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
FALSE = ("0", "false", "f", "no", "n", "off")


def shared_context(base: type[Any], context: ssl.SSLContext) -> type[Any]:
    """`base`, a redis-py TLS connection class, whose connections all use `context`. Each context redis-py
    builds loads the system's authorities: a quarter of a second of CPU on a busy machine, so that a burst
    of new connections (a Cluster's, on the first requests) held the loop past redis_timeout."""

    class SharedContext(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.ssl_context.context = context  # RedisSSLContext.get() returns it, built or not

    SharedContext.__name__ = SharedContext.__qualname__ = f"Shared{base.__name__}"
    return SharedContext


class RedisTls(msgspec.Struct, frozen=True, kw_only=True):
    cert_reqs: CertReqs = "required"  # redis-py's default for rediss://, and LiteLLM's
    ca_certs: str | None = None  # trusted beside the system's authorities
    certfile: str | None = None  # a client certificate, for a server with tls-auth-clients
    keyfile: str | None = None
    check_hostname: bool = True

    def redis_py(self) -> dict[str, Any]:
        """redis-py's keyword arguments for these settings."""
        return {"ssl_cert_reqs": self.cert_reqs, "ssl_ca_certs": self.ca_certs, "ssl_certfile": self.certfile,
                "ssl_keyfile": self.keyfile, "ssl_check_hostname": self.check_hostname}


def read_tls(sources: list[Mapping[str, Any]], source: str) -> RedisTls:
    """The settings from the first of `sources` (each keyed by redis-py's `ssl_*` names) that gives each."""
    def first(name: str) -> Any:
        return next((s[name] for s in sources if s.get(name) not in (None, "")), None)

    cert_reqs = str(first("ssl_cert_reqs") or "required").lower()
    if cert_reqs not in VERIFY:
        raise ConfigError(f"{source}: ssl_cert_reqs {cert_reqs!r} is not one of none, optional, required")
    check_hostname = first("ssl_check_hostname")
    if isinstance(check_hostname, str):
        check_hostname = check_hostname.strip().lower() not in FALSE
    return RedisTls(cert_reqs=cert_reqs, ca_certs=first("ssl_ca_certs"),  # type: ignore[arg-type]
                    certfile=first("ssl_certfile"), keyfile=first("ssl_keyfile"),
                    check_hostname=True if check_hostname is None else bool(check_hostname))


def tls_context(tls: RedisTls) -> ssl.SSLContext:
    """The context for the gateway's own connection; a ConfigError names a file that cannot be used."""
    context = ssl.create_default_context()
    context.check_hostname = tls.check_hostname and tls.cert_reqs != "none"
    context.verify_mode = VERIFY[tls.cert_reqs]
    try:
        if tls.certfile or tls.keyfile:
            context.load_cert_chain(certfile=tls.certfile or "", keyfile=tls.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ssl_certfile / ssl_keyfile: {tls.certfile}, {tls.keyfile}: {_reason(exc)}") from None
    try:
        if tls.ca_certs:
            context.load_verify_locations(cafile=tls.ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ssl_ca_certs: {tls.ca_certs}: {_reason(exc)}") from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
