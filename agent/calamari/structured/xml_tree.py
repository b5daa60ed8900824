"""An XML document as Calamari's ``XmlDocument`` holds it, read safely, written as
.NET's indenting ``XmlWriter`` writes it (docs/structured-variables.md, "XML").

Reading (expat, no namespace processing: names stay as written): whitespace-only
text is dropped (``PreserveWhitespace`` is false), an element written ``<a/>``
is remembered as empty. Refused, with ``Refused``: any entity declaration (so no
entity expansion attack and no external entity), and expat's own limits
(billion-laughs amplification) end as a ``ParseError``. Nothing is fetched.

Writing: two-space indentation, no indentation inside mixed content, ``<a />``
for an empty element, attributes in double quotes, the declaration written
again as ``<?xml version="1.0" encoding="<name>"[ standalone="…"]?>``, no final
newline. Line breaks are ``\\n``; the caller turns them into the file's own.
"""

from __future__ import annotations

import pyexpat
import re
from dataclasses import dataclass, field

from agent.calamari.structured.common import ParseError, Refused

__all__ = ["ParseError", "Refused", "parse", "parse_fragment", "write"]

XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"


@dataclass(eq=False)
class Node:
    parent: Element | Document | None = field(default=None, repr=False)


@dataclass(eq=False)
class Text(Node):
    data: str = ""
    cdata: bool = False


@dataclass(eq=False)
class Comment(Node):
    data: str = ""


@dataclass(eq=False)
class Instruction(Node):
    target: str = ""
    data: str = ""


@dataclass(eq=False)
class Doctype(Node):
    source: str = ""  # as written: .NET writes name, ids and internal subset again


@dataclass(eq=False)
class Attribute(Node):
    name: str = ""
    value: str = ""


@dataclass(eq=False)
class Element(Node):
    name: str = ""
    attributes: list[Attribute] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    empty: bool = False  # written <a/>: .NET's XmlElement.IsEmpty

    def namespaces(self) -> dict[str, str]:
        """The prefixes in scope here ("" for the default namespace)."""
        chain: list[Element] = []
        node: Element | Document | None = self
        while isinstance(node, Element):
            chain.append(node)
            node = node.parent
        scope = {"xml": XML_NAMESPACE}
        for element in reversed(chain):
            scope.update(element.declared())
        return scope

    def declared(self) -> dict[str, str]:
        found = {}
        for attribute in self.attributes:
            if attribute.name == "xmlns":
                found[""] = attribute.value
            elif attribute.name.startswith("xmlns:"):
                found[attribute.name[6:]] = attribute.value
        return found


@dataclass(eq=False)
class Document:
    children: list[Node] = field(default_factory=list)
    declaration: bool = False
    standalone: int = -1  # expat's: -1 not given, 0 "no", 1 "yes"


Parent = Element | Document


def parse(text: str) -> Document:
    """The document in ``text``; ParseError when it is not well-formed XML."""
    document = Document()
    _Builder(document).run(text)
    return document


def parse_fragment(text: str, into: Element) -> list[Node]:
    """The nodes of ``text`` as content of ``into`` (``InnerXml``); ParseError if malformed."""
    holder = Document()
    _Builder(holder).run(f"<fragment>{text}</fragment>")
    wrapper = holder.children[0]
    assert isinstance(wrapper, Element)
    nodes = wrapper.children
    for node in nodes:
        node.parent = into
    return nodes


class _Builder:
    def __init__(self, root: Parent) -> None:
        self.stack: list[Parent] = [root]
        self.root = root
        self.source = b""
        self.text: list[str] = []
        self.cdata = False
        self.parser = pyexpat.ParserCreate(encoding="utf-8")
        self.parser.ordered_attributes = True
        self.parser.specified_attributes = True
        self.parser.buffer_text = True
        self.parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)

    def run(self, text: str) -> None:
        parser = self.parser
        parser.XmlDeclHandler = self._declaration
        parser.StartDoctypeDeclHandler = self._doctype_start
        parser.EndDoctypeDeclHandler = self._doctype_end
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self.text.append
        parser.StartCdataSectionHandler = self._cdata_start
        parser.EndCdataSectionHandler = self._cdata_end
        parser.CommentHandler = self._comment
        parser.ProcessingInstructionHandler = self._instruction
        self.source = text.encode("utf-8", errors="surrogatepass")
        self._doctype_at = 0
        try:
            parser.Parse(self.source, True)
        except pyexpat.ExpatError as error:
            raise ParseError(str(error)) from None
        except RecursionError:
            raise ParseError("the document is nested too deeply") from None

    def _flush(self) -> None:
        if not self.text:
            return
        data = "".join(self.text)
        self.text.clear()
        if not self.cdata and not data.strip(" \t\r\n"):
            return  # insignificant whitespace: XmlDocument drops it
        self._add(Text(data=data, cdata=self.cdata))

    def _add(self, node: Node) -> None:
        parent = self.stack[-1]
        node.parent = parent
        parent.children.append(node)

    def _declaration(self, version: str, encoding: str | None, standalone: int) -> None:
        del version, encoding
        if isinstance(self.root, Document):
            self.root.declaration = True
            self.root.standalone = standalone

    def _doctype_start(self, *_: object) -> None:
        # expat reports the declaration late (at its "[" or ">"): find where it begins
        self._doctype_at = self.source.rindex(b"<!DOCTYPE", 0, self.parser.CurrentByteIndex + 1)

    def _doctype_end(self) -> None:
        end = self.source.index(b">", self.parser.CurrentByteIndex) + 1
        source = self.source[self._doctype_at : end].decode("utf-8", errors="surrogatepass")
        self._add(Doctype(source=source))

    def _entity(self, name: str, *_: object) -> None:
        raise Refused(
            f"the document declares the entity '{name}'; entity declarations are refused "
            "(they can expand without bound or read other files)"
        )

    def _external(self, *_: object) -> int:
        raise Refused("the document refers to an external entity; that is refused")

    def _start(self, name: str, attributes: list[str]) -> None:
        self._flush()
        element = Element(name=name)
        pairs = zip(attributes[::2], attributes[1::2], strict=True)
        element.attributes = [Attribute(parent=element, name=k, value=v) for k, v in pairs]
        self._add(element)
        self.stack.append(element)

    def _end(self, name: str) -> None:
        del name
        self._flush()
        element = self.stack.pop()
        assert isinstance(element, Element)
        # expat reports an empty-element tag's end just after its "/>"; a start tag
        # followed by only whitespace and an end tag never ends so
        at = self.parser.CurrentByteIndex
        element.empty = not element.children and self.source[at - 2 : at] == b"/>"

    def _cdata_start(self) -> None:
        self._flush()
        self.cdata = True

    def _cdata_end(self) -> None:
        if not self.text:
            self.text.append("")
        self._flush()
        self.cdata = False

    def _comment(self, data: str) -> None:
        self._flush()
        self._add(Comment(data=data))

    def _instruction(self, target: str, data: str) -> None:
        self._flush()
        self._add(Instruction(target=target, data=data))


# --- writing, as .NET's XmlEncodedRawTextWriterIndent -------------------------------


def escape_text(data: str) -> str:
    return data.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_attribute(value: str) -> str:
    escaped = escape_text(value).replace('"', "&quot;")
    return escaped.replace("\t", "&#x9;").replace("\n", "&#xA;").replace("\r", "&#xD;")


def comment_text(data: str) -> str:
    """A comment's text as .NET's character-checking writer makes it legal: a space
    between two dashes, and after a final one."""
    text = re.sub(r"-(?=-)", "- ", data)
    return text + " " if text.endswith("-") else text


def invalid_character(text: str) -> str | None:
    """The first character XML 1.0 cannot hold, if any."""
    found = _INVALID.search(text)
    return None if found is None else found.group()


_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def inner_text(node: Node) -> str:
    """XPath's string value: an element's text, every descendant's, in order."""
    if isinstance(node, Element):
        return "".join(inner_text(child) for child in node.children)
    if isinstance(node, Text | Comment | Instruction):
        return node.data
    if isinstance(node, Attribute):
        return node.value
    return ""


class _Writer:
    """Indentation as XmlWriterSettings { Indent = true }: a new line and two spaces
    a level before every node, unless the previous thing written was text or the
    element's content (or an ancestor's) is mixed."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.level = 0
        self.after_text = False

    def indent(self) -> None:
        if self.out and not self.after_text:
            self.out.append("\n" + "  " * self.level)

    def write(self, piece: str, *, text: bool = False) -> None:
        self.out.append(piece)
        self.after_text = text

    def node(self, node: Node, mixed: bool) -> None:
        if isinstance(node, Element):
            self.element(node, mixed)
            return
        if isinstance(node, Text):
            if node.cdata:
                self.write("<![CDATA[" + node.data.replace("]]>", "]]]]><![CDATA[>") + "]]>")
                self.after_text = True
            else:
                self.write(escape_text(node.data), text=True)
            return
        if not mixed:
            self.indent()
        if isinstance(node, Comment):
            self.write(f"<!--{comment_text(node.data)}-->")
        elif isinstance(node, Instruction):
            data = f" {node.data.replace('?>', '? >')}" if node.data else ""
            self.write(f"<?{node.target}{data}?>")
        elif isinstance(node, Doctype):
            self.write(node.source)

    def element(self, element: Element, mixed: bool) -> None:
        if not mixed:
            self.indent()
        attributes = "".join(f' {a.name}="{escape_attribute(a.value)}"' for a in element.attributes)
        if element.empty and not element.children:
            self.write(f"<{element.name}{attributes} />")
            return
        self.write(f"<{element.name}{attributes}>")
        # content turns mixed from the first text or CDATA on (an ancestor's mixed state is
        # inherited): what follows it is not indented, the end tag neither
        inner = mixed
        self.level += 1
        for child in element.children:
            inner = inner or isinstance(child, Text)
            self.node(child, inner)
        self.level -= 1
        if element.children and not inner:
            self.indent()
        self.write(f"</{element.name}>")


def write(document: Document, encoding_name: str) -> str:
    """The document as XmlDocument.Save writes it through an indenting XmlWriter."""
    writer = _Writer()
    if document.declaration:
        standalone = {0: ' standalone="no"', 1: ' standalone="yes"'}.get(document.standalone, "")
        writer.write(f'<?xml version="1.0" encoding="{encoding_name}"{standalone}?>')
    for child in document.children:
        writer.node(child, False)
    return "".join(writer.out)
