"""Training and validation examples built from the knowledge base's labelled tickets."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from core.types import Ticket

VALIDATION_BUCKETS = 10  # one ticket in ten is held out, chosen by a hash of its text so the split never moves


@dataclass(frozen=True)
class Example:
    """One training example. ``negative`` means "the intent is NOT ``label``" (a down-voted answer)."""

    text: str
    label: str
    weight: float = 1.0
    negative: bool = False
    soft: tuple[float, ...] | None = None  # teacher probabilities over the sorted intents (distillation)
    # a follow-up learnt as it was read: (its earlier messages, the message); ``text`` is their ``with_context``
    followup: tuple[tuple[str, ...], str] | None = None


def is_validation(text: str) -> bool:
    """Stable split: the same question is always on the same side, whatever else is ingested."""
    return zlib.crc32(text.strip().lower().encode()) % VALIDATION_BUCKETS == 0


def split_tickets(tickets: list[Ticket]) -> tuple[list[Example], list[Example]]:
    """(train, validation) examples from labelled tickets."""
    train, val = [], []
    for t in tickets:
        if t.intent:
            (val if is_validation(t.question) else train).append(Example(t.question, t.intent))
    return train, val
