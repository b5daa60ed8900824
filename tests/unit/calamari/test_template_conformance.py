"""Filters whose answers follow Octostache and Octopus.Versioning exactly (issue 18): the
Version* filters on every version form Octopus reads, YamlSingleQuoteEscape's line breaks,
Markdown's pipe tables, UriPart on a value that is not an absolute URI."""

from __future__ import annotations

import pytest

from agent.calamari.templates import evaluate

PARTS = ("Major", "Minor", "Patch", "Revision", "PreRelease", "PreReleasePrefix",
         "PreReleaseCounter", "Metadata")  # fmt: skip
TEMPLATE = "|".join(f"#{{V | Version{part}}}" for part in PARTS)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        # Octostache's VersionFixture, case for case
        ("1", "1|0|0|0||||"),
        ("1.2", "1|2|0|0||||"),
        ("1.2.3", "1|2|3|0||||"),
        ("1.2.3.4", "1|2|3|4||||"),
        ("1.2.3.4-branch.1", "1|2|3|4|branch.1|branch|1|"),
        ("1.2.3.4-branch.1+meta", "1|2|3|4|branch.1|branch|1|meta"),
        ("v1.2.3.4-branch.1+meta", "1|2|3|4|branch.1|branch|1|meta"),
        ("V1.2.3.4-branch.1+meta", "1|2|3|4|branch.1|branch|1|meta"),
        ("V1.2.3.4-branch.hithere+meta", "1|2|3|4|branch.hithere|branch|hithere|meta"),
        ("V1.2.3.4-branch-hithere+meta", "1|2|3|4|branch-hithere|branch|hithere|meta"),
        ("V1.2.3.4-branch_hithere+meta", "1|2|3|4|branch_hithere|branch|hithere|meta"),
        ("19.0.0.Final", "19|0|0|0|Final|Final||"),
        ("284.0.0-debian_component_based",
         "284|0|0|0|debian_component_based|debian|component_based|"),
        ("latest", "0|0|0|0|latest|latest||"),
        ("v1", "1|0|0|0||||"),
        ("v1.2.3", "1|2|3|0||||"),
        # OctopusVersionParser's other forms: Maven, Docker, .NET, SemVer with metadata only
        ("1.0-SNAPSHOT", "1|0|0|0|SNAPSHOT|SNAPSHOT||"),
        ("3.9.3-alpine3.18", "3|9|3|0|alpine3.18|alpine3|18|"),
        ("2.0.0+build.5", "2|0|0|0||||build.5"),
        ("1.0.0-rc.1+sha.abc", "1|0|0|0|rc.1|rc|1|sha.abc"),
        (" 1 . 2 ", "1|2|0|0||||"),  # spaces around the numbers are tolerated
        # what the parser refuses reads as 0.0.0.0, everything else empty (TryParse)
        ("1.0.0 beta!", "0|0|0|0||||"),
        ("2:1.2-3", "0|0|0|0||||"),
        ("99999999999.1", "0|0|0|0||||"),  # past int's range
        ("", "0|0|0|0||||"),
    ],
)  # fmt: skip
def test_version_filters_read_versions_as_octopus_does(version: str, expected: str) -> None:
    assert evaluate(TEMPLATE, {"V": version}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # HandleSingleQuoteYamlNewLines: each run of LF/CRLF gets one more break in front
        # (CRLF when the run begins with CR); a lone CR is not a line break
        ("it's\nfine", "it''s\n\nfine"),
        ("a\r\nb", "a\r\n\r\nb"),
        ("a\r\n\nb", "a\r\n\r\n\nb"),
        ("a\n\r\nb", "a\n\n\r\nb"),
        ("a\rb", "a\rb"),
        ("'", "''"),
    ],
)
def test_yaml_single_quote_escape_keeps_line_breaks_as_yaml_reads_them(
    value: str, expected: str
) -> None:
    assert evaluate("#{V | YamlSingleQuoteEscape}", {"V": value}) == expected


def test_markdown_tables_are_one_element_a_line_with_their_alignment() -> None:
    text = "| a | b | c |\n|:--|:-:|--:|\n| 1 | *2* |\n| 3 | 4 | 5 | 6 |"
    assert evaluate("#{V | Markdown}", {"V": text}) == (
        "<table>\n<thead>\n<tr>\n"
        '<th style="text-align: left;">a</th>\n'
        '<th style="text-align: center;">b</th>\n'
        '<th style="text-align: right;">c</th>\n'
        "</tr>\n</thead>\n<tbody>\n<tr>\n"
        '<td style="text-align: left;">1</td>\n'
        '<td style="text-align: center;"><em>2</em></td>\n'
        '<td style="text-align: right;"></td>\n'
        "</tr>\n<tr>\n"
        '<td style="text-align: left;">3</td>\n'
        '<td style="text-align: center;">4</td>\n'
        '<td style="text-align: right;">5</td>\n'
        "</tr>\n</tbody>\n</table>\n"
    )
    assert evaluate("#{V | Markdown}", {"V": "| a |\n|---|"}) == (
        "<table>\n<thead>\n<tr>\n<th>a</th>\n</tr>\n</thead>\n</table>\n"
    )


@pytest.mark.parametrize("part", ["Host", "Port", "Scheme", "AbsoluteUri", "PathAndQuery"])
def test_uri_part_on_a_relative_value_says_so_for_every_part(part: str) -> None:
    # Uri.TryCreate(RelativeOrAbsolute) makes a relative URI, whose parts all throw
    assert evaluate(f"#{{V | UriPart {part}}}", {"V": "not/a uri"}) == (
        f"[UriPart {part} error: This operation is not supported for a relative URI.]"
    )


def test_uri_part_answers_that_a_relative_value_is_not_absolute() -> None:
    assert evaluate("#{V | UriPart IsAbsoluteUri}", {"V": "just-text"}) == "false"
    assert evaluate("#{V | UriPart Nope}", {"V": "just-text"}) == (
        "[UriPart Nope error: argument 'Nope' not supported]"
    )
    # a value Uri.TryCreate refuses comes back as it is
    assert evaluate("#{V | UriPart Host}", {"V": "http://h:99999/"}) == "http://h:99999/"
