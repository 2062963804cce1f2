"""The live slice: labels that real traffic produced in a fixed 1-in-10 of the sessions, never trained on.

The ticket validation split says how the model does on the tickets it was built from; the live slice says
how it does on what customers really ask. A session belongs to the slice by a hash of its id, so the slice
never moves and a session is never half in it. What its feedback rows become (after the same noise filters
as the training data, ``training.feedback``):

- labelled: a reviewer's or agent's correction, a clarification topic the customer picked, an up-voted
  answer. A model passes when it predicts that intent;
- down-voted: an answer voted down names an intent that was wrong. A model passes when it does not
  repeat that intent (the *repeat rate* is the share it repeats).

Outcomes are paired across models, so the gate compares them example by example. The serving model is
right on every up-vote and wrong on every down-vote it produced itself, so on its own traffic its score is
its real answer accuracy; a candidate scores higher only by fixing more complaints than it breaks answers.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

from training.data import Example
from training.feedback import FeedbackFilter, build_feedback_dataset

LIVE_BUCKETS = 10


def in_live_slice(session_id: str) -> bool:
    """Stable: the same session is always on the same side, whatever else is stored."""
    return zlib.crc32(("live:" + (session_id or "")).encode()) % LIVE_BUCKETS == 0


def split_rows(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(rows that may be trained on, rows of the live slice)."""
    train, live = [], []
    for row in rows:
        (live if in_live_slice(row["session_id"]) else train).append(row)
    return train, live


@dataclass
class LiveSlice:
    labelled: list[Example] = field(default_factory=list)
    down_voted: list[Example] = field(default_factory=list)  # label = the intent that was voted down
    counts: Counter = field(default_factory=Counter)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.labelled] + [e.text for e in self.down_voted]

    def __len__(self) -> int:
        return len(self.labelled) + len(self.down_voted)

    @classmethod
    def from_rows(cls, rows: list[dict], labels: set[str], flt: FeedbackFilter = FeedbackFilter()) -> LiveSlice:
        data = build_feedback_dataset(rows, labels, flt)
        return cls(
            labelled=[e for e in data.examples if not e.negative],
            down_voted=[e for e in data.examples if e.negative],
            counts=data.counts,
        )

    def outcomes(self, predicted: list[str]) -> list[bool]:
        """Pass/fail per example, for predictions in the order of ``texts``."""
        n = len(self.labelled)
        return [p == e.label for p, e in zip(predicted[:n], self.labelled)] + [p != e.label for p, e in zip(predicted[n:], self.down_voted)]

    def summary(self, outcomes: list[bool]) -> dict:
        n = len(self.labelled)
        right, kept_off = outcomes[:n], outcomes[n:]
        return {
            "labelled": n,
            "down_voted": len(self.down_voted),
            "accuracy": sum(right) / n if n else None,
            "repeat_rate": 1 - sum(kept_off) / len(kept_off) if kept_off else None,
            "score": sum(outcomes) / len(outcomes) if outcomes else None,
        }
