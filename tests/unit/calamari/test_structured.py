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


XML_VARIABLES: dict[str, str | None] = {
    "/configuration/comment()": "New comment",
    "/configuration/add[@key='Port']/@value": 'a"b<c>&\nd',
    "/configuration/add[@key='Name']": "new<&>",
    "/configuration/add[@key='Secret']": "new]]>secret",
    "//db:connection/text()": "Server=new",
    "/configuration/node": "no-namespace only",
    "//more": "<x/><y a='1'>t</y>",
    "//children": "<db:x/>",
    "//bad": "<<<<",
    "/configuration/app:only": "app-new",
    "/configuration/processing-instruction('render')": 'mode="slow"',
    "/configuration/empty": "",
    "/configuration/self": "filled",
    "/configuration/mixed": "<i>new</i>",
    "//env:unknown": "x",
    "/configuration/missing": "nothing",
    "/configuration/blank": None,
    "Octopus.Action.Name": "ignored",
    "Logging:Level": "not an xpath key",
}
XML_WARNINGS = (
    "The namespace 'urn:db-two' could not be mapped to the 'db' prefix",
    "Could not set the value of the XML element at XPath '//bad' to '<<<<'",
)

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
    # XmlFormatVariableReplacer: keys are XPath with the document's prefixes (the first of
    # a prefix declared twice kept, warned; an unknown prefix or a name that is no XPath
    # selects nothing); text, CDATA, comments, processing instructions and attributes take
    # the value; an element with child elements takes it as inner XML (a warning when it
    # is not XML), a lone CDATA keeps it, others take it as text; a null value sets
    # nothing. Written by XmlWriter { Indent = true }: insignificant whitespace dropped, two
    # spaces, "<a />", mixed content not indented, the declaration written again with the
    # encoding's name (the declared UTF-8 read as Encoding.UTF8, which writes a BOM), the
    # most common line ending, no final newline.
    Case("web", "xml", XML_VARIABLES, format="XML", warnings=XML_WARNINGS),
    Case("web-crlf", "xml", XML_VARIABLES, format="XML", warnings=XML_WARNINGS),
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


def test_xml_keys_are_xpath_and_everything_else_is_no_key(tmp_path: Path) -> None:
    # XmlFormatVariableReplacer.TryGetXPathFromVariableKey: only names with "/" or ":" that
    # compile as XPath (with the document's prefixes); Octopus… names select nothing
    target = tmp_path / "app.config"
    target.write_bytes(b"<Octopus.Release.Id />\n<!-- after -->")
    assert structured.update_file(target, {"Octopus.Release.Id": "9", "a:b:c": "1"}, print) == "XML"
    assert target.read_bytes() == b"<Octopus.Release.Id />\n<!-- after -->"


@pytest.mark.parametrize(
    ("raw", "variables", "expected", "warned"),
    [
        # CalamariPhysicalFileSystem: the byte order mark and the line ending are kept
        (
            codecs.BOM_UTF16_LE + "<doc>\r\n    <a>é</a>\r\n</doc>\r\n".encode("utf-16-le"),
            {"/doc/a": "☃"},
            codecs.BOM_UTF16_LE + "<doc>\r\n  <a>☃</a>\r\n</doc>".encode("utf-16-le"),
            (),
        ),
        (
            codecs.BOM_UTF8 + b"<doc>\r\n<a>x</a></doc>",
            {"/doc/a": "y"},
            codecs.BOM_UTF8 + b"<doc>\r\n  <a>y</a>\r\n</doc>",
            (),
        ),
        # no declaration, not UTF-8: Windows-1252, kept (ShouldPreserveEncodingWindows1252DosNoBom)
        (
            b"<doc>\r\n  <dagger>\x86</dagger>\r\n  <euro>\x80</euro>\r\n</doc>",
            {"/doc/euro": "\u20ac\u2020"},
            b"<doc>\r\n  <dagger>\x86</dagger>\r\n  <euro>\x80\x86</euro>\r\n</doc>",
            (),
        ),
        # ShouldUpgradeEncodingIfNecessaryToAccomodateVariables: UTF-8 without a mark
        (
            b"<doc>\n  <dagger>\x86</dagger>\n</doc>",
            {"/doc/dagger": "\uffe6"},
            "<doc>\n  <dagger>\uffe6</dagger>\n</doc>".encode(),
            ("Unable to represent the output with encoding windows-1252",),
        ),
        # TryGetDeclaredEncoding: the declared encoding is read first and kept; the
        # declaration is written again with .NET's name (ShouldPreserveEncodingIso88592…)
        (
            '<?xml version="1.0" encoding="ISO-8859-2" ?>\n<n><m>Michał</m><m/></n>'.encode(
                "iso-8859-2"
            ),
            {"//m[.='Michał']": "Michał+", "//m[2]": "Mikołaj"},
            '<?xml version="1.0" encoding="iso-8859-2"?>\n<n>\n  <m>Michał+</m>\n'
            "  <m>Mikołaj</m>\n</n>".encode("iso-8859-2"),
            (),
        ),
        # ShouldAdaptDeclaredEncodingWhenNecessary: written in UTF-8, the declaration too
        (
            '<?xml version="1.0" encoding="iso-8859-2"?>\n<n><m>ł</m></n>'.encode("iso-8859-2"),
            {"//m": "张伟"},
            '<?xml version="1.0" encoding="utf-8"?>\n<n>\n  <m>张伟</m>\n</n>'.encode(),
            ("Unable to represent the output with encoding iso-8859-2",),
        ),
        # Encoding.GetEncoding("utf-8") is .NET's Encoding.UTF8, which writes a byte order
        # mark: a file declared UTF-8 gains one (docs/structured-variables.md)
        (
            b'<?xml version="1.0" encoding="utf-8"?><a/>',
            {"/a": "1"},
            codecs.BOM_UTF8 + b'<?xml version="1.0" encoding="utf-8"?>\n<a>1</a>',
            (),
        ),
    ],
    ids=["utf16-crlf-bom", "utf8-bom-crlf", "cp1252", "cp1252-to-utf8", "declared", "adapted",
         "declared-utf8"],
)  # fmt: skip
def test_xml_encodings_are_read_and_kept_as_calamari_does(
    tmp_path: Path,
    raw: bytes,
    variables: dict[str, str | None],
    expected: bytes,
    warned: tuple[str, ...],
) -> None:
    target = tmp_path / "doc.xml"
    target.write_bytes(raw)
    warnings: list[str] = []
    assert structured.update_file(target, variables, warnings.append) == "XML"
    assert target.read_bytes() == expected, target.read_bytes()
    assert len(warnings) == len(warned), warnings
    for text, warning in zip(warned, warnings, strict=True):
        assert text in warning


def test_malformed_xml_fails_an_xml_file_and_is_left_in_any_other(tmp_path: Path) -> None:
    # StructuredConfigVariablesService: ".xml" is JSON then XML, the last one failing fails
    # the step; another name would go on to YAML, but a document that begins with "<" is
    # left as it is with a warning (docs/structured-variables.md: a difference)
    raw = b"<a>\n  <b>unclosed\n</a>\n"
    named = tmp_path / "web.xml"
    named.write_bytes(raw)
    with pytest.raises(structured.StructuredError, match=r"web.xml. The file could not be "
                       r"parsed as XML: mismatched tag: line 3"):  # fmt: skip
        structured.update_file(named, {"/a/b": "x"}, print)
    assert named.read_bytes() == raw
    other = tmp_path / "web.config"
    other.write_bytes(raw)
    warnings: list[str] = []
    assert structured.update_file(other, {"/a/b": "x"}, warnings.append) == "XML"
    assert other.read_bytes() == raw
    assert len(warnings) == 1
    assert "web.config begins as XML but is not well-formed (mismatched tag" in warnings[0]
    assert warnings[0].endswith("the file is left as it is")


LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    b' <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    b' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    b"]>\n<lolz>&lol3;</lolz>"
)
EXTERNAL = (
    b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
    b"<a>&secret;</a>"
)


@pytest.mark.parametrize("raw", [LAUGHS, EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_xml_entity_declarations_are_refused_naming_the_file(tmp_path: Path, raw: bytes) -> None:
    for name in ("lolz.xml", "lolz.config"):
        target = tmp_path / name
        target.write_bytes(raw)
        with pytest.raises(structured.StructuredError, match=rf"refused file .*{name}: the "
                           r"document declares the entity 'lol|secret'"):  # fmt: skip
            structured.update_file(target, {"/lolz": "x", "/a": "x"}, print)
        assert target.read_bytes() == raw


def test_a_doctype_without_entities_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "d.xml"
    target.write_bytes(b'<!DOCTYPE a SYSTEM "a.dtd">\n<a><b>1</b></a>')
    structured.update_file(target, {"/a/b": "2"}, print)
    assert target.read_bytes() == b'<!DOCTYPE a SYSTEM "a.dtd">\n<a>\n  <b>2</b>\n</a>'


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
        (
            "deep.xml",
            "<a>" * 5_000 + "</a>" * 5_000,
            "could not be parsed as XML: the document is nested too deeply",
        ),
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


def test_xml_values_are_written_legally_or_refused(tmp_path: Path) -> None:
    # .NET's character-checking writer: "--" in a comment gets a space, a final "-" too,
    # "?>" in an instruction as well; a character XML cannot hold fails the step
    target = tmp_path / "c.xml"
    target.write_bytes(b"<a><!--x--><?p d?><b/></a>")
    structured.update_file(target, {"/a/comment()": "no--dash-", "/a/processing-instruction()":
                                    "x?>y"}, print)  # fmt: skip
    assert target.read_bytes() == b"<a>\n  <!--no- -dash- -->\n  <?p x? >y?>\n  <b />\n</a>"
    with pytest.raises(structured.StructuredError, match=r"c.xml: the value of /a/b holds "
                       r"U\+0001, a character XML cannot hold"):  # fmt: skip
        structured.update_file(target, {"/a/b": "bad\x01"}, print)
    assert target.read_bytes() == b"<a>\n  <!--no- -dash- -->\n  <?p x? >y?>\n  <b />\n</a>"
