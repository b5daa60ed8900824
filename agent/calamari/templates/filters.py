"""Octostache's built-in filters (``#{Name | ToUpper}``).

Each filter takes the input (None when the variable is missing, or for
``#{ | NowDate}``) and its options as text, and returns text, or None when it
does not apply (wrong options, bad input): the token is then echoed.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import SplitResult, quote, urlsplit

from agent.calamari.templates import dates, markdown

FilterFunction = Callable[[str | None, list[str]], str | None]
FILTERS: dict[str, FilterFunction] = {}


def _filter(*names: str) -> Callable[[FilterFunction], FilterFunction]:
    def register(function: FilterFunction) -> FilterFunction:
        for name in names:
            FILTERS[name.lower()] = function
        return function

    return register


def apply(name: str, value: str | None, options: list[str]) -> str | None:
    """Apply the filter ``name`` (any case); None if unknown or it does not apply."""
    function = FILTERS.get(name.lower())
    if function is None:
        return None
    try:
        return function(value, options)
    except (ValueError, OverflowError, re.error, UnicodeError, binascii.Error):
        return None


# -- case and encodings ------------------------------------------------------


@_filter("ToUpper")
def _upper(value: str | None, options: list[str]) -> str | None:
    return value.upper() if value is not None and not options else None


@_filter("ToLower")
def _lower(value: str | None, options: list[str]) -> str | None:
    return value.lower() if value is not None and not options else None


_ENCODINGS = {"utf8": "utf-8", "utf-8": "utf-8", "unicode": "utf-16-le"}


def _encoding(options: list[str]) -> str | None:
    if not options:
        return "utf-8"
    if len(options) == 1:
        return _ENCODINGS.get(options[0].lower())
    return None


@_filter("ToBase64")
def _to_base64(value: str | None, options: list[str]) -> str | None:
    encoding = _encoding(options)
    if value is None or encoding is None:
        return None
    return base64.b64encode(value.encode(encoding)).decode("ascii")


@_filter("FromBase64")
def _from_base64(value: str | None, options: list[str]) -> str | None:
    encoding = _encoding(options)
    if value is None or encoding is None:
        return None
    return base64.b64decode(value, validate=True).decode(encoding)


def _replacing(table: dict[str, str]) -> FilterFunction:
    def escape(value: str | None, options: list[str]) -> str | None:
        if value is None or options:
            return None
        return "".join(table.get(char, char) for char in value)

    return escape


_XML = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
FILTERS["xmlescape"] = _replacing(_XML)
FILTERS["htmlescape"] = _replacing({**_XML, "/": "&#x2F;"})
FILTERS["jsonescape"] = _replacing(
    {'"': '\\"', "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
)

# Octostache: a run of line breaks (LF or CRLF; a lone CR is not one) gets one more in
# front, CRLF when the run begins with CR: YAML folds one break of a quoted scalar.
_NEWLINE_RUN = re.compile(r"(?:\r?\n)+")


@_filter("YamlSingleQuoteEscape")
def _yaml_single(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    doubled = _NEWLINE_RUN.sub(lambda m: ("\r\n" if m[0][0] == "\r" else "\n") + m[0], value)
    return doubled.replace("'", "''")


def _unicode_escape(char: str) -> str:
    units = char.encode("utf-16-be")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


@_filter("YamlDoubleQuoteEscape")
def _yaml_double(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    table = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
    return "".join(
        table[char] if char in table else char if " " <= char <= "~" else _unicode_escape(char)
        for char in value
    )


def _properties(value: str, extra: dict[str, str]) -> str:
    table = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t", **extra}
    return "".join(
        table[char] if char in table else _unicode_escape(char) if ord(char) >= 0xFF else char
        for char in value
    )


@_filter("PropertiesKeyEscape")
def _properties_key(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    return _properties(value, {" ": "\\ ", ":": "\\:", "=": "\\="})


@_filter("PropertiesValueEscape")
def _properties_value(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    escaped = _properties(value, {})
    return "\\" + escaped if escaped.startswith(" ") else escaped


@_filter("Markdown", "MarkdownToHtml")
def _markdown(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    return markdown.to_html(value.strip()) + "\n"


@_filter("UriEscape")
def _uri_escape(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    return quote(value, safe="!#$&'()*+,/:;=?@[]~")


@_filter("UriDataEscape")
def _uri_data_escape(value: str | None, options: list[str]) -> str | None:
    if value is None or options:
        return None
    return quote(value, safe="")


# -- text ------------------------------------------------------------------


@_filter("Trim")
def _trim(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) > 1:
        return None
    mode = options[0].lower() if options else ""
    return {"": value.strip, "start": value.lstrip, "end": value.rstrip}.get(mode, lambda: None)()


def _count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"expected a non-negative integer, got {text!r}")
    return int(text)


@_filter("Substring")
def _substring(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) not in (1, 2):
        return None
    start, length = (0, _count(options[0])) if len(options) == 1 else map(_count, options)
    if start > len(value):
        return None
    return value[start : start + length]


@_filter("Truncate")
def _truncate(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) not in (1, 2):
        return None
    length = _count(options[0])
    suffix = options[1] if len(options) == 2 else "..."
    return value if len(value) <= length else value[:length] + suffix


def dotnet_replacement(replacement: str) -> str:
    """A .NET regex replacement (``$1``, ``${name}``, ``$$``) in Python's syntax."""
    out = replacement.replace("\\", "\\\\")
    out = re.sub(r"\$\{(\w+)\}", r"\\g<\1>", out)
    out = re.sub(r"\$(\d+)", r"\\g<\1>", out)
    return out.replace("$$", "$")


@_filter("Replace")
def _replace(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) not in (1, 2):
        return None
    replacement = dotnet_replacement(options[1]) if len(options) == 2 else ""
    return re.sub(options[0], replacement, value)


def _test(check: Callable[[str, str], bool]) -> FilterFunction:
    def test(value: str | None, options: list[str]) -> str | None:
        if value is None or len(options) != 1:
            return None
        return "true" if check(value, options[0]) else "false"

    return test


FILTERS["match"] = _test(lambda value, pattern: re.search(pattern, value) is not None)
FILTERS["startswith"] = _test(str.startswith)
FILTERS["endswith"] = _test(str.endswith)
FILTERS["contains"] = _test(lambda value, part: part in value)


@_filter("Append")
def _append(value: str | None, options: list[str]) -> str | None:
    return (value or "") + "".join(options) if options else None


@_filter("Prepend")
def _prepend(value: str | None, options: list[str]) -> str | None:
    return "".join(options) + (value or "") if options else None


_INDENT_WIDTH = re.compile(r"(/)?(\d{1,3})")


@_filter("Indent")
def _indent(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) > 2:
        return None
    if not value:
        return ""
    first, rest = "    ", "    "
    if len(options) == 2:
        first, rest = options
    elif options:
        option = options[0]
        match = _INDENT_WIDTH.fullmatch(option)
        split = re.fullmatch(r"(\d{1,3})/(\d{1,3})", option)
        if split and int(split[1]) <= 255 and int(split[2]) <= 255:
            first, rest = " " * int(split[1]), " " * int(split[2])
        elif match and int(match[2]) <= 255:
            width = " " * int(match[2])
            first, rest = ("", width) if match[1] else (width, width)
        else:
            first = rest = option
    return first + value.replace("\n", "\n" + rest)


# -- hashes ------------------------------------------------------------------


def _hashing(algorithm: str) -> FilterFunction:
    def digest(value: str | None, options: list[str]) -> str | None:
        if value is None or len(options) > 2:
            return None
        encoding, size = "utf8", None
        for option in options:
            if option.isdigit() and size is None:
                size = int(option)
            elif option.lower() in ("utf8", "utf-8", "unicode", "base64"):
                encoding = option.lower()
            else:
                return None
        if encoding == "base64":
            data = base64.b64decode(value, validate=True)
        else:
            data = value.encode(_ENCODINGS[encoding])
        hexdigest = hashlib.new(algorithm, data).hexdigest()
        if size is not None:
            if size <= 0:
                return None
            hexdigest = hexdigest[: size * 2]
        return hexdigest

    return digest


for _name in ("md5", "sha1", "sha256", "sha384", "sha512"):
    FILTERS[_name] = _hashing(_name)


# -- URIs ------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443, "ssh": 22, "file": -1}


_RELATIVE = "This operation is not supported for a relative URI."


@_filter("UriPart")
def _uri_part(value: str | None, options: list[str]) -> str | None:
    """Octostache's UriPart: a value .NET cannot read as a URI at all comes back as it is;
    one that is not absolute gives the same .NET message for every part (IsAbsoluteUri
    answers false)."""
    if value is None:
        return None
    if not options:
        return "[UriPart error: no argument given]"
    part = options[0]
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return value  # Uri.TryCreate fails: Octostache echoes the value
    if part.lower() not in _URI_PARTS:
        return f"[UriPart {part} error: argument '{part}' not supported]"
    if not parts.scheme or (not parts.netloc and parts.scheme != "file"):
        relative = f"[UriPart {part} error: {_RELATIVE}]"
        return "false" if part.lower() == "isabsoluteuri" else relative
    port = port if port is not None else _DEFAULT_PORTS.get(parts.scheme, -1)
    return _uri_parts(parts, port)[part.lower()]


def _uri_parts(parts: SplitResult, port: int) -> dict[str, str]:
    host = parts.hostname or ""
    default = port == _DEFAULT_PORTS.get(parts.scheme, -1)
    authority = host if default else f"{host}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    server = f"{parts.scheme}://{authority}"
    try:
        address = ipaddress.ip_address(host)
        kind = "IPv4" if address.version == 4 else "IPv6"
        loopback = address.is_loopback
    except ValueError:
        kind, loopback = "Dns", host.lower() == "localhost"
    flag = {True: "true", False: "false"}
    return {
        "absolutepath": path,
        "absoluteuri": f"{server}{path}{query}{fragment}",
        "authority": authority,
        "dnssafehost": host,
        "fragment": fragment,
        "host": host,
        "hostandport": f"{host}:{port}",
        "hostnametype": kind,
        "isabsoluteuri": "true",
        "isdefaultport": flag[default],
        "isfile": flag[parts.scheme == "file"],
        "isloopback": flag[loopback],
        "isunc": "false",
        "path": path,
        "pathandquery": path + query,
        "port": str(port),
        "query": query,
        "scheme": parts.scheme,
        "schemeandserver": server,
        "userinfo": userinfo,
    }


_URI_PARTS = frozenset(_uri_parts(urlsplit("http://h/"), 80))


# -- versions ----------------------------------------------------------------

# Octopus.Versioning's lenient parser (OctopusVersionParser), which the Version* filters
# use: an optional v/V, one to four numbers (spaces around them tolerated), then an
# optional separator (. - _ \\) and a pre-release whose prefix ends at the first
# separator, then +metadata. A number too big for an int, or anything else, reads
# as 0.0.0.0 with the other parts empty.
_VERSION = re.compile(
    r"\s*(?:\s*[vV]?\s*(?P<major>\d+)\b\s*(?:\.\s*(?P<minor>\d+)\b\s*)?"
    r"(?:\.\s*(?P<patch>\d+)\b\s*)?(?:\.\s*(?P<revision>\d+)\b\s*)?)?"
    r"[.\-_\\]?(?P<pre>(?P<prefix>[A-Za-z0-9]*?)(?:[.\-_\\](?P<counter>[A-Za-z0-9.\-_\\]*?))?)?"
    r"(?:\+(?P<meta>[A-Za-z0-9_\-.\\+]*?))?\s*"
)
_INT_MAX = 2**31 - 1
_NO_VERSION = {"major": "0", "minor": "0", "patch": "0", "revision": "0", "prerelease": "",
               "prereleaseprefix": "", "prereleasecounter": "", "metadata": ""}  # fmt: skip


def version_parts(text: str) -> dict[str, str]:
    """Octopus.Versioning's reading of a version (SemVer, Maven, Docker, Debian forms)."""
    match = _VERSION.fullmatch(text) if text.strip() else None
    if match is None:
        return dict(_NO_VERSION)
    numbers = [int(match[name] or 0) for name in ("major", "minor", "patch", "revision")]
    if max(numbers) > _INT_MAX:
        return dict(_NO_VERSION)
    return {
        "major": str(numbers[0]),
        "minor": str(numbers[1]),
        "patch": str(numbers[2]),
        "revision": str(numbers[3]),
        "prerelease": match["pre"] or "",
        "prereleaseprefix": match["prefix"] or "",
        "prereleasecounter": match["counter"] or "",
        "metadata": match["meta"] or "",
    }


def _version(part: str) -> FilterFunction:
    def read(value: str | None, options: list[str]) -> str | None:
        return version_parts(value)[part] if value is not None and not options else None

    return read


for _part in ("Major", "Minor", "Patch", "Revision", "PreRelease", "PreReleasePrefix",
              "PreReleaseCounter", "Metadata"):  # fmt: skip
    FILTERS[f"version{_part.lower()}"] = _version(_part.lower())


# -- dates and numbers ---------------------------------------------------------


@_filter("NowDate")
def _now(value: str | None, options: list[str]) -> str | None:
    if value or len(options) > 1:
        return None
    return dates.format_date(datetime.datetime.now().astimezone(), options[0] if options else "O")


@_filter("NowDateUtc")
def _now_utc(value: str | None, options: list[str]) -> str | None:
    if value or len(options) > 1:
        return None
    now = datetime.datetime.now(datetime.UTC)
    return dates.format_date(now, options[0] if options else "O")


@_filter("Format")
def _format(value: str | None, options: list[str]) -> str | None:
    if value is None or len(options) not in (1, 2):
        return None
    if len(options) == 2:
        kind, pattern = options[0].lower(), options[1]
        if kind in ("int", "int32", "double", "decimal"):
            return dates.format_number(value, pattern)
        if kind in ("date", "datetime", "datetimeoffset"):
            return dates.format_date(dates.parse_date(value), pattern)
        return None
    try:
        return dates.format_number(value, options[0])
    except ValueError:
        return dates.format_date(dates.parse_date(value), options[0])


def _adding(unit: str) -> FilterFunction:
    def add(value: str | None, options: list[str]) -> str | None:
        if value is None or len(options) != 1:
            return None
        moment = dates.parse_date(value)
        moment += datetime.timedelta(**{unit: float(options[0])})
        return dates.format_date(moment, "O")

    return add


FILTERS["addhours"] = _adding("hours")
FILTERS["adddays"] = _adding("days")


@_filter("null")
def _null(value: str | None, options: list[str]) -> str | None:
    return None
