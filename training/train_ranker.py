"""Fit the ranker's weights by pairwise logistic regression on the candidates retrieved for each query.

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
from retrieval.query_map import retrieve
from retrieval.ranker import FEATURES, Ranker, answer_key
from training.data import Example


@dataclass
class RankingSet:
    """Candidates of each query with their features and relevance labels."""

    queries: list[Example]
    candidates: list[list]  # per query: [(ticket, similarity)]
    probs: list[dict[str, float]]


def build_ranking_set(examples: list[Example], kb: KnowledgeBase, classifier: IntentClassifier, k: int, floor: float) -> RankingSet:
    """Candidates as serving retrieves them under ``classifier`` (``floor``: the out-of-scope similarity)."""
    examples = [e for e in examples if not e.negative]
    texts = [e.text for e in examples]
    if not texts:
        return RankingSet(examples, [], [])
    embedded = classifier.embed(texts)  # one pass for the probabilities and (shared or mapped) the retrieval
    retrieved = retrieve(kb, classifier, texts, k + 1, floor, intent_vectors=embedded)
    labels = classifier.labels
    probs = [dict(zip(labels, row.tolist())) for row in classifier.probabilities_from_embeddings(embedded)]
    candidates = [[(t, s) for t, s in hits if t.question.strip() != q.strip()][:k] for q, hits in zip(texts, retrieved)]
    return RankingSet(examples, candidates, probs)


def join_ranking_sets(*sets: RankingSet) -> RankingSet:
    return RankingSet([q for s in sets for q in s.queries], [c for s in sets for c in s.candidates], [p for s in sets for p in s.probs])


def answer_priors(vote_rows: list[dict], kb: KnowledgeBase) -> dict[str, float]:
    """(up - down) / (votes + 5) per answer, from customers' votes on answers (the answer is the turn's text)."""
    ups, downs = Counter(), Counter()
    for row in vote_rows:
        if row["action"] == "answer" and row["vote"] in (1, -1) and row.get("text"):
            (ups if row["vote"] == 1 else downs)[answer_key(row["text"])] += 1
    return {key: (ups[key] - downs[key]) / (ups[key] + downs[key] + 5) for key in ups | downs}


def fit_ranker(data: RankingSet, *, answer_prior: dict[str, float] | None = None, seed: int = 0, max_pairs: int = 64) -> Ranker:
    """Pairwise logistic regression (RankNet with a linear scorer) over FEATURES.

    For every query each relevant candidate should score above each irrelevant one. A pointwise fit of
    relevance learns "is this ticket of the top intent", which puts every ticket of a wrong top intent
    above the first right one (hit@1 up, MRR@10 down); pairs weigh every position of the list, so the first
    right ticket rises even when the top one is wrong. At most ``max_pairs`` pairs per query (sampled with
    ``seed``) so long lists do not outweigh short ones. The fitted ranker leads with its best-scored ticket, then
    the baseline's lead where that is another ticket, then FAISS order (``Ranker.lead_only``,
    ``Ranker.baseline_second``; the module docstring of ``retrieval.ranker`` says why).
    """
    probe = Ranker(answer_prior=answer_prior or {})
    rng = np.random.default_rng(seed)
    diffs = []
    for example, cands, probs in zip(data.queries, data.candidates, data.probs):
        relevant = np.array([t.intent == example.label for t, _ in cands], dtype=bool)
        pos, neg = np.flatnonzero(relevant), np.flatnonzero(~relevant)
        if not len(pos) or not len(neg):
            continue  # all right or all wrong: no order to learn from this query
        x = probe.features(cands, probs)
        pairs = np.stack(np.meshgrid(pos, neg, indexing="ij"), -1).reshape(-1, 2)
        if len(pairs) > max_pairs:
            pairs = pairs[rng.choice(len(pairs), max_pairs, replace=False)]
        diffs.append(x[pairs[:, 0]] - x[pairs[:, 1]])
    if not diffs:
        return probe  # nothing to learn from: FAISS order
    d = np.concatenate(diffs)
    x, y = np.concatenate([d, -d]), np.concatenate([np.ones(len(d), dtype=int), np.zeros(len(d), dtype=int)])
    model = LogisticRegression(C=1.0, fit_intercept=False, max_iter=1000, random_state=seed).fit(x, y)
    weights = {f: float(w) for f, w in zip(FEATURES, model.coef_[0])}
    return Ranker(weights=weights, answer_prior=answer_prior or {}, lead_only=True, baseline_second=True)


def ranking_outcomes(ranker: Ranker, data: RankingSet) -> tuple[list[bool], float]:
    """Per query: is the top-ranked ticket of the right intent (hit@1)? And MRR@10 over all queries."""
    hits, rr = [], []
    for example, cands, probs in zip(data.queries, data.candidates, data.probs):
        first = first_hit([c.ticket.intent for c in ranker.rank(cands, probs)], example.label)
        hits.append(first == 0)
        rr.append(0.0 if first is None else 1.0 / (first + 1))
    return hits, float(np.mean(rr)) if rr else 0.0


def ranking_means(measured: list[tuple[Ranker, RankingSet]]) -> tuple[float, float]:
    """hit@1 and MRR@10 over every query of the (ranker, queries) pairs: one pair measures one ranker on a set;
    for cross-fitting, one pair per half, each half with the ranker that was not fitted on it."""
    hits, rr_sum = [], 0.0
    for ranker, data in measured:
        fold_hits, fold_mrr = ranking_outcomes(ranker, data)
        hits += fold_hits
        rr_sum += fold_mrr * len(fold_hits)
    return (float(np.mean(hits)), rr_sum / len(hits)) if hits else (0.0, 0.0)
