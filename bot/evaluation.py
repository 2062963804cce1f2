"""``csbot eval``: how well the serving bot does on a labelled file (intent and retrieval), and how fast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bot.assistant import Assistant
from core.errors import IngestError
from retrieval.knowledge_base import read_rows
from retrieval.metrics import classification_metrics, first_hit


def retrieval_scores(assistant: Assistant, texts: list[str], intents: list[str], probs: np.ndarray) -> dict:
    """hit@1 and MRR@10 (a hit: the ranked ticket's intent is the query's), without and with the ranker."""
    labels = assistant.intent_model()[1].labels
    ranker = assistant.ranking_model()[1]
    vectors = assistant.kb.encoder.encode(texts)
    retrieved = assistant.kb.search(vectors, assistant.settings.top_k)
    out: dict[str, list[float]] = {"hit1_dense": [], "mrr_dense": [], "hit1_ranked": [], "mrr_ranked": []}
    for gold, hits, row in zip(intents, retrieved, probs):
        ranked = ranker.rank(hits, dict(zip(labels, row.tolist())))
        for name, order in (("dense", [t.intent for t, _ in hits]), ("ranked", [c.ticket.intent for c in ranked])):
            first = first_hit(order, gold)
            out[f"hit1_{name}"].append(float(first == 0))
            out[f"mrr_{name}"].append(0.0 if first is None else 1.0 / (first + 1))
    mean = {k: float(np.mean(v)) if v else 0.0 for k, v in out.items()}
    return {
        "hit_at_1": {"without_ranker": mean["hit1_dense"], "with_ranker": mean["hit1_ranked"]},
        "mrr_at_10": {"without_ranker": mean["mrr_dense"], "with_ranker": mean["mrr_ranked"]},
    }


def evaluate_file(assistant: Assistant, path: Path, *, question_col: str = "question", intent_col: str = "intent") -> dict:
    columns, rows = read_rows(path)
    for col in (question_col, intent_col):
        if col not in columns:
            raise IngestError(f"{path.name} has no column {col!r}; its columns are: {', '.join(columns)}")
    pairs = [(r[question_col].strip(), r[intent_col].strip()) for _, r, _ in rows if r and r[question_col].strip()]
    texts, gold = [p[0] for p in pairs], [p[1] for p in pairs]
    version, classifier = assistant.intent_model()
    probs = classifier.probabilities(texts)
    labels = classifier.labels
    predicted = [labels[i] for i in probs.argmax(1)]
    report = classification_metrics(gold, predicted, probs.max(1))
    report["model_version"] = version
    report["retrieval"] = retrieval_scores(assistant, texts, gold, probs)
    latencies = []
    for text in texts[:200]:  # the read path of respond(), timed per single query, without storing a turn
        start = time.perf_counter()
        prediction = classifier.predict([text])[0]
        hits = assistant.kb.search(assistant.kb.encoder.encode([text]), assistant.settings.top_k)[0]
        assistant.ranking_model()[1].rank(hits, dict(zip(prediction.labels, prediction.probabilities)))
        latencies.append((time.perf_counter() - start) * 1000)
    report["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95))} if latencies else {}
    return report
