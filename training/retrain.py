"""The retraining command: build data, train a candidate, evaluate it against serving, promote if not worse.

The candidate is trained in a staging folder and only published (renamed to a version) once complete,
so a crash leaves serving and the database untouched. Every candidate gets a card, promoted or not.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from core.config import Settings
from core.registry import ModelRegistry
from core.store import FeedbackStore
from retrieval.encoder import Encoder, base_model_path
from retrieval.intent import IntentClassifier
from retrieval.knowledge_base import KnowledgeBase
from retrieval.metrics import classification_metrics
from retrieval.ranker import Ranker
from training.data import Example, split_tickets
from training.feedback import FeedbackDataset, FeedbackFilter, build_feedback_dataset
from training.train_intent import IntentTrainConfig, train_intent_model
from training.train_ranker import answer_priors, build_ranking_set, fit_ranker, ranking_outcomes

log = logging.getLogger(__name__)
KIND = "intent"
RANKER = "ranker"


@dataclass(frozen=True)
class RetrainResult:
    version: str
    promoted: bool
    reason: str
    candidate: dict
    serving: dict | None
    ranker: dict | None = None


SEED_SAMPLE = 2000  # replayed tickets on which forgetting is measured (fixed: the first ones in id order)
MAX_SEED_DROP = 0.01  # the gate refuses a candidate that forgets more than this on the replayed tickets
GATE_ALPHA = 0.05  # the gate refuses a candidate that is worse on validation at this significance


def evaluate_model(model_dir: Path, examples: list[Example]) -> dict:
    """Accuracy, macro-F1, per-intent scores and ECE of a saved model; ``correct`` keeps the per-example outcome."""
    clf = IntentClassifier(model_dir)
    predictions = clf.predict([e.text for e in examples], top=1)
    gold = [e.label for e in examples]
    metrics = classification_metrics(gold, [p.intent for p in predictions], [p.confidence for p in predictions])
    metrics["correct"] = [p.intent == g for p, g in zip(predictions, gold)]
    return metrics


def significantly_worse(candidate: list[bool], serving: list[bool], alpha: float = GATE_ALPHA) -> tuple[bool, str]:
    """Exact McNemar test on paired outcomes: is the candidate worse than serving beyond sampling noise?

    A validation split of a few dozen queries (a new deployment with 10 tickets per intent) cannot tell
    one query's difference from a regression; a poisoned model loses many queries at once and is caught.
    """
    lost = sum(s and not c for c, s in zip(candidate, serving))  # serving right, candidate wrong
    won = sum(c and not s for c, s in zip(candidate, serving))
    p_value = binomtest(lost, lost + won, 0.5, alternative="greater").pvalue if lost > won else 1.0
    return p_value < alpha, f"won {won}, lost {lost} of {len(candidate)} validation queries (McNemar p={p_value:.3g})"


def worse_intents(candidate: dict, serving: dict, tolerance: float = 0.05) -> list[str]:
    """Intents whose F1 dropped by more than ``tolerance``: the regressions a reviewer should look at."""
    return sorted(label for label, scores in serving["per_intent"].items() if scores["f1"] - candidate["per_intent"].get(label, {"f1": 0.0})["f1"] > tolerance)


def retrain(
    settings: Settings,
    cfg: IntentTrainConfig = IntentTrainConfig(),
    *,
    from_feedback: bool = False,
    feedback_filter: FeedbackFilter = FeedbackFilter(),
    on_step: Callable[[str], None] = log.info,
) -> RetrainResult:
    """Train an intent model candidate; promote it if it is not worse than serving on validation and did
    not forget the replayed tickets (seed accuracy within MAX_SEED_DROP of serving's)."""
    store = FeedbackStore(settings.db_path)
    registry = ModelRegistry(settings.models_dir)
    registry.clean_staging(KIND)
    registry.clean_staging(RANKER)
    kb = KnowledgeBase(store, index_dir=settings.index_dir, encoder=Encoder())
    cutoff = datetime.now(timezone.utc).isoformat(timespec="milliseconds")

    # 1. Data: labelled tickets (always replayed, so nothing learnt before is forgotten) + feedback.
    tickets, val = split_tickets(kb.labelled())
    seeds = tickets[:SEED_SAMPLE]
    feedback = build_feedback_dataset(list(store.feedback_rows(cutoff=cutoff)), {e.label for e in tickets}, feedback_filter) if from_feedback else None
    extra = feedback.examples if feedback else []
    n_feedback = len(extra)
    train = tickets + extra
    on_step(f"training on {len(train)} examples ({n_feedback} from feedback), validating on {len(val)}")

    # 2. Start from the serving model when there is one (continual learning), else the packaged encoder.
    serving_version = registry.current_version(KIND)
    init_dir = base_model_path() if serving_version is None or cfg.quick else registry.path(KIND, serving_version)
    staging = registry.staging_dir(KIND)
    facts = train_intent_model(train, val, init_dir=init_dir, out_dir=staging, cfg=cfg)

    # 3. Evaluate candidate and serving on the same fixed validation split.
    candidate = evaluate_model(staging, val)
    candidate_seed = evaluate_model(staging, seeds)["accuracy"] if seeds else None
    serving = serving_seed = None
    if serving_version:
        serving_dir = registry.path(KIND, serving_version)
        serving = evaluate_model(serving_dir, val)
        serving_seed = evaluate_model(serving_dir, seeds)["accuracy"] if seeds else None
    if serving is None:
        promoted, reason = True, "first model"
    else:
        worse, paired = significantly_worse(candidate["correct"], serving["correct"])
        if worse:
            promoted, reason = False, f"worse on validation: {paired}"
        elif candidate_seed is not None and serving_seed is not None and candidate_seed < serving_seed - MAX_SEED_DROP:
            promoted, reason = False, f"forgets replayed tickets: seed accuracy {candidate_seed:.4f} < serving {serving_seed:.4f} - {MAX_SEED_DROP}"
        else:
            promoted, reason = True, f"not worse on validation: {paired}; seed accuracy {candidate_seed:.4f}"
    card = {
        "parent": serving_version,
        "init": str(init_dir),
        "data": {
            "tickets": len(tickets),
            "feedback_examples": n_feedback,
            "feedback_counts": dict(feedback.counts) if feedback else {},
            "feedback_filter": asdict(feedback_filter) if feedback else None,
            "feedback_cutoff": cutoff,
        },
        "training": facts,
        "metrics": {
            "validation": _summary(candidate),
            "serving_validation": _summary(serving) if serving else None,
            "seed_accuracy": candidate_seed,
            "serving_seed_accuracy": serving_seed,
        },
        "gate": {
            "rule": f"promote unless worse than serving on validation (exact McNemar, p < {GATE_ALPHA}) or seed accuracy below serving's - {MAX_SEED_DROP}",
            "decision": "promoted" if promoted else "refused",
            "reason": reason,
            "worse_intents": worse_intents(candidate, serving) if serving else [],
        },
        "thresholds": facts.get("thresholds") or {"answer": settings.answer_threshold, "handoff": settings.handoff_threshold},
    }
    version = registry.publish(KIND, staging, card)
    if promoted:
        registry.promote(KIND, version, reason=reason)
    on_step(f"{version}: {'promoted' if promoted else 'kept ' + str(serving_version)} ({reason})")
    ranker = retrain_ranker(settings, registry, kb, val, feedback, list(store.feedback_rows(cutoff=cutoff)), on_step=on_step)
    return RetrainResult(version, promoted, reason, candidate, serving, ranker)


def retrain_ranker(
    settings: Settings,
    registry: ModelRegistry,
    kb: KnowledgeBase,
    val: list[Example],
    feedback: FeedbackDataset | None,
    vote_rows: list[dict],
    *,
    on_step: Callable[[str], None] = log.info,
) -> dict:
    """Fit the ranker on half of the held-out tickets (+ confirmed feedback), gate it on the other half."""
    intent_version, intent_dir = registry.current(KIND)
    classifier = IntentClassifier(intent_dir)
    fit = [e for e in val if zlib.crc32(("ranker:" + e.text).encode()) % 2 == 0]
    held_out = [e for e in val if zlib.crc32(("ranker:" + e.text).encode()) % 2 == 1]
    fit += [e for e in (feedback.examples if feedback else []) if not e.negative]
    fit_set = build_ranking_set(fit, kb, classifier, settings.top_k)
    eval_set = build_ranking_set(held_out, kb, classifier, settings.top_k)
    candidate = fit_ranker(fit_set, answer_prior=answer_priors(vote_rows, kb) if feedback else {})
    serving_version = registry.current_version(RANKER)
    serving = Ranker.load(registry.path(RANKER, serving_version)) if serving_version else Ranker()
    cand_hits, cand_mrr = ranking_outcomes(candidate, eval_set)
    serv_hits, serv_mrr = ranking_outcomes(serving, eval_set)
    worse, paired = significantly_worse(cand_hits, serv_hits)
    staging = registry.staging_dir(RANKER)
    candidate.save(staging)
    hit1 = float(np.mean(cand_hits)) if cand_hits else 0.0
    serving_hit1 = float(np.mean(serv_hits)) if serv_hits else 0.0
    card = {
        "parent": serving_version or "default",
        "intent_version": intent_version,
        "weights": candidate.weights,
        "bias": candidate.bias,
        "data": {"fit_queries": len(fit_set.queries), "eval_queries": len(eval_set.queries), "answer_priors": len(candidate.answer_prior)},
        "metrics": {"hit_at_1": hit1, "mrr_at_10": cand_mrr, "serving_hit_at_1": serving_hit1, "serving_mrr_at_10": serv_mrr},
        "gate": {
            "rule": f"promote unless worse than serving on held-out hit@1 (exact McNemar, p < {GATE_ALPHA})",
            "decision": "refused" if worse else "promoted",
            "reason": paired,
        },
    }
    version = registry.publish(RANKER, staging, card)
    if not worse:
        registry.promote(RANKER, version, reason=paired)
    on_step(f"ranker {version}: {'kept ' + str(serving_version or 'default') if worse else 'promoted'} (hit@1 {hit1:.4f} vs {serving_hit1:.4f}; {paired})")
    return {"version": version, "promoted": not worse, "hit_at_1": hit1, "serving_hit_at_1": serving_hit1}


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("per_intent", "correct")}


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
