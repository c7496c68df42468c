"""The head of a multipart/form-data upload: read up to its `model` field, never the file whole.

An upload (/audio/transcriptions, /audio/translations) is routed by its `model` field, which clients
send before the file (the openai SDK, through httpx, writes the form's fields before its files). The
body is read part by part (RFC 7578, delimiters as RFC 2046 §5.1.1 has them) until the `model` part is
whole; what was read is kept (`Head.prefix`) and goes upstream first, with the model's value replaced
by the deployment's, and the rest of the body is relayed as it arrives. A `model` that comes after a
file is still found while the bytes before it fit in `limit`; past that the upload is refused (400)
rather than held in memory.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from gateway.errors import ApiError, bad_request

MAX_FIELD = 4096  # a form field kept as text (not a file): longer ones are passed on unread
_NAME = re.compile(rb'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'(?:^|;)\s*filename\*?=', re.IGNORECASE)
_BOUNDARY = re.compile(r'(?:^|;)\s*boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


class Head(NamedTuple):
    prefix: bytes  # the body as read so far: every part up to the model's, perhaps more
    model: str
    model_at: tuple[int, int]  # the model's value within prefix
    fields: dict[str, str]  # the short text fields before it (and the model)

    def with_model(self, model: str) -> bytes:
        start, end = self.model_at
        return self.prefix[:start] + model.encode() + self.prefix[end:]


def boundary_of(content_type: str | None) -> str:
    kind = (content_type or "").partition(";")[0].strip().lower()
    if kind != "multipart/form-data":
        raise bad_request(f"this endpoint takes multipart/form-data (a file and its fields), not "
                          f"{kind or 'a body without a Content-Type'}", "file")
    found = _BOUNDARY.search(content_type or "")
    if found is None:
        raise bad_request("the multipart/form-data Content-Type names no boundary", "file")
    return found.group(1) or found.group(2)


async def read_head(read: Callable[[], Awaitable[bytes]], boundary: str, limit: int) -> Head:
    """`read` gives the body's next bytes (b"" at its end)."""
    delimiter = b"--" + boundary.encode("latin-1")
    buffer = bytearray()
    fields: dict[str, str] = {}

    async def more() -> None:
        if len(buffer) > limit:
            raise bad_request(f"no 'model' field in the first {limit // 1024} KiB of the form; send the model "
                              "field before the file", "model")
        chunk = await read()
        if not chunk:
            raise bad_request("the multipart body ended before its 'model' field was whole", "model")
        buffer.extend(chunk)

    while (at := buffer.find(delimiter)) < 0:
        await more()
    pos = at + len(delimiter)
    while True:
        while len(buffer) < pos + 2:
            await more()
        if buffer[pos:pos + 2] == b"--":
            raise bad_request("missing required parameter: 'model' (a form field)", "model")
        if buffer[pos:pos + 2] != b"\r\n":
            raise _malformed("a delimiter is not followed by CRLF")
        headers_start = pos + 2
        while (headers_end := buffer.find(b"\r\n\r\n", headers_start)) < 0:
            await more()
        disposition = _disposition(bytes(buffer[headers_start:headers_end]))
        name = _NAME.search(disposition)
        if name is None:
            raise _malformed("a part has no Content-Disposition name")
        data_start = headers_end + 4
        closing = b"\r\n" + delimiter
        while (data_end := buffer.find(closing, data_start)) < 0:
            await more()
        field = name.group(1).decode("utf-8", "replace")
        if field == "model" and not _FILENAME.search(disposition):
            try:
                model = bytes(buffer[data_start:data_end]).decode()
            except UnicodeDecodeError:
                raise bad_request("'model' must be UTF-8 text", "model") from None
            if not model:
                raise bad_request("'model' must be a non-empty string", "model")
            fields["model"] = model
            return Head(bytes(buffer), model, (data_start, data_end), fields)
        if not _FILENAME.search(disposition) and data_end - data_start <= MAX_FIELD:
            fields[field] = bytes(buffer[data_start:data_end]).decode("utf-8", "replace")
        pos = data_end + len(closing)


def _disposition(headers: bytes) -> bytes:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            return value.strip()
    raise _malformed("a part has no Content-Disposition header")


def _malformed(why: str) -> ApiError:
    return bad_request(f"the multipart body is malformed: {why}", "file")
