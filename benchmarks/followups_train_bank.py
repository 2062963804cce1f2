"""Do hand-written training follow-ups help? (issue 15) One more epoch on the tickets, with and without them.

``data/followups_train.csv`` holds 203 follow-ups written for training (231 when this was measured), by the intent of the message they follow,
each labelled (written without reading the evaluation set's test half; the exact copies of evaluation follow-ups, 28
generic ones such as "is there a fee?", were left out here, and are no longer in the file). Each is paired with three ticket questions of the intent
it follows (the BANKING77 train split, never the validation tickets) and read as serving reads a follow-up with its
context (``earlier [SEP] new``).

Two runs from the same serving model of ``--home`` (a home after ``csbot train``), each on a copy of it: *control*,
one epoch on the training tickets; *bank*, the same epoch with the follow-up pairs added. Each candidate gets its
retrieval map and serves the conversation set (``benchmarks/followups.py``: dev and test halves, and the 3,080 test
queries each sent after another). The difference between the two is what the follow-ups taught; the control shows
what one more epoch alone changes. Nothing here is used by ``csbot train``.

Usage: python benchmarks/followups_train_bank.py --home var   (about 15 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from benchmarks.followups import run_half, single_turn_check  # noqa: E402
from core.config import Settings  # noqa: E402
from csbot.wiring import open_assistant, open_parts  # noqa: E402
from retrieval.intent import IntentClassifier, with_context  # noqa: E402
from retrieval.query_map import fit_query_map  # noqa: E402
from training.context_pairs import CONTEXTS_PER_FOLLOWUP, bundled_followups, bundled_pairs  # noqa: E402
from training.data import Example, split_tickets  # noqa: E402
from training.train_intent import IntentTrainConfig, train_intent_model  # noqa: E402


def bank_pairs(tickets: list[Example], seed: int = 0) -> tuple[list[Example], int]:
    """The bank's follow-ups read with ticket questions of the intent they follow; and how many evaluation copies were left out."""
    evaluation = {r["message"].strip().lower() for r in read_csv(DATA / "conversations.csv") if r["kind"] == "followup"}
    left_out = sum(message.strip().lower() in evaluation for _, message, _ in bundled_followups())
    read = bundled_pairs([(e.text, e.label) for e in tickets], random.Random(seed), leave_out=evaluation)
    return [Example(with_context(earlier, message), intent) for earlier, message, intent in read], left_out


def run(home: Path, with_bank: bool, seed: int) -> dict:
    """One more epoch from the serving model (+ the bank's pairs), promoted in a copy of ``home``, then measured."""
    copy = Path(tempfile.mkdtemp(prefix="csbot-bank-")) / "home"
    shutil.copytree(home, copy)
    parts = open_parts(Settings(home=copy))
    kb, registry = parts.kb.open(), parts.registry
    tickets, val = split_tickets(kb.labelled())
    pairs, left_out = bank_pairs(tickets, seed)
    _, serving_dir = registry.current("intent")
    staging = registry.staging_dir("intent")
    started = time.perf_counter()
    facts = train_intent_model(tickets + (pairs if with_bank else []), val, init_dir=serving_dir, out_dir=staging, cfg=IntentTrainConfig(epochs=1, seed=seed))
    trained_s = time.perf_counter() - started
    fit_query_map(kb, IntentClassifier(staging).embed, staging)
    version = registry.publish("intent", staging, {"training": facts, "note": "benchmarks/followups_train_bank.py"})
    registry.promote("intent", version, reason="benchmark")
    assistant = open_assistant(Settings(home=copy)).warm_up()  # the copy is this run's own: its turns go nowhere else
    result = {
        "follow_up_pairs": len(pairs) if with_bank else 0,
        "evaluation_copies_left_out": left_out,
        "training_seconds": round(trained_s, 1),
        "validation_accuracy": facts.get("val_accuracy"),
        "halves": {split: run_half(assistant, split) for split in ("dev", "test")},
        "single_turn": single_turn_check(assistant, seed),
    }
    shutil.rmtree(copy.parent, ignore_errors=True)
    print({k: v for k, v in result.items() if k != "halves"}, {s: h["followup_accuracy_with_context"] for s, h in result["halves"].items()}, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True, help="a home after `csbot train` (its serving model is the start of both runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="followups_train_bank.json")
    args = parser.parse_args()
    runs = {"control": run(args.home, False, args.seed), "bank": run(args.home, True, args.seed)}

    def gain(split: str) -> float:
        bank, control = (runs[name]["halves"][split]["followup_accuracy_with_context"] for name in ("bank", "control"))
        return round(100 * (bank - control), 1)

    result = {
        "start_model": open_parts(Settings(home=args.home)).registry.current_version("intent"),
        "bank_followups": len(bundled_followups()),
        "contexts_per_followup": CONTEXTS_PER_FOLLOWUP,
        "runs": runs,
        "bank_minus_control_points": {
            "followups_with_context_dev": gain("dev"),
            "followups_with_context_test": gain("test"),
            "single_turn_alone": round(100 * (runs["bank"]["single_turn"]["accuracy_alone"] - runs["control"]["single_turn"]["accuracy_alone"]), 2),
        },
    }
    print(result["bank_minus_control_points"])
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
