"""AWS event-stream framing (application/vnd.amazon.eventstream), as Bedrock streams its answers.

Each message is a prelude (total length, headers length, the prelude's CRC32), headers (`:event-type`,
`:message-type`, `:exception-type`, `:content-type`), a payload, and a CRC32 of the whole message. The
parsing is botocore's `EventStreamBuffer`, the one boto3 reads Bedrock with: it checks both checksums and
the length limits, and keeps a message cut across reads until it is whole. This module only gives its
messages a typed shape. A frame that fails its checksum ends the stream as the upstream's failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import msgspec
from botocore.eventstream import EventStreamBuffer, ParserError


class Frame(msgspec.Struct, frozen=True):
    """One message: an event (`kind` its :event-type) or an exception (`kind` its :exception-type)."""

    kind: str
    exception: bool
    payload: bytes


class FrameError(Exception):
    """The bytes are not event-stream messages (a checksum or a length is wrong)."""


class FrameReader:
    """feed() each read; it yields the messages that are now whole."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = EventStreamBuffer()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self.buffer.add_data(data)
        try:
            for message in self.buffer:
                # botocore-stubs types `headers` as int; botocore's parser makes it a dict of the header values.
                headers = cast("dict[str, Any]", message.headers)
                if headers.get(":message-type") == "exception":
                    yield Frame(str(headers.get(":exception-type", "")), True, message.payload)
                elif headers.get(":message-type") == "error":  # the framing's own error form
                    yield Frame(str(headers.get(":error-code", "")), True, message.payload)
                else:
                    yield Frame(str(headers.get(":event-type", "")), False, message.payload)
        except ParserError as exc:
            raise FrameError(str(exc) or type(exc).__name__) from None

