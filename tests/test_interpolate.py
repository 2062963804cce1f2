"""Weight interpolation with the parent (training.interpolate): the mix is what it says, serves, and a retrain
from serving keeps the mix with most held-out passes and leaves nothing else behind."""

from __future__ import annotations

import torch

from core.registry import ModelRegistry
from csbot.wiring import retrain
from retrieval.encoder import base_model_path
from retrieval.intent import IntentClassifier, IntentModel
from retrieval.onnx_encoder import ONNX_FILE
from training.data import Example
from training.interpolate import CANDIDATE_WEIGHTS, can_interpolate, choose_weight, write_mix
from training.train_intent import IntentTrainConfig, train_intent_model

TRAIN = [
    Example("I lost my card", "lost_card"),
    Example("my card was stolen yesterday", "lost_card"),
    Example("someone took my card", "lost_card"),
    Example("how long does a transfer take", "transfer_timing"),
    Example("when will my transfer arrive", "transfer_timing"),
    Example("my bank transfer is slow", "transfer_timing"),
]


def test_the_weight_with_most_passes_is_kept_and_ties_go_to_the_parent():
    assert choose_weight({1.0: 10, 0.7: 12, 0.5: 11}) == 0.7
    assert choose_weight({1.0: 12, 0.7: 12, 0.5: 11}) == 0.7  # a tie: the smaller change
    assert choose_weight({1.0: 13, 0.7: 12, 0.5: 12}) == 1.0


def test_a_mix_is_the_weighted_average_of_the_two_models_and_serves(tmp_path):
    cfg = IntentTrainConfig(epochs=1, max_steps=2, batch_size=4)
    parent = tmp_path / "parent"
    train_intent_model(TRAIN, TRAIN[:2], init_dir=base_model_path(), out_dir=parent, cfg=cfg)
    candidate = tmp_path / "candidate"
    train_intent_model(TRAIN, TRAIN[:2], init_dir=parent, out_dir=candidate, cfg=IntentTrainConfig(epochs=1, max_steps=3, batch_size=4, seed=9))
    other_labels = tmp_path / "other"
    more = TRAIN + [Example("what is the exchange rate", "exchange_rate"), Example("euros to dollars", "exchange_rate")]
    train_intent_model(more, TRAIN[:2], init_dir=base_model_path(), out_dir=other_labels, cfg=cfg)
    assert can_interpolate(candidate, parent)
    assert not can_interpolate(candidate, other_labels)  # a different label set: no mix
    assert not can_interpolate(candidate, base_model_path())  # the packaged encoder is not an intent model

    mix = write_mix(candidate, parent, 0.7, tmp_path / "mix", TRAIN[:2])
    a, b, m = (IntentModel.from_pretrained(p).state_dict() for p in (candidate, parent, mix))
    for name in ("classifier.weight", "bert.encoder.layer.5.output.dense.weight"):
        assert not torch.allclose(a[name], b[name])  # the fine-tune moved it, so the check below can fail
        assert torch.allclose(m[name], 0.7 * a[name] + 0.3 * b[name], atol=1e-6)
    served = IntentClassifier(mix).warm_up()
    assert served.labels == IntentClassifier(candidate).labels
    assert served.config.interpolation["candidate_weight"] == 0.7
    assert served.predict(["somebody stole my card"])[0].intent == "lost_card"


def test_a_retrain_from_serving_keeps_the_mix_with_most_held_out_passes(settings):
    registry = ModelRegistry(settings.models_dir)
    serving = registry.current_version("intent")
    result = retrain(settings, IntentTrainConfig(epochs=1, max_steps=2, batch_size=8, linear_probe_first=False, followup_pairs=0))
    card = registry.card("intent", result.version)
    mixing = card["interpolation"]
    assert mixing["parent"] == str(registry.path("intent", serving))
    assert set(mixing["held_out_passes"]) == {f"{w:g}" for w in CANDIDATE_WEIGHTS}
    kept = mixing["candidate_weight"]
    assert mixing["held_out_passes"][f"{kept:g}"] == max(mixing["held_out_passes"].values())
    # The card's scores are the kept model's: the gate judged what will serve.
    assert round(card["metrics"]["combined"] * mixing["held_out_examples"]) == mixing["held_out_passes"][f"{kept:g}"]
    folder = registry.path("intent", result.version)
    served = IntentClassifier(folder).config
    assert card["training"]["temperature"] == served.calibration_temperature and card["thresholds"] == served.thresholds
    assert (folder / "model.safetensors").exists() and (folder / ONNX_FILE).exists()
    assert not list(folder.parent.glob(".staging-*"))  # the mixes not kept are gone

    plain = retrain(settings, IntentTrainConfig(epochs=1, max_steps=2, batch_size=8, linear_probe_first=False, interpolate=False, followup_pairs=0))
    assert registry.card("intent", plain.version)["interpolation"] is None
