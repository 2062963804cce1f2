"""``csbot eval``: how well the serving bot does on a labelled file (intent and retrieval), and how fast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bot.assistant import Assistant
from core.errors import IngestError
from retrieval.knowledge_base import read_rows
from retrieval.metrics import classification_metrics, first_hit
from retrieval.query_map import retrieve
from retrieval.ranker import Ranker


def retrieval_scores(
    assistant: Assistant,
    texts: list[str],
    intents: list[str],
    probs: np.ndarray,
    extra: dict[str, Ranker] | None = None,
    intent_vectors: np.ndarray | None = None,
) -> dict:
    """hit@1 and MRR@10 (a hit: the ranked ticket's intent is the query's) in FAISS order ("without_ranker"), with the
    baseline that serves until a learned ranker beats it, with the serving ranker (learned or that baseline), and
    with any ``extra`` rankers (e.g. one the gate refused, to show what the refusal cost or saved)."""
    labels = assistant.intent_model()[1].labels
    rankers = {"without_ranker": Ranker(), "baseline": Ranker.baseline(), "with_ranker": assistant.ranking_model()[1], **(extra or {})}
    retrieved = retrieve(assistant.kb, assistant.intent_model()[1], texts, assistant.settings.top_k, assistant.settings.min_similarity, intent_vectors)
    hit1: dict[str, list[float]] = {name: [] for name in rankers}
    rr: dict[str, list[float]] = {name: [] for name in rankers}
    for gold, hits, row in zip(intents, retrieved, probs):
        probabilities = dict(zip(labels, row.tolist()))
        for name, ranker in rankers.items():
            first = first_hit([c.ticket.intent for c in ranker.rank(hits, probabilities)], gold)
            hit1[name].append(float(first == 0))
            rr[name].append(0.0 if first is None else 1.0 / (first + 1))
    return {
        "hit_at_1": {name: float(np.mean(v)) if v else 0.0 for name, v in hit1.items()},
        "mrr_at_10": {name: float(np.mean(v)) if v else 0.0 for name, v in rr.items()},
    }


OUT_OF_SCOPE_LABELS = {"oos", "out_of_scope", "out-of-scope", "open"}


def evaluate_file(
    assistant: Assistant,
    path: Path,
    *,
    question_col: str = "question",
    intent_col: str = "intent",
    confusion_png: Path | None = None,
) -> dict:
    """The report of ``csbot eval``: intent metrics (with ECE and per intent), retrieval, latency and, when
    the file has out-of-scope rows (an intent the model does not know, or one of ``OUT_OF_SCOPE_LABELS``),
    how well the handoff threshold separates them: in-scope accuracy, out-of-scope recall/precision, AUROC."""
    columns, rows = read_rows(path)
    for col in (question_col, intent_col):
        if col not in columns:
            raise IngestError(f"{path.name} has no column {col!r}; its columns are: {', '.join(columns)}")
    pairs = [(r[question_col].strip(), r[intent_col].strip()) for _, r, _ in rows if r and r[question_col].strip() and r[intent_col].strip()]
    if not pairs:
        raise IngestError(f"{path.name} has no rows with both a {question_col!r} and an {intent_col!r}")
    version, classifier = assistant.intent_model()
    labels = classifier.labels
    known = set(labels)
    in_scope = np.array([g in known and g.lower() not in OUT_OF_SCOPE_LABELS for _, g in pairs])
    texts = [p[0] for p in pairs]
    embedded = classifier.embed(texts)  # one pass: the probabilities, and the retrieval when shared or mapped
    probs = classifier.probabilities_from_embeddings(embedded)
    confidence = probs.max(1)
    predicted = [labels[i] for i in probs.argmax(1)]
    gold_in = [g for (_, g), k in zip(pairs, in_scope) if k]
    pred_in = [p for p, k in zip(predicted, in_scope) if k]
    report = classification_metrics(gold_in, pred_in, confidence[in_scope]) if gold_in else {"n": 0}
    report["model_version"] = version
    answer_threshold, handoff_threshold = assistant.thresholds(classifier)
    report["thresholds"] = {"answer": answer_threshold, "handoff": handoff_threshold}
    if not in_scope.all():
        nearest = np.array([hits[0][1] if hits else 0.0 for hits in retrieve(assistant.kb, classifier, texts, 1, assistant.settings.min_similarity, embedded)])
        rejected = (confidence < handoff_threshold) | (nearest < assistant.settings.min_similarity)  # serving's rule
        report["out_of_scope"] = out_of_scope_scores(in_scope, confidence, predicted, [g for _, g in pairs], rejected)
        report["out_of_scope"]["min_similarity"] = assistant.settings.min_similarity
        report["out_of_scope"]["handoff_threshold"] = handoff_threshold
    if gold_in:
        in_texts = [t for t, k in zip(texts, in_scope) if k]
        report["retrieval"] = retrieval_scores(assistant, in_texts, gold_in, probs[in_scope], intent_vectors=embedded[in_scope])
        if confusion_png is not None:
            confusion_image(gold_in, pred_in, confusion_png)
            report["confusion_matrix_png"] = str(confusion_png)
    latencies = []
    for text in texts[:200]:  # the read path of respond(), timed per single query, without storing a turn
        start = time.perf_counter()
        prediction, hits = assistant.understand(classifier, [text])[0]
        assistant.ranking_model()[1].rank(hits, dict(zip(prediction.labels, prediction.probabilities)))
        latencies.append((time.perf_counter() - start) * 1000)
    report["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))} if latencies else {}
    return report


def out_of_scope_scores(in_scope: np.ndarray, confidence: np.ndarray, predicted: list[str], gold: list[str], rejected: np.ndarray) -> dict:
    """``rejected``: handed off as out of scope; in-scope accuracy counts right and not rejected. AUROC: of the confidence."""
    from sklearn.metrics import roc_auc_score

    oos = ~in_scope
    correct_in = np.array([p == g for p, g in zip(predicted, gold)]) & ~rejected & in_scope
    return {
        "in_scope_queries": int(in_scope.sum()),
        "out_of_scope_queries": int(oos.sum()),
        "in_scope_accuracy": float(correct_in.sum() / max(in_scope.sum(), 1)),
        "out_of_scope_recall": float((rejected & oos).sum() / max(oos.sum(), 1)),
        "out_of_scope_precision": float((rejected & oos).sum() / max(rejected.sum(), 1)),
        "auroc": float(roc_auc_score(in_scope, confidence)) if in_scope.any() and oos.any() else None,
    }


def confusion_image(gold: list[str], predicted: list[str], out: Path, cell: int = 10) -> Path:
    """A PNG heat map of the confusion matrix (rows: true intent, columns: predicted; darker = more), with labels."""
    from PIL import Image, ImageDraw
    from sklearn.metrics import confusion_matrix

    names = sorted(set(gold) | set(predicted))
    matrix = confusion_matrix(gold, predicted, labels=names).astype(float)
    matrix /= np.maximum(matrix.sum(1, keepdims=True), 1)
    margin = 8 + 6 * max(len(n) for n in names)
    size = margin + cell * len(names)
    image = Image.new("RGB", (size + 4, size + 4), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        draw.text((2, margin + i * cell - 1), name[: margin // 6], fill="black")
        for j in range(len(names)):
            v = matrix[i, j]
            if v > 0:
                shade = int(255 * (1 - v))
                colour = (shade, shade, 255) if i == j else (255, shade, shade)
                draw.rectangle([margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1], fill=colour)
    draw.rectangle([margin, margin, size - 1, size - 1], outline="grey")
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out
