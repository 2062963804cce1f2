from __future__ import annotations

import pytest

from core.redact import luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+bank@example.co.uk please", "write to [EMAIL] please"),
        ("my card 4111 1111 1111 1111 was stolen", "my card [CARD] was stolen"),
        ("card 5500-0000-0000-0004 declined", "card [CARD] declined"),
        ("IBAN GB82 WEST 1234 5698 7654 32 is mine", "IBAN [IBAN] is mine"),
        ("DE89370400440532013000", "[IBAN]"),
        ("call me on +44 20 7946 0958", "call me on [PHONE]"),
        ("or (415) 555-0132 tonight", "or [PHONE] tonight"),
    ],
)
def test_personal_data_is_redacted(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    ["I paid 25.50 on 2024-01-12", "transfer of 1000 GBP", "order 12345 arrived", "4111111111111112 is not a card"],
)
def test_ordinary_numbers_are_kept(text):
    assert redact(text) == text


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
