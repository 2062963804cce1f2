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


@migrations()
def m006_serving_pointer(db: Database) -> None:
    """Which model version serves, per kind: every move appended (promote, rollback), the latest one serves.
    In the database so every replica reads the same pointer and a promotion is one transaction."""
    db["serving"].create({"id": int, "kind": str, "version": str, "reason": str, "created_at": str}, pk="id")
    db["serving"].create_index(["kind"])


@migrations()
def m007_shared_ticket_index(db: Database) -> None:
    """The ticket index as data every replica can follow: each ticket's embedding, and an ordered log of ticket
    additions and deletions whose last id is the index version (a replica applies what it has not seen)."""
    db["ticket_vectors"].create({"ticket_id": int, "vector": bytes}, pk="ticket_id")
    db["ticket_changes"].create({"id": int, "ticket_id": int, "op": str, "created_at": str}, pk="id")


@migrations()
def m008_offered_alternatives(db: Database) -> None:
    """The topics "Did you mean…" offered after a down-vote, on the vote's row (JSON): a pick must be one of them."""
    db["feedback"].add_column("offered", str)


# ---- PostgreSQL: the same schema as SQL, applied once per name under an advisory lock (replicas may start
#      together). The first step creates what m001-m005 built on SQLite; later steps mirror later migrations.
#      Columns keep SQLite's types (ISO-8601 text timestamps, JSON as text) so a copy moves rows unchanged;
#      ``turns.rowid`` stands in for SQLite's implicit rowid (insertion order).
POSTGRES_MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_to_m005_schema",
        """
        create table tickets (
            id bigint generated by default as identity primary key, external_id text, question text not null,
            answer text not null, intent text, created_at text, source text, question_key text);
        create unique index idx_tickets_question_key on tickets (question_key);
        create index idx_tickets_intent on tickets (intent);
        create table turns (
            rowid bigserial, id text primary key, session_id text, created_at text, message text, action text,
            text text, intent text, confidence double precision, suggestions text, sources text, model_version text,
            latency_ms double precision, notice text, ranker_version text, context_turn_id text, next_questions text,
            offer_person integer, state text, agent text);
        create index idx_turns_session_id on turns (session_id);
        create table feedback (
            id bigint generated by default as identity primary key, turn_id text references turns (id), vote integer,
            comment text, corrected_intent text, source text, created_at text);
        create index idx_feedback_turn_id on feedback (turn_id);
        create table session_events (
            id bigint generated by default as identity primary key, session_id text, event text, created_at text,
            author text, text text, data text);
        create index idx_session_events_session_id on session_events (session_id);
        create index idx_session_events_event on session_events (event);
        create table agents (name text primary key, password_hash text, created_at text, last_seen_at text);
        create table contacts (id bigint generated by default as identity primary key, session_id text, contact text, message text, created_at text);
        create index idx_contacts_session_id on contacts (session_id);
        """,
    ),
    (
        "m006_serving_pointer",
        """
        create table serving (id bigint generated by default as identity primary key, kind text, version text, reason text, created_at text);
        create index idx_serving_kind on serving (kind);
        """,
    ),
    (
        "m007_shared_ticket_index",
        """
        create table ticket_vectors (ticket_id bigint primary key, vector bytea);
        create table ticket_changes (id bigint generated by default as identity primary key, ticket_id bigint, op text, created_at text);
        """,
    ),
    ("m008_offered_alternatives", "alter table feedback add column offered text;"),
]


def apply_postgres(conn) -> list[str]:
    """Apply the PostgreSQL migrations not applied yet (``conn`` in autocommit mode); returns their names."""
    applied = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(7172302)")  # one replica migrates, the others wait and see it done
        conn.execute("create table if not exists _csbot_migrations (name text primary key, applied_at timestamptz default now())")
        done = {r[0] for r in conn.execute("select name from _csbot_migrations")}
        for name, sql in POSTGRES_MIGRATIONS:
            if name not in done:
                conn.execute(sql)
                conn.execute("insert into _csbot_migrations (name) values (%s)", [name])
                applied.append(name)
    return applied
