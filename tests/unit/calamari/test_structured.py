"""Structured configuration variables, byte for byte as Calamari writes them.

Each case is an input file under structured/ (``<case>.in.<ext>``), the
variables, and the expected file (``<case>.out.<ext>``); the comment of each
case names the rule of Calamari's it follows (the sources are listed in
docs/structured-variables.md).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.calamari import structured
from agent.calamari.structured import json_format, yaml_format

HERE = Path(__file__).parent / "structured"


@dataclass(frozen=True)
class Case:
    name: str  # structured/<name>.in.<suffix> -> structured/<name>.out.<suffix>
    suffix: str
    variables: dict[str, str | None]
    warnings: tuple[str, ...] = ()
    format: str = "JSON"


CASES = [
    # JsonUpdateMap: every node has a key (":"-joined, array indexes); strings replaced as
    # strings, a null node becomes a string, numbers and booleans keep their kind, an array
    # or object takes the value parsed as JSON; "Octopus…" variables are ignored unless
    # "Octopus:…"; the whole file is written again by Newtonsoft's indented writer
    # (two spaces, doubles with ".0", no final newline), untouched nodes included.
    Case("types", "json", {
        "name": "new", "Port": "8080", "Ratio": "2.25", "Debug": "FALSE", "Nothing": "12",
        "Servers:1:Host": "c", "Features": '["y", {"z": 1}]', "OctopusKeep": "changed",
        "Octopus:Set": "changed",
    }),
    # MapNumber: long.TryParse, else double.TryParse (thousands separators, exponents,
    # whitespace), else a string; MapBool: bool.TryParse, else a string.
    Case("numbers", "json", {
        "Port": "eighty", "Debug": "yes", "A": " 12 ", "B": "1,000", "C": "-3", "D": "1e3",
        "E": "9223372036854775808", "F": "0.00001", "G": "1e15",
    }),
    # MapDefault: a null variable gives a JSON null; a number, boolean or object cannot be
    # set to null and is left with a warning ("Unable to set value for …").
    Case("nulls", "json", {"Name": None, "Port": None, "Obj": None, "Flag": None},
         warnings=("Unable to set value for Port", "Unable to set value for Obj",
                   "Unable to set value for Flag")),
    # JsonUpdateMap.Load: a root array's elements are keys "0", "1"…
    Case("root-array", "json", {"1:a": "3"}),
    # YamlFormatVariableReplacer: the event stream is copied, so comments, quoting, flow
    # style, block scalars, directives, tags and anchors stay; a replaced scalar keeps its
    # style, tag and anchor (ReplaceValue); a null variable writes plain "null"; the
    # aliases of a changed anchor follow it.
    Case("keeps", "yaml", {
        "base:host": "new", "single": "it's", "plain": "has: colon", "empty": "5",
        "tilde": None, "literal": "a\nb\n", "flow:b": "[3, 4]", "tagged": "v2",
        "string-tag": "90", "anchored": "changed", "alias": "not an alias's key",
        "list:1": "z", "null-word": "",
    }, format="YAML"),
    # ParseFragment: a mapping or sequence takes the value parsed as YAML (JSON is YAML),
    # or the value as a double-quoted string when it does not parse; the file's most
    # common indent is kept (YamlIndentDetector).
    Case("structures", "yaml", {
        "server:options": "b: 2\nc: [3]", "server:ports": "[8080]", "list": "{not: yaml",
        "server:host": "new",
    }, format="YAML"),
    Case("root-sequence", "yaml", {"1:value": "20"}, format="YAML"),
    # DocumentEnd resets the keys: every document of the file is replaced alike.
    Case("documents", "yaml", {"a": "9"}, format="YAML"),
    # PropertiesFormatVariableReplacer: only replaced values change (comments, blank lines,
    # keys and separators as written); keys match unescaped, in any case; "Octopus…" never;
    # a key alone gets ":"; the value is escaped; a continued value is replaced whole.
    Case("app", "properties", {
        "NAME": "new", "port": "8080", "indented key": " lead\\and\ttab ☃", "alone": "v",
        "long": "one line", "OctopusKeep": "changed", "last": "é",
    }, format="Properties"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_files_are_written_as_calamari_writes_them(case: Case, tmp_path: Path) -> None:
    target = tmp_path / f"{case.name}.{case.suffix}"
    target.write_bytes((HERE / f"{case.name}.in.{case.suffix}").read_bytes())
    warnings: list[str] = []
    kind = structured.update_file(target, case.variables, warnings.append)
    assert kind == case.format
    expected = (HERE / f"{case.name}.out.{case.suffix}").read_bytes()
    assert target.read_bytes() == expected, target.read_text()
    assert len(warnings) == len(case.warnings), warnings
    for text, warning in zip(case.warnings, warnings, strict=True):
        assert text in warning


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # .NET Core's round-trip format, as Newtonsoft writes a double (EnsureDecimalPlace)
        (1.0, "1.0"),
        (1.5, "1.5"),
        (100.0, "100.0"),
        (123456789012345.0, "123456789012345.0"),
        (1e15, "1E+15"),
        (123456789012345678.0, "1.2345678901234568E+17"),
        (0.0001, "0.0001"),
        (0.00001, "1E-05"),
        (-2.5e-10, "-2.5E-10"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0.0"),
        (float("nan"), '"NaN"'),
        (float("-inf"), '"-Infinity"'),
    ],
)
def test_doubles_are_written_as_dotnet_writes_them(number: float, text: str) -> None:
    assert json_format.double(number) == text


def test_strings_are_escaped_as_newtonsoft_escapes_them() -> None:
    assert json_format.string("a\"b\\c\n\t\x01\u0085\u2028é<&>'") == (
        '"a\\"b\\\\c\\n\\t\\u0001\\u0085\\u2028é<&>\'"'
    )


@pytest.mark.parametrize(
    ("name", "fallback", "expected"),
    [
        # StructuredConfigVariablesService: the fallback flag means JSON only; a file named
        # as a format is tried as JSON first, then as it; any other as every format in order
        ("a.json", False, ["JSON"]),
        ("a.YAML", False, ["JSON", "YAML"]),
        ("a.yml", False, ["JSON", "YAML"]),
        ("a.config", False, ["JSON", "XML", "YAML", "Properties"]),
        ("a.xml", False, ["JSON", "XML"]),
        ("a.properties", False, ["JSON", "Properties"]),
        ("a.yaml", True, ["JSON"]),
    ],
)
def test_formats_are_tried_in_calamaris_order(
    name: str, fallback: bool, expected: list[str]
) -> None:
    assert [f.name for f in structured.formats_for(Path(name), fallback)] == expected


def test_the_format_comes_from_the_content_json_first(tmp_path: Path) -> None:
    looks_yaml = tmp_path / "settings.yaml"
    looks_yaml.write_text('{"a": 1}')
    assert structured.update_file(looks_yaml, {"a": "2"}, print) == "JSON"
    assert looks_yaml.read_text() == '{\n  "a": 2\n}'
    no_suffix = tmp_path / "settings.config"
    no_suffix.write_text("a: 1 # yaml\n")
    assert structured.update_file(no_suffix, {"a": "2"}, print) == "YAML"
    assert no_suffix.read_text() == "a: 2 # yaml\n"


def test_an_xml_document_is_left_as_it_is_with_a_warning(tmp_path: Path) -> None:
    # not yet replaced (docs/structured-variables.md), but never read as YAML after JSON
    raw = b'\xef\xbb\xbf<?xml version="1.0"?>\r\n<a k="1">b</a>'
    for name in ("app.config", "app.xml"):
        target = tmp_path / name
        target.write_bytes(raw)
        warnings: list[str] = []
        assert structured.update_file(target, {"//a/@k": "2", "a": "3"}, warnings.append) == "XML"
        assert target.read_bytes() == raw
        assert warnings == ["XML files are not replaced by tentacle yet; the file is left as it is"]
    not_xml = tmp_path / "b.xml"
    not_xml.write_text("a: 1\n")
    with pytest.raises(structured.StructuredError, match="could not be parsed as XML"):
        structured.update_file(not_xml, {"a": "2"}, print)


def test_the_fallback_flag_reads_every_file_as_json(tmp_path: Path) -> None:
    target = tmp_path / "settings.yaml"
    target.write_text("a: 1\n")
    with pytest.raises(structured.StructuredError, match="could not be parsed as JSON"):
        structured.update_file(target, {"a": "2"}, print, fallback=True)
    assert target.read_text() == "a: 1\n"


def test_a_file_no_format_reads_fails_naming_the_last_format(tmp_path: Path) -> None:
    target = tmp_path / "settings.yml"
    target.write_text("a: [1\n")
    with pytest.raises(structured.StructuredError, match=r"settings.yml. The file could not be "
                       r"parsed as YAML: .*"):  # fmt: skip
        structured.update_file(target, {"a": "2"}, print)
    assert target.read_text() == "a: [1\n"


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "%YAML 1.11\n---\na: 1\n", "could not be parsed as YAML"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "could not be parsed as JSON"),
    ],
)
def test_unreadable_files_fail_clearly_not_with_a_traceback(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    target = tmp_path / name
    target.write_text(text)
    with pytest.raises(structured.StructuredError, match=message):
        structured.update_file(target, {"a": "2"}, print)
    assert target.read_text() == text


def test_duplicate_yaml_keys_fail_clearly_and_leave_the_file(tmp_path: Path) -> None:
    # a difference (docs/structured-variables.md): ruamel would drop the second key
    target = tmp_path / "dup.yaml"
    target.write_text("a: 1\na: 2\nb: 3\n")
    with pytest.raises(structured.StructuredError, match='found duplicate key "a"'):
        structured.update_file(target, {"b": "4"}, print)
    assert target.read_text() == "a: 1\na: 2\nb: 3\n"


def test_yaml_parser_warnings_go_to_the_steps_warnings(tmp_path: Path) -> None:
    target = tmp_path / "anchors.yaml"
    target.write_text("a: &x 1\nb: &x 2\n")
    warnings: list[str] = []
    structured.update_file(target, {"b": "3"}, warnings.append)
    assert target.read_text() == "a: &x 1\nb: &x 3\n"
    assert len(warnings) == 1
    assert warnings[0].startswith("found duplicate anchor 'x'")


def test_an_empty_json_file_is_an_empty_object(tmp_path: Path) -> None:
    # JsonFormatVariableReplacer.LoadJson: an empty file is {}
    target = tmp_path / "empty.json"
    target.write_bytes(b"")
    structured.update_file(target, {"a": "1"}, print)
    assert target.read_bytes() == b"{}"


def test_line_endings_and_byte_order_marks_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_bytes(codecs.BOM_UTF16_LE + '{\r\n "a": 1,\r\n "b": "é"\r\n}'.encode("utf-16-le"))
    structured.update_file(target, {"a": "2"}, print)
    assert target.read_bytes() == codecs.BOM_UTF16_LE + (
        '{\r\n  "a": 2,\r\n  "b": "é"\r\n}'.encode("utf-16-le")
    )
    yaml_file = tmp_path / "a.yaml"
    yaml_file.write_bytes("a: 1\r\nb: caf\xe9 # \xe9\r\n".encode("cp1252"))
    structured.update_file(yaml_file, {"a": "\xe9"}, print)
    assert yaml_file.read_bytes() == "a: \xe9\r\nb: caf\xe9 # \xe9\r\n".encode("cp1252")


def test_the_yaml_indent_guess() -> None:
    assert yaml_format.guess_indent("a:\n    b: 1\n    c:\n      - 1\n") == (4, 2)
    assert yaml_format.guess_indent("a: 1\n") == (2, 0)
    assert yaml_format.guess_indent("a:\n- 1\n") == (2, 0)
