"""read_chunks on real files: sizes, limits, the end of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.filechunks import read_chunks


@pytest.mark.parametrize(
    ("length", "limit", "sizes"),
    [
        (10, None, [4, 4, 2]),
        (8, None, [4, 4]),
        (0, None, []),
        (10, 6, [4, 2]),  # the length announced, even if the file grew since
        (10, 0, []),
        (5, 8, [4, 1]),  # the file shrank: it ends early, never with an empty chunk
    ],
)
def test_chunks_of_a_file(tmp_path: Path, length: int, limit: int | None, sizes: list[int]) -> None:
    path = tmp_path / "data"
    data = bytes(range(length))
    path.write_bytes(data)
    with path.open("rb") as file:
        chunks = list(read_chunks(file, 4, limit))
    assert [len(chunk) for chunk in chunks] == sizes
    assert b"".join(chunks) == data[: sum(sizes)]


def test_chunks_start_at_the_files_position(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"headerbody")
    with path.open("rb") as file:
        file.seek(6)
        assert list(read_chunks(file, 3)) == [b"bod", b"y"]
