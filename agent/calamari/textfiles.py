"""Reading and writing a target file's text as Calamari does (docs/structured-variables.md).

Reading: a byte order mark names the encoding (UTF-8, UTF-16 LE/BE, UTF-32
LE/BE); without one, text that is valid UTF-8 is UTF-8, anything else is
Windows-1252 (which decodes every byte). Writing: the same encoding and the
same byte order mark; when a new character cannot be written in Windows-1252
the file becomes UTF-8 (no mark) with a warning. An encoding asked for by
name (``Octopus.Action.SubstituteInFiles.OutputEncoding``) follows .NET's
``Encoding.GetEncoding``: ``utf-8`` writes a mark, a single-byte code page
writes ``?`` for what it cannot hold. Nothing here raises on a file's bytes.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Encoding:
    """How a file's text becomes bytes."""

    name: str  # what the logs and warnings call it (.NET's WebName)
    codec: str  # Python's codec
    bom: bytes = b""
    strict: bool = True  # unwritable text: True falls back to UTF-8, False writes "?"


UTF8 = Encoding("utf-8", "utf-8")
UTF8_BOM = Encoding("utf-8", "utf-8", codecs.BOM_UTF8)
WINDOWS_1252 = Encoding("windows-1252", "cp1252")
_MARKS = (  # the longest first: UTF-32 LE's mark begins with UTF-16 LE's
    Encoding("utf-32", "utf-32-le", codecs.BOM_UTF32_LE),
    Encoding("utf-32BE", "utf-32-be", codecs.BOM_UTF32_BE),
    UTF8_BOM,
    Encoding("utf-16", "utf-16-le", codecs.BOM_UTF16_LE),
    Encoding("utf-16BE", "utf-16-be", codecs.BOM_UTF16_BE),
)
# .NET's names for the encodings that carry a mark when asked for by name
_NAMED = {
    "utf-8": UTF8_BOM,
    "utf8": UTF8_BOM,
    "utf-16": _MARKS[3],
    "unicode": _MARKS[3],
    "utf-16le": _MARKS[3],
    "utf-16be": _MARKS[4],
    "unicodefffe": _MARKS[4],
    "utf-32": _MARKS[0],
    "utf-32le": _MARKS[0],
    "utf-32be": _MARKS[1],
}

# Windows-1252 as .NET decodes it: the five bytes Python's cp1252 leaves
# undefined (0x81 0x8D 0x8F 0x90 0x9D) become the C1 controls of the same number.
_CP1252_DECODE = {
    byte: (bytes([byte]).decode("cp1252", errors="ignore") or chr(byte)) for byte in range(256)
}
_CP1252_ENCODE = {ord(char): byte for byte, char in _CP1252_DECODE.items()}


@dataclass(frozen=True)
class TextFile:
    text: str
    encoding: Encoding


def decode(raw: bytes) -> TextFile:
    """The text of ``raw`` and the encoding it was read in (never raises)."""
    for encoding in _MARKS:
        if raw.startswith(encoding.bom):
            body = raw[len(encoding.bom) :]
            return TextFile(body.decode(encoding.codec, errors="replace"), encoding)
    try:
        return TextFile(raw.decode("utf-8"), UTF8)
    except UnicodeDecodeError:
        return TextFile("".join(_CP1252_DECODE[byte] for byte in raw), WINDOWS_1252)


def read(path: Path) -> TextFile:
    return decode(path.read_bytes())


def encode(text: str, encoding: Encoding, warn: Warn) -> bytes:
    """``text`` in ``encoding`` with its mark; UTF-8 (warned) when strict and unwritable."""
    if encoding.codec == "cp1252":
        unwritable = {char for char in text if ord(char) not in _CP1252_ENCODE}
        if not unwritable:
            return bytes(_CP1252_ENCODE[ord(char)] for char in text)
        if not encoding.strict:
            return bytes(_CP1252_ENCODE.get(ord(char), 0x3F) for char in text)
    else:
        try:
            return encoding.bom + text.encode(encoding.codec, errors="strict")
        except UnicodeEncodeError:
            if not encoding.strict:
                return encoding.bom + text.encode(encoding.codec, errors="replace")
    warn(f"the text cannot be written in {encoding.name}; written in utf-8 instead")
    return text.encode("utf-8", errors="surrogatepass")


def fits(text: str, encoding: Encoding) -> bool:
    """Whether every character of ``text`` can be written in ``encoding``."""
    if encoding.codec == "cp1252":
        return all(ord(char) in _CP1252_ENCODE for char in text)
    try:
        text.encode(encoding.codec, errors="strict")
    except UnicodeEncodeError:
        return False
    return True


def write(path: Path, text: str, encoding: Encoding, warn: Warn) -> None:
    path.write_bytes(encode(text, encoding, warn))


def named(name: str) -> Encoding | None:
    """The encoding .NET's ``Encoding.GetEncoding(name)`` gives, or None if unknown."""
    key = name.strip().lower()
    if key in _NAMED:
        return _NAMED[key]
    if key in ("windows-1252", "cp1252"):
        return Encoding("windows-1252", "cp1252", strict=False)
    try:
        codec = codecs.lookup(key).name
    except LookupError:
        return None
    return Encoding(key, codec, strict=False)


def line_ending(text: str) -> str:
    """The file's most common line ending: ``\\r\\n`` or ``\\n`` (``\\n`` on a tie or none)."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"
