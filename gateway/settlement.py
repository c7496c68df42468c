"""How one request ended, made once in a `finally` around the relay and read by every plugin.

Whatever ends a request (an answer, an upstream error, a timeout, retries
exhausted, a client that left, a plugin that failed), the gateway settles it
exactly once, before the last bytes of the answer go out. Budgets, rate-limit
buckets, a deployment's tpm, the spend record, metrics, Langfuse and the access
log all read this one object; none of them works out usage or status itself.
"""

from __future__ import annotations

import msgspec

from gateway.errors import ApiError
from gateway.usage import Usage

CLIENT_LEFT = 499  # nginx's word for a client that closed the connection before its answer was whole


class Settlement(msgspec.Struct, frozen=True):
    """`usage` is None when nothing reached an upstream (turned away, no route, the upstream refused);
    else the upstream's own report, or an estimate (`usage.estimated`) from the prompt and what the
    client was sent."""

    status: int
    usage: Usage | None
    cost: float
    error: ApiError | None
    client_left: bool
    response_started: bool
    bytes_sent: int
    ended: float

    @property
    def failed(self) -> bool:
        """An error the gateway or an upstream caused; a client that left is not one."""
        return not self.client_left and (self.error is not None or self.status >= 400)

    @property
    def outcome(self) -> str:
        """As the spend log says it: success, failure or cancelled."""
        if self.client_left:
            return "cancelled"
        return "failure" if self.failed else "success"
