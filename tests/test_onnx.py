"""The fast path: the intent encoder in ONNX Runtime gives the PyTorch path's intents (issue 17)."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from core.config import Settings
from csbot.wiring import open_parts
from retrieval import onnx_encoder
from retrieval.encoder import Encoder
from retrieval.intent import IntentClassifier
from retrieval.onnx_encoder import ONNX_FILE, onnx_wanted
from tests.conftest import DATA

pytest.importorskip("onnxruntime")


def serving_dir(home):
    registry = open_parts(Settings(home=home)).registry
    return registry.path("intent", registry.current_version("intent"))


def test_onnx_runtime_gives_the_pytorch_intents(home, monkeypatch):
    queries = [row["question"] for row in csv.DictReader((DATA / "eval.csv").open())][::10]  # 308 test queries
    model_dir = serving_dir(home)
    assert (model_dir / ONNX_FILE).is_file()  # the trainer exported it next to the weights
    (model_dir / ONNX_FILE).unlink()  # an older version without one
    monkeypatch.setenv("CSBOT_ONNX", "off")
    torch_path = IntentClassifier(model_dir)
    assert torch_path.runtime == "pytorch" and not (model_dir / ONNX_FILE).exists()
    monkeypatch.setenv("CSBOT_ONNX", "on")
    fast = IntentClassifier(model_dir)
    assert fast.runtime == "onnxruntime" and (model_dir / ONNX_FILE).exists()  # exported by the first server, once
    a, b = torch_path.embed(queries), fast.embed(queries)
    assert a.shape == b.shape and float((a * b).sum(1).min()) > 0.9999
    same = np.mean([x.intent == y.intent for x, y in zip(torch_path.predict(queries), fast.predict(queries))])
    assert same >= 0.995
    assert fast.embed([]).shape == (0, a.shape[1])


def test_a_failed_export_leaves_pytorch_serving(home, monkeypatch, caplog):
    monkeypatch.setenv("CSBOT_ONNX", "on")

    def broken(*_args, **_kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(onnx_encoder, "export_encoder", broken)
    model_dir = serving_dir(home)
    (model_dir / ONNX_FILE).unlink()  # a version without a graph, on a folder serving cannot write
    with caplog.at_level(logging.WARNING):
        clf = IntentClassifier(model_dir)
        assert clf.runtime == "pytorch" and clf.predict(["I lost my card"])[0].intent
    assert "read-only file system" in caplog.text


def test_onnx_setting(monkeypatch):
    monkeypatch.delenv("CSBOT_ONNX", raising=False)
    assert onnx_wanted("cpu")  # auto: every CPU (faster than bf16 PyTorch too, where the CPU has bf16)
    monkeypatch.setenv("CSBOT_ONNX", "off")
    assert not onnx_wanted("cpu")
    monkeypatch.setenv("CSBOT_ONNX", "on")
    assert onnx_wanted("cpu") and not onnx_wanted("cuda")  # a GPU keeps PyTorch (and bf16)
    monkeypatch.setenv("CSBOT_ONNX", "fast")
    with pytest.raises(ValueError, match="on, off or auto"):
        onnx_wanted("cpu")


def test_health_says_which_runtime_serves(home, monkeypatch):
    from csbot.wiring import open_assistant

    for mode, runtime in (("on", "onnxruntime"), ("off", "pytorch")):
        monkeypatch.setenv("CSBOT_ONNX", mode)
        assistant = open_assistant(Settings(home=home)).warm_up()
        assert assistant.health()["intent_runtime"] == runtime
        assert assistant.respond("I lost my card", f"s-{mode}").intent == "lost_or_stolen_card"


@pytest.mark.parametrize("mode", ["on", "off"])
def test_sub_batches_keep_each_text_in_its_row(home, monkeypatch, mode):
    """embed sorts by length and runs sub-batches: each row must still be its own text's embedding."""
    monkeypatch.setenv("CSBOT_ONNX", mode)
    clf = IntentClassifier(serving_dir(home))
    queries = [row["question"] for row in csv.DictReader((DATA / "eval.csv").open())][:40:2]
    queries = queries + ["card?", "I was charged twice for the same coffee at the station this morning, why did that happen"]
    together = clf.embed(queries)  # lengths mixed, more than one sub-batch
    alone = np.stack([clf.embed([q])[0] for q in queries])
    assert float((together * alone).sum(1).min()) > 0.9999


def test_retrieval_encoder_in_onnx_finds_the_same_tickets(home, monkeypatch, tmp_path):
    """A fine-tuned intent model leaves retrieval a pass of its own: in ONNX Runtime it must find the same tickets."""

    queries = [row["question"] for row in csv.DictReader((DATA / "eval.csv").open())][5::10]  # 308 test queries
    monkeypatch.setenv("CSBOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CSBOT_ONNX", "off")
    torch_path = Encoder()
    assert torch_path.runtime == "pytorch"
    monkeypatch.setenv("CSBOT_ONNX", "on")
    fast = Encoder()
    assert fast.runtime == "onnxruntime" and list((tmp_path / "cache").rglob("encoder.onnx"))  # exported once, to the cache
    a, b = torch_path.encode(queries), fast.encode(queries)
    assert a.shape == b.shape and float((a * b).sum(1).min()) > 0.9999
    kb = open_parts(Settings(home=home)).kb
    top_a, top_b = kb.search(a, 10), kb.search(b, 1)
    same_intent = [hits_a[0][0].intent == hits_b[0][0].intent for hits_a, hits_b in zip(top_a, top_b)]
    assert np.mean(same_intent) >= 0.995
    # Where the nearest ticket differs, it is a tie to rounding: PyTorch scores ONNX's pick as close as its own.
    for hits_a, hits_b in zip(top_a, top_b):
        scores_a = {ticket.id: score for ticket, score in hits_a}
        assert hits_b[0][0].id in scores_a and scores_a[hits_b[0][0].id] >= hits_a[0][1] - 1e-3
    assert fast.encode([]).shape == (0, a.shape[1])


def test_an_unwritable_cache_leaves_the_retrieval_encoder_on_pytorch(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CSBOT_CACHE_DIR", str(blocker))
    monkeypatch.setenv("CSBOT_ONNX", "on")
    with caplog.at_level(logging.WARNING):
        encoder = Encoder()
        assert encoder.runtime == "pytorch" and encoder.encode(["I lost my card"]).shape == (1, 384)
    assert "retrieval encoder" in caplog.text
