"""Help and version, the way people ask for them: -h, --help, help, --version."""

from __future__ import annotations

import re

from agent import __version__
from tests.helpers.cli import TentacleCli


def test_every_way_of_asking_for_help_shows_the_same_page(tentacle: TentacleCli) -> None:
    pages = [tentacle.ok(*ask).out for ask in (["--help"], ["-h"], ["help"])]
    assert pages[0] == pages[1] == pages[2]
    assert pages[0].startswith("Usage: tentacle [OPTIONS] COMMAND [ARGS]...")


def test_version(tentacle: TentacleCli) -> None:
    assert tentacle.ok("--version").out == f"tentacle {__version__}\n"


def test_help_for_a_command_and_a_sub_command(tentacle: TentacleCli) -> None:
    assert tentacle.ok("help", "configure").out == tentacle.ok("configure", "-h").out
    upload = tentacle.ok("help", "client", "upload").out
    assert upload.startswith("Usage: tentacle client upload [OPTIONS] LOCAL REMOTE")
    assert upload == tentacle.ok("client", "upload", "--help").out
    unknown = tentacle.fails("help", "client", "nope", code=2)
    assert unknown.err.splitlines()[-1] == "error: no such command 'client nope'"


def test_command_lists_are_not_cut_off_and_name_the_alias(tentacle: TentacleCli) -> None:
    for group in ([], ["client"], ["calamari"]):
        page = tentacle.ok(*group, "--help").out
        commands = page.split("Commands:\n", 1)[1]
        assert "..." not in commands, commands
        # each entry, joined across its wrapped lines, is whole sentences
        entries = re.split(r"\n  (?=\S)", commands.strip())
        for entry in entries:
            assert " ".join(entry.split()).endswith("."), entry
    top = tentacle.ok("--help").out
    assert re.search(r"\n  run +Alias of 'agent'\.\n", top), top


def test_usage_errors_and_failures_say_error_in_lower_case(tentacle: TentacleCli) -> None:
    usage = tentacle.fails("--bogus", code=2)
    assert usage.err.splitlines()[-1] == "error: No such option '--bogus'."
    missing = tentacle.fails("calamari", "extract-package", "--package", "/nonexistent",
                             "--destination", "out", code=2)  # fmt: skip
    assert missing.err.splitlines()[-1].startswith("error: Invalid value for '--package'")
    assert "Error" not in usage.err + missing.err
