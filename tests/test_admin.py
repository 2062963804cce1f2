"""Admin API and console: authentication, review, models, analytics, export."""

from __future__ import annotations

import shutil
import sqlite3

import httpx
import pytest

from tests.test_server import free_port, start_server

ADMIN = {"CSBOT_ADMIN_USER": "admin", "CSBOT_ADMIN_PASSWORD": "s3cret-pass"}


@pytest.fixture(scope="module")
def admin_server(ready_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("admin") / "home"
    shutil.copytree(ready_home, home)
    with start_server(home, free_port(), **ADMIN) as base:
        yield base, home


def test_every_admin_action_needs_the_password(admin_server):
    base, _ = admin_server
    for method, path in [
        ("get", "/api/v1/admin/stats"),
        ("post", "/api/v1/admin/review"),
        ("post", "/api/v1/admin/models/promote"),
        ("post", "/api/v1/admin/models/rollback"),
        ("post", "/api/v1/admin/retrain"),
        ("get", "/api/v1/admin/export"),
        ("get", "/api/v1/admin/learning-curve"),
    ]:
        assert getattr(httpx, method)(f"{base}{path}", timeout=30).status_code == 401, path
        assert getattr(httpx, method)(f"{base}{path}", auth=("admin", "wrong"), timeout=30).status_code == 401, path


def test_review_models_stats_and_export(admin_server):
    base, home = admin_server
    auth = ("admin", "s3cret-pass")
    reply = httpx.post(f"{base}/api/v1/chat", json={"message": "my card got eaten, email me at x@y.com"}, timeout=30).json()
    httpx.post(f"{base}/api/v1/feedback", json={"turn_id": reply["turn_id"], "vote": "down", "session_id": reply["session_id"]}, timeout=30)
    queue = httpx.get(f"{base}/api/v1/admin/review", auth=auth, timeout=30).json()
    assert reply["turn_id"] in [row["turn_id"] for row in queue]
    listed = next(r for r in queue if r["turn_id"] == reply["turn_id"])
    assert "[EMAIL]" in listed["message"]
    # What a reviewer needs beside the message: what the bot answered, how sure it was, the vote, the session.
    assert listed["answer"] == reply["text"] and listed["intent"] == reply["intent"] and listed["vote"] == -1
    assert listed["session_id"] == reply["session_id"]
    bad = httpx.post(f"{base}/api/v1/admin/review", json={"turn_id": reply["turn_id"], "intent": "nonsense"}, auth=auth, timeout=30)
    assert bad.status_code == 400 and "unknown intent" in bad.json()["detail"]
    ok = httpx.post(f"{base}/api/v1/admin/review", json={"turn_id": reply["turn_id"], "intent": "card_swallowed"}, auth=auth, timeout=30)
    assert ok.status_code == 200
    rows = sqlite3.connect(home / "csbot.db").execute("select corrected_intent, source from feedback where vote = 0").fetchall()
    assert rows == [("card_swallowed", "reviewer")]
    assert reply["turn_id"] not in [r["turn_id"] for r in httpx.get(f"{base}/api/v1/admin/review", auth=auth, timeout=30).json()]
    stats = httpx.get(f"{base}/api/v1/admin/stats", auth=auth, timeout=30).json()
    assert stats["turns"] >= 1 and stats["most_down_voted"]
    models = httpx.get(f"{base}/api/v1/admin/models", auth=auth, timeout=30).json()
    assert [m["version"] for m in models] == ["v0001"] and models[0]["serving"]
    curve = httpx.get(f"{base}/api/v1/admin/learning-curve", auth=auth, timeout=30).json()
    assert [c["version"] for c in curve] == ["v0001"] and curve[0]["decision"] == "promoted" and curve[0]["rule"] == "first model"
    assert 0.5 < curve[0]["validation_accuracy"] <= 1 and curve[0]["handoffs_per_100_customers"] is not None
    assert curve[0]["candidate_weight"] is None  # the first model is no mix with a parent
    rollback = httpx.post(f"{base}/api/v1/admin/models/rollback", auth=auth, timeout=30)
    assert rollback.status_code == 400 and "no earlier" in rollback.json()["detail"]
    export = httpx.get(f"{base}/api/v1/admin/export", auth=auth, timeout=30)
    assert export.status_code == 200 and reply["turn_id"] in export.text and "x@y.com" not in export.text
