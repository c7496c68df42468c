"""The spool's file format survives what a crash leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.spend.record import SpendRecord, rows_of, spool_line
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


def test_lines_spooled_before_the_end_user_column_are_still_written() -> None:
    """An upgrade must not drop what the previous version spooled: its lines lack the end_user column."""
    current = spool_line(SpendRecord(request_id="new", end_user="acme"))
    older = b"[1" + spool_line(SpendRecord(request_id="old"))[2:].rsplit(b",", 1)[0] + b"]\n"
    rows = rows_of(older + current)
    assert [(row[0], row[-1]) for row in rows] == [("old", None), ("new", "acme")]
    assert all(len(row) == len(rows[1]) for row in rows)
