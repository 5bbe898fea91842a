"""path_component: every tag value reaching a path becomes one safe component, ASCII or not."""

from __future__ import annotations

import pytest

from pacsd.pathnames import path_component


@pytest.mark.parametrize("value, expected", [
    ("1.2.840.113619.2.55.3", "1.2.840.113619.2.55.3"),
    ("A\x01B\x7fC", "ABC"),  # control characters are removed, not replaced
    ("a\tb\nc", "abc"),
    ("../../etc/passwd", "etc_passwd"),
    ("DOE^JOHN  SR", "DOE^JOHN_SR"),
    ("  ..hidden.  ", "hidden"),
    ("\x00\x00", "UNKNOWN"),
    ('a:b*c?d"e<f>g|h\\i', "a_b_c_d_e_f_g_h_i"),
])
def test_ascii_values(value, expected):
    assert path_component(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("Mu\u0308ller", "M\u00fcller"),  # NFC: the combining diaeresis joins its letter
    ("a\u200bb\u200dc", "abc"),  # format characters (zero-width space, joiner) are removed
    ("\u00e9\x01/x", "\u00e9_x"),
])
def test_non_ascii_values(value, expected):
    assert path_component(value) == expected


def test_ascii_and_unicode_rules_agree_on_ascii_text():
    """The ASCII shortcut must give what the general rule gives: same text plus one non-ASCII
    letter that survives sanitising, compared without that letter."""
    for code in range(128):
        text = f"x{chr(code)}y"
        assert path_component(text) + "\u00e9" == path_component(text + "\u00e9")


def test_length_is_bounded_in_utf8_bytes():
    assert len(path_component("\u00e9" * 100).encode()) <= 64
    assert len(path_component("Z" * 300, max_bytes=128)) == 128


def test_a_remembered_answer_depends_on_the_limit_and_the_default_too():
    """Recent answers are remembered (a series repeats its components); the same text asked with
    another byte limit or default is made safe for that limit or default, not taken from memory."""
    text = "Ünïcödé/../" * 10
    long_answer = path_component(text, max_bytes=128)
    assert path_component(text, max_bytes=128) == long_answer
    assert path_component(text) == long_answer.encode()[:64].decode("utf-8", "ignore").rstrip("._ ")
    assert len(path_component(text).encode()) <= 64 < len(long_answer.encode())
    assert path_component("..", default="EMPTY") == "EMPTY" and path_component("..") == "UNKNOWN"


def test_texts_too_long_to_remember_are_still_made_safe():
    text = "x/" * 5000
    assert path_component(text) == ("x_" * 32)[:64].rstrip("._ ")


@pytest.mark.parametrize("value, max_bytes, expected", [
    ("1.2.840.10008.5.1.4.1.1.2", 64, "1.2.840.10008.5.1.4.1.1.2"),
    ("..1.2.3..", 64, "1.2.3"),
    ("_PID-7_", 64, "PID-7"),
    ("1.2.3.dcm", 64, "1.2.3.dcm"),
    ("9" * 70 + ".dcm", 64, "9" * 64),
    ("1." * 40, 64, ("1." * 32).rstrip(".")),
    ("._.", 64, "UNKNOWN"),
])
def test_plain_names_keep_their_characters_and_lose_dots_at_the_ends(value, max_bytes, expected):
    """Letters, digits, '.', '-' and '_' (UIDs, IDs, 'UID.dcm') take a shortcut past the
    replacements; the ends and the length are still the general rule's."""
    assert path_component(value, max_bytes=max_bytes) == expected
