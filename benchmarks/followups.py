"""Follow-ups understood in context (issue 15): the conversation set, with and without context, through the real Assistant.

- Follow-up accuracy: every follow-up turn of ``data/conversations.csv`` (``kind=followup``), its reply's intent
  against the label. *Without context*: each message sent in a session of its own. *With context*: each
  conversation's turns sent in order in one session, as a customer would.
- Standalone turns (``kind=standalone``): unrelated test queries sent after another: context must not hurt.
- Single-turn check: the 3,080 BANKING77 test queries, each sent after another test query in the same session
  (context switched on), against each sent alone. It must not fall by more than 0.2 points.
The serving model of ``--home`` is used (a copy of the home, so its database is left as it was).
Reported per half (``dev``, on which the method was tuned, and ``test``).

Usage: python benchmarks/followups.py --home var
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from bot.assistant import Assistant  # noqa: E402
from bot.conversation import CONTEXT_TURNS, CONTEXT_WINDOW_S  # noqa: E402
from core.config import Settings  # noqa: E402
from core.types import Reply  # noqa: E402
from csbot.wiring import open_assistant  # noqa: E402


def private_home(home: Path) -> Path:
    """Database and index copied, models linked: the benchmark's turns never reach the real home."""
    dest = Path(tempfile.mkdtemp(prefix="csbot-followups-")) / "home"
    dest.mkdir(parents=True)
    with sqlite3.connect(home / "csbot.db") as source, sqlite3.connect(dest / "csbot.db") as copy:
        source.backup(copy)  # what a live database holds, its write-ahead log included (a file copy would miss that)
    shutil.copytree(home / "index", dest / "index")
    (dest / "models").symlink_to((home / "models").resolve())
    return dest


def conversations(split: str) -> list[list[dict]]:
    by_id: dict[str, list[dict]] = defaultdict(list)
    for row in read_csv(DATA / "conversations.csv"):
        if row["split"] == split:
            by_id[row["conversation"]].append(row)
    return [sorted(turns, key=lambda r: int(r["turn"])) for turns in by_id.values()]


def resolved(reply: Reply, intent: str) -> bool:
    """The customer gets the right answer now or one click away: answered with ``intent``, or asked to clarify with
    ``intent`` among the buttons offered."""
    if reply.action == "answer":
        return reply.intent == intent
    return reply.action == "clarify" and intent in {s.intent for s in reply.suggestions}


def run_half(assistant: Assistant, split: str) -> dict:
    convs = conversations(split)
    outcome: dict[str, list[bool]] = defaultdict(list)
    used_context = 0
    for conv in convs:
        session = f"bench-{uuid.uuid4().hex}"
        for row in conv:
            alone = assistant.respond(row["message"], f"alone-{uuid.uuid4().hex}")
            together = assistant.respond(row["message"], session)
            if row["kind"] == "first":
                continue
            key = row["kind"] if row["kind"] == "standalone" else f"followup_turn{row['turn']}"
            outcome[f"{key}_alone"].append(alone.intent == row["intent"])
            outcome[f"{key}_context"].append(together.intent == row["intent"])
            for way, reply in (("alone", alone), ("context", together)):
                if row["kind"] == "followup":
                    outcome[f"followup_{way}"].append(reply.intent == row["intent"])
                    outcome[f"followup_answered_right_{way}"].append(reply.action == "answer" and reply.intent == row["intent"])
                    outcome[f"followup_resolved_{way}"].append(resolved(reply, row["intent"]))
                    outcome[f"followup_answered_wrong_{way}"].append(reply.action == "answer" and reply.intent != row["intent"])
            used_context += bool(together.context_turn_id)
    rate = {k: round(sum(v) / len(v), 4) for k, v in sorted(outcome.items())}
    n_followups = len(outcome["followup_context"])
    return {
        "conversations": len(convs),
        "followup_turns": n_followups,
        "standalone_turns": len(outcome["standalone_context"]),
        "followup_accuracy_without_context": rate["followup_alone"],
        "followup_accuracy_with_context": rate["followup_context"],
        "followup_resolved_without_context": rate["followup_resolved_alone"],
        "followup_resolved_with_context": rate["followup_resolved_context"],
        "followup_answered_wrong_with_context": rate["followup_answered_wrong_context"],
        "standalone_accuracy_without_context": rate["standalone_alone"],
        "standalone_accuracy_with_context": rate["standalone_context"],
        "read_with_context": used_context,
        "detail": rate,
    }


def single_turn_check(assistant: Assistant, seed: int) -> dict:
    """Each test query after another one in the same session, against alone."""
    test = read_csv(DATA / "eval.csv")
    order = list(range(len(test)))
    random.Random(seed).shuffle(order)
    alone = with_context = context_used = 0
    for k, i in enumerate(order):
        before = test[order[k - 1]]
        row = test[i]
        session = f"single-{uuid.uuid4().hex}"
        assistant.respond(before["question"], session)
        together = assistant.respond(row["question"], session)
        solo = assistant.respond(row["question"], f"solo-{uuid.uuid4().hex}")
        alone += solo.intent == row["intent"]
        with_context += together.intent == row["intent"]
        context_used += bool(together.context_turn_id)
    n = len(test)
    return {
        "queries": n,
        "accuracy_alone": round(alone / n, 4),
        "accuracy_with_context": round(with_context / n, 4),
        "change_points": round(100 * (with_context - alone) / n, 2),
        "read_with_context": context_used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("CSBOT_HOME", "var")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-single", action="store_true", help="skip the 3,080-query single-turn check (dev iterations)")
    parser.add_argument("--out", default="followups.json")
    args = parser.parse_args()
    started = time.perf_counter()
    assistant = open_assistant(Settings(home=private_home(args.home))).warm_up()
    version = assistant.model_version
    training = assistant.registry.card("intent", version).get("training", {})
    result = {
        "model_version": version,
        "model_quick": training.get("config", {}).get("quick"),
        "model_validation_accuracy": training.get("val_accuracy"),
        "context": {"turns": CONTEXT_TURNS, "window_s": CONTEXT_WINDOW_S},
        "halves": {split: run_half(assistant, split) for split in ("dev", "test")},
    }
    print({k: {m: v for m, v in h.items() if m != "detail"} for k, h in result["halves"].items()}, flush=True)
    if not args.skip_single:
        result["single_turn"] = single_turn_check(assistant, args.seed)
        print(result["single_turn"], flush=True)
    test = result["halves"]["test"]
    result["goals"] = {
        "followup_accuracy_with_context_test": test["followup_accuracy_with_context"],
        "followup_goal": 0.85,
        "followup_goal_met": test["followup_accuracy_with_context"] >= 0.85,
        "single_turn_drop_points": -result["single_turn"]["change_points"] if "single_turn" in result else None,
        "single_turn_goal_met": result["single_turn"]["change_points"] >= -0.2 if "single_turn" in result else None,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
