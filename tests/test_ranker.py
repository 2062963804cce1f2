from __future__ import annotations

import json

import numpy as np

from core.types import Ticket
from retrieval.ranker import FEATURES, Ranker, answer_key
from training.data import Example
from training.train_ranker import RankingSet, answer_priors, fit_ranker, ranking_outcomes


def ticket(i, intent, answer):
    return Ticket(i, f"question {i}", answer, intent)


def test_default_ranker_is_faiss_order():
    close, far = ticket(1, "a", "A"), ticket(2, "b", "B")
    ranked = Ranker().rank([(far, 0.7), (close, 0.9)], {"b": 0.6, "a": 0.1})
    assert [c.ticket.id for c in ranked] == [1, 2]
    assert ranked[0].score == 0.9


def test_the_baseline_leads_with_the_classifiers_intent_and_keeps_faiss_order_otherwise(tmp_path):
    nearest, mine, other, mine_too = ticket(1, "a", "A"), ticket(2, "b", "B"), ticket(3, "c", "C"), ticket(4, "b", "B2")
    retrieved = [(nearest, 0.9), (mine, 0.8), (other, 0.75), (mine_too, 0.7)]
    baseline = Ranker.baseline()
    assert [c.ticket.id for c in baseline.rank(retrieved, {"b": 0.7, "a": 0.2})] == [2, 1, 3, 4]  # only the nearest "b" moves up
    assert [c.ticket.id for c in baseline.rank(retrieved, {"z": 0.9})] == [1, 2, 3, 4]  # its intent not retrieved: FAISS order
    assert [c.ticket.id for c in Ranker().rank(retrieved, {"b": 0.7})] == [1, 2, 3, 4]
    baseline.save(tmp_path)
    assert Ranker.load(tmp_path).intent_first


def test_a_learned_ranker_chooses_the_lead_and_keeps_faiss_order_after_it(tmp_path):
    """Sorting every ticket by score would lift both tickets of the favoured intent and bury the right one."""
    a1, b1, a2, b2 = ticket(1, "a", "A"), ticket(2, "b", "B"), ticket(3, "a", "A2"), ticket(4, "b", "B2")
    retrieved = [(a1, 0.9), (b1, 0.85), (a2, 0.8), (b2, 0.7)]
    probs = {"b": 0.6, "a": 0.4}
    led = Ranker(weights={"intent_probability": 1.0, "similarity": 0.1}, lead_only=True)
    assert [c.ticket.id for c in led.rank(retrieved, probs)] == [2, 1, 3, 4]
    sorted_all = Ranker(weights={"intent_probability": 1.0, "similarity": 0.1})
    assert [c.ticket.id for c in sorted_all.rank(retrieved, probs)] == [2, 4, 1, 3]
    led.save(tmp_path / "new")
    assert Ranker.load(tmp_path / "new").lead_only
    old = {"weights": {"intent_probability": 1.0}, "bias": 0.0, "answer_prior": {}, "intent_first": False}  # saved before lead_only
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "ranker.json").write_text(json.dumps(old))
    assert not Ranker.load(tmp_path / "old").lead_only and not Ranker.load(tmp_path / "old").baseline_second


def test_when_the_learned_lead_overrides_the_classifier_the_classifiers_ticket_comes_second(tmp_path):
    """An override that is wrong then costs half a reciprocal rank, never more, so winning more leads than it
    loses cannot lower MRR@10 below the baseline's."""
    a1, c1, b1, b2 = ticket(1, "a", "A"), ticket(2, "c", "C"), ticket(3, "b", "B"), ticket(4, "b", "B2")
    retrieved = [(a1, 0.9), (c1, 0.85), (b1, 0.8), (b2, 0.7)]
    probs = {"b": 0.5, "a": 0.3, "c": 0.2}  # the classifier says "b"; the learned score prefers the nearest ticket
    learned = Ranker(weights={"similarity": 1.0}, lead_only=True, baseline_second=True)
    assert [c.ticket.id for c in learned.rank(retrieved, probs)] == [1, 3, 2, 4]
    assert [c.ticket.id for c in Ranker(weights={"similarity": 1.0}, lead_only=True).rank(retrieved, probs)] == [1, 2, 3, 4]
    assert [c.ticket.id for c in Ranker.baseline().rank(retrieved, probs)] == [3, 1, 2, 4]
    # Where the learned lead is the baseline's, nothing moves.
    agrees = Ranker(weights={"intent_probability": 1.0, "similarity": 0.1}, lead_only=True, baseline_second=True)
    assert [c.ticket.id for c in agrees.rank(retrieved, probs)] == [3, 1, 2, 4]
    # A learned lead of the classifier's intent that is not its nearest ticket: the nearest one follows.
    farther = Ranker(weights={"similarity": -1.0}, lead_only=True, baseline_second=True)
    assert [c.ticket.id for c in farther.rank(retrieved, probs)] == [4, 3, 1, 2]
    # Against the baseline, per query: the gold "a" (override right) gains 1 - 1/2, the gold "b" (override wrong) loses 1 - 1/2.
    data = RankingSet([Example("x", "a"), Example("y", "b")], [retrieved, retrieved], [probs, probs])
    assert ranking_outcomes(learned, data) == ([True, False], 0.75) and ranking_outcomes(Ranker.baseline(), data) == ([False, True], 0.75)
    learned.save(tmp_path)
    assert Ranker.load(tmp_path).baseline_second


def test_a_tiny_ranker_training_run_follows_the_votes(tmp_path):
    # Two answers for the same intent; customers liked "good" and disliked "bad".
    good, bad = ticket(1, "card", "good answer"), ticket(2, "card", "bad answer")
    other = ticket(3, "rate", "rate answer")
    before = Ranker().rank([(bad, 0.82), (good, 0.80)], {"card": 0.9})
    assert before[0].ticket.answer == "bad answer"
    votes = [{"action": "answer", "vote": 1, "text": "good answer"}] * 6 + [{"action": "answer", "vote": -1, "text": "bad answer"}] * 6
    priors = answer_priors(votes, kb=None)
    assert priors[answer_key("good answer")] > 0 > priors[answer_key("bad answer")]
    # Relevance from feedback: the liked answer is the right one for these queries, the other intent never is.
    rng = np.random.default_rng(0)
    queries, cands, probs = [], [], []
    for i in range(40):
        queries.append(Example(f"q{i}", "card"))
        s = rng.uniform(0.5, 0.9, 3)
        cands.append([(bad, float(s[0])), (good, float(s[1])), (other, float(s[2]))])
        probs.append({"card": 0.8, "rate": 0.2})
    # Relevance as the votes said: the disliked answer is not what these queries needed.
    disliked = Ticket(2, bad.question, bad.answer, "card-disliked")
    data = RankingSet(queries, [[(disliked if t is bad else t, s) for t, s in c] for c in cands], probs)
    ranker = fit_ranker(data, answer_prior=priors)
    assert ranker.weights["answer_prior"] > 0 and ranker.lead_only and ranker.baseline_second
    after = ranker.rank([(bad, 0.82), (good, 0.80)], {"card": 0.9})
    assert after[0].ticket.answer == "good answer"
    ranker.save(tmp_path)
    assert Ranker.load(tmp_path).weights == ranker.weights
    hits, mrr = ranking_outcomes(ranker, data)
    assert all(hits) and mrr == 1.0
    assert set(ranker.weights) == set(FEATURES)
