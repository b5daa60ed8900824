"""Dates and numbers formatted with .NET format strings, in the invariant culture.

Covers the standard date formats O, o, s, u, d, D, t, T, g, G, f, F, M, Y and
the custom specifiers (yyyy, MM, dd, HH, hh, mm, ss, f..., tt, zzz, K, quoted
literals); for numbers N, F, D, E, P, X and custom patterns such as ``0.00`` or
``#,##0``. Raises ValueError for what it cannot parse or format.
"""

from __future__ import annotations

import datetime
import decimal
import re

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_STANDARD = {
    "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
    "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
    "d": "MM/dd/yyyy",
    "D": "dddd, dd MMMM yyyy",
    "t": "HH:mm",
    "T": "HH:mm:ss",
    "g": "MM/dd/yyyy HH:mm",
    "G": "MM/dd/yyyy HH:mm:ss",
    "f": "dddd, dd MMMM yyyy HH:mm",
    "F": "dddd, dd MMMM yyyy HH:mm:ss",
    "M": "MMMM dd",
    "m": "MMMM dd",
    "Y": "yyyy MMMM",
    "y": "yyyy MMMM",
}
_SPECIFIER = re.compile(
    r"'[^']*'|\"[^\"]*\"|\\.|yyyy+|yy|y|MMMM+|MMM|MM|M|dddd+|ddd|dd|d|HH?|hh?|mm?|ss?"
    r"|f{1,7}|F{1,7}|tt?|zzz|zz|z|K|."
)


def parse_date(text: str) -> datetime.datetime:
    """An ISO 8601 date (with or without time and offset). Raises ValueError."""
    cleaned = text.strip().replace("Z", "+00:00")
    cleaned = re.sub(r"(\.\d{6})\d+", r"\1", cleaned)  # .NET has 7 fractional digits
    return datetime.datetime.fromisoformat(cleaned)


def format_date(moment: datetime.datetime, pattern: str) -> str:
    if pattern in ("O", "o"):
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"
        return text + _offset(moment, "K")
    return "".join(
        _date_part(moment, token) for token in _SPECIFIER.findall(_STANDARD.get(pattern, pattern))
    )


def _offset(moment: datetime.datetime, style: str) -> str:
    offset = moment.utcoffset()
    if offset is None:
        return "" if style == "K" else "+00:00"
    if style == "K" and offset == datetime.timedelta(0) and moment.tzinfo is datetime.UTC:
        return "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    if style == "z":
        return f"{sign}{hours}"
    if style == "zz":
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{rest:02d}"


def _date_part(moment: datetime.datetime, token: str) -> str:
    if token[0] in "'\"":
        return token[1:-1]
    if token[0] == "\\":
        return token[1:]
    hour12 = moment.hour % 12 or 12
    fixed = {
        "yy": f"{moment.year % 100:02d}", "y": str(moment.year % 100),
        "MMM": _MONTHS[moment.month - 1][:3], "MM": f"{moment.month:02d}", "M": str(moment.month),
        "ddd": _DAYS[moment.weekday()][:3], "dd": f"{moment.day:02d}", "d": str(moment.day),
        "HH": f"{moment.hour:02d}", "H": str(moment.hour), "hh": f"{hour12:02d}", "h": str(hour12),
        "mm": f"{moment.minute:02d}", "m": str(moment.minute),
        "ss": f"{moment.second:02d}", "s": str(moment.second),
        "tt": "AM" if moment.hour < 12 else "PM", "t": "A" if moment.hour < 12 else "P",
        "zzz": _offset(moment, "zzz"), "zz": _offset(moment, "zz"), "z": _offset(moment, "z"),
        "K": _offset(moment, "K"),
    }  # fmt: skip
    if token in fixed:
        return fixed[token]
    if token.startswith("yyyy"):
        return f"{moment.year:0{len(token)}d}"
    if token.startswith("MMMM"):
        return _MONTHS[moment.month - 1]
    if token.startswith("dddd"):
        return _DAYS[moment.weekday()]
    if token[0] in "fF":
        digits = f"{moment.microsecond:06d}0"[: len(token)]
        return digits.rstrip("0") if token[0] == "F" else digits
    return token


def format_number(text: str, pattern: str) -> str:
    """``text`` (a decimal number) formatted by a .NET numeric format string."""
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    standard = re.fullmatch(r"([NnFfDdEePpXx])(\d{0,2})", pattern)
    if standard:
        return _standard_number(number, standard[1], standard[2])
    return _custom_number(number, pattern)


def _standard_number(number: decimal.Decimal, kind: str, digits: str) -> str:
    upper = kind.upper()
    if upper == "D":
        if number != number.to_integral_value():
            raise ValueError("D needs an integer")
        return f"{int(number):0{int(digits or 0) + (1 if number < 0 else 0)}d}"
    if upper == "X":
        if number != number.to_integral_value() or number < 0:
            raise ValueError("X needs a non-negative integer")
        text = f"{int(number):0{int(digits or 0)}x}"
        return text.upper() if kind == "X" else text
    places = int(digits) if digits else (6 if upper == "E" else 2)
    if upper == "N":
        return f"{_round(number, places):,.{places}f}"
    if upper == "F":
        return f"{_round(number, places):.{places}f}"
    if upper == "P":
        return f"{_round(number * 100, places):,.{places}f} %"
    mantissa, exponent = f"{number:.{places}E}".split("E")
    sign = "-" if int(exponent) < 0 else "+"
    return f"{mantissa}{kind}{sign}{abs(int(exponent)):03d}"


def _round(number: decimal.Decimal, places: int) -> decimal.Decimal:
    """Round half away from zero, as .NET does."""
    return number.quantize(decimal.Decimal(1).scaleb(-places), rounding=decimal.ROUND_HALF_UP)


def _custom_number(number: decimal.Decimal, pattern: str) -> str:
    if not re.fullmatch(r"[#0,]*\.?[#0]*", pattern) or not pattern:
        raise ValueError(f"unsupported number format {pattern!r}")
    whole, _, fraction = pattern.partition(".")
    places = len(fraction)
    rounded = _round(number, places)
    text = f"{abs(rounded):{',' if ',' in whole else ''}.{places}f}"
    integer, _, decimals = text.partition(".")
    minimum = whole.replace(",", "").count("0")
    digits = integer.replace(",", "")
    if len(digits) < minimum:
        digits = digits.zfill(minimum)
        integer = f"{int(digits):,}".zfill(len(integer)) if "," in whole else digits
    if minimum == 0 and digits == "0":
        integer = ""
    required = fraction.count("0")
    decimals = decimals.rstrip("0").ljust(required, "0") if places else ""
    sign = "-" if rounded < 0 else ""
    return sign + integer + ("." + decimals if decimals else "")
