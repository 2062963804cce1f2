"""Retrieval quality and scale (DESIGN.md, benchmark protocol 2 and 3).

Quality: every BANKING77 test query against the bundled tickets; a hit when the top-ranked ticket's
intent is the query's; hit@1 and MRR@10 without the ranker (FAISS order), with the baseline that serves until
a learned ranker beats it (FAISS order led by the nearest ticket of the classifier's intent), and with the
serving ranker, next to the serving intent model's own accuracy.

Scale: homes with 10k, 100k and 1M tickets. The real 10k ticket embeddings are grown synthetically
(each copy is a real embedding plus Gaussian noise, renormalised, stored as a ticket row in SQLite):
this measures speed and memory only. For each size: index build time (FAISS training + adding; the
encoding of real text is measured separately as throughput), warm end-to-end ``Assistant.respond``
p50/p95 for single requests (intent, retrieval, ranking and the SQLite write of the turn), resident
memory of a fresh serving process, the time to ingest 1,000 new real tickets into it, and recall@10 of
the index against exact search.

Usage: python benchmarks/retrieval.py --home var [--sizes 10000,100000,1000000]   (--sizes "": quality only)
       [--out retrieval_first_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, RESULTS, read_csv, write_result  # noqa: E402
from core.config import Settings  # noqa: E402


def quality(home: Path) -> dict:
    from bot.evaluation import retrieval_scores
    from csbot.wiring import open_assistant
    from retrieval.ranker import BASELINE, Ranker

    assistant = open_assistant(Settings(home=home)).warm_up()
    test = read_csv(DATA / "eval.csv")
    texts, gold = [r["question"] for r in test], [r["intent"] for r in test]
    version, clf = assistant.intent_model()
    probs = clf.probabilities(texts)
    accuracy = float(np.mean([clf.labels[i] == g for i, g in zip(probs.argmax(1), gold)]))
    ranker_version = assistant.ranking_model()[0]
    refused = [c for c in assistant.registry.versions("ranker") if c.get("gate", {}).get("decision") == "refused"]
    latest = refused[-1] if refused else {}
    extra = {}
    if latest:  # the newest candidate the gate turned down: what serving it would have given
        extra["latest_refused"] = Ranker.load(assistant.registry.path("ranker", latest["version"]))
    serving = assistant.registry.current_version("ranker")  # None while the built-in baseline serves
    serving_card = assistant.registry.card("ranker", serving) if serving else {}
    if serving_card.get("objective") == BASELINE and serving_card.get("parent"):  # the baseline took over from a stale ranker
        extra["replaced_stale"] = Ranker.load(assistant.registry.path("ranker", serving_card["parent"]))
    scores = retrieval_scores(assistant, texts, gold, probs, extra)
    return {
        **scores,
        "intent_accuracy": accuracy,
        "intent_version": version,
        "ranker_version": ranker_version,
        "latest_refused_ranker": {"version": latest["version"], "gate": latest.get("gate", {}).get("reason", "")} if latest else None,
        "serving_ranker_gate": serving_card.get("gate", {}).get("reason"),
        "tickets": assistant.kb.count(),
        "queries": len(texts),
    }


def build_home(source: Path, size: int, dest: Path) -> dict:
    """A home with ``size`` tickets: the real ones plus noisy copies of their embeddings."""
    from core.store import FeedbackStore
    from csbot.wiring import open_parts
    from retrieval.encoder import Encoder
    from retrieval.index import TicketIndex

    src = open_parts(Settings(home=source)).kb.open()
    real = list(src.get(src.store.ticket_ids()).values())
    n_real = len(real)
    base = np.vstack([src.index.index.reconstruct(int(t.id)) for t in real]).astype("float32")
    dest.mkdir(parents=True)
    (dest / "models").symlink_to((source / "models").resolve())
    store = FeedbackStore(dest / "csbot.db")
    rng = np.random.default_rng(size)
    vectors = []
    for start in range(0, size, n_real):
        n = min(n_real, size - start)
        noise = rng.normal(0, 0.03 if start else 0.0, (n, base.shape[1])).astype("float32")
        block = base[:n] + noise
        vectors.append(block / np.linalg.norm(block, axis=1, keepdims=True))
    vectors = np.vstack(vectors)
    rows = []
    for i in range(size):
        t = real[i % n_real]
        copy = i // n_real
        rows.append(
            {
                "id": i + 1,
                "question": t.question if copy == 0 else f"{t.question} (#{copy})",
                "answer": t.answer,
                "intent": t.intent,
                "created_at": t.created_at,
                "source": "synthetic" if copy else t.source,
                "question_key": f"{i}",
                "external_id": "",
                "vector": vectors[i].tobytes(),  # stored like an ingest's, so the serving process encodes nothing
            }
        )
    t0 = time.perf_counter()
    store.insert_tickets(rows)
    db_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = TicketIndex.build(vectors, np.arange(1, size + 1), encoder_name=Encoder().name)
    build_seconds = time.perf_counter() - t0
    index.meta["seq"] = store.ticket_index_version()  # the index knows every logged change: serving opens it as is
    index.save(dest / "index")
    # Recall@10 of the chosen index against exact search, on held-out real query vectors.
    test = read_csv(DATA / "eval.csv")[:200]
    queries = Encoder().encode([r["question"] for r in test])
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1
    found, _ = index.search(queries, 10)
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))
    return {"index": index.meta["spec"], "build_seconds": round(build_seconds, 2), "db_seconds": round(db_seconds, 2), "recall_vs_exact": recall}


def measure_serving(home: Path, n_queries: int) -> dict:
    """Run in a fresh process: warm respond() latency, RSS, and incremental ingest of 1,000 real tickets."""
    import psutil

    from csbot.wiring import open_assistant

    t0 = time.perf_counter()
    assistant = open_assistant(Settings(home=home)).warm_up()
    start_seconds = time.perf_counter() - t0
    test = read_csv(DATA / "eval.csv")
    for row in test[:20]:
        assistant.respond(row["question"])  # warm-up
    latencies = []
    for row in test[20 : 20 + n_queries]:
        t = time.perf_counter()
        assistant.respond(row["question"])
        latencies.append((time.perf_counter() - t) * 1000)
    rss = psutil.Process().memory_info().rss / 2**20
    new = Path(tempfile.mkdtemp()) / "new.csv"
    rows = read_csv(DATA / "tickets.csv")[:1000]
    import csv

    with new.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer", "intent"])
        writer.writeheader()
        writer.writerows({"question": r["question"] + " (new)", "answer": r["answer"], "intent": r["intent"]} for r in rows)
    t = time.perf_counter()
    report = assistant.kb.ingest(new, intent_col="intent")
    add_seconds = time.perf_counter() - t
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "rss_mb": round(rss, 1),
        "start_seconds": round(start_seconds, 2),
        "add_1000_seconds": round(add_seconds, 2),
        "added": report.added,
        "queries": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("CSBOT_HOME", "var")))
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", default="retrieval.json", help="result file under benchmarks/results/")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_serving(args.measure, args.queries)))
        return

    from retrieval.encoder import Encoder

    result = {"quality": quality(args.home)}
    q = result["quality"]
    result["hit_at_1"], result["mrr_at_10"] = q["hit_at_1"], q["mrr_at_10"]
    print(json.dumps(result, indent=2), flush=True)
    texts = [r["question"] for r in read_csv(DATA / "tickets.csv")[:2000]]
    enc = Encoder().warm_up()
    t = time.perf_counter()
    enc.encode(texts)
    result["encode_per_second"] = round(len(texts) / (time.perf_counter() - t), 1)
    result["scale"] = []
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes:  # quality only: keep the scale measurements of the last full run
        previous = json.loads((RESULTS / "retrieval.json").read_text())
        result["scale"], result["scale_measured"] = previous.get("scale", []), previous.get("scale_measured", previous.get("date"))
    for size in sizes:
        home = Path(tempfile.mkdtemp(prefix=f"csbot-scale-{size}-")) / "home"
        entry = {"tickets": size, **build_home(args.home, size, home)}
        out = subprocess.run([sys.executable, __file__, "--measure", str(home), "--queries", str(args.queries)], capture_output=True, text=True, check=True)
        entry.update(json.loads(out.stdout.strip().splitlines()[-1]))
        result["scale"].append(entry)
        print(json.dumps(entry), flush=True)
    print(write_result(args.out, result))


if __name__ == "__main__":
    main()
