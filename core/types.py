"""The data contracts of DESIGN.md as frozen dataclasses: every step returns new objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

Action = Literal["answer", "clarify", "handoff"]
CHOSE_PREFIX = "[chose suggestion] "  # the stored message of a turn started with a topic button, not with words


@dataclass(frozen=True)
class Ticket:
    """A resolved historical support ticket: a customer's question and the answer that resolved it."""

    id: int
    question: str
    answer: str
    intent: str = ""
    created_at: str = ""
    source: str = ""
    external_id: str = ""


@dataclass(frozen=True)
class Source:
    """A ticket an answer was drawn from, with its ranking score."""

    ticket_id: int
    score: float
    intent: str = ""
    question: str = ""


@dataclass(frozen=True)
class Suggestion:
    """An intent offered when the bot asks the customer to clarify."""

    intent: str
    title: str
    probability: float


@dataclass(frozen=True)
class Reply:
    """What the bot says for one turn; the same object feeds the UI, the REST API, the widget and the CLI."""

    turn_id: str
    session_id: str
    action: Action
    text: str
    intent: str
    confidence: float
    suggestions: list[Suggestion] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    model_version: str = ""  # the intent model's version
    ranker_version: str = ""
    latency_ms: float = 0.0
    notice: str = ""
    context_turn_id: str = ""  # the earlier turn this message was understood with ("" = understood alone)
    next_questions: list[Suggestion] = field(default_factory=list)  # "customers also asked", learnt from sessions
    offer_person: bool = False  # the customer seems frustrated (or the bot is unsure): show "talk to a person"
    state: str = "bot"  # who has the conversation after this turn: bot, waiting (for a person) or assigned (to one)
    agent: str = ""  # the person who has it, when assigned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CustomerFeedback(NamedTuple):
    """What the customer has said about one turn so far (``FeedbackStore.customer_feedback``)."""

    vote: int  # the latest vote, 0 if none
    picked: str  # the topic their latest row picked, "" if none
    offered: list[str]  # the topics offered after their latest down-vote ("Did you mean…"), [] if none


@dataclass(frozen=True)
class VoteReceipt:
    """What a vote gets back: its row id, whether to offer a person now, and after a down-vote on an answer the
    other topics the message could be about ("Did you mean…"): picking one labels the message, as a
    clarification does, so a down-vote can teach the right intent and not only that the answer was wrong."""

    feedback_id: int
    offer_person: bool = False
    alternatives: list[Suggestion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Feedback:
    """A vote on a turn. Append-only: a newer vote on the same turn supersedes the older when training reads it."""

    turn_id: str
    vote: int  # +1 up, -1 down, 0 for a correction without a vote
    comment: str = ""
    corrected_intent: str = ""
    source: Literal["customer", "reviewer", "agent"] = "customer"
    created_at: str = ""
    offered: list[str] = field(default_factory=list)  # the topics "Did you mean…" offered in reply to this down-vote
