"""Weight interpolation: a retrain's candidate averaged with the model it was fine-tuned from.

Each retrain fine-tunes the serving model on all the feedback so far, and each fine-tune carries the noise
of its own run (the order of batches, which of two confusable intents the last steps favoured). From round
to round that noise shows as swings that the gate's held-out sets are too small to see: in the thumbs-only
benchmark a round lost 1.9 points on the test split and passed the gate with 13 won and 13 lost of 600
live labels. A fine-tuned model and its starting point lie in one basin of the loss, so averaging their
weights (WiSE-FT, Wortsman et al. 2022; model soups) keeps most of what the fine-tune learnt and damps its
noise. Replayed on the benchmark's saved versions (seeds 0 and 1, each step alone), the mix chosen as below
avoided that drop (+2.0 points over the plain candidate) and ended round 5 0.6 points higher on seed 1; it
cost up to 0.55 points in the first two rounds, where there is most to learn (README, "Feedback loop").

So the retrain writes mixes at a few weights, scores each like the plain candidate on the held-out sets
(ticket validation + live slice, never trained on) and keeps the one with most passes; ties go to the mix
nearest the parent (the smallest change for the same evidence).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoTokenizer

from retrieval.intent import IntentModel
from training.data import Example
from training.train_intent import calibrate

CANDIDATE_WEIGHTS = (1.0, 0.7, 0.5)  # the candidate's share of each mix; 1.0 is the plain candidate


def tensor_shapes(folder: Path) -> dict[str, list[int]]:
    """Every tensor's shape in a saved model, read from the safetensors headers (no weights loaded)."""
    shapes: dict[str, list[int]] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            shapes.update({name: list(weights.get_slice(name).get_shape()) for name in weights.keys()})
    return shapes


def can_interpolate(candidate_dir: Path, parent_dir: Path) -> bool:
    """Both intent models with the same labels and tensor shapes (a new intent changes the head: no mix).

    Read from the two folders' config and safetensors headers: loading both models' weights (about 90 MB each) only
    to compare labels and shapes is wasted work in every retrain. A folder without safetensors weights gets no mix.
    """
    try:
        configs = [json.loads((Path(d) / "config.json").read_text()) for d in (candidate_dir, parent_dir)]
        if any(c.get("architectures") != [IntentModel.__name__] for c in configs):
            return False  # the parent is the packaged encoder, or a folder that is not an intent model
        if configs[0].get("id2label") != configs[1].get("id2label"):
            return False
        shapes = [tensor_shapes(d) for d in (candidate_dir, parent_dir)]
    except (OSError, ValueError, SafetensorError):
        return False
    return bool(shapes[0]) and shapes[0] == shapes[1]


def write_mix(candidate_dir: Path, parent_dir: Path, weight: float, out_dir: Path, val: list[Example]) -> Path:
    """Save ``weight * candidate + (1 - weight) * parent`` into ``out_dir``, calibrated anew on validation."""
    model = IntentModel.from_pretrained(candidate_dir)
    parent = IntentModel.from_pretrained(parent_dir).state_dict()
    mixed = {
        name: (weight * tensor.float() + (1 - weight) * parent[name].float()).to(tensor.dtype) if tensor.is_floating_point() else tensor
        for name, tensor in model.state_dict().items()
    }
    model.load_state_dict(mixed)
    tokenizer = AutoTokenizer.from_pretrained(candidate_dir)
    calibrate(model, tokenizer, val, torch.device("cpu"))
    model.config.interpolation = {"candidate_weight": weight, "parent": str(parent_dir)}
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def choose_weight(passes: dict[float, int]) -> float:
    """The candidate weight with most held-out passes; on a tie, the smallest (the mix nearest the parent)."""
    return max(passes, key=lambda w: (passes[w], -w))
