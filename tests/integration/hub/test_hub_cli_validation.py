"""The hub's commands refuse what they cannot use in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import TentacleCli


@pytest.mark.parametrize(
    ("name", "said"), [("", "not empty"), ("   ", "not empty"), ("n" * 201, "not 201 characters")]
)
def test_an_api_key_needs_a_name_of_1_to_200_characters(
    tentacle: TentacleCli, tmp_path: Path, name: str, said: str
) -> None:
    home = tmp_path / "hub"
    tentacle.ok("hub", "create", "--home", str(home))
    refused = tentacle.fails("hub", "create-api-key", "--home", str(home), "--name", name)
    lines = refused.err.strip().splitlines()
    assert len(lines) == 1, refused.err
    assert "--name is required: 1 to 200 characters" in lines[0]
    assert said in lines[0]
    assert refused.out == ""  # no key was made
    key = tentacle.ok("hub", "create-api-key", "--home", str(home), "--name", " ci ").out
    assert key.startswith("API-")


def test_disabled_and_enabled_are_one_switch_whose_last_word_wins(tentacle: TentacleCli) -> None:
    shown = " ".join(tentacle.ok("hub", "workers", "--help").out.split())
    assert "--disabled / --enabled" in shown
    assert "the last one given wins" in shown
