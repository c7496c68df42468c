"""The spool's file format survives what a crash leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from gateway.spend.record import COLUMNS, SpendRecord, row_values, rows_of, spool_line
from gateway.spend.spool import READY_SUFFIX, Spool, read_segment


def test_a_cut_off_last_line_and_a_damaged_line_are_skipped(tmp_path: Path) -> None:
    whole = [spool_line(SpendRecord(request_id=f"r{i}", spend=0.5)) for i in range(3)]
    segment = tmp_path / f"x{READY_SUFFIX}"
    segment.write_bytes(whole[0] + b'[1, "broken\n' + whole[1] + whole[2][:-9])
    lines = read_segment(segment)
    assert lines.endswith(b"\n") and whole[2][:-9] not in lines
    assert [row[0] for row in rows_of(lines)] == ["r0", "r1"]


def test_segments_rotate_and_a_dead_writers_segment_is_taken_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(SpendRecord(request_id="a"))
    assert spool.pending() == []  # the open segment is still ours
    spool.rotate()
    ready = spool.pending()
    assert len(ready) == 1 and ready[0].suffix == READY_SUFFIX
    ready[0].unlink()
    # A segment left open by a process that died: nobody holds its lock any more.
    orphan = tmp_path / f"{os.getpid() + 1}-1-1.open"
    orphan.write_bytes(spool_line(SpendRecord(request_id="b")))
    taken = spool.pending()
    assert [p.name for p in taken] == [orphan.with_suffix(READY_SUFFIX).name]
    assert rows_of(read_segment(taken[0]))[0][0] == "b"
    spool.close()


def older_line(record: SpendRecord, version: int, columns: int) -> bytes:
    """`record` as a spool line of an earlier version, which had only the first `columns` columns."""
    values = msgspec.json.decode(spool_line(record))[1:columns + 1]
    return msgspec.json.encode([version, *values]) + b"\n"


def test_lines_spooled_before_columns_were_added_are_still_written() -> None:
    """An upgrade must not drop what an earlier version spooled: version 1 lines lack end_user and the
    token parts, version 2 lines the token parts. Each missing column is read as its default."""
    current = spool_line(SpendRecord(request_id="new", end_user="acme", cache_read_tokens=4, reasoning_tokens=2))
    first = older_line(SpendRecord(request_id="v1", spend=0.5), 1, COLUMNS.index("end_user"))
    second = older_line(SpendRecord(request_id="v2", end_user="corp"), 2, COLUMNS.index("cache_read_tokens"))
    rows = rows_of(first + second + current)
    assert [dict(zip(COLUMNS, row, strict=True)) for row in rows] == [
        dict(zip(COLUMNS, row_values(record), strict=True)) for record in (
            SpendRecord(request_id="v1", spend=0.5), SpendRecord(request_id="v2", end_user="corp"),
            SpendRecord(request_id="new", end_user="acme", cache_read_tokens=4, reasoning_tokens=2))]
