"""Reading a file in chunks: the one loop every sender of a file's bytes uses.

Blocking reads: a caller on an event loop advances the iterator in a worker
thread (services.fileio.in_thread) where a slow disk must not stall the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 256 * 1024  # large enough to amortise a read and a frame, small enough to stream


def read_chunks(
    file: BinaryIO, chunk_size: int = CHUNK, limit: int | None = None
) -> Iterator[bytes]:
    """Successive chunks of at most ``chunk_size`` bytes from ``file``'s position.

    Stops at the end of the file or after ``limit`` bytes (the length a
    transfer announced: a file that grew meanwhile sends no more than that;
    one that shrank ends early, and the receiver's length check notices).
    Never yields an empty chunk.
    """
    remaining = limit
    while remaining is None or remaining > 0:
        wanted = chunk_size if remaining is None else min(chunk_size, remaining)
        chunk = file.read(wanted)
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
