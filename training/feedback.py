"""Training examples from customers' votes and reviewers' corrections, with the noise filtered out.

What each signal means:
- a correction (a reviewer's label, or a clarification suggestion the customer picked) names the right
  intent: a full label, weighted most;
- an up-vote on an answer confirms the intent it was answered with: a positive example;
- a down-vote says that intent was wrong, without naming the right one: a *negative* example, trained
  with the complementary-label loss -log(1 - p(wrong intent)) (Ishida et al. 2017);
- votes on clarifications and handoffs carry no intent and are not used, nor are labels and votes on turns
  a customer started with a topic button (their "message" is the button's title, not words a customer wrote).

Noise filters, applied before any of that: floods (a session casting more than ``max_per_session``
votes keeps only its first ones), uniform voters (a session with at least ``uniform_min`` votes, all the
same way, is ignored: it votes on the bot, not on the answers), and contradictions (votes on the same
normalised query and intent that disagree are decided by majority; ties are dropped).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from core.types import CHOSE_PREFIX
from training.data import Example


@dataclass(frozen=True)
class FeedbackFilter:
    """Thresholds of the noise filters; serialised into the model card."""

    max_per_session: int = 20
    uniform_min: int = 8
    correction_weight: float = 2.0
    up_weight: float = 1.0
    down_weight: float = 0.5


@dataclass
class FeedbackDataset:
    examples: list[Example] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # what was used and what each filter dropped


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def build_feedback_dataset(rows: list[dict], labels: set[str], flt: FeedbackFilter = FeedbackFilter()) -> FeedbackDataset:
    """Turn the store's latest-vote-per-turn rows into weighted examples. See the module docstring."""
    out = FeedbackDataset()
    by_session: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_session[row["session_id"]].append(row)

    kept: list[dict] = []
    for session_rows in by_session.values():
        votes = [r["vote"] for r in session_rows if r["vote"] != 0 and not r["corrected_intent"]]
        if len(votes) >= flt.uniform_min and len(set(votes)) == 1:
            out.counts["dropped_uniform_session"] += len(session_rows)
            continue
        if len(session_rows) > flt.max_per_session:
            out.counts["dropped_flood"] += len(session_rows) - flt.max_per_session
            session_rows = session_rows[: flt.max_per_session]
        kept.extend(session_rows)

    # Corrections are labels: use them as they are (a later correction of a turn already superseded older ones).
    votes: dict[tuple[str, str], list[int]] = defaultdict(list)
    texts: dict[tuple[str, str], str] = {}
    for row in kept:
        if (row["message"] or "").startswith(CHOSE_PREFIX):
            out.counts["topic_button_turns"] += 1
            continue
        if row["corrected_intent"]:
            if row["corrected_intent"] in labels:
                out.examples.append(Example(row["message"], row["corrected_intent"], flt.correction_weight))
                out.counts["corrections"] += 1
                if row.get("source") == "agent":
                    out.counts["agent_labels"] += 1  # a person resolved a handoff with this intent
            continue
        if row["action"] != "answer" or row["intent"] not in labels or row["vote"] == 0:
            out.counts["unusable"] += 1
            continue
        key = (normalise(row["message"]), row["intent"])
        votes[key].append(row["vote"])
        texts.setdefault(key, row["message"])

    for key, vs in votes.items():
        total = sum(vs)
        if len(vs) > 1 and len(set(vs)) > 1:
            out.counts["contradictory_groups"] += 1
            if total == 0:
                out.counts["dropped_contradictory"] += len(vs)
                continue
        text, intent = texts[key], key[1]
        if total > 0:
            out.examples.append(Example(text, intent, flt.up_weight))
            out.counts["up"] += 1
        else:
            out.examples.append(Example(text, intent, flt.down_weight, negative=True))
            out.counts["down"] += 1
    return out
