"""Console logging for the daemon: readable lines, or JSON lines for machines."""

from __future__ import annotations

import json
import logging
import sys

from agent.hub.api.redact import mask_keys


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


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    inner = (
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
    )
    handler.setFormatter(KeyMaskingFormatter(inner))
    logging.basicConfig(level=level, handlers=[handler], force=True)
