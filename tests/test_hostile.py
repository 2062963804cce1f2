"""Hostile and careless input against the real REST app (in-process HTTP via Starlette's TestClient), the
real SQLite file and the real models: every bad request gets a 4xx with a plain sentence, never a 500."""

from __future__ import annotations

import io
import sqlite3
import threading
import time
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from bot.api import create_api
from core.store import FeedbackStore
from csbot.wiring import open_assistant

MB = 1024 * 1024


@pytest.fixture
def client(settings):
    assistant = open_assistant(replace(settings, rate_limit=0)).warm_up()
    return TestClient(create_api(assistant), raise_server_exceptions=False)


def rows(settings, sql: str, args=()):
    return sqlite3.connect(settings.db_path).execute(sql, args).fetchall()


def assert_plain_4xx(response, *codes: int) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if codes:
        assert response.status_code in codes, response.status_code
    assert "Traceback" not in response.text and 'File "' not in response.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": ""}',
        b'{"message": "   \\n\\t "}',
        b'{"message": "' + b"a" * MB + b'"}',  # 1 MB
        b"\xff\xfe\x00\x01binary garbage\x9c",  # not JSON, not UTF-8
        b'{"message": "\xff\xfe card"}',  # invalid UTF-8 inside JSON
        b'{"message": 123}',
        b'{"message": ["I lost my card"]}',
        b'{"message": null}',
        b'{"message": "hi", "session_id": {"$ne": ""}}',
        b'{"message": "hi", "session_id": "../../etc/passwd"}',
        b"[]",
        b"",
    ],
    ids=["empty", "whitespace", "1MB", "binary", "bad-utf8", "number", "list", "null", "session-object", "session-path", "array", "no-body"],
)
def test_bad_chat_bodies_get_a_plain_4xx(client, settings, body):
    response = client.post("/api/v1/chat", content=body, headers={"Content-Type": "application/json"})
    assert_plain_4xx(response)
    assert rows(settings, "select count(*) from turns") == [(0,)]


@pytest.mark.parametrize(
    "message",
    [
        "مرحبا، لقد فقدت بطاقتي 💳😱 what now?",  # right-to-left text and emoji
        "<script>alert('x')</script><img src=x onerror=alert(1)> I lost my card",
        "'; DROP TABLE turns; -- I lost my card",
        "Robert'); DELETE FROM feedback WHERE ('1'='1",
        "\u202e\u0000\u200b zero-width and control characters",
    ],
)
def test_odd_but_valid_text_is_answered_and_stored_verbatim(client, settings, message):
    response = client.post("/api/v1/chat", json={"message": message})
    assert response.status_code == 200, response.text
    reply = response.json()
    stored = rows(settings, "select message from turns where id = ?", [reply["turn_id"]])
    assert stored == [(message.replace("\x00", "").strip(),)]  # stored as text, never executed
    assert rows(settings, "select count(*) from sqlite_master where name in ('turns', 'feedback')") == [(2,)]


def test_votes_only_on_known_turns_of_ones_own_session(client, settings):
    mine = client.post("/api/v1/chat", json={"message": "I lost my card"}).json()
    theirs = client.post("/api/v1/chat", json={"message": "my card was declined"}).json()
    unknown = client.post("/api/v1/feedback", json={"turn_id": "nope", "vote": "up", "session_id": mine["session_id"]})
    assert_plain_4xx(unknown, 404)
    stolen = client.post("/api/v1/feedback", json={"turn_id": theirs["turn_id"], "vote": "down", "session_id": mine["session_id"]})
    assert_plain_4xx(stolen, 404)
    for bad in (
        {"turn_id": mine["turn_id"], "vote": "sideways", "session_id": mine["session_id"]},
        {"turn_id": mine["turn_id"], "vote": 1, "session_id": mine["session_id"]},
        {"turn_id": mine["turn_id"], "vote": "up"},
    ):
        assert_plain_4xx(client.post("/api/v1/feedback", json=bad), 422)
    assert rows(settings, "select count(*) from feedback") == [(0,)]


def test_a_replayed_vote_is_recorded_once(client, settings):
    turn = client.post("/api/v1/chat", json={"message": "I lost my card"}).json()
    vote = {"turn_id": turn["turn_id"], "vote": "down", "comment": "wrong", "session_id": turn["session_id"]}
    ids = {client.post("/api/v1/feedback", json=vote).json()["feedback_id"] for _ in range(50)}
    assert len(ids) == 1
    changed = client.post("/api/v1/feedback", json={**vote, "vote": "up", "comment": ""}).json()["feedback_id"]
    assert changed not in ids  # a changed mind is a new row (the newest vote wins when training reads them)
    assert rows(settings, "select vote from feedback order by id") == [(-1,), (1,)]


def test_ten_thousand_requests_from_one_client_are_rate_limited(settings):
    assistant = open_assistant(replace(settings, rate_limit=60, trust_forwarded_for=True))
    client = TestClient(create_api(assistant), raise_server_exceptions=False)
    codes: dict[int, int] = {}
    started = time.monotonic()
    for _ in range(10_000):
        code = client.post("/api/v1/chat", json={"message": ""}).status_code  # allowed ones end in a cheap 400
        codes[code] = codes.get(code, 0) + 1
    elapsed = time.monotonic() - started
    # Let through: the burst (half a minute's 60) and one a second while the loop ran (39 s on two pytest workers;
    # a machine busy with other work took 153 s and let 183 through, which a fixed bound of 100 refused).
    assert set(codes) <= {400, 429} and 30 <= codes.get(400, 0) <= 30 + elapsed + 1
    assert codes.get(429, 0) == 10_000 - codes.get(400, 0)
    # The bucket refills one request a second, so a token may have come back in the milliseconds since the loop's
    # last request (a CI run saw it once): the next requests are refused with at most one let through first.
    tries = [client.post("/api/v1/chat", json={"message": "hi"}) for _ in range(3)]
    assert sum(t.status_code == 200 for t in tries) <= 1
    limited = next(t for t in tries if t.status_code != 200)
    assert limited.status_code == 429 and "Too many requests" in limited.json()["detail"] and limited.headers["Retry-After"]
    other = client.post("/api/v1/chat", json={"message": ""}, headers={"X-Forwarded-For": "203.0.113.7"})
    assert other.status_code == 400  # another customer is not affected


def test_a_full_server_says_busy_instead_of_piling_up(settings):
    assistant = open_assistant(replace(settings, max_pending=1, rate_limit=0)).warm_up()
    inside, release = threading.Event(), threading.Event()
    respond = assistant.respond

    def slow_respond(*args, **kwargs):  # the real respond, held at the door so a second request arrives meanwhile
        inside.set()
        release.wait(10)
        return respond(*args, **kwargs)

    assistant.respond = slow_respond
    client = TestClient(create_api(assistant), raise_server_exceptions=False)
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(r=client.post("/api/v1/chat", json={"message": "I lost my card"})))
    worker.start()
    assert inside.wait(10)
    busy = client.post("/api/v1/chat", json={"message": "I lost my card"})
    release.set()
    worker.join(30)
    assert busy.status_code == 503 and "busy" in busy.json()["detail"] and busy.headers["Retry-After"]
    assert first["r"].status_code == 200


def test_a_locked_database_gives_a_plain_503_and_serving_goes_on(settings):
    assistant = open_assistant(replace(settings, db_busy_timeout_s=0.2, rate_limit=0)).warm_up()
    client = TestClient(create_api(assistant), raise_server_exceptions=False)
    locker = sqlite3.connect(settings.db_path, timeout=0.1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        locked = client.post("/api/v1/chat", json={"message": "I lost my card"})
    finally:
        locker.rollback()
        locker.close()
    assert locked.status_code == 503 and "database is busy or full" in locked.json()["detail"]
    assert client.post("/api/v1/chat", json={"message": "I lost my card"}).status_code == 200


def test_a_full_disk_gives_a_plain_503_and_keeps_what_was_stored(settings):
    client = TestClient(create_api(open_assistant(replace(settings, rate_limit=0)).warm_up()))
    first = client.post("/api/v1/chat", json={"message": "I lost my card"}).json()
    size_mb = (settings.db_path.stat().st_size + settings.db_path.with_name("csbot.db-wal").stat().st_size) / 2**20
    # A quota just above the current size: SQLite answers SQLITE_FULL ("database or disk is full"), as on a full disk.
    full = open_assistant(replace(settings, rate_limit=0, db_max_mb=size_mb + 0.05)).warm_up()
    client = TestClient(create_api(full), raise_server_exceptions=False)
    codes = [client.post("/api/v1/chat", json={"message": f"{i} " + "card " * 380}).status_code for i in range(60)]
    assert 503 in codes and set(codes) <= {200, 503}, codes
    assert rows(settings, "select count(*) from turns where id = ?", [first["turn_id"]]) == [(1,)]
    assert client.get("/api/v1/health").status_code == 200  # still serving


def _luhn_complete(prefix: str) -> str:
    """``prefix`` plus the check digit that makes it Luhn-valid."""
    from core.redact import luhn_valid

    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def test_personal_data_never_reaches_the_database_or_the_export(client, settings):
    secrets = {
        "email": "Jane.Doe+refunds@Example.co.uk",
        "amex": "3782 822463 10005",
        "visa13": "4222222222222",
        "card19": _luhn_complete("630400000000000001"),
        "phone_uk": "07700 900123",
        "phone_us": "+1-202-555-0143",
        "iban": "FR14 2004 1010 0505 0001 3M02 606",
    }
    message = "Hi, I'm {email}, my card {amex} (or {visa13}, {card19}) was charged twice; call {phone_uk} or {phone_us}; refund to {iban}"
    reply = client.post("/api/v1/chat", json={"message": message.format(**secrets)}).json()
    comment = f"still waiting, reach me at {secrets['email']} / {secrets['phone_us']}"
    assert (
        client.post("/api/v1/feedback", json={"turn_id": reply["turn_id"], "vote": "down", "comment": comment, "session_id": reply["session_id"]}).status_code
        == 200
    )
    stored = rows(settings, "select message from turns")[0][0] + rows(settings, "select comment from feedback")[0][0]
    export = io.StringIO()
    FeedbackStore(settings.db_path).export_csv(export)
    raw_db = settings.db_path.read_bytes() + settings.db_path.with_name("csbot.db-wal").read_bytes()
    for name, value in secrets.items():
        digits = "".join(ch for ch in value if ch.isalnum())
        for haystack in (stored, export.getvalue()):
            assert value not in haystack and value.lower() not in haystack.lower(), name
            assert digits not in "".join(ch for ch in haystack if ch.isalnum()), name
        assert value.encode() not in raw_db, name
    assert "[EMAIL]" in stored and "[CARD]" in stored and "[PHONE]" in stored and "[IBAN]" in stored


@pytest.mark.parametrize(
    "typed",
    ["![pixel](https://tracker.example/p.png)", "**click** [here](javascript:alert(1))", "<img src=x onerror=alert(1)>", "1. a\n# b\n> c | d ~~e~~ `f`"],
)
def test_what_people_type_shows_as_typed_in_the_chat(typed):
    """An agent's reply, a ticket's answer or a customer's message is neither HTML nor Markdown in Gradio's chat."""
    import html as html_module

    from markdown_it import MarkdownIt

    from bot.ui import format_event, format_reply
    from core.types import Reply

    render = MarkdownIt("commonmark").enable("table").enable("strikethrough").render
    for shown in (
        format_reply(Reply(turn_id="t", session_id="s", action="answer", text=typed, intent="", confidence=0.9)),
        format_event({"event": "agent", "author": "Sam", "text": typed}).split(":** ", 1)[1],
    ):
        rendered = render(shown)
        assert not any(tag in rendered for tag in ("<img", "<a ", "<strong", "<h1", "<ol", "<blockquote", "<code", "<s>", "<table"))
        text = html_module.unescape(rendered.replace("<p>", "").replace("</p>", "").replace("<br />", "").replace("\n", "")).strip()
        assert text.replace(" ", "") == typed.replace("\n", "").replace(" ", "")
