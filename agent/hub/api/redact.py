"""What a log may say about a request: its path and query with every API key masked.

A key belongs in the ``X-Octopus-ApiKey`` header, but a client may put it in the
query string (``?apikey=``, which the API refuses) or even in the path; a log line
must not keep it either way. Pure functions, so that the access log and the error
log mask alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, urlencode

MASK = "API-********"
MASKED_VALUE = "********"
# Anything shaped like a key: API- and 20 or more letters or digits (real keys have 32),
# each character either itself or percent-encoded (%41 is A, %2D is -), since a request
# line aiohttp cannot parse is logged as the raw bytes, before any decoding. The whole
# encoded key is masked. Matched case-insensitively: %2d, %4b and a lower-case key too.
_ENCODED_ALNUM = r"%(?:3[0-9]|[46][1-9A-F]|[57][0-9A])"  # %30-%39, %41-%5A, %61-%7A
KEY_SHAPE = re.compile(
    rf"(?:A|%[46]1)(?:P|%[57]0)(?:I|%[46]9)(?:-|%2D)(?:[A-Z0-9]|{_ENCODED_ALNUM}){{20,}}",
    re.IGNORECASE,
)
# what Octopus and its clients call a key in a query string
KEY_PARAMETERS = frozenset({"apikey", "api_key", "api-key", "x-octopus-apikey"})


def is_key_parameter(name: str) -> bool:
    return name.strip().lower() in KEY_PARAMETERS


def mask_keys(text: str) -> str:
    """``text`` with everything shaped like an API key, plain or percent-encoded in
    whole or in part, replaced by ``API-********``."""
    return KEY_SHAPE.sub(MASK, text)


def loggable_target(path: str, query: Iterable[tuple[str, str]]) -> str:
    """The request's path and query (both decoded, as aiohttp gives them) for a log:
    keys masked, the value of a key parameter masked whatever it holds, and then
    percent-encoded again so that no control character can forge a log line."""
    shown = quote(mask_keys(path), safe="/:@!$&'()*+,;=-._~")
    pairs = [
        (name, MASKED_VALUE if is_key_parameter(name) else mask_keys(value))
        for name, value in query
    ]
    if not pairs:
        return shown
    return f"{shown}?{urlencode([(mask_keys(n), v) for n, v in pairs], safe='*,:/@-')}"
