from __future__ import annotations

import sqlite3

import pytest
from sqlite_utils import Database

from core.errors import InputError, StorageUnavailable, UnknownTurn
from core.migrations import migrations
from core.store import FeedbackStore
from core.types import Feedback, Reply


def make_reply(turn_id="t1", session_id="s1") -> Reply:
    return Reply(turn_id=turn_id, session_id=session_id, action="answer", text="hi", intent="card_arrival", confidence=0.9)


def test_turns_and_votes_survive_reopen(tmp_path):
    path = tmp_path / "csbot.db"
    store = FeedbackStore(path)
    store.append_turn(make_reply(), "my email is ann@example.com")
    store.append_feedback(Feedback("t1", -1, comment="call me on +44 20 7946 0958"))
    reopened = FeedbackStore(path)
    assert reopened.turn("t1")["message"] == "my email is [EMAIL]"
    rows = list(sqlite3.connect(path).execute("select vote, comment from feedback"))
    assert rows == [(-1, "call me on [PHONE]")]
    assert sqlite3.connect(path).execute("pragma journal_mode").fetchone()[0] == "wal"


def test_vote_on_unknown_turn_or_other_session_is_refused(tmp_path):
    store = FeedbackStore(tmp_path / "db.sqlite")
    store.append_turn(make_reply(), "hello")
    with pytest.raises(UnknownTurn):
        store.append_feedback(Feedback("nope", 1))
    with pytest.raises(UnknownTurn):
        store.append_feedback(Feedback("t1", 1), session_id="someone-else")
    with pytest.raises(InputError):
        store.append_feedback(Feedback("t1", 5))
    assert store.count("feedback") == 0


def test_newer_vote_supersedes_older_for_training(tmp_path):
    store = FeedbackStore(tmp_path / "db.sqlite")
    store.append_turn(make_reply(), "where is my card")
    store.append_feedback(Feedback("t1", 1))
    store.append_feedback(Feedback("t1", -1))
    assert store.count("feedback") == 2  # append-only: both rows kept
    assert [r["vote"] for r in store.feedback_rows()] == [-1]


def test_conversation_states_come_from_the_latest_state_event(tmp_path):
    store = FeedbackStore(tmp_path / "db.sqlite")
    assert store.session_state("s") == "bot"
    store.append_event("s", "waiting", data={"reason": "asked for a person"})
    assert store.session_state("s") == "waiting"
    assigned = store.append_event("s", "assigned", author="Sam")
    store.append_event("s", "agent", author="Sam", text="Hi, mail me at sam@example.com")  # not a state change
    assert store.conversation_state("s") == ("assigned", "Sam", assigned)
    store.append_event("s", "resolved", author="Sam")
    assert store.session_state("s") == "bot"
    assert [e["text"] for e in store.events(session_id="s", kinds=("agent",))] == ["Hi, mail me at [EMAIL]"]  # redacted like every message
    with pytest.raises(InputError, match="unknown conversation event"):
        store.append_event("s", "handoff")


def test_old_handoff_rows_keep_their_meaning_after_the_upgrade(tmp_path):
    """A database from before the inbox: 'handoff' rows read as waiting, 'release' as back to the bot."""
    path = tmp_path / "old.sqlite"
    db = Database(path)
    migrations.apply(db, stop_before="m005_people_take_over")
    db["session_events"].insert_all(
        [
            {"session_id": "a", "event": "handoff", "created_at": "2026-01-01T00:00:00"},
            {"session_id": "b", "event": "handoff", "created_at": "2026-01-01T00:00:01"},
            {"session_id": "b", "event": "release", "created_at": "2026-01-01T00:00:02"},
        ]
    )
    db.close()
    store = FeedbackStore(path)
    assert (store.session_state("a"), store.session_state("b")) == ("waiting", "bot")


def test_writers_in_one_process_queue_instead_of_failing(tmp_path):
    """32 threads writing at once: each waits its turn on the process's write lock (released after every
    transaction, also a failed one), none gets StorageUnavailable, no row is lost."""
    import threading

    from core.database import SQLiteDatabase

    db = SQLiteDatabase(tmp_path / "w.db", busy_timeout_s=5)
    db.db.execute("create table t (id integer primary key, who integer)")
    with pytest.raises(StorageUnavailable):  # a failed write lets go of the lock
        db.insert("missing", {"who": 0})
    errors: list[Exception] = []

    def write(who: int) -> None:
        for _ in range(25):
            try:
                db.insert("t", {"who": who})
            except Exception as err:  # noqa: BLE001 - counted below
                errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(32)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert db.one("select count(*) from t")[0] == 32 * 25
