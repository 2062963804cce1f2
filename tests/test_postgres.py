"""Moving an install to PostgreSQL and serving from it: `csbot db copy`, `csbot db upgrade`, the Assistant on it."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner

from core.config import Settings
from core.store import TABLES, FeedbackStore
from csbot.cli import cli
from csbot.wiring import open_assistant


def test_copy_an_install_to_postgresql_and_serve_from_it(home, postgres):
    url = postgres.create_database()
    before = {t: n for t in TABLES for (n,) in sqlite3.connect(home / "csbot.db").execute(f"select count(*) from {t}")}
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "copy", "--to", url])
    assert result.exit_code == 0, result.output
    assert "every row copied and checked" in result.output and "MISMATCH" not in result.output
    assert "tickets" in result.output and f"{before['tickets']:>9} rows  match" in result.output
    copy = FeedbackStore(url)
    assert {t: copy.count(t) for t in TABLES} == before

    # Copying again into the same (now full) database is refused with a plain sentence; nothing changes.
    again = CliRunner().invoke(cli, ["--home", str(home), "db", "copy", "--to", url])
    assert again.exit_code == 1 and "already holds data" in again.output
    assert copy.count("tickets") == before["tickets"]

    # Serving from PostgreSQL: answers, votes, a handoff and an agent's reply land there, not in the SQLite file.
    assistant = open_assistant(Settings(home=home, database_url=url)).warm_up()
    answer = assistant.respond("I lost my card, what do I do?", "pg-1")
    assert answer.action == "answer" and answer.sources
    assistant.feedback(answer.turn_id, -1, comment="mail me at ann@example.com", session_id="pg-1")
    assistant.handoff("pg-1", "asked for a person")
    assistant.desk.claim("pg-1", "Sam")
    assistant.desk.reply("pg-1", "Sam", "Hi, I am looking into it")
    assert copy.session_state("pg-1") == "assigned"
    assert [r["comment"] for r in copy.feedback_rows()] == ["mail me at [EMAIL]"]
    assert copy.count("turns") == before["turns"] + 1
    after = {t: n for t in TABLES for (n,) in sqlite3.connect(home / "csbot.db").execute(f"select count(*) from {t}")}
    assert after == before

    upgraded = CliRunner().invoke(cli, ["--database-url", url, "db", "upgrade"])
    assert upgraded.exit_code == 0 and "schema up to date" in upgraded.output
    assert "postgres@127.0.0.1" in upgraded.output


def test_a_database_that_cannot_be_reached_is_one_plain_sentence(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "--database-url", "postgresql://csbot:secret@127.0.0.1:1/csbot", "db", "upgrade"])
    assert result.exit_code == 1
    assert "cannot reach the database postgresql://csbot:***@127.0.0.1:1/csbot" in result.output
    assert "secret" not in result.output and "Traceback" not in result.output


def test_postgresql_down_gives_plain_errors_then_recovers_without_reopening(tmp_path):
    """The server stops under a running store: writes and reads raise StorageUnavailable (a plain 503 upstream),
    nothing half-written; when it is back the same store object works again (the pool replaces dead connections)."""
    import tempfile
    import time
    from pathlib import Path

    import pytest

    from core.errors import StorageUnavailable
    from core.types import Feedback, Reply
    from tests.servers import PostgresServer

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="csbot-pg-fault-"))).start()
    try:
        store = FeedbackStore(server.create_database(), busy_timeout_s=2.0)
        store.append_turn(Reply(turn_id="t1", session_id="s1", action="answer", text="hi", intent="card_arrival", confidence=0.9), "hello")
        server.stop("immediate")
        with pytest.raises(StorageUnavailable):
            store.append_feedback(Feedback("t1", 1))
        with pytest.raises(StorageUnavailable):
            store.session_state("s1")
        server.start()
        deadline, saved = time.monotonic() + 30, None
        while saved is None and time.monotonic() < deadline:
            try:
                saved = store.append_feedback(Feedback("t1", 1))
            except StorageUnavailable:
                time.sleep(0.5)  # the pool reconnects in the background; meanwhile, plain 503s
        assert saved is not None, "the store did not recover within 30 s of the server coming back"
        assert store.count("feedback") == 1 and store.turn("t1")["message"] == "hello"
        store.close()
    finally:
        server.stop("immediate")
