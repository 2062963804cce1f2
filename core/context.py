"""What a follow-up's context is: the customer's recent questions in the same session.

Shared by serving, which reads a follow-up with them (``bot.conversation``), and training, which learns a
labelled follow-up as it was read (``FeedbackStore.context_messages``): "how long does it take?" corrected to
``transfer_timing`` teaches the model that reading after a transfer question, not that the words alone mean it.
Dialogflow keeps a context for 5 turns or 20 minutes; we keep the last 3 turns within 20 minutes.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CONTEXT_TURNS = 3
CONTEXT_WINDOW_S = 20 * 60
CONTEXT_ACTIONS = ("answer", "clarify")  # turns whose message is a question about the customer's matter


def window_start(now: datetime | None = None) -> str:
    """ISO time before which turns are too old to be context."""
    return ((now or datetime.now(timezone.utc)) - timedelta(seconds=CONTEXT_WINDOW_S)).isoformat(timespec="milliseconds")


def context_turns(turns: list[dict]) -> list[dict]:
    """Of a session's last ``CONTEXT_TURNS`` turns (newest first), the ones a follow-up leans on, newest first."""
    return [t for t in turns if t["action"] in CONTEXT_ACTIONS and t["message"]][: CONTEXT_TURNS - 1]
