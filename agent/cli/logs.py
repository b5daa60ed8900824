"""Console logging for the daemon: readable lines, or JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError

from agent.hub.api.redact import mask_keys

# logging's levels as syslog's priorities, highest first; below INFO is 7 (debug)
SYSLOG_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
MALFORMED_SHOWN = 300  # characters of what was wrong kept in the line, after masking


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class KeyMaskingFormatter(logging.Formatter):
    """Another formatter's line with everything shaped like an API key masked.

    The hub masks keys in what it logs itself; this catches what libraries log
    about a request (aiohttp quotes the start of a request line it cannot parse)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask_keys(self.inner.format(record))


class MalformedRequestFilter(logging.Filter):
    """aiohttp's ERROR traceback about a request it could not parse, made one WARNING line.

    A bad request line or header is the client's fault, not the hub's, and a client
    (or a scanner) can send many: each would otherwise be a ~10-line traceback. The
    line says who sent it and what was wrong, keys masked (before truncating, so that
    no part of a key survives) and whitespace collapsed, so it cannot forge a line.
    Other records pass unchanged. aiohttp itself still answers (a text/plain 400):
    no public aiohttp API lets the hub choose that answer (docs/decisions.md).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if (
            record.name == "aiohttp.server"
            and isinstance(error, HttpProcessingError)
            and str(record.msg).startswith("Error handling request")
        ):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed request from %s, answered %d: %s"
            record.args = (remote, error.code, malformed_summary(error.message))
            record.levelno = min(record.levelno, logging.WARNING)
            record.levelname = logging.getLevelName(record.levelno)
            record.exc_info = record.exc_text = None
        return True


def malformed_summary(message: str) -> str:
    """aiohttp's multi-line parser message as one masked line of at most MALFORMED_SHOWN
    characters (the caret under the bad byte dropped: it means nothing on one line)."""
    words = [word for word in mask_keys(message).split() if word != "^"]
    line = " ".join(words)
    return line if len(line) <= MALFORMED_SHOWN else line[: MALFORMED_SHOWN - 3] + "..."


class JournalFormatter(logging.Formatter):
    """A line for journald: no time (the journal stamps each line itself), and the
    level as a syslog priority prefix ("<4>"), which journald reads into PRIORITY
    (``journalctl -p warning``) and strips from the message."""

    def __init__(self) -> None:
        super().__init__("%(levelname)-7s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in SYSLOG_PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{super().format(record)}"


def configure_logging(log_format: str, level: int = logging.INFO, journal: bool = False) -> None:
    """Log to stderr: ``text`` lines (without their time when ``journal``: stderr is
    the journal, see agent.cli.notify.on_journal) or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    inner: logging.Formatter
    if log_format == "json":
        inner = JsonFormatter()
    elif journal:
        inner = JournalFormatter()
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
    handler.setFormatter(KeyMaskingFormatter(inner))
    handler.addFilter(MalformedRequestFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # asyncssh logs every channel of an SSH worker at INFO, with its whole command line
    # (a step's arguments among them): a hub's log is its own lines and asyncssh's warnings
    logging.getLogger("asyncssh").setLevel(max(level, logging.WARNING))
