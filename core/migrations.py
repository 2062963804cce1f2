"""Database schema as sqlite-utils migrations: applied on every open, each exactly once."""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("csbot")


@migrations()
def m001_tickets(db: Database) -> None:
    db["tickets"].create(
        {
            "id": int,
            "external_id": str,
            "question": str,
            "answer": str,
            "intent": str,
            "created_at": str,
            "source": str,
            "question_key": str,  # normalised question + answer: identical tickets are stored once
        },
        pk="id",
        not_null={"question", "answer"},
    )
    db["tickets"].create_index(["question_key"], unique=True)
    db["tickets"].create_index(["intent"])


@migrations()
def m002_turns_and_feedback(db: Database) -> None:
    db["turns"].create(
        {
            "id": str,
            "session_id": str,
            "created_at": str,
            "message": str,  # redacted
            "action": str,
            "text": str,
            "intent": str,
            "confidence": float,
            "suggestions": str,  # JSON
            "sources": str,  # JSON
            "model_version": str,
            "latency_ms": float,
            "notice": str,
        },
        pk="id",
    )
    db["turns"].create_index(["session_id"])
    db["feedback"].create(
        {
            "id": int,
            "turn_id": str,
            "vote": int,
            "comment": str,  # redacted
            "corrected_intent": str,
            "source": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("turn_id", "turns", "id")],
    )
    db["feedback"].create_index(["turn_id"])
    db["session_events"].create(
        {"id": int, "session_id": str, "event": str, "created_at": str},
        pk="id",
    )
    db["session_events"].create_index(["session_id"])


@migrations()
def m003_ranker_version(db: Database) -> None:
    db["turns"].add_column("ranker_version", str)


@migrations()
def m004_conversation_context(db: Database) -> None:
    db["turns"].add_column("context_turn_id", str)  # which earlier turn a follow-up was understood with
    db["turns"].add_column("next_questions", str)  # JSON: the "customers also asked" offered after an answer


@migrations()
def m005_people_take_over(db: Database) -> None:
    """session_events becomes the conversation's event log: state changes and what people say, one id sequence.

    Old rows keep their meaning: 'handoff' is now 'waiting' (for a person), 'release' is 'bot'.
    """
    db["session_events"].add_column("author", str)  # the agent's name, or 'customer'
    db["session_events"].add_column("text", str)  # redacted
    db["session_events"].add_column("data", str)  # JSON
    db.execute("update session_events set event = 'waiting' where event = 'handoff'")
    db.execute("update session_events set event = 'bot' where event = 'release'")
    db["session_events"].create_index(["event"])
    db["turns"].add_column("offer_person", int)  # the bot offered a person (frustration, or unsure)
    db["turns"].add_column("state", str)  # who had the conversation after the turn: bot, waiting, assigned
    db["turns"].add_column("agent", str)
    db["agents"].create({"name": str, "password_hash": str, "created_at": str, "last_seen_at": str}, pk="name")
    # Contact addresses live here only: never in turns, exports or training data; deletable.
    db["contacts"].create({"id": int, "session_id": str, "contact": str, "message": str, "created_at": str}, pk="id")
    db["contacts"].create_index(["session_id"])
