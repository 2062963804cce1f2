"""Faults with real processes: the server killed with SIGKILL mid-writes, a retrain killed mid-training, file
arguments that try to leave their folder. Nothing acknowledged is lost and serving goes on."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace

import httpx
import pytest
from fastapi.testclient import TestClient

from bot.api import create_api
from core.registry import ModelRegistry
from csbot.wiring import open_assistant
from tests.test_cli import run
from tests.test_server import free_port, start_server


def spawn_server(home, port: int) -> subprocess.Popen:
    env = {**os.environ, "CSBOT_HOME": str(home), "CSBOT_PORT": str(port), "CSBOT_RATE_LIMIT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "csbot", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("server did not start")


def test_sigkill_mid_writes_loses_no_acknowledged_vote(home):
    port = free_port()
    proc = spawn_server(home, port)
    base = f"http://127.0.0.1:{port}"
    turns = [httpx.post(f"{base}/api/v1/chat", json={"message": f"I lost my card {i}"}, timeout=30).json() for i in range(20)]
    acked_turns = {t["turn_id"] for t in turns}
    acked_votes: list[int] = []
    stop = threading.Event()

    def voter(offset: int) -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            i = offset
            while not stop.is_set():
                turn = turns[i % len(turns)]
                try:
                    chat = client.post("/api/v1/chat", json={"message": "my card was declined", "session_id": turn["session_id"]})
                    if chat.status_code == 200:
                        acked_turns.add(chat.json()["turn_id"])
                    vote = client.post(
                        "/api/v1/feedback",
                        json={"turn_id": turn["turn_id"], "vote": "up" if i % 2 else "down", "comment": f"c{i}", "session_id": turn["session_id"]},
                    )
                    if vote.status_code == 200:
                        acked_votes.append(vote.json()["feedback_id"])
                except httpx.HTTPError:
                    return  # the server is gone
                i += 4

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    os.kill(proc.pid, signal.SIGKILL)  # no shutdown, no checkpoint, writes in flight
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked_votes) > 20
    db = sqlite3.connect(home / "csbot.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored_votes = {r[0] for r in db.execute("select id from feedback")}
    stored_turns = {r[0] for r in db.execute("select id from turns")}
    assert set(acked_votes) <= stored_votes and acked_turns <= stored_turns
    db.close()
    with start_server(home, free_port()) as restarted:  # and it serves again on the same files
        assert httpx.post(f"{restarted}/api/v1/chat", json={"message": "I lost my card"}, timeout=30).json()["action"] == "answer"


def test_a_retrain_killed_midway_changes_nothing_serving(home, settings):
    registry = ModelRegistry(settings.models_dir)
    before = registry.current_version("intent"), [v["version"] for v in registry.versions("intent")]
    env = {**os.environ, "CSBOT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "csbot", "train", "--epochs", "3"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    intent_dir = settings.models_dir / "intent"
    while time.time() < deadline and not any(p.name.startswith(".staging-") for p in intent_dir.iterdir()):
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    time.sleep(2)  # inside the training loop
    proc.kill()
    proc.wait(10)
    assert (registry.current_version("intent"), [v["version"] for v in registry.versions("intent")]) == before
    assistant = open_assistant(settings).warm_up()
    assert assistant.respond("I lost my card").model_version == before[0]
    listing = run(home, "models", "list")
    assert listing.exit_code == 0 and ".staging" not in listing.output


@pytest.mark.parametrize("version", ["../../../etc", "v0001/../../..", "/etc/passwd", "v0001\n", "..", "v0001/card.json"])
def test_version_names_cannot_leave_the_model_folder(home, settings, version):
    result = run(home, "models", "promote", version)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is not a version name" in result.output
    assert ModelRegistry(settings.models_dir).current_version("intent") == "v0001"


def test_admin_api_refuses_path_like_versions(home, settings, monkeypatch):
    monkeypatch.setenv("CSBOT_ADMIN_USER", "admin")
    monkeypatch.setenv("CSBOT_ADMIN_PASSWORD", "s3cret-pass")
    client = TestClient(create_api(open_assistant(replace(settings, rate_limit=0))), raise_server_exceptions=False)
    for version in ("../../etc", "v0001/../../x", "%2e%2e%2fetc"):
        r = client.post("/api/v1/admin/models/promote", json={"version": version, "kind": "intent"}, auth=("admin", "s3cret-pass"))
        assert 400 <= r.status_code < 500 and "Traceback" not in r.text, (version, r.status_code)
    r = client.post("/api/v1/admin/models/promote", json={"version": "v0001", "kind": "../intent"}, auth=("admin", "s3cret-pass"))
    assert 400 <= r.status_code < 500


def test_file_arguments_that_are_not_ticket_files_are_refused_plainly(home, tmp_path):
    for args in (["ingest", "/etc/passwd"], ["ingest", str(tmp_path)], ["eval", "/etc/hostname"], ["ingest", str(tmp_path / "missing.csv")]):
        result = run(home, *args)
        assert result.exit_code != 0 and "Traceback" not in result.output, (args, result.output)
        assert result.output.strip().startswith(("Error", "Usage")), result.output
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_broken_followups_file_is_one_plain_sentence_before_any_training(home, settings, tmp_path, monkeypatch):
    """The written follow-ups a reader learns from are a setting (a team whose intents are not BANKING77's writes
    its own); a file without the columns stops `csbot train` at once with what to fix, and nothing is published."""
    broken = tmp_path / "followups.csv"
    broken.write_text("question,answer\nhow long does it take?,two days\n")
    monkeypatch.setenv("CSBOT_FOLLOWUPS_FILE", str(broken))
    registry = ModelRegistry(settings.models_dir)
    before = [v["version"] for v in registry.versions("intent")]
    result = run(home, "train", "--quick", "--followup-pairs", "10")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot read the written follow-ups in {broken}" in result.output and "earlier_intent, message and intent" in result.output
    assert [v["version"] for v in registry.versions("intent")] == before
