"""Learning from feedback, simulated (DESIGN.md, benchmark protocol 4).

Start from 10 labelled tickets per intent. Simulated customers send BANKING77 training queries the
model has not seen through the real Assistant; they vote up when the answer's intent is right and down
otherwise (10% of votes flipped), and when the bot asks them to clarify they pick the right topic if it
is offered (10% of picks wrong). After every round of 2,000 turns the retraining command runs
(``retrain(from_feedback=True)``, the same code as ``csbot train --from-feedback``) and its gate decides.
Reports test accuracy (BANKING77 test split), retrieval hit@1 and accuracy on the seed tickets after
every round; writes benchmarks/results/feedback_loop.json and feedback_loop.png.

Usage: python benchmarks/feedback_loop.py [--rounds 5] [--turns 2000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, RESULTS, read_csv, write_result  # noqa: E402
from bot.assistant import Assistant  # noqa: E402
from bot.evaluation import retrieval_scores  # noqa: E402
from core.config import Settings  # noqa: E402
from retrieval.intent import IntentClassifier  # noqa: E402
from training.retrain import retrain  # noqa: E402
from training.train_intent import IntentTrainConfig  # noqa: E402


def split_seed_and_stream(per_intent: int, seed: int) -> tuple[list[dict], list[dict]]:
    rows = read_csv(DATA / "tickets.csv")
    random.Random(seed).shuffle(rows)
    taken: dict[str, int] = defaultdict(int)
    seeds, stream = [], []
    for row in rows:
        if taken[row["intent"]] < per_intent:
            taken[row["intent"]] += 1
            seeds.append(row)
        else:
            stream.append(row)
    return seeds, stream


def measure(assistant: Assistant, test: list[dict], seeds: list[dict]) -> dict:
    version, path = assistant.registry.current("intent")
    clf = IntentClassifier(path)
    texts, gold = [r["question"] for r in test], [r["intent"] for r in test]
    probs = clf.probabilities(texts)
    labels = clf.labels
    accuracy = sum(labels[i] == g for i, g in zip(probs.argmax(1), gold)) / len(gold)
    hits = retrieval_scores(assistant, texts, gold, probs)
    seed_pred = clf.predict([r["question"] for r in seeds], top=1)
    seed_acc = sum(p.intent == r["intent"] for p, r in zip(seed_pred, seeds)) / len(seeds)
    return {
        "model_version": version,
        "accuracy": accuracy,
        "hit_at_1": hits["hit_at_1"]["with_ranker"],
        "hit_at_1_without_ranker": hits["hit_at_1"]["without_ranker"],
        "seed_accuracy": seed_acc,
    }


def simulate_round(assistant: Assistant, queries: list[dict], rng: random.Random, noise: float) -> dict:
    counts: dict[str, int] = defaultdict(int)
    session = None
    for i, row in enumerate(queries):
        if i % 3 == 0:
            session = f"sim-{rng.getrandbits(48):012x}"  # a customer asks about three questions
        reply = assistant.respond(row["question"], session)
        gold = row["intent"]
        counts[reply.action] += 1
        if reply.action == "answer":
            right = reply.intent == gold
            counts["answered_right"] += right
            vote = 1 if right else -1
            if rng.random() < noise:
                vote, counts["flipped"] = -vote, counts["flipped"] + 1
            assistant.feedback(reply.turn_id, vote, session_id=session)
        elif reply.action == "clarify":
            offered = [s.intent for s in reply.suggestions]
            if gold in offered:
                pick = gold if rng.random() >= noise else rng.choice([o for o in offered if o != gold] or [gold])
                assistant.choose(reply.turn_id, pick, session)
                counts["clarified_right" if pick == gold else "clarified_wrong"] += 1
            else:
                assistant.feedback(reply.turn_id, -1, session_id=session)
    return dict(counts)


def plot(rounds: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("accuracy", "test accuracy"), ("hit_at_1", "retrieval hit@1"), ("seed_accuracy", "seed-set accuracy")):
        ax.plot(xs, [r[key] * 100 for r in rounds], marker="o", label=label)
    ax.axhline(91, color="grey", linestyle="--", linewidth=1, label="goal 91%")
    ax.set_xlabel("round (2,000 customer turns each; 0 = cold start from 10 tickets per intent)")
    ax.set_ylabel("%")
    ax.set_title("Learning from thumbs alone (BANKING77 test split)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--per-intent", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per retraining round (continual from serving)")
    parser.add_argument("--cold-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()

    home = args.home or Path(tempfile.mkdtemp(prefix="csbot-feedback-"))
    seeds, stream = split_seed_and_stream(args.per_intent, args.seed)
    test = read_csv(DATA / "eval.csv")
    seed_file = home / "seeds.csv"
    home.mkdir(parents=True, exist_ok=True)
    with seed_file.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(seeds[0]))
        writer.writeheader()
        writer.writerows(seeds)
    settings = Settings(home=home, default_tickets=seed_file)
    started = time.perf_counter()

    # Round 0: a cold start, fine-tuned on the seed tickets alone.
    from training.retrain import ensure_ready  # ingests the seed tickets and builds the index

    ensure_ready(settings, on_step=print)
    cold = retrain(settings, IntentTrainConfig(epochs=args.cold_epochs, seed=args.seed), on_step=print)
    assistant = Assistant.from_settings(settings).warm_up()
    rounds = [
        {
            "round": 0,
            "turns": 0,
            **measure(assistant, test, seeds),
            "promoted": cold.promoted,
            "gate": cold.reason,
            "seconds": round(time.perf_counter() - started, 1),
        }
    ]
    print(rounds[-1], flush=True)
    rng = random.Random(args.seed)
    turns = 0
    for r in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        queries = stream[(r - 1) * args.turns : r * args.turns]  # the stream holds 9,233 queries: round 5 gets 1,233
        turns += len(queries)
        sim = simulate_round(assistant, queries, rng, args.noise)
        result = retrain(settings, IntentTrainConfig(epochs=args.epochs, seed=args.seed + r), from_feedback=True, on_step=print)
        rounds.append(
            {
                "round": r,
                "turns": turns,
                "round_turns": len(queries),
                **measure(assistant, test, seeds),
                "promoted": result.promoted,
                "gate": result.reason,
                "simulation": sim,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(rounds[-1], flush=True)

    out = write_result(
        "feedback_loop.json",
        {
            "protocol": {
                "seed_per_intent": args.per_intent,
                "turns_per_round": args.turns,
                "noise": args.noise,
                "epochs_per_round": args.epochs,
                "cold_start_epochs": args.cold_epochs,
                "seed": args.seed,
                "test_split": "BANKING77 test (3,080 queries)",
                "stream": "BANKING77 train queries not in the seed set",
            },
            "rounds": rounds,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    plot(rounds, RESULTS / "feedback_loop.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
