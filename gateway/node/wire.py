"""The messages between a worker and the node's counters, msgpack arrays behind a 4-byte length.

A worker sends calls (with an id; the node answers `Reply` with the same id) and casts (no
answer). The node pushes `Cooldown` and `Failing` to every worker. Arrays with the tag first keep
each message a few bytes and one msgspec decode.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

HEADER = 4


class Take(msgspec.Struct, tag="take", array_like=True):
    id: int
    names: list[str]
    capacities: list[float]
    amounts: list[float]


class Give(msgspec.Struct, tag="give", array_like=True):
    names: list[str]
    capacities: list[float]
    amount: float


class Acquire(msgspec.Struct, tag="acquire", array_like=True):
    id: int
    names: list[str]
    limits: list[int]
    token: str


class Admit(msgspec.Struct, tag="admit", array_like=True):
    id: int
    names: list[str]
    capacities: list[float]
    amounts: list[float]
    slots: list[str]
    limits: list[int]
    token: str


class Release(msgspec.Struct, tag="release", array_like=True):
    names: list[str]
    token: str


class Reserve(msgspec.Struct, tag="reserve", array_like=True):
    id: int
    counters: list[tuple[str, float, float, float | None]]  # name, limit, baseline, expires_at
    amount: float


class Settle(msgspec.Struct, tag="settle", array_like=True):
    names: list[str]
    reserved: float
    actual: float


class Spent(msgspec.Struct, tag="spent", array_like=True):
    id: int
    name: str


class Copy(msgspec.Struct, tag="copy", array_like=True):
    """A budget counter carried over to a new name (a regenerated key)."""
    id: int
    source: str
    target: str
    expires_at: float | None


class Failure(msgspec.Struct, tag="failure", array_like=True):
    """A call: the node answers once it has sent any cooldown this failure caused to every worker."""
    id: int
    deployment: str
    retry_after: float | None


class Success(msgspec.Struct, tag="success", array_like=True):
    deployment: str


class Ping(msgspec.Struct, tag="ping", array_like=True):
    id: int


class Reply(msgspec.Struct, tag="reply", array_like=True):
    id: int
    value: Any


class Cooldown(msgspec.Struct, tag="cooldown", array_like=True):
    deployment: str
    until: float  # time.monotonic(), one clock for every process of the node
    counted: bool  # in the metrics of the process that receives it: only the one whose failure tipped it


class Failing(msgspec.Struct, tag="failing", array_like=True):
    deployment: str
    failing: bool


ToNode = Take | Give | Acquire | Admit | Release | Reserve | Settle | Spent | Copy | Failure | Success | Ping
ToWorker = Reply | Cooldown | Failing

_encoder = msgspec.msgpack.Encoder()


_LENGTH = struct.Struct(">I")


def frame(message: msgspec.Struct) -> bytes:
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


class Frames:
    """Whole messages out of a byte stream that arrives in pieces."""

    __slots__ = ("buffer", "decoder")

    def __init__(self, decoder: msgspec.msgpack.Decoder[Any]) -> None:
        self.buffer = bytearray()
        self.decoder = decoder

    def feed(self, data: bytes) -> list[Any]:
        buffer = self.buffer
        buffer += data
        found = []
        start = 0
        end = len(buffer)
        with memoryview(buffer) as view:
            while end - start >= HEADER:
                (size,) = _LENGTH.unpack_from(buffer, start)
                if end - start - HEADER < size:
                    break
                found.append(self.decoder.decode(view[start + HEADER:start + HEADER + size]))
                start += HEADER + size
        del buffer[:start]
        return found
