from __future__ import annotations

from pathlib import Path

import torch

from core.registry import ModelRegistry
from csbot.wiring import ensure_ready, open_assistant, open_registry, retrain
from retrieval.encoder import base_model_path
from retrieval.followup_reader import READER_FILE
from retrieval.intent import IntentClassifier
from retrieval.query_map import MAP_FILE
from training.context_pairs import CONTEXTS_PER_FOLLOWUP, READER_DRAWS, bundled_followups
from training.data import Example, is_validation, split_tickets
from training.train_intent import IntentTrainConfig, calibrate_temperature, train_intent_model

TRAIN = [
    Example("I lost my card", "lost_card"),
    Example("my card was stolen yesterday", "lost_card"),
    Example("someone took my card", "lost_card"),
    Example("how long does a transfer take", "transfer_timing"),
    Example("when will my transfer arrive", "transfer_timing"),
    Example("my bank transfer is slow", "transfer_timing"),
    Example("what is the exchange rate", "exchange_rate"),
    Example("how much is a euro in dollars", "exchange_rate"),
]


def test_tiny_fine_tune_saves_and_reloads(tmp_path):
    cfg = IntentTrainConfig(epochs=1, max_steps=2, batch_size=4)
    facts = train_intent_model(TRAIN, TRAIN[:3], init_dir=base_model_path(), out_dir=tmp_path, cfg=cfg)
    assert facts["steps"] == 2 and facts["device"] == "cpu"
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    clf = IntentClassifier(tmp_path).warm_up()
    assert sorted(clf.labels) == ["exchange_rate", "lost_card", "transfer_timing"]
    prediction = clf.predict(["somebody stole my card"])[0]
    assert prediction.intent == "lost_card"
    assert abs(sum(clf.probabilities(["x"])[0]) - 1) < 1e-5


def test_fine_tune_is_seeded(tmp_path):
    cfg = IntentTrainConfig(epochs=1, max_steps=2, batch_size=4, seed=7)
    train_intent_model(TRAIN, TRAIN[:3], init_dir=base_model_path(), out_dir=tmp_path / "a", cfg=cfg)
    train_intent_model(TRAIN, TRAIN[:3], init_dir=base_model_path(), out_dir=tmp_path / "b", cfg=cfg)
    a = IntentClassifier(tmp_path / "a").logits(["my card is gone"])
    b = IntentClassifier(tmp_path / "b").logits(["my card is gone"])
    assert (abs(a - b) < 1e-4).all()


def test_temperature_softens_overconfident_logits():
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (200,))
    logits = torch.randn(200, 4) * 10  # confident and mostly wrong
    assert calibrate_temperature(logits, labels) > 2.0


def test_thresholds_are_chosen_on_validation_confidence():
    from training.train_intent import choose_thresholds

    torch.manual_seed(0)
    confident = torch.rand(90) * 0.2 + 0.8  # 90 right answers at 0.8-1.0
    unsure = torch.rand(10) * 0.3 + 0.2  # 10 unsure ones at 0.2-0.5, half of them wrong
    conf = torch.cat([confident, unsure])
    probs = torch.stack([conf, 1 - conf], 1)
    y = torch.tensor([0] * 95 + [1] * 5)
    chosen = choose_thresholds(probs, y)
    assert chosen["answer"] <= 0.5 and chosen["answer"] < 0.8  # 95 of 100 right: answering below 0.8 keeps >= 90%
    assert 0 < chosen["handoff"] <= chosen["answer"] / 2  # a band for clarification always remains
    weak = choose_thresholds(probs, torch.tensor([0] * 60 + [1] * 40))  # 40% of the confident ones wrong
    assert weak["answer"] == 0.5
    assert choose_thresholds(probs[:5], y[:5]) is None  # too little validation data to choose


def test_validation_split_is_stable():
    assert is_validation("How do I locate my card?") == is_validation(" how do i locate my card? ")
    train, val = split_tickets([])
    assert train == [] and val == []


def test_retrain_promotes_only_when_not_worse(settings):
    registry = ModelRegistry(settings.models_dir)
    before = registry.current_version("intent")
    # A quick retrain of the same data is at least as good: promoted.
    result = retrain(settings, IntentTrainConfig(quick=True, head_steps=300, followup_pairs=0))
    assert result.promoted and registry.current_version("intent") == result.version != before
    # A head trained for a single step on a bad learning rate is worse: refused, serving untouched.
    bad = retrain(settings, IntentTrainConfig(quick=True, head_steps=1, head_lr=5.0, scale=1.0, followup_pairs=0))
    assert not bad.promoted
    assert registry.current_version("intent") == result.version
    card = registry.card("intent", bad.version)
    assert card["gate"]["decision"] == "refused"
    assert card["metrics"]["validation"]["accuracy"] < card["metrics"]["serving_validation"]["accuracy"]


def test_a_fine_tuned_model_starts_from_the_base_encoder_when_asked_and_serves_with_one_encoder_pass(settings):
    registry = ModelRegistry(settings.models_dir)
    fresh = retrain(settings, IntentTrainConfig(epochs=1, max_steps=1, linear_probe_first=False, from_base=True, followup_pairs=300))
    card = registry.card("intent", fresh.version)
    assert Path(card["init"]).resolve() == base_model_path().resolve()
    # A fine-tuned candidate gets its follow-up reader: the written follow-ups (the settings' file, each after three
    # questions of the intent it follows) and 300 pairs made from the tickets.
    written = len(bundled_followups(settings.followups_file))
    assert card["followup_reader"]["fitted"] and card["followup_reader"]["pairs"] >= 300 + CONTEXTS_PER_FOLLOWUP * written
    assert card["followup_reader"]["draws"] == READER_DRAWS  # the mean of readers fitted on as many draws of pairs
    assert (registry.path("intent", fresh.version) / READER_FILE).is_file()
    # Its embeddings are mapped into the ticket index's space (retrieval.query_map), fitted on the stored tickets.
    assert card["retrieval_map"]["fitted"] and card["retrieval_map"]["held_out_cosine"] > 0.9
    assert (registry.path("intent", fresh.version) / MAP_FILE).is_file()
    if not fresh.promoted:
        open_registry(settings).promote("intent", fresh.version, reason="test")
    # A version from before query maps gets one at the next start (csbot serve / train run ensure_ready).
    (registry.path("intent", fresh.version) / MAP_FILE).unlink()
    ensure_ready(settings)
    assert (registry.path("intent", fresh.version) / MAP_FILE).is_file()
    assistant = open_assistant(settings).warm_up()
    _, classifier = assistant.intent_model()
    assert classifier.query_map(assistant.kb.encoder.name) is not None and not classifier.shares_retrieval_encoder
    assert assistant.health()["retrieval_vectors"] == "mapped"
    encoded = []
    exact_encode = assistant.kb.encoder.encode
    assistant.kb.encoder.encode = lambda texts, **kw: encoded.extend(texts) or exact_encode(texts, **kw)
    questions = ["I lost my card", "how long does a transfer to Spain take?", "what exchange rate do you use?"]
    mapped = assistant.understand(classifier, questions)
    assert encoded == []  # one pass: the retrieval encoder never ran
    exact = assistant.kb.search(exact_encode(questions), assistant.settings.top_k)
    assert [hits[0][0].intent for _, hits in mapped] == [hits[0][0].intent for hits in exact]
    # Near the out-of-scope floor the exact vector decides: an unrelated question is encoded exactly, and handed off.
    reply = assistant.respond("who won the football match yesterday")
    assert encoded == ["who won the football match yesterday"] and reply.action in ("handoff", "clarify")
