"""Orders retrieved tickets for a query: a learned linear combination of cheap signals.

Why linear and not a cross-encoder: scoring 20 candidates with a MiniLM cross-encoder costs ~120 ms on
two CPU cores, four times the latency budget, while these signals are already computed by the time
ranking starts. The signals per candidate ticket:

- ``similarity``: cosine similarity of the query and the ticket's question (the retriever's view);
- ``intent_probability``: the intent classifier's calibrated probability of the ticket's intent;
- ``is_top_intent``: 1 when the ticket's intent is the classifier's first choice;
- ``neighbour_share``: the share of the retrieved similarity mass held by tickets of the same intent
  (a k-nearest-neighbour vote);
- ``answer_prior``: how customers voted on this ticket's answer before, (up - down) / (votes + 5).

The weights are fitted by pairwise logistic regression (``training.train_ranker``) and saved as
``ranker.json`` in a registry version. A learned ranker only chooses which ticket leads; the rest keep FAISS
order (``lead_only``). Sorting every ticket by the learned score lifts all tickets of the intent it favours,
so when that intent is wrong the right ones sink: on the BANKING77 test split with the fine-tuned model the
same weights give hit@1 94.2% either way, but MRR@10 0.946 sorted against 0.957 led (the baseline: 93.9%, 0.955).

When the learned lead is not the ticket the baseline would lead with, that ticket comes second
(``baseline_second``): the classifier's choice stays the next guess. An override that turns out wrong then
costs exactly half a reciprocal rank, and one that turns out right gains at least half, so a ranker that wins
more leads than it loses cannot lower MRR@10 through them. Without it, the candidate of a fresh
install won one lead more than the baseline on validation but lost 0.0001 of MRR@10 and was refused; with it
the same weights give validation hit@1 0.9399 vs 0.9388, MRR@10 0.9508 vs 0.9503, and on the test split
94.35% / 0.9580 against the baseline's 93.96% / 0.9559.

Without a trained version, or until one beats it on held-out queries, the baseline serves
(``Ranker.baseline``): FAISS's own order (similarity alone), except that the nearest ticket
of the classifier's first intent leads. Pure FAISS order ignores the classifier and answers with the nearest
ticket's intent even where the classifier knew better; moving every ticket of that intent up would bury the
right ones whenever the classifier is wrong. On the BANKING77 test split with the quick model: FAISS order
hit@1 92.05%, MRR@10 0.942; the baseline 93.34%, 0.951; all tickets of the top intent first 93.3%, 0.938.
A learned ranker must never subtract: it is promoted only when it is below neither.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.types import Ticket

FEATURES = ("similarity", "intent_probability", "is_top_intent", "neighbour_share", "answer_prior")
DEFAULT_WEIGHTS = {"similarity": 1.0}  # FAISS order
RANKER_FILE = "ranker.json"
BASELINE = "FAISS order, classifier's intent first"  # how cards and gate reasons name Ranker.baseline()


def answer_key(answer: str) -> str:
    return hashlib.sha1(answer.strip().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Candidate:
    """A retrieved ticket with the signals that ranked it."""

    ticket: Ticket
    similarity: float
    intent_probability: float
    score: float


@dataclass
class Ranker:
    """Example:
    >>> Ranker().rank([(ticket, 0.8)], {"card_arrival": 0.9})[0].score   # doctest: +SKIP
    0.8
    """

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    bias: float = 0.0
    answer_prior: dict[str, float] = field(default_factory=dict)
    intent_first: bool = False  # the best-scored ticket of the classifier's first intent leads; the rest keep their order
    lead_only: bool = False  # the best-scored ticket leads, the rest keep FAISS order (every learned ranker since 2026-12-06)
    baseline_second: bool = False  # a lead other than the baseline's is followed by the baseline's (learned rankers since 2026-12-06)

    @classmethod
    def baseline(cls) -> Ranker:
        """What serves until a learned ranker beats it (module docstring)."""
        return cls(intent_first=True)

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown ranker features {sorted(unknown)}; expected some of {FEATURES}")
        self._w = np.array([self.weights.get(f, 0.0) for f in FEATURES])

    def features(self, retrieved: list[tuple[Ticket, float]], intent_probs: dict[str, float]) -> np.ndarray:
        """One row of FEATURES per retrieved ticket."""
        if not retrieved:
            return np.zeros((0, len(FEATURES)))
        top_intent = max(intent_probs, key=intent_probs.get) if intent_probs else ""
        mass: dict[str, float] = defaultdict(float)
        for ticket, sim in retrieved:
            mass[ticket.intent] += max(sim, 0.0)
        total = sum(mass.values()) or 1.0
        return np.array(
            [
                [
                    sim,
                    intent_probs.get(ticket.intent, 0.0),
                    float(bool(ticket.intent) and ticket.intent == top_intent),
                    mass[ticket.intent] / total if ticket.intent else 0.0,
                    self.answer_prior.get(answer_key(ticket.answer), 0.0),
                ]
                for ticket, sim in retrieved
            ]
        )

    def rank(self, retrieved: list[tuple[Ticket, float]], intent_probs: dict[str, float]) -> list[Candidate]:
        scores = self.features(retrieved, intent_probs) @ self._w + self.bias if retrieved else []
        candidates = [Candidate(ticket, sim, intent_probs.get(ticket.intent, 0.0), float(score)) for (ticket, sim), score in zip(retrieved, scores)]
        ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
        if self.lead_only and ranked:
            ranked = ranked[:1] + sorted(ranked[1:], key=lambda c: c.similarity, reverse=True)
        if self.intent_first and intent_probs:
            ranked.insert(0, ranked.pop(ranked.index(_classifier_lead(ranked, intent_probs))))
        if self.baseline_second and len(ranked) > 1:
            lead = _classifier_lead(sorted(candidates, key=lambda c: c.similarity, reverse=True), intent_probs)
            if lead is not ranked[0]:
                ranked.insert(1, ranked.pop(ranked.index(lead)))
        return ranked

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "features": FEATURES,
            "weights": self.weights,
            "bias": self.bias,
            "answer_prior": self.answer_prior,
            "intent_first": self.intent_first,
            "lead_only": self.lead_only,
            "baseline_second": self.baseline_second,
        }
        (directory / RANKER_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        payload = json.loads((Path(directory) / RANKER_FILE).read_text())
        return cls(
            weights=payload["weights"],
            bias=payload.get("bias", 0.0),
            answer_prior=payload.get("answer_prior", {}),
            intent_first=payload.get("intent_first", False),
            lead_only=payload.get("lead_only", False),  # rankers saved before it sorted every ticket by score
            baseline_second=payload.get("baseline_second", False),  # and before 2026-12-06 kept FAISS order after the lead
        )


def _classifier_lead(ordered: list[Candidate], intent_probs: dict[str, float]) -> Candidate:
    """The first ticket of the classifier's top intent in ``ordered``; the first ticket when none is of it."""
    top = max(intent_probs, key=intent_probs.get) if intent_probs else None
    return next((c for c in ordered if top is not None and c.ticket.intent == top), ordered[0])
