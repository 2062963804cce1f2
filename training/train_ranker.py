"""Fit the ranker's weights by logistic regression on (query, candidate ticket) pairs.

Queries are held-out tickets (the intent model never trained on them, so its probabilities are as
honest as at serving time) and voted turns: a candidate is relevant when its intent is the query's
(for a vote: the intent the customer confirmed or corrected to). The query's own ticket is removed
from its candidates, as it would not exist for a new customer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from retrieval.intent import IntentClassifier
from retrieval.knowledge_base import KnowledgeBase
from retrieval.metrics import first_hit
from retrieval.ranker import FEATURES, Ranker, answer_key
from training.data import Example


@dataclass
class RankingSet:
    """Candidates of each query with their features and relevance labels."""

    queries: list[Example]
    candidates: list[list]  # per query: [(ticket, similarity)]
    probs: list[dict[str, float]]


def build_ranking_set(examples: list[Example], kb: KnowledgeBase, classifier: IntentClassifier, k: int) -> RankingSet:
    examples = [e for e in examples if not e.negative]
    texts = [e.text for e in examples]
    retrieved = kb.search(kb.encoder.encode(texts), k + 1) if texts else []
    labels = classifier.labels
    probs = [dict(zip(labels, row.tolist())) for row in classifier.probabilities(texts)] if texts else []
    candidates = [[(t, s) for t, s in hits if t.question.strip() != q.strip()][:k] for q, hits in zip(texts, retrieved)]
    return RankingSet(examples, candidates, probs)


def answer_priors(vote_rows: list[dict], kb: KnowledgeBase) -> dict[str, float]:
    """(up - down) / (votes + 5) per answer, from customers' votes on answers (the answer is the turn's text)."""
    ups, downs = Counter(), Counter()
    for row in vote_rows:
        if row["action"] == "answer" and row["vote"] in (1, -1) and row.get("text"):
            (ups if row["vote"] == 1 else downs)[answer_key(row["text"])] += 1
    return {key: (ups[key] - downs[key]) / (ups[key] + downs[key] + 5) for key in ups | downs}


def fit_ranker(data: RankingSet, *, answer_prior: dict[str, float] | None = None, seed: int = 0) -> Ranker:
    """Logistic regression over FEATURES; the fitted coefficients become the ranker's weights."""
    probe = Ranker(answer_prior=answer_prior or {})
    xs, ys = [], []
    for example, cands, probs in zip(data.queries, data.candidates, data.probs):
        if not cands:
            continue
        xs.append(probe.features(cands, probs))
        ys.append(np.array([t.intent == example.label for t, _ in cands], dtype=int))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(set(y.tolist())) < 2:
        return probe  # nothing to learn from: keep the default weights
    model = LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x, y)
    weights = {f: float(w) for f, w in zip(FEATURES, model.coef_[0])}
    return Ranker(weights=weights, bias=float(model.intercept_[0]), answer_prior=answer_prior or {})


def ranking_outcomes(ranker: Ranker, data: RankingSet) -> tuple[list[bool], float]:
    """Per query: is the top-ranked ticket of the right intent (hit@1)? And MRR@10 over all queries."""
    hits, rr = [], []
    for example, cands, probs in zip(data.queries, data.candidates, data.probs):
        first = first_hit([c.ticket.intent for c in ranker.rank(cands, probs)], example.label)
        hits.append(first == 0)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
    return hits, float(np.mean(rr)) if rr else 0.0
