"""Whether Redis turned the gateway away (a certificate it does not trust, a handshake that failed, a
wrong or missing password) rather than being out of reach, and what to check then: the words of the
error the link logs (gateway/shared_link.py).

redis-py keeps the cause only in its message at times (Sentinel lists each sentinel's error in the
text of the one it raises, with each client's repr of some hundreds of characters), so the text is
read as well as the chain of causes, and the reprs are put as host:port.
"""

from __future__ import annotations

import ssl

from redis.exceptions import AuthenticationError

UNTRUSTED = ("Redis's TLS certificate is not trusted: check ssl_ca_certs (the authority that signed it) and "
             "ssl_check_hostname")
HANDSHAKE = ("the TLS handshake with Redis failed: check that the port speaks TLS, and ssl_certfile / ssl_keyfile "
             "if Redis asks for a client certificate")
CREDENTIALS = ("Redis refused the gateway's credentials: check the password (and user name) it is given for "
               "Redis, and sentinel_password for Sentinel")


def refusal(exc: BaseException) -> str | None:
    """What to check, and what failed, when Redis turned the gateway away; None for an outage."""
    chain: list[BaseException] = []
    found: BaseException | None = exc
    while found is not None and len(chain) < 8:
        chain.append(found)
        found = found.__cause__ or found.__context__
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
        hint = UNTRUSTED
    elif any(isinstance(e, ssl.SSLError) for e in chain) or "[SSL" in text:
        hint = HANDSHAKE
    elif any(isinstance(e, AuthenticationError) for e in chain) or any(
            word in text for word in ("WRONGPASS", "NOAUTH", "AuthenticationError", "invalid password")):
        hint = CREDENTIALS
    else:
        return None
    return f"{hint} ({type(exc).__name__}: {_without_reprs(str(exc))})"


def _without_reprs(text: str) -> str:
    """The text with each redis-py client's repr (a few hundred characters, nested) put as host:port."""
    out: list[str] = []
    at = 0
    while (start := text.find("<redis.", at)) >= 0:
        depth, end = 0, start
        while end < len(text):
            depth += {"<": 1, ">": -1}.get(text[end], 0)
            end += 1
            if depth == 0:
                break
        inner = text[start:end]
        host, port = inner.partition(",host=")[2].partition(",")[0], inner.partition(",port=")[2].partition(",")[0]
        out.append(text[at:start] + (f"{host}:{port}" if host and port else "a Redis client"))
        at = end
    return "".join(out) + text[at:]
