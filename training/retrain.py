"""The retraining command: build data, train a candidate, evaluate it against serving, promote if not worse.

The candidate is trained in a staging folder and only published (renamed to a version) once complete,
so a crash leaves serving and the database untouched. Every candidate gets a card, promoted or not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from core.config import Settings
from core.registry import ModelRegistry
from core.store import FeedbackStore
from retrieval.encoder import Encoder, base_model_path
from retrieval.intent import IntentClassifier
from retrieval.knowledge_base import KnowledgeBase
from training.data import Example, split_tickets
from retrieval.metrics import classification_metrics
from training.train_intent import IntentTrainConfig, train_intent_model

log = logging.getLogger(__name__)
KIND = "intent"


@dataclass(frozen=True)
class RetrainResult:
    version: str
    promoted: bool
    reason: str
    candidate: dict
    serving: dict | None


def feedback_examples(store: FeedbackStore, labels: set[str], *, cutoff: str) -> list[Example]:
    """Examples from votes: an up-vote confirms the shown intent, a correction names the right one (weighs more)."""
    examples = []
    for row in store.feedback_rows(cutoff=cutoff):
        if row["corrected_intent"] in labels:
            examples.append(Example(row["message"], row["corrected_intent"], 2.0))
        elif row["vote"] == 1 and row["action"] == "answer" and row["intent"] in labels:
            examples.append(Example(row["message"], row["intent"], 1.0))
    return examples


def evaluate_model(model_dir: Path, val: list[Example]) -> dict:
    """Accuracy, macro-F1, per-intent scores and ECE of a saved model on the validation examples."""
    clf = IntentClassifier(model_dir)
    predictions = clf.predict([e.text for e in val], top=1)
    return classification_metrics(
        [e.label for e in val], [p.intent for p in predictions], [p.confidence for p in predictions]
    )


def worse_intents(candidate: dict, serving: dict, tolerance: float = 0.05) -> list[str]:
    """Intents whose F1 dropped by more than ``tolerance``: the regressions a reviewer should look at."""
    return sorted(
        label
        for label, scores in serving["per_intent"].items()
        if scores["f1"] - candidate["per_intent"].get(label, {"f1": 0.0})["f1"] > tolerance
    )


def retrain(
    settings: Settings,
    cfg: IntentTrainConfig = IntentTrainConfig(),
    *,
    from_feedback: bool = False,
    on_step: Callable[[str], None] = log.info,
) -> RetrainResult:
    """Train an intent model candidate and promote it if its validation accuracy is not below serving's."""
    store = FeedbackStore(settings.db_path)
    registry = ModelRegistry(settings.models_dir)
    registry.clean_staging(KIND)
    kb = KnowledgeBase(store, index_dir=settings.index_dir, encoder=Encoder())
    cutoff = datetime.now(timezone.utc).isoformat(timespec="milliseconds")

    # 1. Data: labelled tickets (always replayed, so nothing learnt before is forgotten) + feedback.
    train, val = split_tickets(kb.labelled())
    n_feedback = 0
    if from_feedback:
        extra = feedback_examples(store, {e.label for e in train}, cutoff=cutoff)
        n_feedback = len(extra)
        train = train + extra
    on_step(f"training on {len(train)} examples ({n_feedback} from feedback), validating on {len(val)}")

    # 2. Start from the serving model when there is one (continual learning), else the packaged encoder.
    serving_version = registry.current_version(KIND)
    init_dir = base_model_path() if serving_version is None or cfg.quick else registry.path(KIND, serving_version)
    staging = registry.staging_dir(KIND)
    facts = train_intent_model(train, val, init_dir=init_dir, out_dir=staging, cfg=cfg)

    # 3. Evaluate candidate and serving on the same fixed validation split.
    candidate = evaluate_model(staging, val)
    serving = evaluate_model(registry.path(KIND, serving_version), val) if serving_version else None
    if serving is None:
        promoted, reason = True, "first model"
    elif candidate["accuracy"] >= serving["accuracy"]:
        promoted, reason = True, f"accuracy {candidate['accuracy']:.4f} >= serving {serving['accuracy']:.4f}"
    else:
        promoted, reason = False, f"accuracy {candidate['accuracy']:.4f} < serving {serving['accuracy']:.4f}"
    card = {
        "parent": serving_version,
        "init": str(init_dir),
        "data": {"tickets": len(train) - n_feedback, "feedback_examples": n_feedback, "feedback_cutoff": cutoff},
        "training": facts,
        "metrics": {"validation": _summary(candidate), "serving_validation": _summary(serving) if serving else None},
        "gate": {
            "rule": "promote when validation accuracy >= the serving version's",
            "decision": "promoted" if promoted else "refused",
            "reason": reason,
            "worse_intents": worse_intents(candidate, serving) if serving else [],
        },
        "thresholds": {"answer": settings.answer_threshold, "handoff": settings.handoff_threshold},
    }
    version = registry.publish(KIND, staging, card)
    if promoted:
        registry.promote(KIND, version, reason=reason)
    on_step(f"{version}: {'promoted' if promoted else 'kept ' + str(serving_version)} ({reason})")
    return RetrainResult(version, promoted, reason, candidate, serving)


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "per_intent"}


def ensure_ready(settings: Settings, *, on_step: Callable[[str], None] = log.info) -> None:
    """First start: load the bundled tickets, build the index and train the quick model. Later starts: nothing."""
    store = FeedbackStore(settings.db_path)
    kb = KnowledgeBase(store, index_dir=settings.index_dir, encoder=Encoder())
    if kb.count() == 0:
        on_step(f"first start: ingesting {settings.default_tickets} and building the index (about a minute)")
        report = kb.ingest(settings.default_tickets, question_col="question", answer_col="answer", intent_col="intent", id_col="id")
        on_step(report.summary())
    kb.open()
    if ModelRegistry(settings.models_dir).current_version(KIND) is None:
        on_step("first start: training the quick intent model (frozen encoder + cosine head)")
        retrain(settings, replace(IntentTrainConfig(), quick=True), on_step=on_step)
