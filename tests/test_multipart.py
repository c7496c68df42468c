"""gateway/multipart.py's reading of a form's head, however the body is cut into reads: the model is found
where it is, nothing past what was needed is read, and renaming it leaves every other byte in place."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ApiError
from gateway.multipart import boundary_of, read_head

BOUNDARY = "----formdata-fuzz-7MA4YWxkTrZu0gW"

field_names = st.sampled_from(["language", "prompt", "response_format", "temperature", "timestamp_granularities[]"])
values = st.binary(max_size=64).filter(lambda b: b"\r\n--" not in b)
files = st.binary(min_size=0, max_size=3000).filter(lambda b: b"\r\n--" + BOUNDARY.encode() not in b)


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    if filename:
        head = (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
    else:
        head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
    return f"--{BOUNDARY}\r\n".encode() + head.encode() + value + b"\r\n"


def build(before: list[bytes], model: str, after: list[bytes]) -> bytes:
    return b"".join(before) + part("model", model.encode()) + b"".join(after) + f"--{BOUNDARY}--\r\n".encode()


class Reads:
    """The body handed out in the sizes given, as a socket might."""

    def __init__(self, body: bytes, sizes: list[int]) -> None:
        self.body = body
        self.sizes = sizes
        self.at = 0

    async def __call__(self) -> bytes:
        size = self.sizes[len(self.sizes) and self.at % len(self.sizes)] if self.sizes else 7
        chunk = self.body[self.at:self.at + max(1, size)]
        self.at += len(chunk)
        return chunk


@settings(max_examples=200, deadline=None)
@given(before=st.lists(st.tuples(field_names, values), max_size=3),
       file_first=st.one_of(st.none(), files),
       model=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_characters='\r\n'),
                     min_size=1, max_size=40),
       rest=files, sizes=st.lists(st.integers(1, 700), max_size=6), renamed=st.text(min_size=1, max_size=30))
async def test_the_model_is_found_and_renamed_in_place(before: list[tuple[str, bytes]], file_first: bytes | None,
                                                       model: str, rest: bytes, sizes: list[int],
                                                       renamed: str) -> None:
    parts = [part(name, value) for name, value in before]
    if file_first is not None:
        parts.append(part("file", file_first, "first.wav"))
    after = [part("file", rest, "speech.wav")]
    body = build(parts, model, after)
    reads = Reads(body, sizes)
    head = await read_head(reads, BOUNDARY, 1 << 20)
    assert head.model == model and head.fields["model"] == model
    assert head.prefix == body[:reads.at] and body.startswith(head.prefix)
    model_ends = body.index(part("model", model.encode())) + len(part("model", model.encode()))
    assert reads.at <= model_ends + 2 + len(BOUNDARY) + max(sizes or [7])  # read no further than needed
    assert head.with_model(renamed) + body[reads.at:] == build(parts, renamed, after)
    last = dict(before)  # a name given twice keeps its later value
    assert {k: v for k, v in head.fields.items() if k != "model"} == {
        name: value.decode("utf-8", "replace") for name, value in last.items()}


async def test_a_model_past_the_limit_is_refused() -> None:
    body = build([part("file", b"\0" * 5000, "a.wav")], "whisper", [])
    try:
        await read_head(Reads(body, [512]), BOUNDARY, 4096)
    except ApiError as refused:
        assert refused.status == 400 and "send the model field before the file" in refused.message
    else:
        raise AssertionError("a model after 4 KiB was looked for past the limit")


def test_boundaries_quoted_or_not() -> None:
    assert boundary_of(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY
    assert boundary_of('Multipart/Form-Data; charset=utf-8; boundary="a b:c"') == "a b:c"
    for wrong in ("application/json", "multipart/form-data", None):
        try:
            boundary_of(wrong)
        except ApiError as refused:
            assert refused.status == 400
        else:
            raise AssertionError(f"{wrong!r} was taken for a multipart body")
