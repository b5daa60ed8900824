"""Unit files from the templates: directives replaced, words quoted (agent/cli/units.py)."""

from __future__ import annotations

import logging

import pytest

from agent.cli.logs import JournalFormatter
from agent.cli.units import (
    AGENT_TEMPLATE,
    HUB_TEMPLATE,
    command_line,
    environment_assignment,
    path_list,
    read_template,
    render,
)
from agent.errors import ConfigError

TEMPLATE = "# a comment naming User=nobody\n[Service]\nUser=root\nExecStart=/bin/x\n\nUser=again\n"


def test_render_replaces_the_first_line_of_each_directive_and_keeps_the_rest() -> None:
    text = render(TEMPLATE, {"User": "deploy", "ExecStart": "/opt/y run"})
    assert text == (
        "# a comment naming User=nobody\n[Service]\nUser=deploy\nExecStart=/opt/y run\n\n"
        "User=again\n"
    )


def test_a_directive_the_template_lacks_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ValueError, match="no WatchdogSec= line"):
        render(TEMPLATE, {"WatchdogSec": "1s"})


def test_words_with_blanks_specifiers_or_variables_stay_one_literal_word() -> None:
    assert command_line(["/opt/t/bin/tentacle", "agent"]) == "/opt/t/bin/tentacle agent"
    assert command_line(["/opt/my tools/tentacle"]) == '"/opt/my tools/tentacle"'
    assert command_line(["/opt/100%/$HOME"]) == "/opt/100%%/$$HOME"
    assert command_line(['/a "b"\\c']) == '"/a \\"b\\"\\\\c"'
    assert environment_assignment("V", "/a b%") == '"V=/a b%%"'
    assert path_list(["/a b", "-/c"]) == '"/a b" -/c'


def test_a_line_break_cannot_go_into_a_unit() -> None:
    with pytest.raises(ConfigError, match="line break"):
        environment_assignment("TENTACLE_CONFIG_HOME", "/a\nExecStartPre=/bin/evil")


@pytest.mark.parametrize("name", [AGENT_TEMPLATE, HUB_TEMPLATE])
def test_the_templates_are_found_in_a_source_checkout(name: str) -> None:
    assert "[Service]" in read_template(name)


def test_missing_templates_are_named_with_where_they_were_looked_for() -> None:
    with pytest.raises(ConfigError, match=r"the unit template nothing\.service is missing"):
        read_template("nothing.service")


@pytest.mark.parametrize(
    ("level", "prefix"),
    [(logging.DEBUG, "<7>"), (logging.INFO, "<6>"), (logging.WARNING, "<4>"),
     (logging.ERROR, "<3>"), (logging.CRITICAL, "<2>")],
)  # fmt: skip
def test_journal_lines_carry_the_syslog_priority_and_no_time(level: int, prefix: str) -> None:
    record = logging.LogRecord("agent", level, __file__, 1, "hello %s", ("you",), None)
    line = JournalFormatter().format(record)
    assert line.startswith(prefix)
    assert line.endswith(" hello you")
    assert logging.getLevelName(level) in line
