"""Drives the real server (``csbot serve`` in a subprocess) over HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(ready_home, tmp_path_factory):
    """One home for this module's server (module-scoped: starting a server costs seconds)."""
    import shutil

    dest = tmp_path_factory.mktemp("server") / "home"
    shutil.copytree(ready_home, dest)
    return dest


@contextlib.contextmanager
def start_server(home, port: int, **extra_env: str):
    """Run ``csbot serve`` on ``port`` until the block ends; yields the base URL."""
    env = {**os.environ, "CSBOT_HOME": str(home), "CSBOT_PORT": str(port), **extra_env}
    proc = subprocess.Popen([sys.executable, "-m", "csbot", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not start within 120 s")
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(home):
    with start_server(home, free_port()) as base:
        yield base


def test_chat_and_vote_over_http(server, home):
    reply = httpx.post(f"{server}/api/v1/chat", json={"message": "I lost my card, what do I do?"}, timeout=30).json()
    assert reply["action"] == "answer" and reply["intent"] == "lost_or_stolen_card"
    assert reply["text"].startswith("If your card is lost or stolen")
    vote = httpx.post(
        f"{server}/api/v1/feedback",
        json={"turn_id": reply["turn_id"], "vote": "down", "comment": "wrong", "session_id": reply["session_id"]},
        timeout=30,
    )
    assert vote.status_code == 200 and vote.json()["status"] == "recorded"
    db = sqlite3.connect(home / "csbot.db")
    assert db.execute("select vote, comment from feedback where turn_id = ?", [reply["turn_id"]]).fetchall() == [(-1, "wrong")]
    assert db.execute("select action from turns where id = ?", [reply["turn_id"]]).fetchall() == [("answer",)]
    alternatives = vote.json()["alternatives"]  # "Did you mean…": picking one labels the down-voted message
    assert alternatives and "lost_or_stolen_card" not in [a["intent"] for a in alternatives]
    chosen = httpx.post(
        f"{server}/api/v1/choose", json={"turn_id": reply["turn_id"], "intent": alternatives[0]["intent"], "session_id": reply["session_id"]}, timeout=30
    ).json()
    assert chosen["action"] == "answer" and chosen["intent"] == alternatives[0]["intent"]
    label = db.execute("select vote, corrected_intent from feedback where turn_id = ? and corrected_intent != ''", [reply["turn_id"]]).fetchall()
    assert label == [(-1, alternatives[0]["intent"])]


def test_bad_requests_get_plain_4xx(server):
    empty = httpx.post(f"{server}/api/v1/chat", json={"message": "   "}, timeout=30)
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    huge = httpx.post(f"{server}/api/v1/chat", json={"message": "a" * 100_000}, timeout=30)
    assert huge.status_code == 200 and "only the first 2000" in huge.json()["notice"]
    assert httpx.post(f"{server}/api/v1/chat", json={"message": "a" * 100_001}, timeout=30).status_code == 422
    assert httpx.post(f"{server}/api/v1/chat", json={"message": 5}, timeout=30).status_code == 422
    unknown = httpx.post(f"{server}/api/v1/feedback", json={"turn_id": "nope", "vote": "up", "session_id": "s"}, timeout=30)
    assert unknown.status_code == 404 and "no turn" in unknown.json()["detail"]
    assert httpx.post(f"{server}/api/v1/feedback", json={"turn_id": "x", "vote": "maybe", "session_id": "s"}, timeout=30).status_code == 422
    mine = httpx.post(f"{server}/api/v1/chat", json={"message": "where is my card"}, timeout=30).json()
    for body in ({"turn_id": mine["turn_id"], "vote": "up"}, {"turn_id": mine["turn_id"], "vote": "up", "session_id": "someone-else"}):
        assert httpx.post(f"{server}/api/v1/feedback", json=body, timeout=30).status_code in (404, 422)


def test_openapi_and_chat_page_are_served(server):
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    assert {"/api/v1/chat", "/api/v1/feedback", "/api/v1/health"} <= set(spec["paths"])
    page = httpx.get(f"{server}/", timeout=30)
    assert page.status_code == 200 and "Support chat" in page.text


def test_admin_routes_refuse_without_credentials(server):
    for method, path in [
        ("get", "/api/v1/admin/stats"),
        ("get", "/api/v1/admin/review"),
        ("post", "/api/v1/admin/retrain"),
        ("post", "/api/v1/admin/models/rollback"),
        ("get", "/api/v1/admin/export"),
        ("get", "/admin"),
    ]:
        response = getattr(httpx, method)(f"{server}{path}", timeout=30)
        assert response.status_code == 403, path


def sse_events(text: str) -> list[dict]:
    """Parse a text/event-stream body into [{'id':..., 'event':..., 'data': {...}}]."""
    import json

    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append({"id": fields.get("id"), "event": fields.get("event"), "data": json.loads(fields["data"])})
    return out


@pytest.fixture(scope="module")
def agent(home):
    from bot.agents import AgentDirectory
    from core.store import FeedbackStore

    AgentDirectory(FeedbackStore(home / "csbot.db")).add("Sam", "correct horse battery")
    return ("Sam", "correct horse battery")


def test_agent_routes_need_an_agent_login(server, agent):
    assert httpx.get(f"{server}/api/v1/agent/inbox", timeout=30).status_code == 401  # a customer has no login
    assert httpx.get(f"{server}/api/v1/agent/inbox", auth=("Sam", "wrong password"), timeout=30).status_code == 401
    assert httpx.get(f"{server}/api/v1/agent/inbox", auth=("Nobody", "correct horse battery"), timeout=30).status_code == 401
    assert httpx.get(f"{server}/api/v1/agent/inbox", auth=agent, timeout=30).status_code == 200
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    assert {"/api/v1/agent/inbox", "/api/v1/agent/conversations/{session_id}/reply", "/api/v1/conversations/{session_id}/events"} <= set(spec["paths"])


def test_agent_reply_reaches_the_customer_live_and_a_reconnect_gets_what_it_missed(server, agent, home):
    import threading

    waiting = httpx.post(f"{server}/api/v1/chat", json={"message": "I want to talk to a person"}, timeout=30).json()
    sid = waiting["session_id"]
    assert waiting["state"] == "waiting"
    inbox = httpx.get(f"{server}/api/v1/agent/inbox", auth=agent, timeout=30).json()
    assert sid in [c["session_id"] for c in inbox]
    assert httpx.post(f"{server}/api/v1/agent/conversations/{sid}/claim", auth=agent, timeout=30).status_code == 200

    received: list[str] = []
    stream_open = threading.Event()

    def listen():
        with httpx.stream("GET", f"{server}/api/v1/conversations/{sid}/events", timeout=30) as response:
            stream_open.set()
            for line in response.iter_lines():
                received.append(line)
                if line.startswith("data:") and "<i>first</i>" in line:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert stream_open.wait(30)
    first = httpx.post(f"{server}/api/v1/agent/conversations/{sid}/reply", json={"text": "<i>first</i>"}, auth=agent, timeout=30).json()
    listener.join(10)
    assert not listener.is_alive() and any("<i>first</i>" in line for line in received)  # delivered live, markup as it was typed

    silent = httpx.post(f"{server}/api/v1/chat", json={"message": "thanks, my card is blocked", "session_id": sid}, timeout=30).json()
    assert silent["text"] == "" and silent["agent"] == "Sam"
    second = httpx.post(f"{server}/api/v1/agent/conversations/{sid}/reply", json={"text": "second"}, auth=agent, timeout=30).json()
    # A client that lost its connection after the first reply reconnects with Last-Event-ID and gets the second.
    missed = httpx.get(f"{server}/api/v1/conversations/{sid}/events", params={"follow": "false"}, headers={"Last-Event-ID": str(first["event_id"])}, timeout=30)
    assert [(e["event"], e["data"]["text"]) for e in sse_events(missed.text)] == [("agent", "second")]
    assert sse_events(missed.text)[0]["id"] == str(second["event_id"])
    customer_said = httpx.get(f"{server}/api/v1/agent/conversations/{sid}", auth=agent, timeout=30).json()
    assert "thanks, my card is blocked" in [i.get("message") for i in customer_said["items"]]
    db = sqlite3.connect(home / "csbot.db")
    assert db.execute("select count(*) from session_events where session_id = ? and event = 'agent'", [sid]).fetchone()[0] == 2
