"""Typed text travels in the link, compressed: a shared URL reopens the same stream; a damaged or oversized
parameter is named and the default used; a text too long for a link is said so."""

import zlib

import pytest

from app.textlink import MAX_LINK_CHARS, decode_link_text, encode_link_text, param_name
from tests.apptest import open_page

PROSE = "Memory is the process of storing and recalling. " * 40


@pytest.mark.parametrize("text", ["", "a", "héllo wörld ✓ 日本語", PROSE])
def test_round_trip(text):
    enc = encode_link_text(text)
    assert decode_link_text(enc) == text and enc.isascii() and "=" not in enc


def test_prose_compresses_well_below_its_length():
    assert len(encode_link_text(PROSE)) < len(PROSE) / 5


@pytest.mark.parametrize("bad", ["hello", "z!!!", encode_link_text(PROSE)[:-7]])
def test_damaged_values_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError):
        decode_link_text(bad)


def test_a_compression_bomb_is_refused():
    import base64

    bomb = "z" + base64.urlsafe_b64encode(zlib.compress(b"a" * 3_000_000, 9)).decode().rstrip("=")
    with pytest.raises(ValueError, match="over"):
        decode_link_text(bomb)


def test_a_link_with_typed_text_opens_the_same_stream_and_typing_updates_the_link():
    text = "the cat sat on the mat; the cat sat on the hat."
    at = open_page("stepper", stepper_source="Type or paste", **{param_name("stepper_typed"): encode_link_text(text)})
    assert not at.exception
    assert at.text_area(key="stepper_typed").value == text
    assert at.session_state["stepper_run"].tokens == list(text.encode())
    at.text_area(key="stepper_typed").set_value("something else entirely").run()
    value = at.query_params[param_name("stepper_typed")]
    value = value if isinstance(value, str) else value[0]  # AppTest may hold a parameter as a list
    assert decode_link_text(value) == "something else entirely"


def test_a_damaged_text_parameter_is_named_and_the_default_used():
    at = open_page("stepper", stepper_source="Type or paste", **{param_name("stepper_typed"): "zNOTVALID"})
    assert not at.exception
    assert any(param_name("stepper_typed") in w.value for w in at.warning)
    assert at.text_area(key="stepper_typed").value.startswith("Memory is")


def test_a_text_too_long_for_a_link_says_so_and_leaves_no_stale_text_in_the_url():
    import random

    rnd = random.Random(0)  # random letters do not compress: past the link budget
    long_text = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(4 * MAX_LINK_CHARS))
    at = open_page("attribution", attr_source="your text")
    at.text_area(key="attr_text").set_value("short text here").run()
    assert param_name("attr_text") in at.query_params  # the attribution page's text is linked too
    at = open_page("stepper", stepper_source="Type or paste")
    at.text_area(key="stepper_typed").set_value("short text here").run()
    assert param_name("stepper_typed") in at.query_params
    at.text_area(key="stepper_typed").set_value(long_text).run()
    assert param_name("stepper_typed") not in at.query_params
    assert any("too long to travel in a link" in c.value for c in at.caption)
