"""The output log on a real full disk: lines wait for their numbers, no record is torn."""

from __future__ import annotations

from pathlib import Path

from agent.scripts.outputlog import INDEX_FILE, OutputLog
from tests.helpers.smalldisk import fill, small_disk


def test_lines_are_numbered_once_space_returns_and_the_index_stays_whole(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk", 1) as disk:
        workspace = disk / "w"
        workspace.mkdir()
        (workspace / "stdout.raw").write_bytes(b"one\ntwo\n")
        fill(disk / "filler")
        log = OutputLog(workspace)
        assert log.ingest() is False  # no room for the index record: nothing numbered
        assert log.next_sequence == 1
        assert (workspace / INDEX_FILE).read_bytes() == b""
        log.note("not written, logged instead")  # does not raise
        (disk / "filler").unlink()
        assert log.ingest() is True
        entries, last = log.read(0)
        assert (last, [e["Text"] for e in entries]) == (2, ["one\ntwo"])
        reloaded = OutputLog(workspace)  # what is on disk reads back whole
        assert reloaded.next_sequence == 3
