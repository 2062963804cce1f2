"""Classification metrics for the intent model (scikit-learn), and calibration error."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins: the mean |accuracy - confidence| weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidences > lo) & (confidences <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidences[in_bin].mean())
    return float(ece)


def classification_metrics(y_true: list[str], y_pred: list[str], confidences: np.ndarray | None = None) -> dict:
    """Accuracy, macro-F1, per-intent precision/recall/F1 (and ECE when confidences are given)."""
    labels = sorted(set(y_true) | set(y_pred))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    result = {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)) if y_true else 0.0,
        "per_intent": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])} for i, label in enumerate(labels)
        },
    }
    if confidences is not None and len(y_true):
        correct = np.array([a == b for a, b in zip(y_true, y_pred)], dtype=float)
        result["ece"] = expected_calibration_error(np.asarray(confidences, dtype=float), correct)
    return result


def first_hit(ranked_intents: list[str], gold: str, k: int = 10) -> int | None:
    """Position of the first ranked ticket with the query's intent within the top ``k`` (None: no hit).

    hit@1 is ``first_hit(...) == 0``; the reciprocal rank is ``1 / (first_hit(...) + 1)``.
    """
    return next((i for i, intent in enumerate(ranked_intents[:k]) if intent == gold), None)
