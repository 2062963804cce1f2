"""Single-query latency of a whole ``Assistant.respond`` (issue 17: p50 <= 8 ms, p95 <= 12 ms warm), PyTorch vs ONNX Runtime.

One customer at a time, each question in a new session, the 3,080 test queries in a seeded order (the first
``--warm`` not counted), through the real Assistant on a private copy of ``--home`` (its turns never reach the
real home). Run once per ``CSBOT_ONNX`` mode in the same process; the intents of the two modes are compared too.

Usage: python benchmarks/respond_latency.py --home var --queries 500
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from benchmarks.followups import private_home  # noqa: E402
from core.config import Settings  # noqa: E402
from csbot.wiring import open_assistant  # noqa: E402


def measure(home: Path, mode: str, questions: list[str], warm: int) -> tuple[dict, list[str]]:
    os.environ["CSBOT_ONNX"] = mode
    assistant = open_assistant(Settings(home=private_home(home))).warm_up()
    for q in questions[:warm]:
        assistant.respond(q, uuid.uuid4().hex)
    times, intents = [], []
    for q in questions[warm:]:
        started = time.perf_counter()
        reply = assistant.respond(q, uuid.uuid4().hex)
        times.append((time.perf_counter() - started) * 1000)
        intents.append(reply.intent)
    times.sort()
    _, classifier = assistant.intent_model()
    row = {
        "runtime": classifier.runtime,
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * len(times))], 2),
        "p99_ms": round(times[int(0.99 * len(times))], 2),
        "intent_model_shares_retrieval_encoder": classifier.shares_retrieval_encoder,
        "retrieval_vectors": assistant.health()["retrieval_vectors"],  # shared, mapped (one pass) or encoded (two)
    }
    return row, intents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("CSBOT_HOME", "var")))
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--out", default="respond_latency.json")
    args = parser.parse_args()
    questions = [r["question"] for r in read_csv(DATA / "eval.csv")]
    random.Random(0).shuffle(questions)
    questions = questions[: args.queries + args.warm]
    result: dict = {"home": str(args.home), "queries": args.queries, "modes": {}}
    intents = {}
    for mode in ("off", "on"):
        result["modes"][mode], intents[mode] = measure(args.home, mode, questions, args.warm)
        print(mode, result["modes"][mode], flush=True)
    same = sum(a == b for a, b in zip(intents["off"], intents["on"]))
    result["same_intent_share"] = round(same / len(intents["off"]), 4)
    result["goal"] = {"p50_ms": 8, "p95_ms": 12, "met_with_onnx": result["modes"]["on"]["p50_ms"] <= 8 and result["modes"]["on"]["p95_ms"] <= 12}
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
