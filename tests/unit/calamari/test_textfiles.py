"""Encodings and line endings of substituted files, as Calamari reads and writes them
(CalamariPhysicalFileSystem.ReadFile/WriteAllText: byte order marks, strict UTF-8,
else Windows-1252; kept on write, UTF-8 when the text no longer fits; FileSubstituter:
Octopus.Action.SubstituteInFiles.OutputEncoding)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from agent.calamari import textfiles
from agent.calamari.substitution import substitute_file

VARIABLES = {"Name": "Zoë", "Euro": "€", "Snow": "☃"}
LE, BE = codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE


def utf16(text: str, bom: bytes) -> bytes:
    return bom + text.encode("utf-16-le" if bom == LE else "utf-16-be")


@pytest.mark.parametrize(
    ("before", "after", "warned"),
    [
        # no mark, valid UTF-8: UTF-8 without a mark
        (b"n=#{Name}\n", "n=Zoë\n".encode(), False),
        # UTF-8's mark is kept
        (codecs.BOM_UTF8 + b"n=#{Name}\r\n", codecs.BOM_UTF8 + "n=Zoë\r\n".encode(), False),
        # UTF-16 LE and BE, by their marks; CRLF kept
        (utf16("n=#{Name}\r\ne=#{Euro}\r\n", LE), utf16("n=Zoë\r\ne=€\r\n", LE), False),
        (utf16("n=#{Name}\n", BE), utf16("n=Zoë\n", BE), False),
        # not UTF-8: Windows-1252, kept, the file's own bytes unchanged
        (b"caf\xe9 \x81 #{Euro}\n", b"caf\xe9 \x81 \x80\n", False),
        # a character Windows-1252 lacks: the file becomes UTF-8 (no mark), with a warning
        (b"caf\xe9 #{Snow}\n", "café ☃\n".encode(), True),
        # undecodable UTF-16 is replaced, never a traceback
        (LE + b"a\x00\x00\xd8", utf16("a\ufffd", LE), False),
        (b"", b"", False),
    ],
)
def test_substitution_keeps_the_encoding(
    tmp_path: Path, before: bytes, after: bytes, warned: bool
) -> None:
    target = tmp_path / "file.conf"
    target.write_bytes(before)
    warnings: list[str] = []
    substitute_file(target, VARIABLES, warnings.append)
    assert target.read_bytes() == after
    assert bool(warnings) == warned, warnings
    if warned:
        assert "cannot be written in windows-1252; written in utf-8" in warnings[0]


@pytest.mark.parametrize(
    ("name", "after"),
    [
        # Encoding.GetEncoding: "utf-8" is Encoding.UTF8, which writes its mark
        ("utf-8", codecs.BOM_UTF8 + "n=Zoë\n".encode()),
        ("utf-16", utf16("n=Zoë\n", LE)),
        ("UTF-16BE", utf16("n=Zoë\n", BE)),
        ("unicodeFFFE", utf16("n=Zoë\n", BE)),
        ("windows-1252", b"n=Zo\xeb\n"),
        ("us-ascii", b"n=Zo?\n"),  # a code page asked for by name writes "?" for the rest
    ],
)
def test_the_output_encoding_is_honoured(tmp_path: Path, name: str, after: bytes) -> None:
    target = tmp_path / "file.conf"
    target.write_bytes(b"n=#{Name}\n")
    substitute_file(target, VARIABLES, print, name)
    assert target.read_bytes() == after


def test_an_unknown_output_encoding_keeps_the_files_own(tmp_path: Path) -> None:
    target = tmp_path / "file.conf"
    target.write_bytes(utf16("n=#{Name}\n", LE))
    warnings: list[str] = []
    substitute_file(target, VARIABLES, warnings.append, "klingon-7")
    assert target.read_bytes() == utf16("n=Zoë\n", LE)
    assert warnings == [
        "Octopus.Action.SubstituteInFiles.OutputEncoding: 'klingon-7' is not an encoding; "
        "the file keeps its own (utf-16)"
    ]


def test_decoding_never_raises() -> None:
    for raw in (bytes(range(256)), b"\xff\xfe\x00", b"\xfe\xff\xd8", b"\xef\xbb\xbf\xff"):
        decoded = textfiles.decode(raw)
        assert isinstance(decoded.text, str)
    every_byte = bytes(range(256))
    assert textfiles.encode(textfiles.decode(every_byte).text, textfiles.WINDOWS_1252, print) == (
        every_byte
    )


def test_the_most_common_line_ending() -> None:
    assert textfiles.line_ending("a\r\nb\r\nc\n") == "\r\n"
    assert textfiles.line_ending("a\nb\nc\r\n") == "\n"
    assert textfiles.line_ending("abc") == "\n"
