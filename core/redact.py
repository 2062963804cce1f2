"""Personal data redaction, applied to everything a customer typed before it is stored.

Why here and not in the UI: the store is the one place every surface writes through, so nothing
can reach the database un-redacted.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
# 13-19 digits, optionally grouped by spaces or dashes, checked with Luhn before redacting.
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
# International or national phone numbers: 7+ digits with optional +, spaces, dots, dashes, brackets.
_PHONE = re.compile(r"(?<![\w+(])(?:\+|00)?\(?\d[\d ().\-]{6,}\d(?!\w)")


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = re.sub(r"\D", "", text)
    return "[PHONE]" if 7 <= len(digits) <= 15 and not _DATE.fullmatch(text.strip()) else text


def redact(text: str) -> str:
    """Replace emails, IBANs, card numbers and phone numbers with placeholders.

    Example:
        >>> redact("mail me at ann@example.com or call +44 20 7946 0958")
        'mail me at [EMAIL] or call [PHONE]'
    """
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub("[IBAN]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub(_phone, text)
