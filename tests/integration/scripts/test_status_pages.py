"""docs/protocol.md §8, page size: a status answer holds about 512 KiB of log
(4 MiB with StreamLogs), lines are never cut across pages, NextLogSequence
leads page by page to the end with no line lost or repeated; and a status
never waits for the script."""

from __future__ import annotations

import asyncio
import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.eventually import eventually
from tests.integration.scripts.conftest import Scripts

KIB = 1024
TEXT_PAGE, STREAM_PAGE = 512 * KIB, 4 * 1024 * KIB
MAX_LINE = 16 * KIB  # docs/protocol.md: a longer line is split into pieces of this size
MAX_PAGES = 200  # a bound for the paging loops: far more pages than any test needs
HANG_GUARD = 30.0  # seconds: only a bound for a hang, never an expectation


@dataclass
class Page:
    lines: list[str]
    size: int  # log bytes in the answer: the runs' Lengths
    first: int  # sequence of its first line (0 when it has none)
    status: dict[str, Any]


def numbered_lines(count: int, width: int) -> str:
    """A python script printing ``count`` distinct lines of ``width`` bytes (newline included)."""
    return (
        "import sys\n"
        f"sys.stdout.write(''.join(f'{{i:08d}}'.ljust({width - 1}, 'x') + '\\n' "
        f"for i in range(1, {count + 1})))\n"
    )


def expected_lines(count: int, width: int) -> list[str]:
    return [f"{i:08d}".ljust(width - 1, "x") for i in range(1, count + 1)]


async def read_page(scripts: Scripts, ticket: str, last: int, stream: bool) -> Page:
    """One status answer for the lines after ``last``, with each run's lines checked
    to carry consecutive sequences from ``last + 1``."""
    if stream:
        channel = await scripts.client.connect()
        params = {"ScriptTicket": ticket, "LastLogSequence": last, "StreamLogs": True}
        result = await channel.call("scripts", "status", params)
        assert result.stream is not None, "StreamLogs: the bytes come on a stream"
        data = b"".join([chunk async for chunk in result.stream])
        status: dict[str, Any] = result.value
        texts, offset = [], 0
        for run in status["Logs"]:
            texts.append(data[offset : offset + run["Length"]].decode())
            offset += run["Length"]
        assert offset == len(data), "the stream carries exactly the sum of the Lengths"
    else:
        status = await scripts.status(ticket, last)
        texts = [run["Text"] for run in status["Logs"]]
    lines, expected = [], last + 1
    for run, text in zip(status["Logs"], texts, strict=True):
        assert run["Sequence"] == expected, f"a gap or a repeat at line {expected}: {run}"
        run_lines = text.split("\n")
        assert len(run_lines) == run["Count"]
        lines += run_lines
        expected += run["Count"]
    first = last + 1 if lines else 0
    size = sum(run["Length"] for run in status["Logs"])
    return Page(lines, size, first, status)


async def read_all(scripts: Scripts, ticket: str, stream: bool = False) -> list[Page]:
    """Every page of a Complete script's log, each asked for with the previous
    answer's NextLogSequence, until MoreLogs is false."""
    pages: list[Page] = []
    last = 0
    for _ in range(MAX_PAGES):
        page = await read_page(scripts, ticket, last, stream)
        pages.append(page)
        status = page.status
        assert status["NextLogSequence"] == last + len(page.lines)
        last = status["NextLogSequence"]
        if not status["MoreLogs"]:
            assert status["State"] == "Complete"
            return pages
        assert page.lines, f"MoreLogs but no line after {last}: {status}"
    raise AssertionError(f"more than {MAX_PAGES} pages")


def check_page_sizes(pages: list[Page], limit: int, line: int) -> None:
    """Every page holds at most ``limit`` bytes plus one line, and every page
    but the last one close to ``limit``: pages are full, not a line at a time."""
    for number, page in enumerate(pages, 1):
        assert page.size <= limit + line, f"page {number}: {page.size} bytes"
        if number < len(pages):
            assert page.size >= limit - 2 * line, f"page {number} of {len(pages)}: {page.size}"


async def test_text_pages_hold_about_512_kib_and_lead_to_the_end(scripts: Scripts) -> None:
    count, width = 3 * 1024 * KIB // 100, 100  # 3 MiB in lines of 100 bytes
    started = await scripts.start(numbered_lines(count, width), Syntax="python",
                                  DurationToWaitForScriptToFinish=HANG_GUARD)  # fmt: skip
    assert (started["State"], started["ExitCode"]) == ("Complete", 0)
    ticket = started["Ticket"]
    # The start's own answer is the first page (a status with LastLogSequence 0).
    first = sum(run["Length"] for run in started["Logs"])
    assert TEXT_PAGE - 2 * width <= first <= TEXT_PAGE + width, first
    assert started["Logs"][0]["Sequence"] == 1
    assert started["MoreLogs"] is True

    pages = await read_all(scripts, ticket)
    full = -(-count * width // TEXT_PAGE)  # pages a little short of 512 KiB: one more at most
    assert len(pages) in (full, full + 1), len(pages)
    check_page_sizes(pages, TEXT_PAGE, width)
    assert [line for page in pages for line in page.lines] == expected_lines(count, width)
    assert pages[-1].status["NextLogSequence"] == count
    again = await scripts.status(ticket, count)  # past the end: nothing, not a repeat
    assert (again["Logs"], again["NextLogSequence"], again["MoreLogs"]) == ([], count, False)


async def test_streamed_pages_hold_about_4_mib_and_lead_to_the_end(scripts: Scripts) -> None:
    count, width = 9 * 1024 * KIB // 128, 128  # 9 MiB in lines of 128 bytes
    started = await scripts.start(numbered_lines(count, width), Syntax="python",
                                  DurationToWaitForScriptToFinish=HANG_GUARD)  # fmt: skip
    # over a page's worth: the start may answer before the end (see the test below)
    done = await scripts.wait_complete(started["Ticket"])
    assert done["ExitCode"] == 0

    pages = await read_all(scripts, started["Ticket"], stream=True)
    assert len(pages) == 3  # 4 + 4 + 1 MiB
    check_page_sizes(pages, STREAM_PAGE, width)
    assert [line for page in pages for line in page.lines] == expected_lines(count, width)


async def test_long_lines_are_never_cut_across_pages(scripts: Scripts) -> None:
    """A line longer than a page comes as MAX_LINE pieces; whole lines of MAX_LINE
    bytes that do not fit what is left of a page start the next one, whole."""
    long_line, whole = 1024 * KIB + 5, 70  # longer than a Text page; 70 x 16 KiB > 1 MiB
    body = (
        "import sys\n"
        "sys.stdout.write('short\\n')\n"
        f"sys.stdout.write('L' * {long_line} + '\\n')\n"
        f"sys.stdout.write(''.join(f'{{i:05d}}'.ljust({MAX_LINE}, 'w') + '\\n' "
        f"for i in range({whole})))\n"
        "sys.stdout.write('end')\n"  # the last line, without a newline
    )
    started = await scripts.start(body, Syntax="python",
                                  DurationToWaitForScriptToFinish=HANG_GUARD)  # fmt: skip
    assert (started["State"], started["ExitCode"]) == ("Complete", 0)

    for stream in (False, True):
        pages = await read_all(scripts, started["Ticket"], stream)
        lines = [line for page in pages for line in page.lines]
        pieces = [MAX_LINE] * (long_line // MAX_LINE) + [long_line % MAX_LINE]
        assert [len(line) for line in lines[1 : 1 + len(pieces)]] == pieces
        assert "".join(lines[1 : 1 + len(pieces)]) == "L" * long_line  # split, nothing lost
        expected = [f"{i:05d}".ljust(MAX_LINE, "w") for i in range(whole)]
        assert lines == ["short", *lines[1 : 1 + len(pieces)], *expected, "end"]
        check_page_sizes(pages, STREAM_PAGE if stream else TEXT_PAGE, MAX_LINE)
        if not stream:
            assert len(pages) >= 4  # 2 MiB in Text pages: page breaks fell among them


async def test_status_answers_at_once_while_a_silent_script_blocks(
    scripts: Scripts, tmp_path: Path
) -> None:
    """The script blocks reading a FIFO that only the test writes to: every status
    answered before the test writes was answered while the script was blocked."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    started = await scripts.start(f'read -r word < "{fifo}"; exit 3')
    ticket = started["Ticket"]
    writer = await eventually(lambda: _open_writer(fifo), "the script opened the FIFO")
    try:
        for stream in (False, True):
            try:
                async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing assertion
                    page = await read_page(scripts, ticket, 0, stream)
            except TimeoutError:
                pytest.fail(f"status (StreamLogs {stream}) waited for the blocked script")
            status = page.status
            assert (status["State"], status["ExitCode"]) == ("Running", None)
            assert (status["Logs"], status["NextLogSequence"], status["MoreLogs"]) == (
                [], 0, False,
            )  # fmt: skip
        os.write(writer, b"go\n")
    finally:
        os.close(writer)
    done = await scripts.wait_complete(ticket)
    assert done["ExitCode"] == 3  # it was still blocked: it ended only once released


def _open_writer(fifo: Path) -> int | None:
    """The FIFO's write end once a reader holds it open (never blocks), else None."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno != errno.ENXIO:  # ENXIO: no reader yet
            raise
        return None


async def test_the_next_page_is_asked_for_before_this_one_is_delivered(
    scripts: Scripts, tmp_path: Path
) -> None:
    """execute_script's status call for the next page is out (sent, awaiting its answer)
    whenever a page's lines are handed over, so the agent reads on meanwhile. The
    script then blocks on a FIFO until every line has come: no page is the last."""
    from agent.client.scripts import LogChunk, ScriptRequest, execute_script

    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    lines = 4 * STREAM_PAGE // 64
    body = f'yes "$(printf "%063d" 0)" | head -n {lines}; read -r word < "{fifo}"'
    channel = await scripts.client.connect()
    asked: list[bool] = []  # per delivery: a call of ours out and nothing left unsent
    received = 0
    everything = asyncio.Event()

    def deliver(chunk: LogChunk) -> None:
        nonlocal received
        asked.append(channel.busy and channel.queued_bytes == 0)
        if chunk.source == "stdout":
            received += len(chunk.lines)
        if received >= lines:
            everything.set()

    run = asyncio.ensure_future(execute_script(scripts.client, ScriptRequest(body), deliver))
    try:
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing assertion
            await everything.wait()
        writer = await eventually(lambda: _open_writer(fifo), "the script opened the FIFO")
        try:
            os.write(writer, b"go\n")
        finally:
            os.close(writer)
        outcome = await run
    finally:
        run.cancel()
    assert outcome.exit_code == 0
    assert len(asked) >= 4
    assert all(asked), asked


async def test_a_start_answers_once_a_page_is_printed_not_at_the_end(
    scripts: Scripts, tmp_path: Path
) -> None:
    """A start waits for a short script's end, not for a long output's: the script
    prints 5 MiB, then blocks on a FIFO that only the test writes to, so a start
    answered before the test writes was answered while the script ran."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    lines = 5 * 1024 * KIB // 64
    body = f'yes "$(printf "%063d" 0)" | head -n {lines}; read -r word < "{fifo}"; exit 3'
    try:
        async with asyncio.timeout(HANG_GUARD):  # a hang guard, not a timing assertion
            # the agent's own wait is longer than the guard: only an early answer passes
            started = await scripts.start(body, DurationToWaitForScriptToFinish=2 * HANG_GUARD)
    except TimeoutError:
        pytest.fail("the start waited for the script's end, not for a page of output")
    assert (started["State"], started["ExitCode"]) == ("Running", None)
    assert started["Logs"], "the start's answer is the first page"
    assert started["Logs"][0]["Sequence"] == 1
    writer = await eventually(lambda: _open_writer(fifo), "the script opened the FIFO")
    try:
        os.write(writer, b"go\n")
    finally:
        os.close(writer)
    done = await scripts.wait_complete(started["Ticket"])
    assert done["ExitCode"] == 3
