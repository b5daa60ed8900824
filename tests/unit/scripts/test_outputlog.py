"""The output log: numbering, splitting, reading back, and surviving a torn index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.scripts import outputlog
from agent.scripts.outputlog import (
    BATCH_BYTES,
    INDEX_FILE,
    MAX_LINE,
    OutputLog,
    count_lines,
    has_long_line,
    split_lines,
)


def write(log: OutputLog, source: str, data: bytes) -> None:
    with log.raw_path(source).open("ab") as file:
        file.write(data)


def all_lines(log: OutputLog) -> list[tuple[int, str, str]]:
    lines, last = [], 0
    while True:
        entries, last = log.read(last, max_bytes=64)
        if not entries:
            return lines
        for entry in entries:
            for offset, text in enumerate(entry["Text"].split("\n")):
                lines.append((entry["Sequence"] + offset, entry["Source"], text))


def test_only_complete_lines_are_numbered_until_the_end(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    write(log, "stdout", b"one\ntw")
    log.ingest()
    assert [text for _, _, text in all_lines(log)] == ["one"]
    write(log, "stdout", b"o\nthree")
    write(log, "stderr", b"oops\n")
    log.ingest(final=True)
    assert all_lines(log) == [
        (1, "stdout", "one"), (2, "stdout", "two"), (3, "stdout", "three"), (4, "stderr", "oops")
    ]  # fmt: skip


def test_numbers_survive_a_reopen_and_a_torn_index_record(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    write(log, "stdout", b"a\nb\n")
    log.ingest()
    with (tmp_path / INDEX_FILE).open("ab") as index:
        index.write(b'{"s":3,"src":"std')  # the agent died mid-record
    reopened = OutputLog(tmp_path)
    assert reopened.next_sequence == 3
    write(reopened, "stdout", b"c\n")
    reopened.ingest()
    assert [n for n, _, _ in all_lines(OutputLog(tmp_path))] == [1, 2, 3]


def test_a_long_unfinished_line_is_served_in_pieces(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    write(log, "stdout", b"x" * (2 * MAX_LINE + 10))
    log.ingest()
    assert [len(text) for _, _, text in all_lines(log)] == [MAX_LINE, MAX_LINE]
    log.ingest(final=True)
    assert [len(text) for _, _, text in all_lines(log)] == [MAX_LINE, MAX_LINE, 10]


def test_raw_reads_match_text_reads(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    write(log, "stdout", b"\n".join(b"line %d" % n for n in range(1000)) + b"\n")
    log.ingest()
    runs, last = log.read_raw(10)
    entries, same_last = log.read(10)
    assert last == same_last == 1000
    assert [raw.decode() for _, raw in runs] == [entry["Text"] for entry in entries]
    assert [meta["Length"] for meta, raw in runs] == [len(raw) for _, raw in runs]


lines = st.lists(st.sampled_from([0, 1, 5, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE]),
                 max_size=6)  # fmt: skip


@given(lines)
def test_counting_agrees_with_splitting(lengths: list[int]) -> None:
    data = b"\n".join(b"q" * length for length in lengths)
    long = any(length > MAX_LINE for length in lengths)
    assert count_lines(data) == (len(split_lines(data)), not long)
    assert has_long_line(data) == long
    assert all(len(line) <= MAX_LINE for line in split_lines(data))
    assert b"".join(split_lines(data)) == data.replace(b"\n", b"")


@given(lines, lines)
def test_counting_a_prefix_ignores_what_follows(lengths: list[int], after: list[int]) -> None:
    data = b"\n".join(b"q" * length for length in lengths)
    followed = data + b"\n" + b"\n".join(b"r" * length for length in after)
    assert count_lines(followed, len(data)) == count_lines(data)
    assert has_long_line(followed, len(data)) == has_long_line(data)


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n"])
def test_empty_lines_count(data: bytes) -> None:
    assert count_lines(data) == (data.count(b"\n") + 1, True)


@pytest.mark.parametrize("planted", ["link", "hard link"])
def test_an_index_the_script_replaced_is_not_followed_but_numbered_again(
    tmp_path: Path, planted: str
) -> None:
    # a script owns its workspace: a log.index it planted pointing at another file
    # (root's, at restart) must not be read nor cut down to its "valid" records
    workspace, elsewhere = tmp_path / "ws", tmp_path / "precious.txt"
    workspace.mkdir()
    elsewhere.write_bytes(b"not an index: must stay\n")
    log = OutputLog(workspace)
    write(log, "stdout", b"a\nb\n")
    log.ingest()
    (workspace / INDEX_FILE).unlink()
    if planted == "link":
        (workspace / INDEX_FILE).symlink_to(elsewhere)
    else:
        os.link(elsewhere, workspace / INDEX_FILE)

    reopened = OutputLog(workspace)
    reopened.ingest(final=True)

    assert elsewhere.read_bytes() == b"not an index: must stay\n"
    lines = all_lines(reopened)
    assert [(n, text) for n, source, text in lines if source == "stdout"] == [(1, "a"), (2, "b")]
    notes = [text for _, source, text in lines if source == "debug"]
    assert len(notes) == 1, notes
    assert "log.index) was not followed" in notes[0], notes
    assert not (workspace / INDEX_FILE).is_symlink()
    assert os.stat(workspace / INDEX_FILE).st_nlink == 1  # a fresh index of the agent's


def test_a_reader_behind_the_numbering_is_served_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines an ingest read and no read served yet are not read again from disk after a
    later ingest (a streaming client asks for more while the last ones are unserved)."""
    line = b"x" * 63 + b"\n"
    log = OutputLog(tmp_path)
    write(log, "stdout", line * (2 * BATCH_BYTES // len(line)))
    log.ingest()
    runs, last = log.read_raw(0, BATCH_BYTES)
    assert sum(len(raw) + 1 for _, raw in runs) == BATCH_BYTES  # one batch of two served
    write(log, "stdout", line * (2 * BATCH_BYTES // len(line)))
    log.ingest()
    opened: list[Path] = []
    real = outputlog._read

    def counting(path: Path) -> object:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(outputlog, "_read", counting)
    runs, last = log.read_raw(last, 4 * BATCH_BYTES)
    assert sum(len(raw) + 1 for _, raw in runs) == 3 * BATCH_BYTES
    assert all(bytes(raw) == (line * (BATCH_BYTES // len(line)))[:-1] for _, raw in runs)
    assert opened == [], "served again from the disk"


def test_what_the_log_keeps_for_its_reader_is_bounded(tmp_path: Path) -> None:
    log = OutputLog(tmp_path)
    for _ in range(4):  # ingests nobody reads
        write(log, "stdout", (b"y" * 1023 + b"\n") * (2 * BATCH_BYTES // 1024))
        log.ingest()
    assert log._recent_bytes <= outputlog.RECENT_BYTES
    entries, _ = log.read(0, 64)
    assert entries[0]["Text"] == "y" * 1023  # the oldest, forgotten, read from the disk
