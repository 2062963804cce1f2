"""Conversation context: a follow-up is understood with the turns before it, a standalone question alone.

What the customer said in the last ``CONTEXT_TURNS`` turns of the session, within ``CONTEXT_WINDOW_S``, is
the context (``core.context``, shared with training). A message
is read with its context only when it looks like a follow-up (``looks_like_followup``): short, opening with
"and", "what about", "ok", or leaning on a word that points back ("it", "that", "again"), and too unsure alone
to be answered; *and* when it names no topic (a card, a transfer, a top-up: ``core.topics``) that the context
has not named (``Context.carries``). The model then reads the context and the message together, and the two
readings are combined (``combine``): the message alone says what is asked ("how long", "is there a fee"), the
context says about what ("a transfer abroad", "a lost card"). A model with a follow-up reader
(``retrieval.followup_reader``) reads short messages with their context up to a higher bar and without the
topic rule (``context_bar``, ``Context.leans_on``), and its reading replaces the plain mixture.

Why the topic rule: many complete questions contain "it" or "my card ... it". Without it, each of the 3,080
BANKING77 test queries sent after another one was answered 0.55 points worse than alone (the issue allows 0.2);
with it, 0.10 points worse (quick model, benchmarks/followups.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from core.context import CONTEXT_TURNS, CONTEXT_WINDOW_S, context_turns, window_start
from core.topics import topics_named
from retrieval.followup_reader import READ_BELOW, READ_WORDS
from retrieval.intent import IntentPrediction, with_context

__all__ = ["CONTEXT_TURNS", "CONTEXT_WINDOW_S", "Context", "combine", "context_bar", "context_from_turns", "looks_like_followup", "window_start"]
POINTS_BACK = re.compile(
    r"^\s*(and|but|so|or|ok|okay|also|actually|now|then|what about|how about)\b"
    r"|\b(it|its|it's|that|this|those|these|them|they|one|there|again|too|either|instead|same|still|mine)\b",
    re.IGNORECASE,
)
SHORT_WORDS = 6


@dataclass(frozen=True)
class Context:
    """The earlier messages a follow-up is read with, oldest first, and the turn it follows."""

    messages: list[str]
    turn_id: str

    def text_with(self, message: str) -> str:
        return with_context(self.messages, message)

    def carries(self, message: str) -> bool:
        """The message names no topic the context has not named: it leans on the context rather than
        changing the subject ("how long will the new card take?" after a lost card, not "and my top-up?")."""
        return topics_named(message) <= topics_named(" ".join(self.messages))

    def leans_on(self, message: str, reads_followups: bool) -> bool:
        """Read ``message`` with this context? When it names no new topic (``carries``); with a follow-up reader
        (``retrieval.followup_reader``) also when it has at most ``READ_WORDS`` words. The topic rule turns away
        short follow-ups that name a generic topic ("can i do it in the app?", "will i get the money back?": 55 of
        the dev half's 277 follow-ups were never read with context); the reader, fitted on complete questions
        after unrelated ones as well, leaves a short question that stands on its own to its own words."""
        return self.carries(message) or (reads_followups and len(message.split()) <= READ_WORDS)


def context_from_turns(turns: list[dict]) -> Context | None:
    """``turns`` newest first (``FeedbackStore.recent_turns``); None when there is nothing to read a message with."""
    lean_on = context_turns(turns)
    if not lean_on:
        return None
    return Context([t["message"] for t in reversed(lean_on)], lean_on[0]["id"])


def looks_like_followup(message: str, alone: IntentPrediction, below: float) -> bool:
    """Short or pointing back, and less than ``below`` sure alone (``context_bar``): worth reading the context for."""
    cue = len(message.split()) <= SHORT_WORDS or bool(POINTS_BACK.search(message))
    return cue and alone.confidence < below


def context_bar(message: str, answer_threshold: float, reads_followups: bool) -> float:
    """How unsure alone a follow-up-like message must be to be read with its context: with a follow-up reader
    (``retrieval.followup_reader``) a short one up to ``READ_BELOW``, else below the answer threshold."""
    if reads_followups and len(message.split()) <= READ_WORDS:
        return READ_BELOW
    return answer_threshold


def combine(alone: IntentPrediction, with_context: IntentPrediction, weight_alone: float = 0.5, floor: float = 1e-4) -> IntentPrediction:
    """Geometric mixture of the two readings, renormalised: an intent must fit the message *and* the context."""
    p_alone = dict(zip(alone.labels, alone.probabilities))
    p_context = dict(zip(with_context.labels, with_context.probabilities))
    scores = {
        label: math.exp(weight_alone * math.log(p_alone.get(label, floor)) + (1 - weight_alone) * math.log(p_context.get(label, floor)))
        for label in set(p_alone) | set(p_context)
    }
    total = sum(scores.values())
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])[: max(len(alone.labels), len(with_context.labels))]
    return IntentPrediction([label for label, _ in ranked], [score / total for _, score in ranked])
