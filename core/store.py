"""The feedback store: one SQLite file, written through sqlite-utils, append-only for events.

Turns, votes and session events are only ever inserted; a correction is a new row. Every
connection runs in WAL mode with a busy timeout so several threads and processes can write at once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from sqlite_utils import Database

from core.errors import CsbotError, InputError, StorageUnavailable, UnknownTurn
from core.migrations import migrations
from core.redact import redact
from core.types import Feedback, Reply

MAX_COMMENT_CHARS = 2000
STATES = ("waiting", "assigned", "resolved", "bot")  # the events that change who answers a conversation
EVENTS = frozenset(STATES) | {"customer", "agent", "note", "offer_message", "contact_left"}
_STATE_SQL = ", ".join(f"'{s}'" for s in STATES)
STORAGE_UNAVAILABLE = "We could not save that just now (our database is busy or full). Please try again in a moment."
log = logging.getLogger(__name__)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class FeedbackStore:
    """Append-only store of turns, votes and conversation events (plus the ticket table the knowledge base owns).

    Example:
        >>> store = FeedbackStore(":memory:")
        >>> store.session_state("s1")
        'bot'
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, max_size_mb: float = 0.0) -> None:
        self.path = str(path)
        self.busy_timeout_s = busy_timeout_s  # how long a write waits for another writer before it fails
        self.max_size_mb = max_size_mb  # a quota: writes beyond it fail as on a full disk (0 = none)
        self._local = threading.local()
        self._memory_db: Database | None = None
        if self.path == ":memory:":
            # One shared connection: an in-memory database exists only inside its connection.
            self._memory_db = Database(sqlite3.connect(":memory:", check_same_thread=False))
            self._prepare(self._memory_db, busy_timeout_s, 0.0)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db.execute("select 1")  # open now so migrations run (and errors surface) at start-up

    @property
    def db(self) -> Database:
        """This thread's connection (sqlite3 connections must not be shared across threads)."""
        if self._memory_db is not None:
            return self._memory_db
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False)
                db = Database(conn)
                self._prepare(db, self.busy_timeout_s, self.max_size_mb)
            except sqlite3.DatabaseError as err:
                raise CsbotError(f"cannot open the database {self.path}: {err}") from err
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _writing(self):
        """One write transaction; a locked or full database becomes a plain StorageUnavailable (nothing half-written)."""
        try:
            with self.db.conn:
                yield
        except sqlite3.OperationalError as err:
            log.error("cannot write to %s: %s", self.path, err)
            raise StorageUnavailable(STORAGE_UNAVAILABLE) from err

    @staticmethod
    def _prepare(db: Database, busy_timeout_s: float, max_size_mb: float) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if max_size_mb > 0:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(1, int(max_size_mb * 1024 * 1024 / page_size))}")
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against a killed process (the WAL survives); only power loss can drop a commit.
            db.execute("PRAGMA synchronous = NORMAL")
        migrations.apply(db)

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
        )
        with self._writing():
            self.db["turns"].insert(row)

    def append_feedback(self, feedback: Feedback, *, session_id: str | None = None) -> int:
        """Record a vote or correction; returns its row id.

        Raises:
            UnknownTurn: the turn does not exist, or ``session_id`` is given and the turn is not in it.
            InputError: the vote is not +1, -1 or 0.
        """
        if feedback.vote not in (1, -1, 0):
            raise InputError(f"a vote must be up (+1) or down (-1), found {feedback.vote!r}")
        turn = self.turn(feedback.turn_id)
        if turn is None or (session_id is not None and turn["session_id"] != session_id):
            raise UnknownTurn(f"there is no turn {feedback.turn_id!r} in this conversation")
        row = asdict(feedback)
        row["comment"] = redact(feedback.comment[:MAX_COMMENT_CHARS])
        row["created_at"] = feedback.created_at or utc_now()
        with self._writing():
            # A replayed request (a double click, a retry, a replay attack) records nothing new: the same vote as
            # the latest one from the same source on this turn returns that row.
            latest = self.db.execute(
                "select id, vote, comment, corrected_intent from feedback where turn_id = ? and source = ? order by id desc limit 1",
                [feedback.turn_id, feedback.source],
            ).fetchone()
            if latest is not None and tuple(latest[1:]) == (row["vote"], row["comment"], row["corrected_intent"]):
                return int(latest[0])
            return self.db["feedback"].insert(row).last_pk

    def append_event(self, session_id: str, event: str, *, author: str = "", text: str = "", data: dict | None = None) -> int:
        """Append one conversation event (a state change, or what a person said); returns its id, the stream's event id.

        ``text`` is redacted here, like every message the store keeps.
        """
        if event not in EVENTS:
            raise InputError(f"unknown conversation event {event!r}; expected one of {', '.join(sorted(EVENTS))}")
        row = {"session_id": session_id, "event": event, "author": author, "text": redact(text), "data": json.dumps(data or {}), "created_at": utc_now()}
        with self._writing():
            return int(self.db["session_events"].insert(row).last_pk)

    # ---- reads ----------------------------------------------------------------------------
    def turn(self, turn_id: str) -> dict[str, Any] | None:
        rows = list(self.db["turns"].rows_where("id = ?", [turn_id], limit=1))
        return rows[0] if rows else None

    def session_state(self, session_id: str) -> str:
        """``'waiting'`` for a person, ``'assigned'`` to one, else ``'bot'`` (``'resolved'`` reads as ``'bot'``)."""
        return self.conversation_state(session_id)[0]

    def conversation_state(self, session_id: str) -> tuple[str, str, int]:
        """(state, agent, id of the event that set it): the latest state event of the session."""
        row = self.db.execute(
            f"select event, author, id from session_events where session_id = ? and event in ({_STATE_SQL}) order by id desc limit 1", [session_id]
        ).fetchone()
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
        return [{**r, "data": json.loads(r["data"] or "{}")} for r in self.db.query(sql, [*params, limit])]

    def last_event_id(self) -> int:
        return int(self.db.execute("select coalesce(max(id), 0) from session_events").fetchone()[0])

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
        return [dict(r) for r in self.db.query(sql)]

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
        return [{**r, "sources": json.loads(r["sources"] or "[]")} for r in self.db.query(sql, [session_id])]

    def recent_votes(self, session_id: str, limit: int = 2) -> list[dict[str, Any]]:
        """The customer's latest vote on each of the session's last voted turns, newest first: how the customer feels.

        Each row: turn_id, vote, the turn's intent, and ``latest`` (it is the session's last turn).
        """
        sql = """
            select f.turn_id, f.vote, t.intent,
                   t.id = (select l.id from turns l where l.session_id = :s order by l.created_at desc, l.rowid desc limit 1) as latest
            from feedback f join turns t on t.id = f.turn_id
            where f.id in (select max(f2.id) from feedback f2 join turns t2 on t2.id = f2.turn_id
                           where t2.session_id = :s and f2.source = 'customer' and f2.vote != 0 group by f2.turn_id)
            order by f.id desc limit :n
        """
        return [dict(r) for r in self.db.query(sql, {"s": session_id, "n": limit})]

    # ---- people: agents and contact addresses ---------------------------------------------
    def put_agent(self, name: str, password_hash: str) -> None:
        with self._writing():
            self.db["agents"].upsert({"name": name, "password_hash": password_hash, "created_at": utc_now()}, pk="name")

    def agent(self, name: str) -> dict[str, Any] | None:
        rows = list(self.db["agents"].rows_where("name = ?", [name], limit=1))
        return rows[0] if rows else None

    def agents(self) -> list[dict[str, Any]]:
        return list(self.db.query("select name, created_at, last_seen_at from agents order by name"))

    def delete_agent(self, name: str) -> bool:
        with self._writing():
            return self.db.execute("delete from agents where name = ?", [name]).rowcount > 0

    def agent_seen(self, name: str) -> None:
        with self._writing():
            self.db.execute("update agents set last_seen_at = ? where name = ?", [utc_now(), name])

    def last_agent_seen(self) -> str | None:
        return self.db.execute("select max(last_seen_at) from agents").fetchone()[0]

    def add_contact(self, session_id: str, contact: str, message: str) -> int:
        """A way to reach a customer no person could answer: kept only here (never in turns, exports or training)."""
        with self._writing():
            row = {"session_id": session_id, "contact": contact, "message": redact(message), "created_at": utc_now()}
            return int(self.db["contacts"].insert(row).last_pk)

    def contacts(self) -> list[dict[str, Any]]:
        return list(self.db.query("select id, session_id, contact, message, created_at from contacts order by id"))

    def delete_contact(self, contact_id: int) -> bool:
        with self._writing():
            return self.db.execute("delete from contacts where id = ?", [contact_id]).rowcount > 0

    def recent_turns(self, session_id: str, *, limit: int, since: str) -> list[dict[str, Any]]:
        """The session's last ``limit`` turns created after ``since`` (ISO time), newest first: a follow-up's context."""
        return list(
            self.db.query(
                "select id, message, action, text from turns where session_id = ? and created_at > ? order by created_at desc, rowid desc limit ?",
                [session_id, since, limit],
            )
        )

    def intent_transitions(self, *, within_s: float) -> list[tuple[str, str, int]]:
        """(intent, next intent, count) over sessions: consecutive answered turns at most ``within_s`` apart.

        Turns whose latest customer vote is down do not count (a wrong answer is not what was asked),
        nor does a turn followed by the same intent (that is a rephrasing, not a next question).
        """
        sql = """
            with down as (
                select turn_id from feedback where id in (select max(id) from feedback where source = 'customer' group by turn_id) and vote < 0
            ), answered as (
                select id, intent, created_at,
                       lag(id) over w as prev_id, lag(intent) over w as prev_intent, lag(created_at) over w as prev_at
                from turns where action = 'answer' and intent != ''
                window w as (partition by session_id order by created_at, rowid)
            )
            select prev_intent, intent, count(*) from answered
            where prev_intent is not null and prev_intent != intent
              and (julianday(created_at) - julianday(prev_at)) * 86400 <= :within
              and id not in (select turn_id from down) and prev_id not in (select turn_id from down)
            group by prev_intent, intent
        """
        return [(a, b, n) for a, b, n in self.db.execute(sql, {"within": within_s}).fetchall()]

    def count(self, table: str) -> int:
        return self.db[table].count

    def export_csv(self, out: TextIO) -> None:
        """Every vote with its (already redacted) turn, as CSV: what `csbot feedback export` and the admin export give."""
        cursor = self.db.execute(
            """select f.id, f.created_at, f.turn_id, t.session_id, t.message, t.intent, t.confidence, t.action,
                      f.vote, f.comment, f.corrected_intent, f.source
               from feedback f join turns t on t.id = f.turn_id order by f.id"""
        )
        writer = csv.writer(out)
        writer.writerow([d[0] for d in cursor.description])
        writer.writerows(cursor)

    def feedback_rows(self, *, cutoff: str | None = None) -> Iterator[dict[str, Any]]:
        """Each voted turn with its latest vote (newer votes supersede older ones), up to ``cutoff``."""
        where = "" if cutoff is None else "where f.created_at <= :cutoff"
        sql = f"""
            select t.id as turn_id, t.session_id, t.message, t.intent, t.confidence, t.action, t.sources, t.text,
                   f.vote, f.comment, f.corrected_intent, f.source, f.created_at
            from feedback f join turns t on t.id = f.turn_id
            where f.id in (select max(f.id) from feedback f {where} group by f.turn_id, f.source)
            order by f.id
        """
        yield from self.db.query(sql, {"cutoff": cutoff} if cutoff else {})
