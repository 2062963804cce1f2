from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import time

import pytest
import torch

from core.registry import ModelRegistry
from core.store import FeedbackStore
from core.types import Feedback, Reply
from csbot.wiring import open_assistant, retrain
from training import retrain as retrain_module
from training.data import Example
from training.feedback import FeedbackFilter, build_feedback_dataset, estimate_vote_noise, vote_belief
from training.train_intent import IntentTrainConfig, example_loss

LABELS = {"lost_or_stolen_card", "card_arrival", "exchange_rate"}


def row(session="s1", message="I lost my card", intent="lost_or_stolen_card", vote=1, action="answer", corrected=""):
    return {"session_id": session, "message": message, "intent": intent, "vote": vote, "action": action, "corrected_intent": corrected}


def test_each_kind_of_feedback_becomes_the_right_example():
    data = build_feedback_dataset(
        [
            row(message="my card is gone", vote=1),
            row(message="where is my new card", vote=-1, intent="exchange_rate"),
            row(message="rate for euros", vote=0, corrected="exchange_rate", action="clarify"),
            row(message="hmm", vote=-1, action="clarify", intent="card_arrival"),
            row(message="something else", vote=1, intent="not_an_intent"),
        ],
        LABELS,
    )
    assert sorted(data.examples, key=lambda e: e.text) == [
        Example("my card is gone", "lost_or_stolen_card", 1.0),
        Example("rate for euros", "exchange_rate", 2.0),
        Example("where is my new card", "exchange_rate", 0.5, negative=True),
    ]
    assert data.counts["unusable"] == 2


def test_noise_filters():
    flood = [row(session="flood", message=f"q {i}", vote=1 if i % 2 else -1) for i in range(50)]
    uniform = [row(session="angry", message=f"card {i}", vote=-1) for i in range(10)]
    tie = [row(session="a", message="Lost my card!", vote=1), row(session="b", message="lost my card", vote=-1)]
    majority = [row(session=f"m{i}", message="card stolen", vote=v) for i, v in enumerate([1, 1, -1])]
    data = build_feedback_dataset(flood + uniform + tie + majority, LABELS, FeedbackFilter(max_per_session=20, uniform_min=8))
    assert data.counts["dropped_flood"] == 30
    assert data.counts["dropped_uniform_session"] == 10
    assert data.counts["dropped_contradictory"] == 2
    assert Example("card stolen", "lost_or_stolen_card", 1.0) in data.examples
    assert not any(e.text.lower().startswith("lost my card") for e in data.examples)
    assert len(data.examples) == 20 + 1


def simulated_votes(noise: float, n: int = 3000, seed: int = 0) -> list[tuple[float, int]]:
    """Calibrated answers (right with probability = confidence) voted on truthfully, ``noise`` of the votes flipped."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = rng.uniform(0.3, 1.0)
        vote = 1 if rng.random() < c else -1
        out.append((c, -vote if rng.random() < noise else vote))
    return out


@pytest.mark.parametrize("noise", [0.0, 0.1, 0.3])
def test_the_share_of_flipped_votes_is_estimated(noise):
    assert abs(estimate_vote_noise(simulated_votes(noise)) - noise) <= 0.03


def test_a_down_vote_on_a_sure_answer_weighs_less_when_votes_are_noisy():
    assert vote_belief(0.97, -1, 0.1) < 0.3 < 0.9 < vote_belief(0.3, -1, 0.1)
    assert vote_belief(0.97, -1, 0.0) == pytest.approx(1.0) and vote_belief(0.5, 1, 0.0) == pytest.approx(1.0)
    rows = [{**row(session=f"s{i}", message=f"question {i}", vote=v), "confidence": c} for i, (c, v) in enumerate(simulated_votes(0.1, n=400))]
    data = build_feedback_dataset(rows, LABELS)
    assert data.vote_noise is not None and 0.03 <= data.vote_noise <= 0.2
    by_text = {e.text: e for e in data.examples}
    sure_down = [by_text[r["message"]].weight for r in rows if r["vote"] < 0 and r["confidence"] > 0.95]
    unsure_down = [by_text[r["message"]].weight for r in rows if r["vote"] < 0 and r["confidence"] < 0.4]
    assert sure_down and unsure_down and max(sure_down) < min(unsure_down)
    # a down-vote the customer followed with a picked alternative is a label, and still a vote for the estimate:
    # leaving the honest down-votes on wrong answers out would make the rest look noisier than they are
    truthful_downs = [i for i, r in enumerate(rows) if r["vote"] < 0 and r["confidence"] < 0.5]
    picked = [{**r, "corrected_intent": "card_arrival"} if i in truthful_downs else r for i, r in enumerate(rows)]
    assert build_feedback_dataset(picked, LABELS).vote_noise == data.vote_noise
    plain = build_feedback_dataset(rows, LABELS, FeedbackFilter(weigh_by_belief=False))
    assert plain.vote_noise is None and {e.weight for e in plain.examples} == {1.0, 0.5}


def test_complementary_loss_pushes_the_wrong_intent_down():
    logits = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    loss = example_loss(logits, torch.tensor([0]), torch.ones(1), torch.tensor([True]), 0.0)
    loss.backward()
    assert logits.grad[0, 0] > 0  # gradient descent lowers the down-voted intent's logit
    assert logits.grad[0, 1] < 0 and logits.grad[0, 2] < 0


def add_votes(store: FeedbackStore, examples: list[tuple[str, str, str]]) -> None:
    """(message, shown intent, corrected intent) -> a turn and a customer's correction."""
    for i, (message, intent, corrected) in enumerate(examples):
        store.append_turn(Reply(f"t{i}", f"s{i % 200}", "clarify", "", intent, 0.4), message)
        store.append_feedback(Feedback(f"t{i}", 0, corrected_intent=corrected))


def test_gate_refuses_a_retrain_on_poisoned_votes(settings):
    store = FeedbackStore(settings.db_path)
    registry = ModelRegistry(settings.models_dir)
    questions = store.db.execute("select question, intent from tickets order by id").fetchall()
    intents = sorted({q[1] for q in questions})
    rng = random.Random(0)
    poison = [(q, i, rng.choice([x for x in intents if x != i])) for q, i in questions for _ in range(2)]
    add_votes(store, poison)
    feedback_before = store.count("feedback")
    result = retrain(settings, IntentTrainConfig(quick=True, followup_pairs=0), from_feedback=True)
    assert not result.promoted and result.rule == "significance" and "worse than serving" in result.reason
    assert registry.current_version("intent") == "v0001"
    assert store.count("feedback") == feedback_before
    card = registry.card("intent", result.version)
    trained, held_out = card["data"]["feedback_counts"]["corrections"], card["data"]["live_slice"]["corrections"]
    assert trained + held_out == len(poison) and 0 < held_out < trained  # the live slice's share is evaluated, not trained on


def test_gate_accepts_genuine_corrections(settings):
    store = FeedbackStore(settings.db_path)
    add_votes(store, [("somebody nicked my card on the bus", "card_arrival", "lost_or_stolen_card")] * 3)
    result = retrain(settings, IntentTrainConfig(quick=True, followup_pairs=0), from_feedback=True)
    assert result.promoted, result.reason
    card = ModelRegistry(settings.models_dir).card("intent", result.version)
    assert card["metrics"]["seed_accuracy"] >= card["metrics"]["serving_seed_accuracy"] - 0.01


def test_a_crash_in_training_leaves_serving_and_database_untouched(settings, monkeypatch):
    store = FeedbackStore(settings.db_path)
    add_votes(store, [("my card was stolen", "card_arrival", "lost_or_stolen_card")])
    before = sqlite3.connect(settings.db_path).execute("select count(*) from feedback").fetchone()[0]

    def crash(train, val, *, init_dir, out_dir, cfg):
        (out_dir / "model.safetensors").write_bytes(b"half-written")
        raise RuntimeError("killed mid-training")

    monkeypatch.setattr(retrain_module, "train_intent_model", crash)
    with pytest.raises(RuntimeError):
        retrain(settings, IntentTrainConfig(quick=True, followup_pairs=0), from_feedback=True)
    registry = ModelRegistry(settings.models_dir)
    assert registry.current_version("intent") == "v0001"
    assert [c["version"] for c in registry.versions("intent")] == ["v0001"]
    assert sqlite3.connect(settings.db_path).execute("select count(*) from feedback").fetchone()[0] == before
    assert open_assistant(settings).respond("I lost my card").model_version == "v0001"
    assert registry.clean_staging("intent") == 1  # the next retrain sweeps the half-written folder


def test_hot_reload_under_concurrent_requests(assistant, settings):
    registry = assistant.registry
    new_version = retrain(settings, IntentTrainConfig(quick=True, head_steps=50, followup_pairs=0)).version
    registry.promote("intent", "v0001")
    errors, seen = [], []
    stop = threading.Event()

    def customer():
        while not stop.is_set():
            try:
                seen.append(assistant.respond("I lost my card").model_version)
            except Exception as err:  # any failure is what this test looks for
                errors.append(err)

    threads = [threading.Thread(target=customer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for version in [new_version, "v0001", new_version]:
            mark = len(seen)
            registry.promote("intent", version)
            deadline = time.monotonic() + 120  # generous: CI may share the CPU with other work
            while version not in seen[mark:] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert version in seen[mark:], f"requests never reached {version}"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert set(seen) == {"v0001", new_version}


def _writer(path: str, worker: int, n: int) -> None:
    store = FeedbackStore(path)
    for i in range(n):
        turn = f"w{worker}-{i}"
        store.append_turn(Reply(turn, f"s{worker}", "answer", "a", "card_arrival", 0.9), "where is my card")
        store.append_feedback(Feedback(turn, 1 if i % 2 else -1))


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "csbot.db")
    FeedbackStore(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 100)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    db = sqlite3.connect(path)
    assert db.execute("select count(*) from turns").fetchone()[0] == 400
    assert db.execute("select count(*) from feedback").fetchone()[0] == 400


def test_gate_tells_noise_from_regression():
    from training.gate import significantly_worse

    same = [True] * 60 + [False] * 9
    one_worse = [True] * 59 + [False] * 10
    assert not significantly_worse(one_worse, same)[0]  # one query of 69: noise
    poisoned = [True] * 30 + [False] * 39
    worse, why = significantly_worse(poisoned, same)
    assert worse and "lost 30" in why
