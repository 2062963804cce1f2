"""The gate a team can leave alone: drift over a chain of retrains, the live slice, the ranker's two metrics."""

from __future__ import annotations

import random

import pytest

from core.errors import InputError
from core.registry import ModelRegistry
from core.store import FeedbackStore
from core.types import Feedback, Reply, Ticket
from csbot.wiring import retrain
from retrieval.ranker import Ranker
from training import retrain as retrain_module
from training.data import Example, is_validation
from training.gate import MIN_CONFIDENT_VOTES, Outcomes, decide, drift_tolerance, ranker_gate, significantly_worse, suspect_votes
from training.live_slice import LiveSlice, in_live_slice
from training.train_intent import IntentTrainConfig
from training.train_ranker import RankingSet, ranking_means


def outcomes_with(passes: int, n: int, rng: random.Random, base: list[bool] | None = None) -> list[bool]:
    """``passes`` of ``n`` right; when ``base`` is given, differ from it on as few examples as possible."""
    if base is None:
        out = [True] * passes + [False] * (n - passes)
        rng.shuffle(out)
        return out
    out = list(base)
    right = [i for i, ok in enumerate(out) if ok]
    wrong = [i for i, ok in enumerate(out) if not ok]
    for i in rng.sample(right, max(sum(base) - passes, 0)):
        out[i] = False
    for i in rng.sample(wrong, max(passes - sum(base), 0)):
        out[i] = True
    return out


def test_the_drift_rule_refuses_a_chain_of_small_losses():
    """Each step loses 3 of 1,000 to the one before: never significant, but the chain may not walk down."""
    rng = random.Random(0)
    first = Outcomes(outcomes_with(900, 1000, rng))
    chain = {"v0001": first}
    serving, promoted = "v0001", []
    for step in range(2, 6):
        candidate = Outcomes(outcomes_with(sum(chain[serving].tickets) - 3, 1000, rng, base=chain[serving].tickets))
        assert not significantly_worse(candidate.tickets, chain[serving].tickets)[0]  # the old gate let every step through
        decision = decide(candidate, chain[serving], chain)
        if decision.promoted:
            serving = f"v{step:04d}"
            chain[serving] = candidate
            promoted.append(serving)
        else:
            assert decision.rule == "drift" and decision.best_of_chain == "v0001", decision
            assert "below the best recent version" in decision.reason
    assert promoted == ["v0002"]  # 897 is within 5 of 900; 894 is not, and no later step gets past it
    assert sum(chain[serving].tickets) >= 900 - drift_tolerance(1000)


def test_the_drift_rule_on_a_young_deployment_split():
    rng = random.Random(1)
    serving = Outcomes(outcomes_with(60, 69, rng))
    three_worse = Outcomes(outcomes_with(57, 69, rng, base=serving.tickets))
    two_worse = Outcomes(outcomes_with(58, 69, rng, base=serving.tickets))
    assert not significantly_worse(three_worse.tickets, serving.tickets)[0]
    assert decide(three_worse, serving, {"v0001": serving}).rule == "drift"
    assert decide(two_worse, serving, {"v0001": serving}).promoted  # two queries of 69: noise


def test_the_live_slice_can_refuse_what_the_tickets_cannot_see():
    rng = random.Random(2)
    tickets = outcomes_with(60, 69, rng)
    serving = Outcomes(tickets, outcomes_with(180, 200, rng))
    candidate = Outcomes(list(tickets), outcomes_with(150, 200, rng, base=serving.live))
    decision = decide(candidate, serving, {"v0001": serving})
    assert not decision.promoted and decision.rule == "significance" and "live slice" in decision.reason


def test_live_slice_scores_labels_and_repeated_down_votes():
    from training.data import Example

    live = LiveSlice(labelled=[Example("a", "x"), Example("b", "y")], down_voted=[Example("c", "x", negative=True), Example("d", "y", negative=True)])
    outcomes = live.outcomes(["x", "x", "x", "z"])  # right, wrong, repeats the down-voted intent, does not
    assert outcomes == [True, False, False, True]
    assert live.summary(outcomes) == {"labelled": 2, "down_voted": 2, "accuracy": 0.5, "repeat_rate": 0.5, "score": 0.5}


def test_a_ranker_lower_on_either_metric_is_not_promoted():
    assert not ranker_gate((0.93, 0.93), {"FAISS order": (0.92, 0.94)})[0]  # better hit@1, worse MRR: refused
    assert not ranker_gate((0.91, 0.95), {"FAISS order": (0.92, 0.94)})[0]
    ok, why = ranker_gate((0.93, 0.95), {"FAISS order": (0.92, 0.94), "serving v0002": (0.93, 0.945)})
    assert ok and "not below serving v0002" in why


def session_ids(inside: bool, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        sid = f"customer-{i}"
        if in_live_slice(sid) == inside:
            out.append(sid)
        i += 1
    return out


def test_the_live_slice_is_never_trained_on(settings, monkeypatch):
    store = FeedbackStore(settings.db_path)
    tickets = store.db.execute("select question, intent from tickets order by id limit 40").fetchall()
    inside, outside = session_ids(True, 20), session_ids(False, 20)
    for i, ((question, intent), session) in enumerate(zip(tickets, inside + outside)):
        message = f"{question} (customer {i})"
        store.append_turn(Reply(f"t{i}", session, "answer", "an answer", intent, 0.8), message)  # below the vote audit's 0.9
        store.append_feedback(Feedback(f"t{i}", 1 if i % 2 else -1))
    slice_messages = {f"{q} (customer {i})" for i, (q, _) in enumerate(tickets[:20])}
    seen: list[str] = []
    real = retrain_module.train_intent_model

    def recording(train, val, **kwargs):
        seen.extend(e.text for e in train)
        return real(train, val, **kwargs)

    monkeypatch.setattr(retrain_module, "train_intent_model", recording)
    result = retrain(settings, IntentTrainConfig(quick=True, head_steps=30, followup_pairs=0), from_feedback=True)
    assert not slice_messages & set(seen)
    assert {f"{q} (customer {i})" for i, (q, _) in enumerate(tickets[20:], start=20)} <= set(seen)
    card = ModelRegistry(settings.models_dir).card("intent", result.version)
    live = card["metrics"]["live"]
    assert (live["labelled"], live["down_voted"]) == (10, 10)
    assert card["metrics"]["serving_live"]["labelled"] == 10
    assert card["gate"]["rule"] in ("all rules passed", "significance", "drift", "forgetting")
    assert "v0001" in card["metrics"]["chain"]


def test_a_learned_ranker_worse_than_faiss_order_is_not_promoted(settings, monkeypatch):
    registry = ModelRegistry(settings.models_dir)
    before = registry.current_version("ranker")
    monkeypatch.setattr(retrain_module, "fit_ranker", lambda data, **kw: Ranker(weights={"similarity": -1.0}))  # reversed FAISS order
    result = retrain(settings, IntentTrainConfig(quick=True, head_steps=30, followup_pairs=0))
    assert not result.ranker["promoted"]
    assert registry.current_version("ranker") == before
    card = registry.card("ranker", result.ranker["version"])
    assert card["gate"]["decision"] == "refused" and "below FAISS order" in card["gate"]["reason"]
    validation = sum(is_validation(q) for (q,) in FeedbackStore(settings.db_path).db.execute("select question from tickets where intent != ''"))
    assert card["data"]["eval_queries"] == validation  # cross-fitted: the gate sees every validation ticket, not half


def test_a_serving_ranker_that_fell_below_the_baseline_gives_way_to_it(settings, monkeypatch):
    """A learned ranker fitted to an older intent model is measured again; below the baseline, the baseline serves."""
    registry = ModelRegistry(settings.models_dir)
    stale = Ranker(weights={"similarity": -1.0})  # reversed FAISS order: below the baseline under any intent model
    staging = registry.staging_dir("ranker")
    stale.save(staging)
    registry.promote("ranker", stale_version := registry.publish("ranker", staging, {"gate": {"decision": "promoted"}}))
    monkeypatch.setattr(retrain_module, "fit_ranker", lambda data, **kw: Ranker(weights={"similarity": -1.0}))  # refused too
    result = retrain(settings, IntentTrainConfig(quick=True, head_steps=30, followup_pairs=0))
    assert not result.ranker["promoted"] and result.ranker["fallback"] == registry.current_version("ranker") != stale_version
    serving = Ranker.load(registry.path("ranker", registry.current_version("ranker")))
    assert serving.intent_first and serving.weights == Ranker.baseline().weights
    card = registry.card("ranker", registry.current_version("ranker"))
    assert f"the serving ranker {stale_version}" in card["gate"]["reason"] and "below" in card["gate"]["reason"]
    again = retrain(settings, IntentTrainConfig(quick=True, head_steps=30, followup_pairs=0))  # the baseline serving is not replaced by itself
    assert again.ranker["fallback"] is None


def test_cross_fitted_scores_measure_each_half_with_the_ranker_not_fitted_on_it():
    a, b = Ticket(1, "qa", "A", "a"), Ticket(2, "qb", "B", "b")
    half = RankingSet([Example("x", "a")], [[(b, 0.9), (a, 0.8)]], [{"a": 0.9, "b": 0.1}])
    follows_classifier = Ranker(weights={"intent_probability": 1.0}, lead_only=True)
    assert ranking_means([(follows_classifier, half), (Ranker(), half)]) == (0.5, 0.75)  # right first; then 2nd


@pytest.mark.parametrize("tolerance_n", [69, 400, 1000, 5000])
def test_drift_tolerance_is_half_a_point_or_two_queries(tolerance_n):
    assert drift_tolerance(tolerance_n) == max(2, int(0.005 * tolerance_n))


def test_votes_against_confident_answers_beyond_belief_are_suspect():
    rng = random.Random(3)

    def votes(n: int, down_share: float, confidence: float = 0.95) -> list[tuple[float, int]]:
        return [(confidence, -1 if rng.random() < down_share else 1) for _ in range(n)]

    honest = suspect_votes(votes(900, 0.13), serving_precision=0.97)  # 10% flipped votes + 3% wrong answers
    assert not honest.suspect and "believable" in honest.detail
    poisoned = suspect_votes(votes(900, 0.40), serving_precision=0.97)  # 30% of customers against every right answer
    assert poisoned.suspect and 0.35 < poisoned.down_share < 0.45
    assert not suspect_votes(votes(MIN_CONFIDENT_VOTES - 1, 1.0), serving_precision=0.97).suspect  # too few to tell
    assert suspect_votes(votes(900, 1.0, confidence=0.5), serving_precision=0.97).confident_votes == 0  # unsure answers may be voted down
    serving = Outcomes([True] * 60 + [False] * 9)
    decision = decide(Outcomes(list(serving.tickets)), serving, {"v0001": serving}, votes=poisoned)
    assert not decision.promoted and decision.rule == "suspect feedback" and "poisoned" in decision.reason
    assert decide(Outcomes(list(serving.tickets)), serving, {"v0001": serving}, votes=honest).promoted


def test_a_retrain_on_poisoned_votes_is_refused_and_the_card_says_why(settings):
    """Customers vote down right, confident answers: the candidate learnt from that, so it does not serve."""
    store = FeedbackStore(settings.db_path)
    registry = ModelRegistry(settings.models_dir)
    before = registry.current_version("intent")
    tickets = store.db.execute("select question, intent from tickets order by id limit 60").fetchall()
    for i, (question, intent) in enumerate(tickets):
        store.append_turn(Reply(f"p{i}", f"poisoner-{i // 3}", "answer", "an answer", intent, 0.97), question)
        store.append_feedback(Feedback(f"p{i}", -1 if i % 5 else 1))  # 80% down on answers the tickets confirm
    result = retrain(settings, IntentTrainConfig(quick=True, head_steps=30, followup_pairs=0), from_feedback=True)
    assert not result.promoted and result.rule == "suspect feedback"
    assert registry.current_version("intent") == before
    card = registry.card("intent", result.version)
    audit = card["data"]["vote_audit"]
    assert audit["suspect"] and (audit["confident_votes"], audit["down_votes"]) == (60, 48)
    assert card["gate"]["rule"] == "suspect feedback" and "48 of 60" in card["gate"]["reason"]
    # Refused before training: no weights were trained or kept, and such a version cannot be promoted by hand.
    assert card["trained"] is False and card["training"] is None and "before training" in result.reason
    assert not (registry.path("intent", result.version) / "model.safetensors").exists()
    with pytest.raises(InputError, match="refused before training"):
        registry.promote("intent", result.version)
