"""Build ``data/conversations.csv``: the follow-up evaluation set (never trained on, see data/README.md).

Every conversation opens with a BANKING77 *test* query (``eval.csv``). Then, from the hand-written bank
(``followup_bank.py``):
- one two-turn conversation per follow-up of the bank: the opening query's intent, then the follow-up;
- for every other follow-up, also a three-turn conversation (another opening query), continued with a
  follow-up of the second turn's intent;
- 60 conversations whose second turn is another, unrelated test query (``kind=standalone``): context must
  leave those alone.
Halves: the bank's follow-ups alternate between ``dev`` and ``test`` within each intent (a text written
after two intents, like "is it free?", stays in the half of its first), and a three-turn conversation only
continues with follow-ups of its own half, so no follow-up text is in both halves.

Usage: python data/build_conversations.py   (deterministic: rewrites the same file)
"""

from __future__ import annotations

import csv
import random
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from followup_bank import FOLLOWUPS  # noqa: E402

STANDALONE = 60


def build(seed: int = 15) -> list[dict]:
    rng = random.Random(seed)
    with (HERE / "eval.csv").open(newline="") as f:
        test = list(csv.DictReader(f))
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in test:
        by_intent[row["intent"]].append(row["question"])
    for questions in by_intent.values():
        rng.shuffle(questions)
    used: dict[str, int] = defaultdict(int)

    def opening(intent: str) -> str:
        """A test query of ``intent``, each used once before any is used again."""
        questions = by_intent[intent]
        used[intent] += 1
        return questions[(used[intent] - 1) % len(questions)]

    half_of_text: dict[str, str] = {}
    for entries in FOLLOWUPS.values():
        for k, (_, text) in enumerate(entries):
            half_of_text.setdefault(text, "dev" if k % 2 == 0 else "test")
    split_of = {(a, text): half_of_text[text] for a, entries in FOLLOWUPS.items() for _, text in entries}
    rows: list[dict] = []

    def add(turns: list[tuple[str, str, str]], split: str) -> None:
        cid = f"c{len({r['conversation'] for r in rows}) + 1:04d}"
        for i, (message, intent, kind) in enumerate(turns, start=1):
            rows.append({"conversation": cid, "turn": i, "message": message, "intent": intent, "kind": kind, "split": split})

    n = 0
    for a, entries in FOLLOWUPS.items():
        for b, text in entries:
            split = split_of[(a, text)]
            add([(opening(a), a, "first"), (text, b, "followup")], split)
            same_half = [(c, t) for c, t in FOLLOWUPS[b] if split_of[(b, t)] == split and t != text]
            if n % 2 == 0 and same_half:
                c, t = rng.choice(same_half)
                add([(opening(a), a, "first"), (text, b, "followup"), (t, c, "followup")], split)
            n += 1
    intents = sorted(FOLLOWUPS)
    for i in range(STANDALONE):
        a = rng.choice(intents)
        other = rng.choice([x for x in intents if x != a])
        add([(opening(a), a, "first"), (opening(other), other, "standalone")], "dev" if i % 2 == 0 else "test")
    return rows


def main() -> None:
    rows = build()
    out = HERE / "conversations.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    convs = {r["conversation"]: r["split"] for r in rows}
    print(f"{out}: {len(convs)} conversations, {len(rows)} turns; test half: {sum(s == 'test' for s in convs.values())} conversations")


if __name__ == "__main__":
    main()
