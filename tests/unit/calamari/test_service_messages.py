"""Service messages: round trips, Calamari's parsing rules, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.calamari.service_messages import ServiceMessage, format_message, parse_line

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,15}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(names, st.dictionaries(names, st.text(max_size=40), max_size=4))
def test_any_message_survives_a_round_trip(name: str, attributes: dict[str, str]) -> None:
    assert parse_line(format_message(name, attributes)) == ServiceMessage(name, attributes)


def test_set_variable_as_the_bash_helper_writes_it() -> None:
    # name='Greeting' value='Hello, World' sensitive='True', in single quotes as the helpers do
    line = (
        "##octopus[setVariable name='R3JlZXRpbmc=' value='SGVsbG8sIFdvcmxk' sensitive='VHJ1ZQ==']"
    )
    message = parse_line(line)
    assert message == ServiceMessage(
        "setVariable", {"name": "Greeting", "value": "Hello, World", "sensitive": "True"}
    )
    assert message.get("NAME") == "Greeting"  # attribute names are case-insensitive


@pytest.mark.parametrize(("line", "expected"), [
    ('##octopus[createArtifact path="L3RtcC9h" name="YQ==" length="Mw=="]',
     ServiceMessage("createArtifact", {"path": "/tmp/a", "name": "a", "length": "3"})),
    ("##octopus[stdout-warning]", ServiceMessage("stdout-warning")),
    ("  text before ##octopus[progress percentage='NTA=' message='aGFsZg=='] and after",
     ServiceMessage("progress", {"percentage": "50", "message": "half"})),
    ("##octopus[resultMessage message='ZG9uZQ==']",
     ServiceMessage("resultMessage", {"message": "done"})),
    ("##octopus[mask value='c2Vj\r\ncmV0']", ServiceMessage("mask", {"value": "secret"})),
])  # fmt: skip
def test_calamari_parsing_rules(line: str, expected: ServiceMessage) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize("line", [
    "plain output",
    "##octopus",
    "##octopus[setVariable name='R3JlZXRpbmc='",  # never closed
    "##octopus[setVariable name='not base64!']",
    "##octopus[setVariable name='/w==']",  # base64, but not UTF-8
    "##octopus[setVariable name=unquoted]",
    "##octopus[<script>]",
    "##octopus[]",
    "##octopus[[resultMessage message='ZG9uZQ==']",
    "##octopus[a b='x' b='x']",  # duplicate attribute
])  # fmt: skip
def test_malformed_messages_are_ordinary_output(line: str) -> None:
    assert parse_line(line) is None


def test_names_must_be_xml_names() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        format_message("set variable", {})
    with pytest.raises(ValueError, match="not a valid"):
        format_message("setVariable", {"a'b": "x"})


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from("#octpus[]='\"<>&;abc= \r\n\\/") | st.characters(), max_size=80
    )
)
def test_any_line_parses_or_is_none(line: str) -> None:
    message = parse_line("##octopus[" + line)
    assert message is None or isinstance(message, ServiceMessage)
    assert parse_line(line) is None or isinstance(parse_line(line), ServiceMessage)
