"""The feedback store: the one place that writes SQL. Append-only for turns, votes and events.

Turns, votes and session events are only ever inserted; a correction is a new row. It runs on SQLite (the
default: one file in WAL mode, written through sqlite-utils) or PostgreSQL (``CSBOT_DATABASE_URL``), both
behind ``core.database``; every query below is written once for both.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from core.context import CONTEXT_TURNS, context_turns, window_start
from core.database import STORAGE_UNAVAILABLE, PostgresDatabase, SQLiteDatabase, open_database
from core.errors import InputError, UnknownTurn
from core.redact import redact
from core.types import CustomerFeedback, Feedback, Reply, Ticket

MAX_COMMENT_CHARS = 2000
STATES = ("waiting", "assigned", "resolved", "bot")  # the events that change who answers a conversation
EVENTS = frozenset(STATES) | {"customer", "agent", "note", "offer_message", "contact_left"}
_STATE_SQL = ", ".join(f"'{s}'" for s in STATES)
LATEST_VOTES = "select max(id) from feedback where source = 'customer' and vote != 0 group by turn_id"  # each voted turn once
# every table the store owns, in copy order
TABLES = (
    "tickets",
    "ticket_vectors",
    "ticket_changes",
    "turns",
    "feedback",
    "session_events",
    "agents",
    "contacts",
    "serving",
)
COPY_KEYS = {
    "tickets": "id",
    "ticket_vectors": "ticket_id",
    "ticket_changes": "id",
    "turns": "rowid",
    "feedback": "id",
    "session_events": "id",
    "agents": "name",
    "contacts": "id",
    "serving": "id",
}
__all__ = ["STORAGE_UNAVAILABLE", "FeedbackStore", "utc_now"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    """Append-only store of turns, votes and conversation events (plus tickets, agents and contacts).

    ``location`` is a SQLite file path, ``:memory:``, or a ``postgresql://`` URL.

    Example:
        >>> store = FeedbackStore(":memory:")
        >>> store.session_state("s1")
        'bot'
    """

    def __init__(self, location: str | Path, *, busy_timeout_s: float = 30.0, max_size_mb: float = 0.0, pool_size: int = 20) -> None:
        self.sql: SQLiteDatabase | PostgresDatabase = open_database(location, busy_timeout_s=busy_timeout_s, max_size_mb=max_size_mb, pool_size=pool_size)
        self.dialect = self.sql.dialect

    @property
    def path(self) -> str:
        return self.sql.path

    @property
    def db(self):
        """The sqlite-utils Database of this thread (SQLite only): for tests and tools that inspect the file."""
        if not isinstance(self.sql, SQLiteDatabase):
            raise AttributeError("store.db exists on SQLite only; use the store's methods")
        return self.sql.db

    def close(self) -> None:
        self.sql.close()

    # ---- writes (insert only) -------------------------------------------------------------
    def append_turn(self, reply: Reply, message: str) -> None:
        """Record one bot turn with the customer's (redacted) message."""
        row = asdict(reply)
        row.update(
            id=row.pop("turn_id"),
            created_at=utc_now(),
            message=redact(message),
            suggestions=json.dumps(row["suggestions"]),
            sources=json.dumps(row["sources"]),
            next_questions=json.dumps(row["next_questions"]),
            offer_person=int(row["offer_person"]),  # 0/1 on both engines (SQLite has no boolean)
        )
        self.sql.insert("turns", row, returning=None)

    def append_feedback(self, feedback: Feedback, *, session_id: str | None = None) -> int:
        """Record a vote or correction; returns its row id.

        Raises:
            UnknownTurn: the turn does not exist, or ``session_id`` is given and the turn is not in it.
            InputError: the vote is not +1, -1 or 0.
        """
        if feedback.vote not in (1, -1, 0):
            raise InputError(f"a vote must be up (+1) or down (-1), found {feedback.vote!r}")
        row = asdict(feedback)
        row["comment"] = redact(feedback.comment[:MAX_COMMENT_CHARS])
        row["offered"] = json.dumps(feedback.offered)
        row["created_at"] = feedback.created_at or utc_now()
        # Read, then write, in one transaction holding the turn: two identical votes sent at the same moment
        # (a double click, a retry, a replay attack) store one row; the second gets the first one's id.
        with self.sql.transaction():
            turn = self.sql.one(f"select session_id from turns where id = ?{self.dialect.lock_row}", [feedback.turn_id])
            if turn is None or (session_id is not None and turn[0] != session_id):
                raise UnknownTurn(f"there is no turn {feedback.turn_id!r} in this conversation")
            latest = self.sql.one(
                "select id, vote, comment, corrected_intent, offered from feedback where turn_id = ? and source = ? order by id desc limit 1",
                [feedback.turn_id, feedback.source],
            )
            if latest is not None and tuple(latest[1:]) == (row["vote"], row["comment"], row["corrected_intent"], row["offered"]):
                return int(latest[0])
            return int(self.sql.insert("feedback", row))

    def customer_feedback(self, turn_id: str) -> CustomerFeedback:
        """The customer's latest vote on the turn, the topic their latest row picked, the topics offered after their
        latest down-vote: one query over the turn's few customer rows."""
        rows = self.sql.rows("select vote, corrected_intent, offered from feedback where turn_id = ? and source = 'customer' order by id desc", [turn_id])
        votes = [r for r in rows if r["vote"]]
        down = next((r for r in rows if r["vote"] < 0), None)
        return CustomerFeedback(
            int(votes[0]["vote"]) if votes else 0,
            (rows[0]["corrected_intent"] or "") if rows else "",
            json.loads(down["offered"] or "[]") if down and votes[0]["vote"] < 0 else [],
        )

    def append_event(self, session_id: str, event: str, *, author: str = "", text: str = "", data: dict | None = None) -> int:
        """Append one conversation event (a state change, or what a person said); returns its id, the stream's event id.

        ``text`` is redacted here, like every message the store keeps.
        """
        if event not in EVENTS:
            raise InputError(f"unknown conversation event {event!r}; expected one of {', '.join(sorted(EVENTS))}")
        row = {"session_id": session_id, "event": event, "author": author, "text": redact(text), "data": json.dumps(data or {}), "created_at": utc_now()}
        return int(self.sql.insert("session_events", row))

    # ---- reads ----------------------------------------------------------------------------
    def turn(self, turn_id: str, session_id: str | None = None) -> dict[str, Any] | None:
        """The stored turn; None when there is none, or when ``session_id`` is given and the turn is not in it
        (a customer acts only on their own conversation's turns)."""
        rows = self.sql.rows("select * from turns where id = ?", [turn_id])
        if not rows or (session_id is not None and rows[0]["session_id"] != session_id):
            return None
        return {k: v for k, v in rows[0].items() if k != "rowid"}

    def session_state(self, session_id: str) -> str:
        """``'waiting'`` for a person, ``'assigned'`` to one, else ``'bot'`` (``'resolved'`` reads as ``'bot'``)."""
        return self.conversation_state(session_id)[0]

    def conversation_state(self, session_id: str) -> tuple[str, str, int]:
        """(state, agent, id of the event that set it): the latest state event of the session."""
        row = self.sql.one(
            f"select event, author, id from session_events where session_id = ? and event in ({_STATE_SQL}) order by id desc limit 1", [session_id]
        )
        if row is None or row[0] in ("resolved", "bot"):
            return ("bot", "", row[2] if row else 0)
        return (row[0], row[1] or "", row[2])

    def events(self, *, session_id: str | None = None, after: int = 0, kinds: tuple[str, ...] | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Conversation events with an id above ``after``, oldest first: what a stream sends, or resends on reconnect."""
        where, params = ["id > ?"], [after]
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if kinds is not None:
            where.append(f"event in ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        sql = f"select id, session_id, event, author, text, data, created_at from session_events where {' and '.join(where)} order by id limit ?"
        return [{**r, "data": json.loads(r["data"] or "{}")} for r in self.sql.rows(sql, [*params, limit])]

    def last_event_id(self) -> int:
        return int(self.sql.one("select coalesce(max(id), 0) from session_events")[0])

    def open_conversations(self) -> list[dict[str, Any]]:
        """Conversations a person has (waiting or assigned), oldest wait first, with the bot's last reading of them."""
        sql = f"""
            with latest as (
                select session_id, max(id) as id from session_events where event in ({_STATE_SQL}) group by session_id
            )
            select e.session_id, e.event as state, e.author as agent, e.created_at as since,
                   (select min(w.created_at) from session_events w where w.session_id = e.session_id and w.event = 'waiting'
                      and w.id > coalesce((select max(b.id) from session_events b where b.session_id = e.session_id
                                           and b.event in ('resolved', 'bot')), 0)) as waiting_since,
                   (select t.intent from turns t where t.session_id = e.session_id and t.intent != '' order by t.created_at desc limit 1) as intent,
                   (select t.confidence from turns t where t.session_id = e.session_id and t.intent != '' order by t.created_at desc limit 1) as confidence,
                   (select count(*) from session_events m where m.session_id = e.session_id and m.event = 'customer' and m.id > e.id) as unread
            from latest l join session_events e on e.id = l.id
            where e.event in ('waiting', 'assigned')
            order by waiting_since
        """
        return self.sql.rows(sql)

    def session_turns(self, session_id: str) -> list[dict[str, Any]]:
        """Every turn of a session with its latest customer vote and comment, oldest first: the transcript's bot side."""
        sql = """
            select t.id, t.created_at, t.message, t.action, t.text, t.intent, t.confidence, t.sources, t.context_turn_id,
                   (select f.vote from feedback f where f.turn_id = t.id and f.source = 'customer' and f.vote != 0 order by f.id desc limit 1) as vote,
                   (select f.comment from feedback f where f.turn_id = t.id and f.source = 'customer' and f.comment != '' order by f.id desc limit 1)
                     as comment,
                   (select f.corrected_intent from feedback f where f.turn_id = t.id and f.corrected_intent != '' order by f.id desc limit 1) as label
            from turns t where t.session_id = ? order by t.created_at, t.rowid
        """
        return [{**r, "sources": json.loads(r["sources"] or "[]")} for r in self.sql.rows(sql, [session_id])]

    def recent_votes(self, session_id: str, limit: int = 2) -> list[dict[str, Any]]:
        """The customer's latest vote on each of the session's last voted turns, newest first: how the customer feels.

        Each row: turn_id, vote, the turn's intent and (redacted) message, and ``latest`` (it is the session's last turn).
        """
        sql = """
            select f.turn_id, f.vote, t.intent, t.message,
                   t.id = (select l.id from turns l where l.session_id = :s order by l.created_at desc, l.rowid desc limit 1) as latest
            from feedback f join turns t on t.id = f.turn_id
            where f.id in (select max(f2.id) from feedback f2 join turns t2 on t2.id = f2.turn_id
                           where t2.session_id = :s and f2.source = 'customer' and f2.vote != 0 group by f2.turn_id)
            order by f.id desc limit :n
        """
        return self.sql.rows(sql, {"s": session_id, "n": limit})

    # ---- people: agents and contact addresses ---------------------------------------------
    def put_agent(self, name: str, password_hash: str) -> None:
        self.sql.execute(
            "insert into agents (name, password_hash, created_at) values (?, ?, ?) "
            "on conflict (name) do update set password_hash = excluded.password_hash, created_at = excluded.created_at",
            [name, password_hash, utc_now()],
        )

    def agent(self, name: str) -> dict[str, Any] | None:
        rows = self.sql.rows("select name, password_hash, created_at, last_seen_at from agents where name = ?", [name])
        return rows[0] if rows else None

    def agents(self) -> list[dict[str, Any]]:
        return self.sql.rows("select name, created_at, last_seen_at from agents order by name")

    def delete_agent(self, name: str) -> bool:
        return self.sql.execute("delete from agents where name = ?", [name]) > 0

    def agent_seen(self, name: str) -> None:
        self.sql.execute("update agents set last_seen_at = ? where name = ?", [utc_now(), name])

    def last_agent_seen(self) -> str | None:
        return self.sql.one("select max(last_seen_at) from agents")[0]

    def add_contact(self, session_id: str, contact: str, message: str) -> int:
        """A way to reach a customer no person could answer: kept only here (never in turns, exports or training)."""
        row = {"session_id": session_id, "contact": contact, "message": redact(message), "created_at": utc_now()}
        return int(self.sql.insert("contacts", row))

    def contacts(self) -> list[dict[str, Any]]:
        return self.sql.rows("select id, session_id, contact, message, created_at from contacts order by id")

    def delete_contact(self, contact_id: int) -> bool:
        return self.sql.execute("delete from contacts where id = ?", [contact_id]) > 0

    def recent_turns(self, session_id: str, *, limit: int, since: str) -> list[dict[str, Any]]:
        """The session's last ``limit`` turns created after ``since`` (ISO time), newest first: a follow-up's context."""
        return self.sql.rows(
            "select id, message, action, text from turns where session_id = ? and created_at > ? order by created_at desc, rowid desc limit ?",
            [session_id, since, limit],
        )

    def context_messages(self, turn_id: str) -> list[str]:
        """The earlier messages a follow-up turn was read with, oldest first: what serving's context held then."""
        found = self.sql.rows("select session_id, created_at, rowid from turns where id = ?", [turn_id])
        if not found:
            return []
        turn = found[0]
        at, since = turn["created_at"], window_start(datetime.fromisoformat(turn["created_at"]))
        earlier = self.sql.rows(
            "select id, message, action from turns where session_id = ? and created_at > ?"
            " and (created_at < ? or (created_at = ? and rowid < ?)) order by created_at desc, rowid desc limit ?",
            [turn["session_id"], since, at, at, turn["rowid"], CONTEXT_TURNS],
        )
        return [t["message"] for t in reversed(context_turns(earlier))]

    def intent_transitions(self, *, within_s: float) -> list[tuple[str, str, int]]:
        """(intent, next intent, count) over sessions: consecutive answered turns at most ``within_s`` apart.

        Turns whose latest customer vote is down do not count (a wrong answer is not what was asked),
        nor does a turn followed by the same intent (that is a rephrasing, not a next question).
        """
        sql = f"""
            with down as (
                select turn_id from feedback where id in (select max(id) from feedback where source = 'customer' group by turn_id) and vote < 0
            ), answered as (
                select id, intent, created_at,
                       lag(id) over w as prev_id, lag(intent) over w as prev_intent, lag(created_at) over w as prev_at
                from turns where action = 'answer' and intent != ''
                window w as (partition by session_id order by created_at, rowid)
            )
            select prev_intent, intent, count(*) as n from answered
            where prev_intent is not null and prev_intent != intent
              and {self.dialect.seconds("created_at", "prev_at")} <= :within
              and id not in (select turn_id from down) and prev_id not in (select turn_id from down)
            group by prev_intent, intent
        """
        return [(r["prev_intent"], r["intent"], int(r["n"])) for r in self.sql.rows(sql, {"within": within_s})]

    # ---- tickets (the knowledge base's rows; its FAISS index lives beside them) -----------------
    def insert_tickets(self, records: list[dict]) -> list[int]:
        """Store new tickets with their embeddings in one transaction; the ids added.

        Each record may carry ``vector`` (float32 bytes). Identical tickets (by ``question_key``) are skipped.
        Every ticket added is logged in ``ticket_changes``: the log every replica's index follows.
        """
        added: list[int] = []
        with self.sql.transaction():
            self._in_ticket_sequence()
            for record in records:
                row = {k: v for k, v in record.items() if k != "vector"}
                cols = ", ".join(row)
                found = self.sql.one(
                    f"insert into tickets ({cols}) values ({', '.join('?' * len(row))}) on conflict do nothing returning id", list(row.values())
                )
                if found:
                    added.append(int(found[0]))
                    if record.get("vector") is not None:
                        self.sql.execute("insert into ticket_vectors (ticket_id, vector) values (?, ?)", [added[-1], record["vector"]])
            self._log_ticket_changes(added, "add")
            if any("id" in r for r in records):
                self.sql.after_explicit_ids("tickets")
        return added

    def delete_ticket(self, ticket_id: int) -> bool:
        """Delete a ticket and its embedding; logged, so every replica's index drops it too."""
        with self.sql.transaction():
            self._in_ticket_sequence()
            deleted = self.sql.execute("delete from tickets where id = ?", [ticket_id])
            if deleted:
                self.sql.execute("delete from ticket_vectors where ticket_id = ?", [ticket_id])
                self._log_ticket_changes([ticket_id], "delete")
        return bool(deleted)

    def add_ticket_vectors(self, vectors: dict[int, bytes]) -> int:
        """Store embeddings of tickets that had none (an install from before they were stored), logged as additions."""
        with self.sql.transaction():
            self._in_ticket_sequence()
            known = set(self.ticket_ids())
            fresh = [i for i in vectors if i in known and not self.sql.one("select 1 from ticket_vectors where ticket_id = ?", [i])]
            for i in fresh:
                self.sql.execute("insert into ticket_vectors (ticket_id, vector) values (?, ?)", [i, vectors[i]])
            self._log_ticket_changes(fresh, "add")
        return len(fresh)

    def _in_ticket_sequence(self) -> None:
        """Ticket writers commit one at a time, so a replica that has read change N never later meets a change below N."""
        self._in_sequence(7172304)

    def _in_sequence(self, key: int) -> None:
        """Inside a transaction: wait for the other transactions of ``key`` (PostgreSQL; SQLite writers are serial)."""
        sql = self.sql.dialect.in_sequence(key)
        if sql:
            self.sql.one(sql)

    def _log_ticket_changes(self, ids: list[int], op: str) -> None:
        now = utc_now()
        for ticket_id in ids:
            self.sql.execute("insert into ticket_changes (ticket_id, op, created_at) values (?, ?, ?)", [ticket_id, op, now])

    def ticket_index_version(self) -> int:
        """The id of the latest ticket change (0 when none): the version of the ticket index."""
        return int(self.sql.one("select coalesce(max(id), 0) from ticket_changes")[0])

    def ticket_changes(self, *, after: int) -> list[dict[str, Any]]:
        """Ticket additions and deletions after change ``after``, in order."""
        return self.sql.rows("select id, ticket_id, op from ticket_changes where id > ? order by id", [after])

    def ticket_vectors(self, ids: list[int] | None = None) -> dict[int, bytes]:
        """Stored embeddings by ticket id: of ``ids``, or of every ticket."""
        if ids is None:
            return {r["ticket_id"]: bytes(r["vector"]) for r in self.sql.rows("select ticket_id, vector from ticket_vectors order by ticket_id")}
        found: dict[int, bytes] = {}
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters
            chunk = [int(i) for i in ids[start : start + 900]]
            rows = self.sql.rows(f"select ticket_id, vector from ticket_vectors where ticket_id in ({','.join('?' * len(chunk))})", chunk)
            found.update({r["ticket_id"]: bytes(r["vector"]) for r in rows})
        return found

    def tickets_without_vectors(self) -> list[int]:
        rows = self.sql.rows("select t.id from tickets t left join ticket_vectors v on v.ticket_id = t.id where v.ticket_id is null order by t.id")
        return [r["id"] for r in rows]

    def known_question_keys(self, keys: list[str]) -> set[str]:
        """Which of these tickets (by ``question_key``) are stored already: they need no embedding."""
        found: set[str] = set()
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            rows = self.sql.rows(f"select question_key from tickets where question_key in ({','.join('?' * len(chunk))})", chunk)
            found.update(r["question_key"] for r in rows)
        return found

    def ticket_ids(self, *, from_id: int | None = None, labelled: bool = False) -> list[int]:
        """Ticket ids in order: all, those from ``from_id`` on, or those with an intent label."""
        where, params = ["1 = 1"], []
        if from_id is not None:
            where.append("id >= ?")
            params.append(from_id)
        if labelled:
            where.append("intent != ''")
        return [row["id"] for row in self.sql.rows(f"select id from tickets where {' and '.join(where)} order by id", params)]

    def tickets(self, ids: list[int]) -> dict[int, Ticket]:
        """Tickets by id, in the order asked (unknown ids are left out)."""
        found: dict[int, Ticket] = {}
        cols = "id, question, answer, intent, created_at, source, external_id"
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters
            chunk = [int(i) for i in ids[start : start + 900]]
            marks = ",".join("?" * len(chunk))
            for row in self.sql.rows(f"select {cols} from tickets where id in ({marks})", chunk):
                found[row["id"]] = Ticket(**row)
        return {i: found[i] for i in ids if i in found}

    def ticket_intents(self) -> list[str]:
        return [r["intent"] for r in self.sql.rows("select distinct intent from tickets where intent != '' order by intent")]

    def first_ticket(self, intent: str) -> Ticket | None:
        """The oldest ticket of an intent: the answer given when a customer picks that topic."""
        row = self.sql.one("select id from tickets where intent = ? order by id limit 1", [intent])
        return self.tickets([row[0]])[row[0]] if row else None

    # ---- analytics (the admin console) ----------------------------------------------------------
    # Analytics count each voted turn once, by the customer's latest vote on it: a down-vote re-sent with a comment,
    # or kept beside a picked alternative, is one down-vote, and a changed mind counts as it ended.
    def daily_activity(self) -> list[dict[str, Any]]:
        return self.sql.rows(
            f"""with turns_by_day as (select substr(created_at, 1, 10) as day, count(*) as turns from turns group by substr(created_at, 1, 10)),
                    votes_by_day as (select substr(created_at, 1, 10) as day, count(*) as votes from feedback where id in ({LATEST_VOTES})
                                     group by substr(created_at, 1, 10))
               select t.day, t.turns, coalesce(v.votes, 0) as votes from turns_by_day t left join votes_by_day v on v.day = t.day order by t.day"""
        )

    def down_rate_per_intent(self, limit: int = 20) -> list[dict[str, Any]]:
        down = "sum(case when f.vote = -1 then 1 else 0 end)"
        return self.sql.rows(
            f"select t.intent, {down} as down, count(*) as votes, round(1.0 * {down} / count(*), 3) as down_rate "
            f"from feedback f join turns t on t.id = f.turn_id where f.id in ({LATEST_VOTES}) and t.intent != '' "
            "group by t.intent order by down_rate desc, down desc limit :limit",
            {"limit": limit},
        )

    def confidence_histogram(self) -> list[dict[str, Any]]:
        tenth = self.dialect.truncate("confidence * 10")
        bucket = f"round(case when {tenth} > 9 then 9 else {tenth} end / 10.0, 1)"
        where = "action != 'handoff' or confidence > 0"
        return self.sql.rows(f"select {bucket} as bucket, count(*) as turns from turns where {where} group by bucket order by bucket")

    def most_down_voted(self, limit: int = 10) -> list[dict[str, Any]]:
        return self.sql.rows(
            "select min(t.message) as message, t.intent, count(*) as down_votes from feedback f join turns t on t.id = f.turn_id "
            f"where f.id in ({LATEST_VOTES}) and f.vote = -1 group by lower(t.message), t.intent order by down_votes desc limit :limit",
            {"limit": limit},
        )

    def review_queue(self, *, below_confidence: float, limit: int = 50) -> list[dict[str, Any]]:
        """Down-voted and low-confidence turns that no reviewer has corrected yet, newest first."""
        sql = f"""select t.id as turn_id, t.session_id, t.created_at, t.message, t.action, t.text as answer, t.intent,
                        round(cast(t.confidence as numeric), 3) as confidence,
                        (select min(f.vote) from feedback f where f.turn_id = t.id) as vote,
                        (select {self.dialect.concat("f.comment", "' / '")} from feedback f where f.turn_id = t.id and f.comment != '') as comment,
                        (select f.corrected_intent from feedback f where f.turn_id = t.id and f.source = 'customer' and f.corrected_intent != ''
                         order by f.id desc limit 1) as customer_picked
                 from turns t
                 where (exists (select 1 from feedback f where f.turn_id = t.id and f.vote = -1)
                        or (t.confidence < :low and t.action != 'handoff'))
                   and not exists (select 1 from feedback f where f.turn_id = t.id and f.source = 'reviewer')
                 order by t.created_at desc limit :limit"""
        return self.sql.rows(sql, {"low": below_confidence, "limit": limit})

    def handoffs_per_version(self) -> dict[str, dict[str, Any]]:
        """Per intent-model version: the sessions it served and how many of them were handed to a person."""
        return {
            r["model_version"]: r
            for r in self.sql.rows(
                "select model_version, count(distinct session_id) as sessions, "
                "count(distinct case when action = 'handoff' then session_id end) as handed_off from turns group by model_version"
            )
        }

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise InputError(f"unknown table {table!r}")
        return int(self.sql.one(f"select count(*) from {table}")[0])

    # ---- the serving pointer (core.registry reads and moves it) ----------------------------------
    def serving_version(self, kind: str) -> str | None:
        row = self.sql.one("select version from serving where kind = ? order by id desc limit 1", [kind])
        return row[0] if row else None

    def serving_moves(self, kind: str) -> list[dict[str, Any]]:
        """Every pointer move of ``kind``, oldest first."""
        return self.sql.rows("select version, reason, created_at from serving where kind = ? order by id", [kind])

    def move_serving(self, kind: str, moves: list[tuple[str, str]], *, only_if_unset: bool = False) -> bool:
        """Append pointer moves ``(version, reason)`` in one transaction; the last one serves. With ``only_if_unset``,
        nothing is written when ``kind`` already has a pointer (adopting an older install's file once)."""
        with self.sql.transaction():
            self._in_sequence(7172305)  # pointer moves one at a time: two replicas adopting an old pointer at once adopt it once
            if only_if_unset and self.sql.one("select id from serving where kind = ? limit 1", [kind]):
                return False
            for version, reason in moves:
                self.sql.insert("serving", {"kind": kind, "version": version, "reason": reason, "created_at": utc_now()}, returning=None)
        return True

    # ---- moving an install (csbot db copy) --------------------------------------------------------
    def table_rows(self, table: str, *, page: int = 5000) -> Iterator[dict[str, Any]]:
        """Every row of one of the store's tables in key order (turns in insertion order), a page at a time."""
        if table not in TABLES:
            raise InputError(f"unknown table {table!r}")
        key, columns = COPY_KEYS[table], "rowid, *" if table == "turns" else "*"
        last = None
        while True:
            where, params = ("", []) if last is None else (f"where {key} > ?", [last])
            rows = self.sql.rows(f"select {columns} from {table} {where} order by {key} limit {int(page)}", params)
            for row in rows:
                yield {k: v for k, v in row.items() if k != "rowid"}
            if len(rows) < page:
                return
            last = rows[-1][key]

    def digest(self, table: str) -> tuple[int, str]:
        """(rows, SHA-256 over every row's values in column-name order): equal on two engines iff the rows are."""
        digest, count = hashlib.sha256(), 0
        for row in self.table_rows(table):
            digest.update(json.dumps([row[k] for k in sorted(row)], default=str).encode() + b"\n")
            count += 1
        return count, digest.hexdigest()

    def copy_to(self, dest: FeedbackStore, *, batch: int = 5000, on_table: Callable[[str, int], None] | None = None) -> dict[str, dict[str, Any]]:
        """Copy every row into an empty store (e.g. SQLite to PostgreSQL), then compare counts and digests per table."""
        occupied = {t: n for t in TABLES if (n := dest.count(t))}
        if occupied:
            raise InputError(f"the destination already holds data ({', '.join(f'{n} {t}' for t, n in occupied.items())}); copy into an empty database")
        for table in TABLES:
            rows, copied = [], 0
            for row in self.table_rows(table, page=batch):
                rows.append(row)
                if len(rows) == batch:
                    dest.sql.insert_many(table, rows)
                    copied, rows = copied + len(rows), []
            if rows:
                dest.sql.insert_many(table, rows)
                copied += len(rows)
            if on_table:
                on_table(table, copied)
        report = {}
        for table in TABLES:
            (n_src, h_src), (n_dst, h_dst) = self.digest(table), dest.digest(table)
            report[table] = {"rows": n_src, "copied": n_dst, "sha256": h_src, "match": (n_src, h_src) == (n_dst, h_dst)}
        return report

    def export_csv(self, out: TextIO) -> None:
        """Every vote with its (already redacted) turn, as CSV: what `csbot feedback export` and the admin export give."""
        columns, rows = self.sql.cursor(
            """select f.id, f.created_at, f.turn_id, t.session_id, t.message, t.intent, t.confidence, t.action,
                      f.vote, f.comment, f.corrected_intent, f.source
               from feedback f join turns t on t.id = f.turn_id order by f.id"""
        )
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows(rows)

    def feedback_rows(self, *, cutoff: str | None = None) -> Iterator[dict[str, Any]]:
        """Each voted turn with its latest vote (newer votes supersede older ones), up to ``cutoff``; a follow-up
        read with its context carries those earlier messages as ``context`` (else an empty list)."""
        where = "" if cutoff is None else "where f.created_at <= :cutoff"
        sql = f"""
            select t.id as turn_id, t.session_id, t.message, t.intent, t.confidence, t.action, t.sources, t.text,
                   t.context_turn_id, f.vote, f.comment, f.corrected_intent, f.source, f.created_at
            from feedback f join turns t on t.id = f.turn_id
            where f.id in (select max(f.id) from feedback f {where} group by f.turn_id, f.source)
            order by f.id
        """
        for row in self.sql.rows(sql, {"cutoff": cutoff} if cutoff else {}):
            row["context"] = self.context_messages(row["turn_id"]) if row["context_turn_id"] else []
            yield row
