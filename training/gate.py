"""The promotion gate: may a candidate serve in place of the current model? Pure functions over outcomes.

A retrain runs unattended, so the gate must keep a chain of retrains from walking the bot downwards. It
looks at two evaluation sets, both never trained on: the ticket validation split and the *live slice*
(labels that real traffic produced in a fixed 1-in-10 of the sessions, see ``training.live_slice``).
Each example is a pass or a fail for a model, and the rules below are checked in order; the first that
refuses names itself in the card:

0. ``suspect feedback`` (only when the candidate learnt from feedback): the votes cast since serving was
   trained say "wrong" to the serving model's *confident* answers far more often than its validation
   precision at that confidence allows (``suspect_votes``). Thirty per cent of customers voting against every
   right answer, a broken widget or coin-flip votes look like this; the candidate learnt from them, so a
   person should look before it serves, whatever its scores (a poisoned candidate can score within noise
   of serving: the poison also sits in the live slice it is measured on).
1. ``significance``: the candidate is worse than serving on the ticket split or on the live slice by an
   exact McNemar test (p < 0.05). Catches a poisoned retrain whatever the split size.
2. ``drift``: on both sets together, the candidate's pass rate is lower than the best of the recent chain
   (the last versions that served, serving included) by more than ``DRIFT_TOLERANCE`` or
   ``DRIFT_MIN_QUERIES`` queries, whichever is larger. Comparing with the best of the chain and not only
   with serving is what stops small losses adding up round after round: each must stay within the
   tolerance of the best point reached, not of the last step down.
3. ``forgetting``: accuracy on the replayed seed tickets dropped by more than ``MAX_SEED_DROP``.

The ranker has a gate of its own (``ranker_gate``): neither hit@1 nor MRR@10 may be lower than any
alternative's (FAISS order, the baseline that serves without a learned ranker, the serving ranker) on
held-out queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy.stats import binomtest

GATE_ALPHA = 0.05  # significance rule: refuse when worse than serving at this significance
DRIFT_TOLERANCE = 0.005  # drift rule: at most half a point below the best recent version ...
DRIFT_MIN_QUERIES = 2  # ... or two queries on a small split, where one query is more than half a point
CHAIN_LENGTH = 5  # how many of the versions that served last the drift rule compares with
MAX_SEED_DROP = 0.01  # forgetting rule: seed-ticket accuracy may drop by at most one point
CONFIDENT = 0.9  # suspect-feedback rule: answers at least this confident (calibrated) ...
DOWN_ALLOWANCE = 0.2  # ... may be voted down this much more often than validation says they are wrong
MIN_CONFIDENT_VOTES = 30  # ... judged only on this many votes or more


@dataclass(frozen=True)
class Outcomes:
    """One model's pass (True) or fail per example: ticket validation split, then the live slice."""

    tickets: list[bool]
    live: list[bool] = field(default_factory=list)

    @property
    def combined(self) -> list[bool]:
        return self.tickets + self.live

    @staticmethod
    def rate(passes: list[bool]) -> float | None:
        return sum(passes) / len(passes) if passes else None


@dataclass(frozen=True)
class GateDecision:
    promoted: bool
    rule: str  # which rule decided: "first model", "significance", "drift", "forgetting" or "all rules passed"
    reason: str
    best_of_chain: str | None = None


def significantly_worse(candidate: list[bool], serving: list[bool], alpha: float = GATE_ALPHA) -> tuple[bool, str]:
    """Exact McNemar test on paired outcomes: is the candidate worse than serving beyond sampling noise?"""
    lost = sum(s and not c for c, s in zip(candidate, serving))  # serving passed, candidate failed
    won = sum(c and not s for c, s in zip(candidate, serving))
    p_value = binomtest(lost, lost + won, 0.5, alternative="greater").pvalue if lost > won else 1.0
    return p_value < alpha, f"won {won}, lost {lost} of {len(candidate)} (McNemar p={p_value:.3g})"


def drift_tolerance(n: int) -> int:
    """How many passes fewer than the best recent version a candidate may have on ``n`` examples."""
    return max(math.floor(DRIFT_TOLERANCE * n), DRIFT_MIN_QUERIES)


def drifts_down(candidate: list[bool], chain: dict[str, list[bool]]) -> tuple[bool, str, str | None]:
    """Is the candidate's pass count more than the tolerance below the best version of the chain?"""
    if not chain or not candidate:
        return False, "no earlier version to compare with", None
    best = max(chain, key=lambda v: (sum(chain[v]), v))
    n, allowed = len(candidate), drift_tolerance(len(candidate))
    behind = sum(chain[best]) - sum(candidate)
    detail = f"{sum(candidate)}/{n} vs best recent {best} {sum(chain[best])}/{n} (tolerance {allowed})"
    return behind > allowed, detail, best


@dataclass(frozen=True)
class VoteAudit:
    """Customers' votes on the serving model's confident answers, against what its validation predicts."""

    confident_votes: int
    down_votes: int
    expected_wrong: float  # 1 - serving's validation precision at >= CONFIDENT
    suspect: bool
    detail: str

    @property
    def down_share(self) -> float | None:
        return self.down_votes / self.confident_votes if self.confident_votes else None


def suspect_votes(votes: list[tuple[float, int]], serving_precision: float | None, alpha: float = 0.01) -> VoteAudit:
    """(confidence, vote) of the new votes on answers: are confident answers voted down beyond belief?

    Honest customers vote down a confident answer when it is wrong (``1 - precision``) and sometimes when
    it is right but unwelcome (``DOWN_ALLOWANCE``). Suspect when the down share exceeds both together by a
    one-sided binomial test at ``alpha``, on at least ``MIN_CONFIDENT_VOTES`` votes.
    """
    confident = [v for c, v in votes if c >= CONFIDENT and v != 0]
    down = sum(v < 0 for v in confident)
    expected = 1.0 - (serving_precision if serving_precision is not None else 0.9)
    limit = min(expected + DOWN_ALLOWANCE, 0.95)
    p_value = binomtest(down, len(confident), limit, alternative="greater").pvalue if confident else 1.0
    suspect = len(confident) >= MIN_CONFIDENT_VOTES and p_value < alpha
    share = f"{down / len(confident):.1%}" if confident else "n/a"
    detail = (
        f"{down} of {len(confident)} new votes on answers at >= {CONFIDENT:.0%} confidence are down-votes ({share}); "
        f"serving is wrong on {expected:.1%} of such validation answers, so at most {limit:.0%} is believable (binomial p={p_value:.3g})"
    )
    return VoteAudit(len(confident), down, expected, suspect, detail)


def refuse_suspect_feedback(votes: VoteAudit | None) -> GateDecision | None:
    """Rule 0 alone. It needs no candidate, so a retrain checks it before training (no time spent on a refusal)."""
    if votes is None or not votes.suspect:
        return None
    return GateDecision(
        False,
        "suspect feedback",
        f"the feedback it would learn from looks poisoned or broken: {votes.detail}. "
        "Review the recent down-votes (admin console, Review) before retraining on them",
    )


def decide(
    candidate: Outcomes,
    serving: Outcomes | None,
    chain: dict[str, Outcomes],
    *,
    seed_accuracy: float | None = None,
    serving_seed_accuracy: float | None = None,
    votes: VoteAudit | None = None,
) -> GateDecision:
    """Apply the rules of the module docstring in order; ``chain`` maps recent versions (serving included) to outcomes.

    ``votes`` is the audit of the feedback the candidate learnt from (None when it learnt from tickets only).
    """
    if serving is None:
        return GateDecision(True, "first model", "first model")
    if (refusal := refuse_suspect_feedback(votes)) is not None:
        return refusal
    worse_tickets, tickets_detail = significantly_worse(candidate.tickets, serving.tickets)
    worse_live, live_detail = significantly_worse(candidate.live, serving.live) if candidate.live else (False, "no live slice yet")
    detail = f"tickets: {tickets_detail}; live slice: {live_detail}"
    if worse_tickets or worse_live:
        where = " and ".join(name for name, bad in (("the ticket validation split", worse_tickets), ("the live slice", worse_live)) if bad)
        return GateDecision(False, "significance", f"worse than serving on {where}: {detail}")
    drifted, drift_detail, best = drifts_down(candidate.combined, {v: o.combined for v, o in chain.items()})
    if drifted:
        return GateDecision(False, "drift", f"below the best recent version: {drift_detail}", best)
    if seed_accuracy is not None and serving_seed_accuracy is not None and seed_accuracy < serving_seed_accuracy - MAX_SEED_DROP:
        return GateDecision(
            False, "forgetting", f"forgets replayed tickets: seed accuracy {seed_accuracy:.4f} < serving {serving_seed_accuracy:.4f} - {MAX_SEED_DROP}", best
        )
    return GateDecision(True, "all rules passed", f"not worse: {detail}; {drift_detail}", best)


def rules_text() -> str:
    return (
        f"refuse when (0) it learnt from votes that down-vote serving's answers at >= {CONFIDENT:.0%} confidence more often than "
        f"its validation error there + {DOWN_ALLOWANCE:.0%} (binomial, p < 0.01); "
        f"(1) worse than serving on the ticket validation split or the live slice (exact McNemar, p < {GATE_ALPHA}); "
        f"(2) below the best of the last {CHAIN_LENGTH} serving versions on both together by more than "
        f"{DRIFT_TOLERANCE:.1%} or {DRIFT_MIN_QUERIES} queries; (3) seed-ticket accuracy below serving's - {MAX_SEED_DROP}"
    )


def worse_intents(candidate: dict, serving: dict, tolerance: float = 0.05) -> list[str]:
    """Intents whose F1 dropped by more than ``tolerance``: the regressions a reviewer should look at."""
    return sorted(label for label, scores in serving["per_intent"].items() if scores["f1"] - candidate["per_intent"].get(label, {"f1": 0.0})["f1"] > tolerance)


def ranker_gate(candidate: tuple[float, float], alternatives: dict[str, tuple[float, float]]) -> tuple[bool, str]:
    """(hit@1, MRR@10) of a candidate ranker against each alternative's: promoted only if lower on neither."""
    lines, ok = [], True
    for name, (hit1, mrr) in alternatives.items():
        fine = candidate[0] >= hit1 and candidate[1] >= mrr
        ok &= fine
        lines.append(f"{'not below' if fine else 'below'} {name} (hit@1 {candidate[0]:.4f} vs {hit1:.4f}, MRR@10 {candidate[1]:.4f} vs {mrr:.4f})")
    return ok, "; ".join(lines)
