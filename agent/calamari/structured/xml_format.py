"""XML structured variables, after Calamari's ``XmlFormatVariableReplacer.cs``
(the rules and their sources: docs/structured-variables.md, "XML").

A variable whose name holds ``/`` or ``:`` and reads as XPath (the document's
namespace prefixes declared) sets every node it selects: a text, CDATA,
comment or processing instruction takes the value as its data, an attribute as
its value; an element holding only a CDATA section sets the CDATA, one with
child elements takes the value as inner XML (a warning and no change when it is
not XML), any other its text. A null value sets nothing. The document is
written again as .NET's indenting ``XmlWriter`` writes it (xml_tree.py), in the
file's encoding; an encoding named by the XML declaration is read first.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Mapping

from agent.calamari import textfiles
from agent.calamari.structured import xml_tree, xpath
from agent.calamari.structured.common import ParseError, Warn
from agent.calamari.structured.xml_tree import Attribute, Element, Instruction, Text

_DECLARED = re.compile(rb"""^<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z][\w.:\-]*)["']""")


def declared_encoding(raw: bytes) -> textfiles.Encoding | None:
    """The encoding the XML declaration names (.NET's ``Encoding.GetEncoding``), if any.

    Only an ASCII-compatible declaration is read (a UTF-16 file has a byte order
    mark, which wins anyway). The encoding raises on what it cannot write.
    """
    body = raw.removeprefix(codecs.BOM_UTF8)
    match = _DECLARED.match(body)
    if match is None:
        return None
    found = textfiles.named(match.group(1).decode("ascii"))
    return None if found is None else dataclasses.replace(found, strict=True)


def read(raw: bytes) -> textfiles.TextFile:
    """The text as Calamari reads an XML file: a byte order mark first, then the
    declared encoding, then UTF-8, then Windows-1252."""
    marked = textfiles.decode(raw)
    if marked.encoding.bom:
        return marked
    declared = declared_encoding(raw)
    if declared is not None:
        try:
            return textfiles.TextFile(raw.decode(declared.codec), declared)
        except UnicodeDecodeError:
            pass  # Calamari's precedence goes on to UTF-8 and Windows-1252
    return marked


def namespace_prefixes(document: xml_tree.Document, warn: Warn) -> dict[str, str]:
    """Every ``xmlns:p`` of the document, the first of a prefix declared twice kept (warned)."""
    prefixes = {"xml": xml_tree.XML_NAMESPACE}
    pending: list[xml_tree.Node] = list(reversed(document.children))
    while pending:
        node = pending.pop()
        if not isinstance(node, Element):
            continue
        for prefix, uri in node.declared().items():
            if not prefix:
                continue  # the default namespace is no prefix of XPath's
            existing = prefixes.get(prefix)
            if existing is not None and existing != uri:
                warn(
                    f"The namespace '{uri}' could not be mapped to the '{prefix}' prefix, as "
                    f"another namespace '{existing}' is already mapped to that prefix. XPath "
                    "selectors using this prefix may not return the expected nodes. You can "
                    "avoid this by ensuring all namespaces in your document have unique prefixes."
                )
            else:
                prefixes[prefix] = uri
        pending.extend(reversed(node.children))
    return prefixes


def replace_document(
    document: xml_tree.Document, variables: Mapping[str, str | None], warn: Warn
) -> int:
    """Apply the variables to ``document``; returns how many nodes were set."""
    prefixes = namespace_prefixes(document, warn)
    replaced = 0
    for name, value in variables.items():
        if "/" not in name and ":" not in name:
            continue  # Calamari: keeps "Octopus…" and plain names from selecting the document
        try:
            compiled = xpath.compile_key(name, prefixes)
            selected = xpath.select(compiled, document)
        except xpath.XPathError:
            continue  # not XPath: not a key
        if value is None:
            continue
        for node in selected:
            replaced += 1
            _set(node, name, value, warn)
    return replaced


def _set(node: xpath.Item, key: str, value: str, warn: Warn) -> None:
    invalid = xml_tree.invalid_character(value)
    if invalid is not None:
        # .NET's writer throws on it (CheckCharacters) and the step fails; so does ours
        raise xml_tree.Refused(
            f"the value of {key} holds U+{ord(invalid):04X}, a character XML cannot hold"
        )
    if isinstance(node, Text | xml_tree.Comment | Instruction):
        node.data = value
    elif isinstance(node, Attribute):
        node.value = value
    elif isinstance(node, Element):
        _set_element(node, key, value, warn)
    else:
        kind = "Document" if isinstance(node, xml_tree.Document) else "DocumentType"
        warn(f"XML Node of type '{kind}' is not supported")


def _set_element(element: Element, key: str, value: str, warn: Warn) -> None:
    children = element.children
    if len(children) == 1 and isinstance(children[0], Text) and children[0].cdata:
        children[0].data = value  # Calamari keeps a lone CDATA section
    elif any(isinstance(child, Element) for child in children):
        try:
            element.children = xml_tree.parse_fragment(value, element)
        except (ParseError, xml_tree.Refused):
            warn(
                f"Could not set the value of the XML element at XPath '{key}' to '{value}'. "
                "Expected a valid XML fragment. Skipping replacement of this element."
            )
    else:
        element.children = [Text(parent=element, data=value)]


def rewrite(raw: bytes, variables: Mapping[str, str | None], warn: Warn) -> bytes:
    """The file's new bytes. ParseError when it is not well-formed XML, Refused when it
    declares entities."""
    source = read(raw)
    text = source.text
    newline = textfiles.line_ending(text)
    document = xml_tree.parse(text.replace("\r\n", "\n"))
    try:
        replace_document(document, variables, warn)
        encoding = source.encoding
        output = xml_tree.write(document, encoding.name).replace("\n", newline)
        if not textfiles.fits(output, encoding):
            # Calamari writes the document again in UTF-8, and the declaration says so
            warn(
                f"Unable to represent the output with encoding {encoding.name}. "
                "Trying next the alternative: utf-8."
            )
            encoding = textfiles.UTF8
            output = xml_tree.write(document, encoding.name).replace("\n", newline)
    except RecursionError:
        raise ParseError("the document is nested too deeply") from None
    return textfiles.encode(output, encoding, warn)
