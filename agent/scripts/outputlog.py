"""The output log of one script: raw output files plus a durable sequence index.

The script writes straight into ``stdout.raw`` and ``stderr.raw`` (the agent
writes its own notes to ``debug.raw``), so output reaches disk without passing
through the agent and keeps flowing while the agent is down. *Ingesting* gives
the new complete lines sequence numbers by appending one record per batch to
``log.index`` (JSON lines: first sequence, source, byte range, line count,
time). Only ingested lines are served, so every line served has its number
on disk first, and a restarted agent continues from the index: no line is
lost or numbered twice.

Lines are split at ``\\n``; a line longer than MAX_LINE bytes is split into
pieces of MAX_LINE (split, not lost). Bytes are decoded as UTF-8 with
replacement when served.

A full disk stops nothing: a note that cannot be written is sent to the
agent's log instead, and lines whose index record cannot be written stay
unnumbered (and unserved) until space returns; a record is never left torn.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from agent.atomicfile import NotRegularFile, append_record, open_regular

log = logging.getLogger(__name__)
SOURCES = ("stdout", "stderr", "debug")
RAW_FILES = {source: f"{source}.raw" for source in SOURCES}
INDEX_FILE = "log.index"
MAX_LINE = 16 * 1024
NEWLINE = ord("\n")
INGEST_BUDGET = 4 * 1024 * 1024
BATCH_BYTES = 512 * 1024  # small batches: serving from the middle of one rescans little
RECENT_BYTES = INGEST_BUDGET + BATCH_BYTES  # per log: what ingests read, kept for one read
# Raw bytes per read. Encoding can grow a byte to at most 6 (a control
# character as \u00XX), so a read always fits a 4 MiB message.
READ_BUDGET = 512 * 1024
# A script run as another uid owns its workspace and may put links or FIFOs there:
# the agent opens its files there with open_regular only (never following a link
# to a file of its choosing, never blocking on a FIFO)
NOTE_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT
INDEX_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # see _load_index


def _read(path: Path) -> BinaryIO:
    """``path`` opened for reading; a link or a non-regular file raises OSError."""
    return os.fdopen(open_regular(path, os.O_RDONLY), "rb")


@dataclass(frozen=True)
class Batch:
    """Consecutive lines of one source, ingested together."""

    first: int
    source: str
    start: int
    end: int
    count: int
    occurred: str
    plain: bool = False  # no line was split for length: the bytes are the lines as they are

    @property
    def last(self) -> int:
        return self.first + self.count - 1


def split_lines(data: bytes) -> list[bytes]:
    """Split complete data into lines by the log's rule (no trailing newline needed)."""
    parts = data.split(b"\n")
    if max(map(len, parts)) <= MAX_LINE:  # the usual case, at C speed
        return parts
    lines: list[bytes] = []
    for line in parts:
        if len(line) <= MAX_LINE:
            lines.append(line)
        else:
            lines.extend(line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE))
    return lines


def has_long_line(data: bytes, end: int | None = None) -> bool:
    """True if some line of ``data[:end]`` is longer than MAX_LINE; looks at every
    MAX_LINE-th byte or so."""
    position, end = 0, len(data) if end is None else end
    while end - position > MAX_LINE:
        newline = data.rfind(b"\n", position, position + MAX_LINE + 1)
        if newline < 0:
            return True
        position = newline + 1  # every line before this newline is short enough
    return False


def count_lines(data: bytes, end: int | None = None) -> tuple[int, bool]:
    """``len(split_lines(data[:end]))``, and True if no line had to be split (then
    cheaply, without copying ``data``)."""
    end = len(data) if end is None else end
    if has_long_line(data, end):
        return len(split_lines(data[:end])), False
    return data.count(b"\n", 0, end) + 1, True


class OutputLog:
    """Reads and extends one workspace's log. Not safe for concurrent ingestion."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.batches: list[Batch] = []
        self.offsets = dict.fromkeys(SOURCES, 0)
        # What ingests read and no read has served to its end yet, oldest first, at most
        # RECENT_BYTES: a reader behind the numbering (the streaming client asks for the
        # next 4 MiB while the last ingest's are still unserved) is served from memory
        self._recent: dict[Batch, bytes] = {}
        self._recent_bytes = 0
        self._refused: set[str] = set()  # sources whose file was replaced by a script
        self._load_index()

    @property
    def next_sequence(self) -> int:
        return self.batches[-1].last + 1 if self.batches else 1

    def raw_path(self, source: str) -> Path:
        return self.directory / RAW_FILES[source]

    def note(self, text: str) -> None:
        """Append a debug line from the agent (mutex waits, cancellation...).

        Never raises: on a full disk the note goes to the agent's log instead."""
        line = text.replace("\n", " ").encode("utf-8") + b"\n"
        try:
            fd = open_regular(self.raw_path("debug"), NOTE_FLAGS, 0o600)
            with os.fdopen(fd, "ab") as file:
                file.write(line)
        except OSError as error:
            log.warning("%s: cannot write the note %r (%s)", self.directory.name, text, error)

    def ingest(self, *, final: bool = False, budget: int = INGEST_BUDGET) -> bool:
        """Number the new complete lines of every source; returns True if all was read.

        With ``final`` (the script has ended), a last line without a newline counts too.
        """
        complete = True
        try:
            for source in SOURCES:
                complete &= self._ingest_source(source, final, budget)
        except OSError as error:  # a full disk: these lines get their numbers later
            log.warning("%s: cannot number new output lines yet (%s)", self.directory.name, error)
            return False
        return complete

    def backlog(self, after: int) -> int:
        """Bytes of numbered lines above ``after`` (counting whole batches)."""
        return sum(batch.end - batch.start for batch in self._batches_after(after))

    def unread(self) -> bool:
        """True if some output has not been numbered yet."""
        return self.unread_bytes() > 0

    def unread_bytes(self) -> int:
        """Bytes of output not numbered yet, in every source."""
        unread = 0
        for source in SOURCES:
            try:
                found = os.lstat(self.raw_path(source))  # a link's target is not output
            except FileNotFoundError:
                continue
            if stat.S_ISREG(found.st_mode):
                unread += max(0, found.st_size - self.offsets[source])
        return unread

    def _ingest_source(self, source: str, final: bool, budget: int) -> bool:
        try:
            file = _read(self.raw_path(source))
        except FileNotFoundError:
            return True
        except OSError as error:
            if not _planted(error):
                raise
            self._refuse(source, error)  # as if absent: nothing more of it is served
            return True
        with file:
            size = os.fstat(file.fileno()).st_size
            limit = min(size, self.offsets[source] + budget)
            while (start := self.offsets[source]) < limit:
                end = min(limit, start + BATCH_BYTES)
                file.seek(start)
                data = file.read(end - start)
                cut = len(data) if final and end == size else _complete_prefix(data)
                if cut == 0:
                    break
                # a newline ends the last line rather than starting another
                count, plain = count_lines(data, cut - (data[cut - 1] == NEWLINE))
                batch = Batch(self.next_sequence, source, start, start + cut, count, _now(), plain)
                self._append(batch)
                self._remember(batch, data[:cut])  # about to be served: spare a re-read
        return self.offsets[source] == size

    def _refuse(self, source: str, error: OSError) -> None:
        """Say once in the script's log that ``source``'s file was replaced."""
        if source not in self._refused:
            self._refused.add(source)
            self.note(f"{RAW_FILES[source]} was replaced by a link or a non-regular file; "
                      f"its further output is ignored ({error.strerror})")  # fmt: skip

    def _append(self, batch: Batch) -> None:
        record = {"s": batch.first, "src": batch.source, "a": batch.start, "b": batch.end,
                  "p": batch.plain,
                  "n": batch.count, "t": batch.occurred}  # fmt: skip
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        append_record(self.directory / INDEX_FILE, line)  # whole or not at all
        self.batches.append(batch)
        self.offsets[batch.source] = batch.end

    def read(self, after: int, max_bytes: int = READ_BUDGET) -> tuple[list[dict[str, Any]], int]:
        """Entries for the lines numbered above ``after``, up to about ``max_bytes`` raw bytes.

        Returns the entries (one per run of lines: Source, Sequence of the first,
        Count, Text with the lines joined by newlines, Occurred) and the number
        of the last line returned (``after`` when there is none).
        """
        runs, last = self.read_raw(after, max_bytes)
        entries = [{**meta, "Text": bytes(raw).decode("utf-8", "replace")} for meta, raw in runs]
        return entries, last

    def read_raw(
        self, after: int, max_bytes: int = READ_BUDGET
    ) -> tuple[list[tuple[dict[str, Any], bytes | memoryview]], int]:
        """Like :meth:`read`, with each run's lines as raw bytes joined by newlines
        (and its byte count as ``Length``) instead of ``Text``."""
        runs: list[tuple[dict[str, Any], bytes | memoryview]] = []
        last = after
        size = 0
        for batch in self._batches_after(after):
            raw, first, taken, complete = self._run(batch, after, max_bytes - size, not runs)
            if taken == 0:
                break
            meta = {"Source": batch.source, "Sequence": first, "Count": taken,
                    "Length": len(raw), "Occurred": batch.occurred}  # fmt: skip
            runs.append((meta, raw))
            size += len(raw) + 1
            last = first + taken - 1
            if complete:
                self._forget(batch)  # served to its end: a reader asks for what follows
            if not complete or size >= max_bytes:
                break
        return runs, last

    def _run(
        self, batch: Batch, after: int, budget: int, at_least_one: bool
    ) -> tuple[bytes | memoryview, int, int, bool]:
        """The lines of ``batch`` above ``after`` that fit ``budget``:
        (joined bytes, first sequence, count, whether the batch's end was reached)."""
        data = self._data(batch)
        ends_line = data.endswith(b"\n")
        if after < batch.first and len(data) <= budget and batch.plain:
            # the whole batch, as it lies on disk, without copying it
            return memoryview(data)[: len(data) - ends_line], batch.first, batch.count, True
        lines = split_lines(data.removesuffix(b"\n"))[max(0, after - batch.first + 1) :]
        taken = _take(lines, budget) or (1 if at_least_one else 0)
        return b"\n".join(lines[:taken]), max(batch.first, after + 1), taken, taken == len(lines)

    def _batches_after(self, after: int) -> Iterator[Batch]:
        low, high = 0, len(self.batches)
        while low < high:  # the first batch whose last line is above ``after``
            middle = (low + high) // 2
            if self.batches[middle].last <= after:
                low = middle + 1
            else:
                high = middle
        yield from self.batches[low:]

    def _remember(self, batch: Batch, data: bytes) -> None:
        """Keep ``data`` for its first read, forgetting the oldest beyond RECENT_BYTES."""
        self._recent[batch] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_BYTES:
            self._forget(next(iter(self._recent)))

    def _forget(self, batch: Batch) -> None:
        if (data := self._recent.pop(batch, None)) is not None:
            self._recent_bytes -= len(data)

    def _data(self, batch: Batch) -> bytes:
        if (recent := self._recent.get(batch)) is not None:
            return recent
        with _read(self.raw_path(batch.source)) as file:
            file.seek(batch.start)
            return file.read(batch.end - batch.start)

    def _load_index(self) -> None:
        """Read the index; a torn last record (the agent died mid-write) is cut off,
        so that the next record starts on a line of its own.

        The index is opened once, never through a link (nor blocking on a fifo), and
        believed only if it is a regular file of the agent's with one link: the
        script owns its workspace and may have put something else there, which
        must not make the agent read or cut a file of the script's choosing. Anything
        else is removed and the log numbered again from the raw files, with a note."""
        path = self.directory / INDEX_FILE
        try:
            fd = os.open(path, INDEX_FLAGS)
        except FileNotFoundError:
            return
        except OSError as error:  # a link (ELOOP), a folder (EISDIR)...
            self._renumber(f"it cannot be opened as a file ({error.strerror})")
            return
        with os.fdopen(fd, "r+b") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
                self._renumber(f"it is not a regular file of the agent's (mode {info.st_mode:o}, "
                               f"owner uid {info.st_uid}, {info.st_nlink} links)")  # fmt: skip
                return
            content = file.read()
            good = 0
            for line in content.splitlines(keepends=True):
                batch = _parse_record(line) if line.endswith(b"\n") else None
                if batch is None or batch.first != self.next_sequence:
                    break
                self.batches.append(batch)
                self.offsets[batch.source] = batch.end
                good += len(line)
            if good < len(content):
                os.ftruncate(fd, good)

    def _renumber(self, found: str) -> None:
        """Drop a log.index that is not the agent's: the lines are numbered again."""
        with contextlib.suppress(OSError):  # a folder stays; appends to it then fail
            os.unlink(self.directory / INDEX_FILE)  # the entry itself, never a link's target
        self.note(f"The log's index ({INDEX_FILE}) was not followed, {found}: the output "
                  "is numbered again from its raw files")  # fmt: skip


def _planted(error: OSError) -> bool:
    """True if ``error`` is :func:`open_regular` refusing a link or a non-regular file."""
    return isinstance(error, NotRegularFile) or error.errno in (errno.ELOOP, errno.ENXIO)


def _parse_record(line: bytes) -> Batch | None:
    try:
        record = json.loads(line)
        batch = Batch(
            record["s"],
            record["src"],
            record["a"],
            record["b"],
            record["n"],
            record["t"],
            bool(record.get("p", False)),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return batch if batch.source in SOURCES else None


def _complete_prefix(data: bytes) -> int:
    """Bytes up to the last newline, or whole MAX_LINE pieces of an unfinished long line."""
    newline = data.rfind(b"\n")
    tail = len(data) - (newline + 1)
    if tail >= MAX_LINE:
        return newline + 1 + (tail // MAX_LINE) * MAX_LINE
    return newline + 1


def _take(lines: list[bytes], budget: int) -> int:
    """How many of ``lines`` fit in ``budget`` bytes (with their newlines)."""
    if sum(map(len, lines)) + len(lines) <= budget:  # the usual case, at C speed
        return len(lines)
    size = 0
    for taken, line in enumerate(lines):
        size += len(line) + 1
        if size > budget:
            return taken
    return len(lines)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
