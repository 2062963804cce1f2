"""Learning from feedback, simulated (DESIGN.md, benchmark protocol 4), in three scenarios.

Start from 10 labelled tickets per intent. Simulated customers send BANKING77 training queries the
model has not seen through the real Assistant and vote on its answers; when the bot asks them to clarify,
or offers other topics after their down-vote ("Did you mean…", from 657e894 on), they pick one. After every round of 2,000 turns the retraining command runs
(``retrain(from_feedback=True)``, the same code as ``csbot train --from-feedback``) and its gate decides.
Reports test accuracy (BANKING77 test split), retrieval hit@1 and accuracy on the seed tickets after
every round, with the gate's rule and the live-slice figures from the model card.

Scenarios (``--scenario``):
- thumbs: customers vote up when the answer's intent is right and down otherwise, 10% of votes flipped;
  they pick the right topic when it is offered (10% of picks wrong), and none when it is not. 5 rounds.
- noise: every vote and every pick is a coin flip. 10 rounds: the serving model must not get worse.
- poison: one round in which 30% of the customers vote against every right answer (and for every wrong
  one, and pick a wrong topic); the others behave as in ``thumbs``. The retrain must be refused.
- agents: as ``thumbs``, and people answer: a customer the bot failed (a wrong answer, or no right topic
  among the suggestions) asks for a person with probability ``--ask-person`` (0.5), and every handoff (asked
  for, or the bot unsure twice) is claimed by an agent who resolves it with the true intent of the question
  that led there (the agent inbox's Resolve, ``HandoffDesk.resolve``: a full label with source ``agent``).
  Reports handoffs per 100 customers per round. 5 rounds.

Each run writes one JSON (``--out``); ``--merge DIR`` combines the runs of a folder into
benchmarks/results/feedback_loop.json (mean and spread per round over seeds) and feedback_loop.png.

Usage: python benchmarks/feedback_loop.py --scenario thumbs --seed 0 --out runs/thumbs-0.json
       python benchmarks/feedback_loop.py --merge runs
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, RESULTS, commit, cpu, device, read_csv, write_result  # noqa: E402
from bot.assistant import Assistant  # noqa: E402
from bot.evaluation import retrieval_scores  # noqa: E402
from core.config import Settings  # noqa: E402
from core.registry import ModelRegistry  # noqa: E402
from csbot.wiring import ensure_ready, open_assistant, retrain  # noqa: E402
from retrieval.intent import IntentClassifier  # noqa: E402
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


def simulate_round(
    assistant: Assistant, queries: list[dict], rng: random.Random, scenario: str, noise: float, poisoners: float, ask_person: float = 0.5
) -> dict:
    """Customers ask, vote and pick topics as the scenario says (module docstring); returns what happened."""
    counts: dict[str, int] = defaultdict(int)
    session, hostile = None, False
    handed_off: set[str] = set()

    def failed_customer_asks_for_a_person(gold: str) -> None:
        if scenario == "agents" and rng.random() < ask_person:
            counts["handoff_sessions"] += session not in handed_off
            handed_off.add(session)
            answer_by_a_person(assistant, session, gold)
            counts["asked_for_a_person"] += 1
            counts["agent_labels"] += 1

    def pick_topic(offered: list[str], gold: str) -> str | None:
        """Which offered topic the customer clicks: the right one when it is there (a wrong one 10% of the time);
        a coin flip in the noise scenario; a wrong one for a poisoner. None: no click."""
        wrong = [o for o in offered if o != gold]
        if not offered:
            return None
        if scenario == "noise":
            return rng.choice(offered)
        if hostile:
            return rng.choice(wrong) if wrong else None
        if gold in offered:
            return gold if rng.random() >= noise else rng.choice(wrong or [gold])
        return None

    for i, row in enumerate(queries):
        if i % 3 == 0:
            session = f"sim-{rng.getrandbits(48):012x}"  # a customer asks about three questions
            hostile = rng.random() < poisoners
            counts["poisoning_customers"] += hostile
        reply = assistant.respond(row["question"], session)
        gold = row["intent"]
        counts[reply.action] += 1
        if reply.action == "handoff" and reply.text:
            counts["handoff_sessions"] += session not in handed_off
            handed_off.add(session)
            if scenario == "agents":
                answer_by_a_person(assistant, session, gold)
                counts["agent_labels"] += 1
            continue
        if reply.action == "handoff":  # a person has the conversation (unsure twice): the bot stayed silent
            counts["silent"] += 1
            continue
        if reply.action == "answer":
            right = reply.intent == gold
            counts["answered_right"] += right
            if scenario == "noise":
                vote = rng.choice([1, -1])
            elif hostile:
                vote = -1 if right else 1
            else:
                vote = 1 if right else -1
                if rng.random() < noise:
                    vote, counts["flipped"] = -vote, counts["flipped"] + 1
            receipt = assistant.feedback(reply.turn_id, vote, session_id=session)
            offered = [s.intent for s in receipt.alternatives]
            pick = pick_topic(offered, gold)  # "Did you mean…" after a down-vote: the customer picks, or not
            if pick is not None:
                assistant.choose(reply.turn_id, pick, session)
                counts["alternative_right" if pick == gold else "alternative_wrong"] += 1
            elif offered:
                counts["alternatives_not_picked"] += 1
            if not right and pick != gold:
                failed_customer_asks_for_a_person(gold)
        elif reply.action == "clarify":
            pick = pick_topic([s.intent for s in reply.suggestions], gold)
            if pick is None:
                assistant.feedback(reply.turn_id, -1, session_id=session)
                if not hostile:
                    failed_customer_asks_for_a_person(gold)
            else:
                assistant.choose(reply.turn_id, pick, session)
                counts["clarified_right" if pick == gold else "clarified_wrong"] += 1
    customers = -(-len(queries) // 3)
    counts["customers"] = customers
    counts["handoffs_per_100_customers"] = round(100 * counts["handoff_sessions"] / customers, 2) if customers else 0.0
    return dict(counts)


def answer_by_a_person(assistant: Assistant, session: str, gold: str) -> None:
    """An agent takes the conversation and resolves it with the true intent (the inbox's Resolve)."""
    desk = assistant.desk
    if desk.state(session)[0] == "bot":
        desk.request(session, "asked for a person")
    desk.claim(session, "agent")
    desk.resolve(session, "agent", gold, known_intents={gold})


SCENARIO_ROUNDS = {"thumbs": 5, "noise": 10, "poison": 1, "agents": 5}


def run(args: argparse.Namespace, progress: Callable[[dict], None] | None = None) -> dict:
    """One scenario with one seed: cold start, then rounds of simulated customers and a retrain after each."""
    home = args.home or Path(tempfile.mkdtemp(prefix=f"csbot-{args.scenario}-{args.seed}-"))
    seeds, stream = split_seed_and_stream(args.per_intent, args.seed)
    test = read_csv(DATA / "eval.csv")
    seed_file = home / "seeds.csv"
    home.mkdir(parents=True, exist_ok=True)
    with seed_file.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(seeds[0]))
        writer.writeheader()
        writer.writerows(seeds)
    settings = Settings(home=home, default_tickets=seed_file)
    registry = ModelRegistry(settings.models_dir)
    started = time.perf_counter()

    def gate_facts(result) -> dict:
        card = registry.card("intent", result.version)
        return {
            "candidate": result.version,
            "promoted": result.promoted,
            "rule": result.rule,
            "gate": result.reason,
            "candidate_trained": card.get("trained", True),  # False: refused before training (suspect feedback)
            "candidate_validation_accuracy": (card["metrics"]["validation"] or {}).get("accuracy"),
            "candidate_live": card["metrics"]["live"],
            "serving_live": card["metrics"]["serving_live"],
            "ranker": {k: result.ranker[k] for k in ("version", "promoted", "hit_at_1", "mrr_at_10")} if result.ranker else None,
            "interpolation": card.get("interpolation"),  # which mix with serving stood for the candidate, and why
        }

    code = commit()  # read once: HEAD may move while a long run goes on, the code it imported does not

    def facts() -> dict:
        return {
            "scenario": args.scenario,
            "seed": args.seed,
            "protocol": {
                "seed_per_intent": args.per_intent,
                "turns_per_round": args.turns,
                "noise": 0.5 if args.scenario == "noise" else args.noise,
                "poisoning_customers": args.poisoners if args.scenario == "poison" else 0.0,
                "failed_customers_asking_for_a_person": args.ask_person if args.scenario == "agents" else 0.0,
                "epochs_per_round": args.epochs,
                "each_round_starts_from": "the packaged encoder" if args.from_base else "the serving model",
                "candidate": "the plain fine-tuned model"
                if args.no_interpolate or args.from_base
                else "the fine-tuned model or its mix with serving (0.7 or 0.5 of its weights), whichever passes most held-out examples",
                "cold_start_epochs": args.cold_epochs,
                "test_split": "BANKING77 test (3,080 queries)",
                "stream": "BANKING77 train queries not in the seed set",
            },
            "total_seconds": round(time.perf_counter() - started, 1),
            "ran_on": device(),
            "cpu": cpu(),
            "commit": code,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    # Round 0: a cold start, fine-tuned on the seed tickets alone.
    ensure_ready(settings, on_step=print)  # ingests the seed tickets, builds the index, trains the quick model
    cold = retrain(settings, IntentTrainConfig(epochs=args.cold_epochs, seed=args.seed), on_step=print)
    assistant = open_assistant(settings).warm_up()
    rounds = [{"round": 0, "turns": 0, **measure(assistant, test, seeds), **gate_facts(cold), "seconds": round(time.perf_counter() - started, 1)}]
    print(rounds[-1], flush=True)
    if progress is not None:
        progress({**facts(), "rounds": rounds, "complete": False})
    rng = random.Random(args.seed)
    turns = 0
    n_rounds = args.rounds or SCENARIO_ROUNDS[args.scenario]
    for r in range(1, n_rounds + 1):
        t0 = time.perf_counter()
        offset = ((r - 1) * args.turns) % len(stream)  # 10 noise rounds wrap around the 9,233-query stream
        queries = (stream[offset:] + stream[:offset])[: args.turns]
        turns += len(queries)
        poisoners = args.poisoners if args.scenario == "poison" else 0.0
        sim = simulate_round(assistant, queries, rng, args.scenario, args.noise, poisoners, args.ask_person)
        cfg = IntentTrainConfig(epochs=args.epochs, seed=args.seed + r, from_base=args.from_base, interpolate=not args.no_interpolate)
        result = retrain(settings, cfg, from_feedback=True, on_step=print)
        rounds.append(
            {
                "round": r,
                "turns": turns,
                "round_turns": len(queries),
                **measure(assistant, test, seeds),
                **gate_facts(result),
                "simulation": sim,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(rounds[-1], flush=True)
        if progress is not None:  # a run cut off by a time limit still leaves its finished rounds
            progress({**facts(), "rounds": rounds, "complete": r == n_rounds})
    return {**facts(), "rounds": rounds, "complete": True}


def mean_and_spread(runs: list[dict]) -> list[dict]:
    """Per round over seeds: mean, min and max of each measured figure."""
    out = []
    for r in range(min(len(run["rounds"]) for run in runs)):
        rows = [run["rounds"][r] for run in runs]
        entry = {"round": r, "turns": rows[0]["turns"], "seeds": len(rows)}
        for key in ("accuracy", "hit_at_1", "seed_accuracy"):
            values = [row[key] for row in rows]
            entry[key] = sum(values) / len(values)
            entry[f"{key}_min"], entry[f"{key}_max"] = min(values), max(values)
        entry["promoted"] = sum(row["promoted"] for row in rows)
        handoffs = [row["simulation"]["handoffs_per_100_customers"] for row in rows if "handoffs_per_100_customers" in row.get("simulation", {})]
        if handoffs:  # the customers of the round before this retrain
            entry["handoffs_per_100_customers"] = sum(handoffs) / len(handoffs)
        out.append(entry)
    return out


def merge(folder: Path) -> Path:
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    by_scenario: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_scenario[run["scenario"]].append(run)
    scenarios = {}
    for name, group in by_scenario.items():
        group.sort(key=lambda run: run["seed"])
        summary = mean_and_spread(group)
        scenarios[name] = {"protocol": group[0]["protocol"], "mean": summary, "runs": group}
        accs = [[row["accuracy"] for row in run["rounds"]] for run in group]
        scenarios[name]["checks"] = {
            "final_mean_accuracy": summary[-1]["accuracy"],
            "largest_drop_between_rounds": max((a[i - 1] - a[i] for a in accs for i in range(1, len(a))), default=0.0),
            "accuracy_change_over_all_rounds": [a[-1] - a[0] for a in accs],
            "refused_candidates": sum(not row["promoted"] for run in group for row in run["rounds"][1:]),
            "candidates": sum(len(run["rounds"]) - 1 for run in group),
            "refusal_rules": sorted({row["rule"] for run in group for row in run["rounds"][1:] if not row["promoted"]}),
            "largest_seed_accuracy_drop_from_round_0": max(
                (run["rounds"][0]["seed_accuracy"] - row["seed_accuracy"] for run in group for row in run["rounds"]), default=0.0
            ),
        }
        handoffs = [r["handoffs_per_100_customers"] for r in summary if "handoffs_per_100_customers" in r]
        if handoffs:
            scenarios[name]["checks"]["handoffs_per_100_customers"] = handoffs
            scenarios[name]["checks"]["handoffs_fall_every_round"] = all(b < a for a, b in zip(handoffs, handoffs[1:]))
    main = scenarios.get("thumbs") or next(iter(scenarios.values()))
    out = write_result(
        "feedback_loop.json",
        {
            "rounds": main["mean"],  # the thumbs-only scenario, mean over seeds (DESIGN.md's keys)
            "scenarios": scenarios,
            "ran_on": sorted({run["ran_on"] for run in runs}),
        },
    )
    plot(scenarios, RESULTS / "feedback_loop.png")
    return out


def plot(scenarios: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    ax = axes[0]
    thumbs = scenarios.get("thumbs")
    if thumbs:
        rows = thumbs["mean"]
        xs = [r["round"] for r in rows]
        for key, label in (("accuracy", "test accuracy"), ("hit_at_1", "retrieval hit@1"), ("seed_accuracy", "seed-set accuracy")):
            ax.plot(xs, [r[key] * 100 for r in rows], marker="o", label=f"{label} (mean of {rows[0]['seeds']} seeds)")
            ax.fill_between(xs, [r[f"{key}_min"] * 100 for r in rows], [r[f"{key}_max"] * 100 for r in rows], alpha=0.2)
        ax.axhline(91, color="grey", linestyle="--", linewidth=1, label="goal 91%")
        ax.set_title("Thumbs only: 10% of votes flipped")
        ax.set_xlabel("round (2,000 customer turns each; 0 = 10 tickets per intent)")
        ax.set_ylabel("%")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[1]
    agents = scenarios.get("agents")
    if agents:
        rows = agents["mean"]
        xs = [r["round"] for r in rows]
        ax.plot(xs, [r["accuracy"] * 100 for r in rows], "o-", color="tab:green", label=f"agents: test accuracy ({rows[0]['seeds']} seed(s))")
        ax.plot(xs, [r["seed_accuracy"] * 100 for r in rows], "^-", color="tab:olive", label="agents: seed-set accuracy")
        if thumbs:
            label = f"thumbs ({thumbs['protocol']['epochs_per_round']} epochs a round)"
            ax.plot([r["round"] for r in thumbs["mean"]], [r["accuracy"] * 100 for r in thumbs["mean"]], "o--", color="tab:blue", alpha=0.6, label=label)
        ax.axhline(92.5, color="grey", linestyle="--", linewidth=1, label="goal 92.5%")
        ax.set_ylabel("%")
        right = ax.twinx()
        hx = [r["round"] for r in rows if "handoffs_per_100_customers" in r]
        right.bar(hx, [r["handoffs_per_100_customers"] for r in rows if "handoffs_per_100_customers" in r], alpha=0.25, color="tab:red", width=0.4)
        right.set_ylabel("handoffs per 100 customers (bars)")
        ax.set_title("Agents answer every handoff and set the true intent")
        ax.set_xlabel("round")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    ax = axes[2]
    for name, style in (("noise", "o-"), ("poison", "s-")):
        if name in scenarios:
            rows = scenarios[name]["runs"][0]["rounds"]
            ax.plot([r["round"] for r in rows], [r["accuracy"] * 100 for r in rows], style, label=f"{name}: serving test accuracy")
            for r in rows[1:]:
                if not r["promoted"]:
                    ax.annotate("x", (r["round"], r["accuracy"] * 100), color="red", ha="center", va="bottom")
    ax.set_title("Coin-flip votes and poisoning (x = candidate refused)")
    ax.set_xlabel("round")
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=sorted(SCENARIO_ROUNDS), default="thumbs")
    parser.add_argument("--rounds", type=int, default=None, help="default: 5 thumbs, 5 agents, 10 noise, 1 poison")
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--per-intent", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--poisoners", type=float, default=0.3, help="share of poisoning customers in the poison scenario")
    parser.add_argument("--ask-person", type=float, default=0.5, help="agents scenario: share of customers the bot failed who ask for a person")
    parser.add_argument(
        "--epochs",
        type=int,
        default=4,
        help="epochs per retraining round (continual from serving; csbot train itself trains 5). The committed poison runs "
        "and runs/variants/*-2-epochs used 2; agents at 2 levelled off at 91.2%%, at 4 reached 93.2%%; thumbs seed 0: 91.1%% "
        "at 2 (another CPU), 90.2%% at 4",
    )
    parser.add_argument("--from-base", action="store_true", help="each retrain starts from the packaged encoder, not from serving")
    parser.add_argument("--no-interpolate", action="store_true", help="the plain fine-tuned candidate goes to the gate (no mixes with serving)")
    parser.add_argument("--cold-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="where this run's JSON goes")
    parser.add_argument("--merge", type=Path, default=None, help="combine the run JSONs of this folder into feedback_loop.json")
    args = parser.parse_args()
    if args.merge:
        print(f"wrote {merge(args.merge)}")
        return
    out = args.out or RESULTS / "runs" / f"{args.scenario}-{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    run(args, progress=lambda result: out.write_text(json.dumps(result, indent=2)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
