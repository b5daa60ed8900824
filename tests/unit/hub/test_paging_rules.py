"""skip and take as Octopus reads them: plain digits, at most a 32-bit int."""

from __future__ import annotations

import pytest

from agent.hub.api.paging import ALL, BadPaging, page_of


def test_plain_digits_and_the_clients_every_item_are_read() -> None:
    assert page_of({"skip": "0", "take": "7"}).take == 7
    assert page_of({"take": str(ALL)}).take == ALL
    assert page_of({"skip": "", "take": ""}).take == 30


@pytest.mark.parametrize(
    "text",
    ["\uff11", "1_000", "+1", "1\n", " 1", "-1", "1.0", "0x10", "99999999999999999999999"],
)
@pytest.mark.parametrize("name", ["skip", "take"])
def test_anything_but_plain_digits_up_to_a_32_bit_int_is_refused_naming_it(
    name: str, text: str
) -> None:
    with pytest.raises(BadPaging, match=rf"^{name} must be "):
        page_of({name: text})


def test_one_past_the_largest_is_refused() -> None:
    with pytest.raises(BadPaging, match=f"take must be at most {ALL}, not {ALL + 1}"):
        page_of({"take": str(ALL + 1)})
