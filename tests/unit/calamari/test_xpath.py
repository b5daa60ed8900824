"""The XPath keys of XML structured variables (agent/calamari/structured/xpath.py)."""

from __future__ import annotations

import pytest

from agent.calamari.structured import xml_tree, xpath

DOCUMENT = """<r xmlns:p="urn:p"><a id="1">x</a><a id="2">y<!--c--></a><p:b k="v">z</p:b>
<c xmlns="urn:d"><a>in-d</a></c><?pi data?><a id="3"><![CDATA[w]]></a></r>"""


def _select(key: str) -> list[str]:
    document = xml_tree.parse(DOCUMENT)
    found = xpath.select(xpath.compile_key(key, {"p": "urn:p", "xml": xml_tree.XML_NAMESPACE}),
                         document)  # fmt: skip
    return [xml_tree.inner_text(node) for node in found if not isinstance(node, xml_tree.Document)]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("/r/a", ["x", "yc", "w"]),  # an unprefixed name is in no namespace: not urn:d's a
        ("//a", ["x", "yc", "w"]),
        ("//*:a", ["x", "yc", "in-d", "w"]),
        ("/r/a[2]", ["yc"]),
        ("/r/a[@id='3']", ["w"]),
        ("/r/a[@id=3]", ["w"]),
        ("/r/a[.='x']", ["x"]),
        ("/r/a[text()='y']", ["yc"]),
        ("/r/a[@id!='1' and position()=last()]", ["w"]),
        ("/r/a[@id='1' or @id='2']/@id", ["1", "2"]),
        ("/r/a[not(@id='1')][1]", ["yc"]),
        ("/r/a/text()", ["x", "y", "w"]),  # CDATA is text to XPath
        ("/r/a/comment()", ["c"]),
        ("/r/processing-instruction('pi')", ["data"]),
        ("/r/processing-instruction()", ["data"]),
        ("/r/p:b/@k", ["v"]),
        ("/r/p:*", ["z"]),
        ("//p:b/..//a[1]", ["x"]),
        ("/r/child::a[1] | /r/p:b", ["x", "z"]),
        ("/r/descendant::a[@id]/attribute::id", ["1", "2", "3"]),
        ("//a/self::a[1]", ["x", "yc", "w"]),
        ("/r/missing", []),
        ("/r/@*", []),  # xmlns:p is a declaration, not an attribute
    ],
)
def test_keys_select_as_xpath_does(key: str, expected: list[str]) -> None:
    assert _select(key) == expected


@pytest.mark.parametrize(
    "key",
    ["Logging:Level", "Servers:1:Host", "//env:x", "/r/a[", "/r/a]", "a:b:c", "/r/following::a",
     "/r/a[count(.)]"],
)  # fmt: skip
def test_what_is_not_xpath_is_no_key(key: str) -> None:
    with pytest.raises(xpath.XPathError):
        xpath.compile_key(key, {"p": "urn:p"})
