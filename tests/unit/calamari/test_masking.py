"""Secrets never reach the output, in any common encoding, however the output is cut."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.calamari.masking import MASK, Masker

SECRET = 'p@ss w0rd/+&"é'


def test_every_encoded_form_is_masked() -> None:
    masker = Masker({SECRET})
    forms = [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
    ]
    for form in forms:
        masked = masker.mask(f"before {form} after")
        assert SECRET not in masked
        assert form not in masked, form
        assert masked.startswith("before ")
        assert masked.endswith(" after")


def test_base64_of_the_secret_inside_longer_base64_is_masked_at_any_alignment() -> None:
    masker = Masker({SECRET})
    for prefix in (b"", b"x", b"xy", b"xyz"):
        encoded = base64.b64encode(prefix + SECRET.encode() + b"tail").decode()
        masked = masker.mask(encoded)
        assert MASK in masked, prefix
        # what remains cannot be decoded back to the secret
        assert len(masked.replace(MASK, "")) < len(encoded) - len(SECRET)


def test_a_secret_split_across_chunks_and_lines_is_masked() -> None:
    multiline = "line one\nline two"
    masker = Masker({SECRET, multiline})
    text = f"a {SECRET} b\n{multiline}\nc {SECRET}"
    for size in (1, 2, 3, 7):
        out = "".join(masker.feed(text[i : i + size]) for i in range(0, len(text), size))
        out += masker.flush()
        assert out == f"a {MASK} b\n{MASK}\nc {MASK}", size


def test_secrets_added_later_are_masked_from_then_on() -> None:
    masker = Masker()
    assert masker.feed("open ") == "open "
    masker.add("hunter2")
    assert masker.feed("hunter2 ") + masker.flush() == f"{MASK} "


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=3, max_size=12), st.text(max_size=30), st.text(max_size=30),
       st.lists(st.integers(1, 9), min_size=1, max_size=20))  # fmt: skip
@example(secret="***", before="", after="", cuts=[1])  # Hypothesis found these: the mask
@example(secret="*a", before="", after="a", cuts=[2])  # spells them, nothing leaked
def test_the_secret_never_survives_streaming(
    secret: str, before: str, after: str, cuts: list[int]
) -> None:
    masker = Masker({secret})
    text = before + secret + after
    out, position = [], 0
    for cut in cuts * 20:
        if position >= len(text):
            break
        out.append(masker.feed(text[position : position + cut]))
        position += cut
    out.append(masker.feed(text[position:]))
    out.append(masker.flush())
    # Between the masks, nothing of the secret is left. (Not ``secret not in out``: a secret
    # such as "***", or "*a" followed by "a", is spelt by the mask itself and what follows it.)
    assert not [piece for piece in "".join(out).split(MASK) if secret in piece]
