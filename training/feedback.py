"""Training examples from customers' votes and reviewers' corrections, with the noise filtered out.

What each signal means:
- a correction (a reviewer's label, or a clarification suggestion the customer picked) names the right
  intent: a full label, weighted most;
- an up-vote on an answer confirms the intent it was answered with: a positive example;
- a down-vote says that intent was wrong, without naming the right one: a *negative* example, trained
  with the complementary-label loss -log(1 - p(wrong intent)) (Ishida et al. 2017);
- votes on clarifications and handoffs carry no intent and are not used, nor are labels and votes on turns
  a customer started with a topic button (their "message" is the button's title, not words a customer wrote).

How much a vote is believed: customers slip, and vote on the policy rather than on the answer ("no refunds?
thumbs down"). From all votes on answers and the confidence (calibrated) each answer was given with, the share
of votes that say the opposite of the truth is estimated by maximum likelihood (``estimate_vote_noise``: a
down-vote on an answer the model was 97% sure of is far more often such a slip than a wrong answer). Each vote's
weight is then multiplied by the probability that it is true (``vote_belief``). Without this, on the simulated
loop at 10% flipped votes more than half the down-votes sat on right answers and pushed the right intent down.

Noise filters, applied before any of that: floods (a session casting more than ``max_per_session``
votes keeps only its first ones), uniform voters (a session with at least ``uniform_min`` votes, all the
same way, is ignored: it votes on the bot, not on the answers), and contradictions (votes on the same
normalised query and intent that disagree are decided by majority; ties are dropped).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from core.types import CHOSE_PREFIX
from retrieval.intent import with_context
from training.data import Example


@dataclass(frozen=True)
class FeedbackFilter:
    """Thresholds of the noise filters; serialised into the model card."""

    max_per_session: int = 20
    uniform_min: int = 8
    correction_weight: float = 2.0
    up_weight: float = 1.0
    down_weight: float = 0.5
    weigh_by_belief: bool = True  # multiply each vote's weight by the probability that it is true (module docstring)
    min_votes_for_noise: int = 100  # fewer votes on answers: no noise estimate, every vote fully believed


@dataclass
class FeedbackDataset:
    examples: list[Example] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # what was used and what each filter dropped
    vote_noise: float | None = None  # estimated share of votes that say the opposite of the truth (None: not estimated)


def estimate_vote_noise(votes: list[tuple[float, int]]) -> float:
    """Maximum-likelihood share ``e`` of flipped votes, given (confidence, vote) pairs on answers.

    A calibrated answer at confidence ``c`` is right with probability ``c``; a vote tells the truth with
    probability ``1 - e``, so P(down | c) = (1 - c)(1 - e) + c e. The likelihood is concave in ``e``; a grid
    over [0, 0.5] is exact enough and has no failure modes.
    """
    conf = np.clip(np.array([c for c, _ in votes], dtype=float), 0.0, 1.0)
    down = np.array([v < 0 for _, v in votes])
    grid = np.linspace(0.0, 0.5, 101)[:, None]
    p_down = np.clip((1 - conf) * (1 - grid) + conf * grid, 1e-9, 1 - 1e-9)
    loglik = np.where(down, np.log(p_down), np.log1p(-p_down)).sum(axis=1)
    return float(grid[int(np.argmax(loglik)), 0])


def vote_belief(confidence: float, vote: int, noise: float) -> float:
    """P(the vote is true | the answer's confidence, the vote, noise rate): Bayes with the confidence as prior."""
    c = min(max(confidence, 0.0), 1.0)
    p_right, p_wrong = c, 1 - c
    if vote > 0:
        return p_right * (1 - noise) / max(p_right * (1 - noise) + p_wrong * noise, 1e-9)
    return p_wrong * (1 - noise) / max(p_wrong * (1 - noise) + p_right * noise, 1e-9)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def as_read(row: dict) -> str:
    """The text to learn a turn's label from: a follow-up read with its context is learnt with it ("how long does
    it take?" after a transfer question), so the label teaches that reading, not that the words alone mean it."""
    return with_context(row["context"], row["message"]) if row.get("context") else row["message"]


def followup_of(row: dict) -> tuple[tuple[str, ...], str] | None:
    """A follow-up's earlier messages and the message, as it was read (the follow-up reader learns from them)."""
    return (tuple(row["context"]), row["message"]) if row.get("context") else None


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
    confidences: dict[tuple[str, str], list[float]] = defaultdict(list)
    texts: dict[tuple[str, str], str] = {}
    followups: dict[tuple[str, str], tuple[tuple[str, ...], str] | None] = {}
    picked: list[tuple[float, int]] = []  # a down-vote kept beside a picked alternative: a vote the noise estimate needs
    for row in kept:
        if (row["message"] or "").startswith(CHOSE_PREFIX):
            out.counts["topic_button_turns"] += 1
            continue
        text = as_read(row)
        if row["corrected_intent"]:
            if row["vote"] != 0 and row["action"] == "answer" and row.get("confidence") is not None:
                picked.append((float(row["confidence"]), row["vote"]))
            if row["corrected_intent"] in labels:
                out.examples.append(Example(text, row["corrected_intent"], flt.correction_weight, followup=followup_of(row)))
                out.counts["corrections"] += 1
                if row.get("source") == "agent":
                    out.counts["agent_labels"] += 1  # a person resolved a handoff with this intent
            continue
        if row["action"] != "answer" or row["intent"] not in labels or row["vote"] == 0:
            out.counts["unusable"] += 1
            continue
        key = (normalise(text), row["intent"])
        votes[key].append(row["vote"])
        if row.get("confidence") is not None:
            confidences[key].append(float(row["confidence"]))
        texts.setdefault(key, text)
        followups.setdefault(key, followup_of(row))

    noise = 0.0
    scored = [(c, v) for key, vs in votes.items() for c, v in zip(confidences[key], vs)] + picked
    if flt.weigh_by_belief and len(scored) >= flt.min_votes_for_noise:
        noise = out.vote_noise = estimate_vote_noise(scored)

    def belief(key: tuple[str, str], vote: int) -> float:
        known = confidences.get(key)
        return vote_belief(sum(known) / len(known), vote, noise) if known and noise > 0 else 1.0

    for key, vs in votes.items():
        total = sum(vs)
        if len(vs) > 1 and len(set(vs)) > 1:
            out.counts["contradictory_groups"] += 1
            if total == 0:
                out.counts["dropped_contradictory"] += len(vs)
                continue
        text, intent = texts[key], key[1]
        if total > 0:
            out.examples.append(Example(text, intent, flt.up_weight * belief(key, 1), followup=followups[key]))
            out.counts["up"] += 1
        else:
            out.examples.append(Example(text, intent, flt.down_weight * belief(key, -1), negative=True, followup=followups[key]))
            out.counts["down"] += 1
    return out
