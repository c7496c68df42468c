"""AWS event-stream framing (application/vnd.amazon.eventstream), as Bedrock streams its answers.

A message is a prelude (total length, headers length, a CRC32 of those eight bytes), headers (a name, a
type byte, a value: Bedrock's are strings, `:event-type`, `:message-type`, `:exception-type`,
`:content-type`), the payload, and a CRC32 of everything before it. Both checksums and the lengths are
checked; a message cut across reads is kept until it is whole.

Why not botocore's `EventStreamBuffer`, which boto3 reads Bedrock with: it costs about 7.5 µs a message
(generic header decoding call by call, a copy of the buffer at each step), two to three times what translating
the event costs after it (2.5-4 µs, benchmarks/translate_cost.py). This reader does the same checks with one
struct read for the prelude, two crc32 calls over memoryview slices, and each distinct header block
parsed once (a stream repeats a handful), at about 1.8 µs (README's figures). It follows the
format's definition, and tests/test_bedrock.py checks it against botocore's parser on generated messages
(every header type, payloads of any bytes, cuts anywhere, corrupted bytes).
"""

from __future__ import annotations

import struct
from binascii import crc32
from collections.abc import Iterator

import msgspec

PRELUDE = struct.Struct(">III")  # total length, headers length, the prelude's CRC32
PRELUDE_LENGTH = 12
OVERHEAD = PRELUDE_LENGTH + 4  # the prelude and the message's CRC32
MAX_HEADERS = 128 * 1024  # the format's limits, as botocore enforces them
MAX_PAYLOAD = 24 * 1024 * 1024
# Header value types: bool true and false, byte, short, int, long, timestamp, uuid have fixed lengths;
# bytes and string a 2-byte length and that many bytes.
FIXED_LENGTHS = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
BYTES = 6
STRING = 7
MAX_PARSED = 64  # distinct header blocks a reader keeps parsed: a stream has one per kind of event
WANTED = frozenset({b":message-type", b":event-type", b":exception-type", b":error-code"})


class Frame(msgspec.Struct, frozen=True):
    """One message: an event (`kind` its :event-type) or an exception (`kind` its :exception-type)."""

    kind: str
    exception: bool
    payload: bytes


class FrameError(Exception):
    """The bytes are not event-stream messages (a checksum or a length is wrong)."""


class FrameReader:
    """feed() each read; it yields the messages that are now whole."""

    __slots__ = ("rest", "parsed")

    def __init__(self) -> None:
        self.rest = b""  # the start of a message not yet whole
        self.parsed: dict[bytes, dict[bytes, str]] = {}  # header blocks seen, parsed once: they repeat

    def feed(self, data: bytes) -> Iterator[Frame]:
        buffer = self.rest + data if self.rest else data
        parsed = self.parsed
        view = memoryview(buffer)
        at = 0
        end = len(buffer)
        try:
            while end - at >= PRELUDE_LENGTH:
                total, headers_length, prelude_crc = PRELUDE.unpack_from(buffer, at)
                if crc32(view[at:at + 8]) != prelude_crc:
                    raise FrameError(f"prelude checksum mismatch at byte {at}")
                if headers_length > MAX_HEADERS or total < OVERHEAD + headers_length \
                        or total - OVERHEAD - headers_length > MAX_PAYLOAD:
                    raise FrameError(f"impossible lengths: message {total} bytes, headers {headers_length}")
                if end - at < total:
                    break
                last = at + total - 4
                if crc32(view[at + 8:last], prelude_crc) != int.from_bytes(view[last:last + 4], "big"):
                    raise FrameError(f"message checksum mismatch at byte {at}")
                start = at + PRELUDE_LENGTH
                block = buffer[start:start + headers_length]
                headers = parsed.get(block)
                if headers is None:
                    headers = _headers(block, 0, headers_length)
                    if len(parsed) >= MAX_PARSED:
                        parsed.clear()
                    parsed[block] = headers
                payload = buffer[start + headers_length:last]
                at += total
                message_type = headers.get(b":message-type", "event")
                if message_type == "exception":
                    yield Frame(headers.get(b":exception-type", ""), True, payload)
                elif message_type == "error":  # the framing's own error form
                    yield Frame(headers.get(b":error-code", ""), True, payload)
                else:
                    yield Frame(headers.get(b":event-type", ""), False, payload)
        finally:
            view.release()
            self.rest = buffer[at:]


def _headers(buffer: bytes, at: int, end: int) -> dict[bytes, str]:
    """The string headers this reader uses; the others are skipped by their lengths, which are checked."""
    found: dict[bytes, str] = {}
    while at < end:
        name_start = at + 1
        name_end = name_start + buffer[at]
        if name_end >= end:
            raise FrameError("a header runs past the headers")
        kind = buffer[name_end]
        at = name_end + 1
        if kind == STRING or kind == BYTES:  # noqa: PLR1714 - two compares beat a tuple's on this path
            if at + 2 > end:
                raise FrameError("a header runs past the headers")
            length = buffer[at] << 8 | buffer[at + 1]
            at += 2
        else:
            fixed = FIXED_LENGTHS.get(kind)
            if fixed is None:
                raise FrameError(f"unknown header value type {kind}")
            length = fixed
        if at + length > end:
            raise FrameError("a header runs past the headers")
        if kind == STRING:
            name = buffer[name_start:name_end]
            if name in WANTED:
                found[name] = buffer[at:at + length].decode("utf-8", "replace")
        at += length
    return found
