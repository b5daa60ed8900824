"""XML read and written as .NET's XmlDocument and indenting XmlWriter (xml_tree.py)."""

from __future__ import annotations

import pytest

from agent.calamari.structured import xml_tree


@pytest.mark.parametrize(
    ("source", "written"),
    [
        # PreserveWhitespace false: whitespace-only text goes, other text stays whole
        ("<a>\n  <b> x\n </b>\n  <c>  </c>\n</a>", "<a>\n  <b> x\n </b>\n  <c></c>\n</a>"),
        # mixed content: indented until the first text, not after it nor inside what follows
        ("<a><b/>t<c><d/></c></a>", "<a>\n  <b />t<c><d /></c></a>"),
        ("<a><b>t<c><d/></c></b><e/></a>", "<a>\n  <b>t<c><d /></c></b>\n  <e />\n</a>"),
        # top-level comments and instructions each on a line; the declaration written again
        (
            "<?xml version='1.0' encoding='latin-1' standalone='no'?><!--c--><?p?><a/><!--d-->",
            '<?xml version="1.0" encoding="utf-8" standalone="no"?>\n<!--c-->\n<?p?>\n<a />\n'
            "<!--d-->",
        ),
        # attributes: double quotes, as parsed (entities and character references resolved)
        ("<a x='&apos;&quot;&#9;' y=\"&lt;&amp;\"/>", '<a x="\'&quot;&#x9;" y="&lt;&amp;" />'),
        ("<a>&lt;&gt;&amp;&#65;</a>", "<a>&lt;&gt;&amp;A</a>"),
        ("<a><![CDATA[<x>]]><![CDATA[]]></a>", "<a><![CDATA[<x>]]><![CDATA[]]></a>"),
        ("<a><!----></a>", "<a>\n  <!---->\n</a>"),
        ('<p:a xmlns:p="u" p:k="1"><p:b/></p:a>', '<p:a xmlns:p="u" p:k="1">\n  <p:b />\n</p:a>'),
    ],
)
def test_documents_are_written_as_dotnet_writes_them(source: str, written: str) -> None:
    assert xml_tree.write(xml_tree.parse(source), "utf-8") == written


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<a>", "no element found"),
        ("<a></b>", "mismatched tag"),
        ("text", "syntax error"),
        ("<a/><b/>", "junk after document element"),
    ],
)
def test_what_is_not_well_formed_is_a_parse_error(source: str, message: str) -> None:
    with pytest.raises(xml_tree.ParseError, match=message):
        xml_tree.parse(source)
