"""How often a second careful reader gives a dev-half follow-up the label the conversation set gives it.

Why: the issue asks for 85% of follow-ups right, and what a follow-up asks is sometimes a matter of reading
("is there a fee for a new one?" after a lost card: `order_physical_card` or `lost_or_stolen_card`?). A
second reading of the dev half's follow-ups, labelled blind (the earlier intent and the message shown, never the
label; `data/conversations_second_reading.csv`, 2026-12-06), tells how far two readers agree: the ceiling a
model that reads like a person can be expected to reach on labels written by another. The test half was not
read.

Usage: python benchmarks/followups_agreement.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402

SECOND_READING = DATA / "conversations_second_reading.csv"


def dev_followups() -> list[tuple[str, str, str]]:
    """``(earlier intent, message, intent)`` of every dev-half follow-up turn, in order: a follow-up of the bank
    follows the intent of the turn before it."""
    turns: list[tuple[str, str, str]] = []
    previous: dict[str, str] = {}
    for row in read_csv(DATA / "conversations.csv"):
        if row["split"] == "dev" and row["kind"] == "followup":
            turns.append((previous[row["conversation"]], row["message"], row["intent"]))
        previous[row["conversation"]] = row["intent"]
    return turns


def agreement() -> dict:
    second = {(r["earlier_intent"], r["message"]): r for r in read_csv(SECOND_READING)}
    turns = dev_followups()
    missing = [t for t in turns if t[:2] not in second]
    if missing:
        raise SystemExit(f"{len(missing)} dev follow-ups have no second reading, e.g. {missing[0]!r}")
    disagree = [r for r in second.values() if r["second_reading"] != r["intent"]]
    agree_turns = sum(second[t[:2]]["second_reading"] == t[2] for t in turns)
    return {
        "half": "dev",
        "followups_read": len(second),
        "followup_turns": len(turns),
        "agreement_followups": round(1 - len(disagree) / len(second), 4),
        "agreement_turns": round(agree_turns / len(turns), 4),
        "disagreements": [
            {"earlier_intent": r["earlier_intent"], "message": r["message"], "label": r["intent"], "second_reading": r["second_reading"]}
            for r in sorted(disagree, key=lambda r: (r["earlier_intent"], r["message"]))
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="followups_second_reading.json")
    args = parser.parse_args()
    result = agreement()
    path = write_result(args.out, result)
    print(
        f"second reading agrees with the label on {result['agreement_followups']:.1%} of the dev half's "
        f"{result['followups_read']} follow-ups ({result['agreement_turns']:.1%} of its {result['followup_turns']} turns) -> {path}"
    )


if __name__ == "__main__":
    main()
