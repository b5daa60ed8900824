"""The strict query filters and the log masking, as plain functions."""

from __future__ import annotations

import pytest

from agent.hub.api.redact import loggable_target, mask_keys
from agent.hub.rules.filters import BadFilter, choices, flag, id_values

KEY = "API-" + "AB12" * 8


@pytest.mark.parametrize(
    ("query", "wanted"),
    [
        ({}, None),
        ({"s": ""}, None),
        ({"s": " , "}, None),
        ({"s": "healthy"}, {"Healthy"}),
        ({"s": "Healthy, unknown"}, {"Healthy", "Unknown"}),
    ],
)
def test_choices_are_read_in_any_case_as_the_accepted_spelling(
    query: dict[str, str], wanted: set[str] | None
) -> None:
    assert choices(query, "s", ("Healthy", "Unknown")) == wanted


def test_an_unknown_choice_names_the_parameter_the_values_and_the_accepted_ones() -> None:
    with pytest.raises(BadFilter, match=r"^s must be among A, B, not 'x', 'y'$"):
        choices({"s": "A,x,y"}, "s", ("A", "B"))


def test_ids_must_be_of_their_kind_and_flags_true_or_false() -> None:
    assert id_values({"p": "WorkerPools-2,workerpools-3"}, "p", "WorkerPools") == {2, 3}
    with pytest.raises(BadFilter, match=r"'WorkerPools-x'"):
        id_values({"p": "WorkerPools-x"}, "p", "WorkerPools")
    assert (flag({"d": "TRUE"}, "d"), flag({"d": "false"}, "d"), flag({}, "d")) == (
        True,
        False,
        None,
    )
    with pytest.raises(BadFilter, match=r"^d must be true or false, not 'maybe'$"):
        flag({"d": "maybe"}, "d")


@pytest.mark.parametrize(
    ("path", "query", "logged"),
    [
        ("/api/workers", [], "/api/workers"),
        ("/api/workers", [("take", "5")], "/api/workers?take=5"),
        ("/api", [("ApiKey", KEY)], "/api?ApiKey=********"),
        ("/api", [("apikey", "hunter2")], "/api?apikey=********"),
        (f"/api/{KEY}", [("n", KEY.lower())], "/api/API-********?n=API-********"),
        ("/api/a\nb", [("q", "x\ny")], "/api/a%0Ab?q=x%0Ay"),
    ],
)
def test_a_logged_target_masks_every_key_and_cannot_forge_a_line(
    path: str, query: list[tuple[str, str]], logged: str
) -> None:
    assert loggable_target(path, query) == logged


def test_only_key_shaped_text_is_masked() -> None:
    assert mask_keys("API-SHORT1 and API-1234567890") == "API-SHORT1 and API-1234567890"
    assert mask_keys(f"x{KEY}y") == "xAPI-********"  # letters after a key are part of it


def _encoded(text: str) -> str:
    return "".join(f"%{ord(c):02X}" for c in text)


@pytest.mark.parametrize(
    "shown",
    [
        KEY.replace("-", "%2D"),  # how a client's URL library encodes the dash
        KEY.replace("-", "%2d"),
        _encoded(KEY),  # every character
        _encoded(KEY).lower(),
        "API-" + _encoded(KEY[4:12]) + KEY[12:],  # some characters only
    ],
)
def test_a_percent_encoded_key_is_masked_whole(shown: str) -> None:
    line = f"b'GET /api/workers?apikey={shown} HTTP/1.1 junk'"
    assert mask_keys(line) == "b'GET /api/workers?apikey=API-******** HTTP/1.1 junk'"


def test_percent_encoded_text_that_is_not_a_key_is_kept() -> None:
    # %20 (a space) is not a letter or digit of a key; too short is not a key either
    kept = "API%2D%20" + "A" * 30 + " and API%2D" + "A" * 10
    assert mask_keys(kept) == kept
