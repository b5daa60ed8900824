"""aiohttp's traceback about a request it could not parse, as the CLI's logging shows it."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadStatusLine

from agent.cli.logs import MALFORMED_SHOWN, MalformedRequestFilter, malformed_summary

KEY = "API-" + "K" * 32


def _record(error: BaseException, name: str = "aiohttp.server") -> logging.LogRecord:
    return logging.LogRecord(
        name, logging.ERROR, __file__, 1, "Error handling request from %s", ("10.0.0.9",),
        (type(error), error, None),
    )  # fmt: skip


def test_a_parse_error_becomes_one_masked_warning_line() -> None:
    record = _record(BadStatusLine(f"GET /?apikey={KEY} HTTP/1.1 junk\n   ^"))
    assert MalformedRequestFilter().filter(record)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    line = record.getMessage()
    assert "\n" not in line
    assert "K" * 20 not in line
    assert line.startswith("malformed request from 10.0.0.9, answered 400: Bad status line")


def test_a_long_line_is_masked_before_it_is_cut_so_no_part_of_a_key_is_left() -> None:
    message = "x" * (MALFORMED_SHOWN - 10) + KEY  # a cut first would leave API-KKKKKK
    summary = malformed_summary(message)
    assert len(summary) == MALFORMED_SHOWN
    assert "K" not in summary


def test_other_records_pass_unchanged() -> None:
    record = _record(ValueError("boom"))
    assert MalformedRequestFilter().filter(record)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
