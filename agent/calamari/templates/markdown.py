"""A small Markdown to HTML converter for the ``Markdown`` filter.

Octostache uses Markdig; this covers what deployment notes use: paragraphs,
ATX headings, emphasis and strong, inline code, links, autolinks, bullet and
numbered lists, fenced code, block quotes, horizontal rules and pipe tables.
"""

from __future__ import annotations

import html
import re

_INLINE = [
    (re.compile(r"`([^`]+)`"), lambda m: f"<code>{m[1]}</code>"),
    (re.compile(r"\*\*(.+?)\*\*|__(.+?)__"), lambda m: f"<strong>{m[1] or m[2]}</strong>"),
    (re.compile(r"\*(.+?)\*|(?<!\w)_(.+?)_(?!\w)"), lambda m: f"<em>{m[1] or m[2]}</em>"),
    (re.compile(r"~~(.+?)~~"), lambda m: f"<del>{m[1]}</del>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), lambda m: f'<a href="{m[2]}">{m[1]}</a>'),
    (re.compile(r"(?<![\"=>])\b(https?://[^\s<]+)"), lambda m: f'<a href="{m[1]}">{m[1]}</a>'),
]


def inline(text: str) -> str:
    escaped = html.escape(text, quote=False)
    codes: list[str] = []

    def keep(match: re.Match[str]) -> str:
        codes.append(f"<code>{match[1]}</code>")
        return f"\x00{len(codes) - 1}\x00"

    escaped = _INLINE[0][0].sub(keep, escaped)
    for pattern, replacement in _INLINE[1:]:
        escaped = pattern.sub(replacement, escaped)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m[1])], escaped)


def to_html(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    at = 0
    while at < len(lines):
        at = _block(lines, at, out)
    return "\n".join(out)


def _block(lines: list[str], at: int, out: list[str]) -> int:
    line = lines[at]
    stripped = line.strip()
    if not stripped:
        return at + 1
    if stripped.startswith("```"):
        end = next(
            (i for i in range(at + 1, len(lines)) if lines[i].strip().startswith("```")), len(lines)
        )
        language = stripped[3:].strip()
        attribute = f' class="language-{language}"' if language else ""
        body = "".join(html.escape(item, quote=False) + "\n" for item in lines[at + 1 : end])
        out.append(f"<pre><code{attribute}>{body}</code></pre>")
        return end + 1
    heading = re.fullmatch(r"(#{1,6})\s+(.*?)\s*#*", stripped)
    if heading:
        level = len(heading[1])
        out.append(f"<h{level}>{inline(heading[2])}</h{level}>")
        return at + 1
    if re.fullmatch(r"(\*\s*){3,}|(-\s*){3,}|(_\s*){3,}", stripped):
        out.append("<hr />")
        return at + 1
    if stripped.startswith(">"):
        end = _run(lines, at, lambda item: item.strip().startswith(">"))
        inner = [re.sub(r"^\s*>\s?", "", item) for item in lines[at:end]]
        out.append("<blockquote>\n" + to_html("\n".join(inner)) + "\n</blockquote>")
        return end
    bullet = re.compile(r"\s*[-*+]\s+(.*)")
    number = re.compile(r"\s*\d+[.)]\s+(.*)")
    for pattern, tag in ((bullet, "ul"), (number, "ol")):
        if pattern.fullmatch(line):
            end = _run(lines, at, lambda item, p=pattern: p.fullmatch(item) is not None)
            entries = "".join(
                f"<li>{inline(match[1])}</li>\n"
                for item in lines[at:end]
                if (match := pattern.fullmatch(item))
            )
            out.append(f"<{tag}>\n{entries}</{tag}>")
            return end
    if (
        "|" in stripped
        and at + 1 < len(lines)
        and re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", lines[at + 1].strip())
    ):
        end = _run(lines, at + 2, lambda item: "|" in item and bool(item.strip()))
        out.append(_table(lines[at], lines[at + 1], lines[at + 2 : end]))
        return end
    end = _run(lines, at, lambda item: bool(item.strip()) and not _starts_block(item))
    end = max(end, at + 1)
    paragraph = "\n".join(item.strip() for item in lines[at:end])
    out.append(f"<p>{inline(paragraph)}</p>")
    return end


def _starts_block(line: str) -> bool:
    return bool(re.match(r"\s*(#{1,6}\s|```|>|[-*+]\s|\d+[.)]\s)", line))


def _run(lines: list[str], start: int, belongs: object) -> int:
    end = start
    while end < len(lines) and belongs(lines[end]):  # type: ignore[operator]
        end += 1
    return end


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _alignment(delimiter: str) -> str:
    left, right = delimiter.startswith(":"), delimiter.endswith(":")
    kind = "center" if left and right else "left" if left else "right" if right else ""
    return f' style="text-align: {kind};"' if kind else ""


def _table(header: str, delimiters: str, rows: list[str]) -> str:
    """A pipe table as Markdig (and GitHub's renderer) writes it: one element a line,
    the delimiter row's alignment on every cell of its column, as many cells in a row
    as in the header (missing ones empty), no body when there are no rows."""
    aligns = [_alignment(cell) for cell in _cells(delimiters)]
    width = len(_cells(header))
    aligns = (aligns + [""] * width)[:width]

    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * width)[:width]
        pairs = zip(cells, aligns, strict=True)
        inner = "".join(f"<{tag}{align}>{inline(cell)}</{tag}>\n" for cell, align in pairs)
        return f"<tr>\n{inner}</tr>\n"

    body = "".join(row(_cells(line), "td") for line in rows)
    tbody = f"<tbody>\n{body}</tbody>\n" if rows else ""
    return f"<table>\n<thead>\n{row(_cells(header), 'th')}</thead>\n{tbody}</table>"
