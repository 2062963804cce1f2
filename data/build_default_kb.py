"""Rebuild the bundled knowledge base from BANKING77 (run by maintainers, not at run time).

The product ships the generated ``tickets.csv`` and ``eval.csv`` so a fresh clone needs
nothing outside ``data/``. Usage: ``python data/build_default_kb.py ../shared/datasets/banking77``.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CREATED_AT = "2020-04-01T00:00:00Z"  # BANKING77's publication; the queries carry no timestamps


def main(src: Path) -> None:
    answers = {row["intent"]: row["answer"] for row in csv.DictReader((HERE / "answers.csv").open())}
    with (src / "train.csv").open() as f, (HERE / "tickets.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "question", "answer", "intent", "created_at", "source"])
        for i, row in enumerate(csv.DictReader(f), 1):
            intent = row["category"]
            writer.writerow([f"b77-{i:05d}", row["text"].strip(), answers[intent], intent, CREATED_AT, "banking77"])
    with (src / "test.csv").open() as f, (HERE / "eval.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "intent"])
        for row in csv.DictReader(f):
            writer.writerow([row["text"].strip(), row["category"]])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
