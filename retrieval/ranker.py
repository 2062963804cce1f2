"""Orders retrieved tickets for a query by combining their signals.

Score = cosine similarity of the query to the ticket's question + ``intent_weight`` x the intent
classifier's probability for the ticket's intent. The classifier sees the whole label space and the
retriever sees the wording of individual tickets; the sum lets either rescue the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.types import Ticket


@dataclass(frozen=True)
class Candidate:
    """A retrieved ticket with the signals that ranked it."""

    ticket: Ticket
    similarity: float
    intent_probability: float
    score: float


class Ranker:
    """Example:
    >>> Ranker(intent_weight=1.0).rank([(ticket, 0.8)], {"card_arrival": 0.9})[0].score   # doctest: +SKIP
    1.7
    """

    def __init__(self, *, intent_weight: float = 1.0) -> None:
        if intent_weight < 0:
            raise ValueError(f"intent_weight must be >= 0, found {intent_weight}")
        self.intent_weight = intent_weight

    def rank(self, retrieved: list[tuple[Ticket, float]], intent_probs: dict[str, float]) -> list[Candidate]:
        candidates = [
            Candidate(ticket, sim, p := intent_probs.get(ticket.intent, 0.0), sim + self.intent_weight * p)
            for ticket, sim in retrieved
        ]
        return sorted(candidates, key=lambda c: c.score, reverse=True)
