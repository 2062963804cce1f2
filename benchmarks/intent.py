"""Intent classification on BANKING77 (DESIGN.md, benchmark protocol 1).

Parts (``--parts``, comma-separated):
- ``full``: the retraining command's full fine-tune (``retrain``, accelerate loop, early stopping on the
  validation split carved from the tickets) on all bundled tickets; accuracy, macro-F1 and ECE (15 bins)
  on the 3,080 test queries; training wall time; warm single-query latency.
- ``few_shot_10`` and ``open_intent_75`` are not implemented yet (issue 9); they are listed as not run.

Usage: python benchmarks/intent.py --home var [--parts full] [--epochs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from core.config import Settings  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from retrieval.intent import IntentClassifier  # noqa: E402
from retrieval.metrics import classification_metrics  # noqa: E402
from training.retrain import ensure_ready, retrain  # noqa: E402
from training.train_intent import IntentTrainConfig  # noqa: E402


def evaluate(model_dir: Path) -> dict:
    test = read_csv(DATA / "eval.csv")
    clf = IntentClassifier(model_dir).warm_up()
    texts, gold = [r["question"] for r in test], [r["intent"] for r in test]
    probs = clf.probabilities(texts)
    predicted = [clf.labels[i] for i in probs.argmax(1)]
    metrics = classification_metrics(gold, predicted, probs.max(1))
    latencies = []
    for text in texts[:300]:
        t = time.perf_counter()
        clf.predict([text])
        latencies.append((time.perf_counter() - t) * 1000)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "ece": metrics["ece"],
        "latency_ms": {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="a home with the bundled tickets (default: a new one)")
    parser.add_argument("--parts", default="full")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    home = args.home or Path(tempfile.mkdtemp(prefix="csbot-intent-"))
    settings = Settings(home=home)
    ensure_ready(settings, on_step=print)
    registry = ModelRegistry(settings.models_dir)
    result: dict = {"not_run": sorted({"full", "few_shot_10", "open_intent_75"} - parts)}
    quick_version = registry.versions("intent")[0]["version"]
    result["quick_frozen"] = {**evaluate(registry.path("intent", quick_version)),
                              "train_seconds": registry.card("intent", quick_version)["training"]["train_seconds"]}
    print("quick (frozen encoder + head):", result["quick_frozen"], flush=True)
    if "full" in parts:
        t = time.perf_counter()
        run = retrain(settings, IntentTrainConfig(epochs=args.epochs, seed=args.seed), on_step=print)
        card = registry.card("intent", run.version)
        result["full"] = {**evaluate(registry.path("intent", run.version)), "train_seconds": card["training"]["train_seconds"],
                          "retrain_seconds": round(time.perf_counter() - t, 1), "steps": card["training"]["steps"],
                          "version": run.version, "promoted": run.promoted, "config": card["training"]["config"]}
        result["latency_ms"], result["ece"] = result["full"]["latency_ms"], result["full"]["ece"]
        print("full fine-tune:", result["full"], flush=True)
    print(write_result("intent.json", result))


if __name__ == "__main__":
    main()
