"""Do the follow-ups a deployment's people label teach the bot? (issue 15: what a person answers should teach it)

A support team labels follow-ups the bot got wrong (a reviewer's or an agent's label on a turn read with its
context); ``csbot train`` fits the follow-up reader on them beside the bundled and the made pairs
(``training.retrain.followup_reader_pairs``). Here the dev half's follow-ups of ``data/conversations.csv`` play
those labels: a share of them (0, 25, 50, 100%, seeded) is given to the reader exactly as store rows give it
(``(earlier messages, message, intent)``), the reader is refitted on a copy of the serving model
(``fit_followup_reader``, the function ``csbot train`` calls), and the real Assistant is run on both halves:

- **dev** (the labelled conversations themselves): is a labelled follow-up understood the next time?
- **test** (follow-ups no one labelled, other words): does a label teach more than its own words?
- the single-turn check of ``benchmarks/followups.py`` (3,080 test queries, each after another).

Only the reader is refitted (about three minutes on 2 cores); ``csbot train`` also fine-tunes the encoder on the labels.
Needs a home whose serving model has a follow-up reader (a fine-tuned one, after ``csbot train``).

Usage: python benchmarks/followups_learning.py --home var
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from benchmarks.followups import conversations, private_home, run_half, single_turn_check  # noqa: E402
from bot.assistant import Assistant  # noqa: E402
from core.config import Settings  # noqa: E402
from core.context import CONTEXT_TURNS  # noqa: E402
from csbot.wiring import open_assistant  # noqa: E402
from retrieval.intent import with_context  # noqa: E402
from training.context_pairs import bundled_followups, fit_followup_reader  # noqa: E402
from training.data import Example, split_tickets  # noqa: E402
from training.retrain import followup_reader_draws  # noqa: E402
from training.train_intent import IntentTrainConfig  # noqa: E402

SHARES = (0.0, 0.25, 0.5, 1.0)


def labelled_followups(split: str) -> list[tuple[list[str], str, str]]:
    """Every follow-up turn of a half as a store row gives it to the reader: the earlier messages serving read it
    with (the conversation's last two), the message, its intent."""
    out = []
    for conv in conversations(split):
        for k, row in enumerate(conv):
            if row["kind"] == "followup":
                out.append(([r["message"] for r in conv[:k]][-(CONTEXT_TURNS - 1) :], row["message"], row["intent"]))
    return out


def assistant_with_labels(home: Path, labelled: list[tuple[list[str], str, str]], seed: int) -> tuple[Assistant, dict]:
    """An Assistant on a private copy of ``home`` whose serving intent model's reader is refitted with ``labelled``
    follow-ups (before the model is loaded), and the fit's account."""
    dest = private_home(home)
    (dest / "models").unlink()
    shutil.copytree((home / "models").resolve(), dest / "models")
    assistant = open_assistant(Settings(home=dest))
    _, model_dir = assistant.registry.current("intent")
    tickets, val = split_tickets(assistant.kb.labelled())  # what csbot train reads, in its order
    extra = [Example(with_context(earlier, message), intent, followup=(tuple(earlier), message)) for earlier, message, intent in labelled]
    # as csbot train draws them: the validation tickets' short questions after unrelated ones too, and the written
    # follow-ups of the home's settings (CSBOT_FOLLOWUPS_FILE; by default the bundled ones)
    followups = bundled_followups(assistant.settings.followups_file)
    fitted = fit_followup_reader(model_dir, followup_reader_draws(tickets, extra, IntentTrainConfig(seed=seed), val, followups), seed=seed)
    return assistant.warm_up(), fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("CSBOT_HOME", "var")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shares", type=float, nargs="+", default=SHARES, help="shares of the dev half's follow-ups given as labels")
    parser.add_argument("--reader-seed", type=int, default=IntentTrainConfig().seed, help="the reader's first draw's seed (csbot train: --seed)")
    parser.add_argument("--skip-single", action="store_true", help="skip the 3,080-query single-turn check")
    parser.add_argument("--out", default="followups_learning.json")
    args = parser.parse_args()
    started = time.perf_counter()
    dev = labelled_followups("dev")
    order = list(range(len(dev)))
    random.Random(args.seed).shuffle(order)
    runs = []
    for share in args.shares:
        labelled = [dev[i] for i in order[: int(share * len(dev))]]
        assistant, fitted = assistant_with_labels(args.home, labelled, args.reader_seed)
        if not assistant.intent_model()[1].reads_followups:
            raise SystemExit(f"the serving model of {args.home} has no follow-up reader: run `csbot train` first")
        run = {"labelled_followups": len(labelled), "reader": fitted}
        for split in ("dev", "test"):
            half = run_half(assistant, split)
            run[split] = {k: half[k] for k in ("followup_turns", "followup_accuracy_with_context", "standalone_accuracy_with_context")}
        if not args.skip_single:
            run["single_turn"] = single_turn_check(assistant, args.seed)
        print(run, flush=True)
        runs.append(run)
        shutil.rmtree(assistant.settings.home.parent, ignore_errors=True)
    seconds = round(time.perf_counter() - started, 1)
    result = {"model_version": assistant.model_version, "reader_seed": args.reader_seed, "dev_followups": len(dev), "runs": runs, "seconds": seconds}
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
