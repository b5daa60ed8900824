"""JSON files, replaced and written as Calamari (Newtonsoft.Json) writes them.

The whole document is written again: two spaces of indentation, ``"key": value``,
every array element on its own line, ``{}``/``[]`` when empty, no final
newline. Integers are written as read; every other number is a double written
as .NET's round-trip format does (``1.0``, ``1E+15``, ``1E-05``). A replaced
node keeps its kind: a number stays a number when the value reads as a long
or a double (else it becomes a string), a boolean when the value is
true/false in any case; a string or null node becomes the value as a string
(null for a null variable); an object or array is replaced by the value
parsed as JSON, and is left unchanged with a warning when it does not parse.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from agent.calamari.structured.common import ParseError, Warn

_LONG = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+[ \t\n\v\f\r]*")
_DOUBLE = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:[0-9][0-9,]*\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t\n\v\f\r]*"
)
_SPECIAL_DOUBLES = {
    "nan": math.nan,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-infinity": -math.inf,
    "∞": math.inf,
    "-∞": -math.inf,
}
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f\u0085\u2028\u2029]')


def replace(text: str, values: Mapping[str, tuple[str, str | None]], warn: Warn) -> str:
    """``text`` (a JSON document, empty meaning ``{}``) with the keys in ``values`` replaced.

    ``values``: lower-cased key -> (variable name, value). Raises ParseError.
    """
    try:
        document = json.loads(text) if text.strip() else {}
    except (ValueError, RecursionError) as error:  # too deeply nested: not readable either
        raise ParseError(str(error)) from None
    if isinstance(document, dict):
        document = {name: _walk(child, str(name), values, warn) for name, child in document.items()}
    elif isinstance(document, list):
        document = [_walk(child, str(index), values, warn) for index, child in enumerate(document)]
    return dumps(document)


def _walk(node: Any, key: str, values: Mapping[str, tuple[str, str | None]], warn: Warn) -> Any:
    found = values.get(key.lower())
    if found is not None:
        replaced, ok = _replace(node, *found, warn)
        if ok:
            return replaced
    if isinstance(node, dict):
        return {name: _walk(child, f"{key}:{name}", values, warn) for name, child in node.items()}
    if isinstance(node, list):
        return [_walk(child, f"{key}:{index}", values, warn) for index, child in enumerate(node)]
    return node


def _replace(node: Any, name: str, value: str | None, warn: Warn) -> tuple[Any, bool]:
    """(the new node, True), or (node, False) after a warning when it cannot be set."""
    if isinstance(node, (dict, list)):
        return _parsed(value, name, warn, node)
    if value is None:
        if isinstance(node, (bool, int, float)):
            warn(f"Unable to set value for {name}: a null value cannot replace {scalar(node)}")
            return node, False
        return None, True
    if isinstance(node, bool):
        lowered = value.strip(" \t\n\v\f\r\0").lower()
        return ({"true": True, "false": False}.get(lowered, value), True)
    if isinstance(node, (int, float)):
        return (read_number(value), True)
    return (value, True)


def _parsed(value: str | None, name: str, warn: Warn, node: Any) -> tuple[Any, bool]:
    if value is None:
        warn(f"Unable to set value for {name}: a null value cannot replace an object or array")
        return node, False
    try:
        return json.loads(value), True
    except (ValueError, RecursionError) as error:
        warn(f"Unable to set value for {name}: the value is not valid JSON ({error})")
        return node, False


def read_number(value: str) -> int | float | str:
    """``value`` as .NET's ``long.TryParse``, else ``double.TryParse``, else the string."""
    if _LONG.fullmatch(value):
        number = int(value.strip())
        if -(2**63) <= number < 2**63:
            return number
    if _DOUBLE.fullmatch(value) and any(char.isdigit() for char in value):
        return float(value.strip().replace(",", ""))
    special = _SPECIAL_DOUBLES.get(value.strip(" \t\n\v\f\r").lower())
    return value if special is None else special


def dumps(value: Any, newline: str = "\n") -> str:
    """``value`` as Newtonsoft's indented writer writes it (no final newline)."""
    parts: list[str] = []
    _write(value, 0, newline, parts.append)
    return "".join(parts)


def _write(value: Any, depth: int, newline: str, out: Callable[[str], None]) -> None:
    if isinstance(value, dict) and value:
        out("{")
        for position, (name, child) in enumerate(value.items()):
            out(("," if position else "") + newline + "  " * (depth + 1) + string(str(name)) + ": ")
            _write(child, depth + 1, newline, out)
        out(newline + "  " * depth + "}")
    elif isinstance(value, list) and value:
        out("[")
        for position, child in enumerate(value):
            out(("," if position else "") + newline + "  " * (depth + 1))
            _write(child, depth + 1, newline, out)
        out(newline + "  " * depth + "]")
    else:
        out(scalar(value))


def scalar(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return double(value)
    return string(str(value))


def string(text: str) -> str:
    """A JSON string as Newtonsoft escapes it by default (other characters as they are)."""

    def escape(match: re.Match[str]) -> str:
        char = match[0]
        return _ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return '"' + _NEEDS_ESCAPE.sub(escape, text) + '"'


def double(number: float) -> str:
    """.NET's round-trip ("R") text of a double, with ``.0`` added to a whole number;
    NaN and the infinities as strings (Newtonsoft's default FloatFormatHandling)."""
    if math.isnan(number):
        return '"NaN"'
    if math.isinf(number):
        return '"Infinity"' if number > 0 else '"-Infinity"'
    digits, exponent = _shortest(number)
    sign = "-" if math.copysign(1.0, number) < 0 and number != 0 else ""
    if number == 0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    point = exponent + 1  # digits before the decimal point
    if -5 < exponent < 15:
        if point <= 0:
            text = "0." + "0" * -point + digits
        elif point >= len(digits):
            text = digits + "0" * (point - len(digits))
        else:
            text = digits[:point] + "." + digits[point:]
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}E{'+' if exponent >= 0 else '-'}{abs(exponent):02d}"
    if not any(char in text for char in ".E"):
        text += ".0"
    return sign + text


def _shortest(number: float) -> tuple[str, int]:
    """The shortest round-tripping significant digits of |number| (Python's repr finds
    them, as .NET Core's "R" does) and the decimal exponent of the first one."""
    _, digits, exponent = Decimal(repr(abs(number))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    return text, len(digits) - 1 + exponent
