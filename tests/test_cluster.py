"""Two `csbot serve` replicas, as on two machines: one PostgreSQL, one Redis, a shared model folder, and
nothing else in common (each its own home: own ticket index, own logs). Real servers, real HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.test_server import free_port, sse_events

ADMIN = ("admin", "a long admin password")
AGENT = ("Sam", "correct horse battery")


@contextlib.contextmanager
def replica(home: Path, env: dict[str, str]):
    """One `csbot serve` process on a free port until the block ends; yields (base URL, process)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "csbot", "serve"], env={**env, "CSBOT_HOME": str(home), "CSBOT_PORT": str(port)}, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"replica exited: {(home / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("replica did not start within 120 s")
        time.sleep(0.3)
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


def csbot(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "csbot", *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"csbot {' '.join(args)}: {done.stdout[-1000:]} {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def cluster(ready_home, tmp_path_factory):
    """The ready home moved onto PostgreSQL (``csbot db copy``) and served by two replicas."""
    from tests.servers import PostgresServer, RedisServer

    root = tmp_path_factory.mktemp("cluster")
    pg_folder = Path(__import__("tempfile").mkdtemp(prefix="csbot-postgres-"))  # the postgres user must reach it
    postgres, redis = PostgresServer(pg_folder).start(), RedisServer(root)
    try:
        redis.start()
        url = postgres.create_database()
        source = root / "source"
        shutil.copytree(ready_home, source)
        shared_models = root / "shared-models"  # a shared path (NFS, a volume) in a real deployment
        shutil.copytree(ready_home / "models", shared_models)
        env = {
            **os.environ,
            "CSBOT_DATABASE_URL": url,
            "CSBOT_REDIS_URL": redis.url,
            "CSBOT_MODEL_DIR": str(shared_models),
            "CSBOT_RATE_LIMIT": "30",
            "CSBOT_DB_BUSY_TIMEOUT_S": "3",  # a request waits at most 3 s for a database connection, then a plain 503
            "CSBOT_TRUST_FORWARDED_FOR": "true",
            "CSBOT_ADMIN_USER": ADMIN[0],
            "CSBOT_ADMIN_PASSWORD": ADMIN[1],
            "CSBOT_AGENT_PASSWORD": AGENT[1],
        }
        sqlite_env = {k: v for k, v in env.items() if k != "CSBOT_DATABASE_URL"}
        csbot({**sqlite_env, "CSBOT_HOME": str(source)}, "db", "copy", "--to", url)  # the install moves: SQLite file -> PostgreSQL
        csbot({**env, "CSBOT_HOME": str(source), "CSBOT_DATABASE_URL": url}, "agents", "add", AGENT[0])
        with replica(root / "a", env) as (a, proc_a), replica(root / "b", env) as (b, proc_b):
            yield {"a": a, "b": b, "env": env, "root": root, "url": url, "procs": (proc_a, proc_b), "postgres": postgres, "redis": redis}
    finally:
        redis.stop()
        postgres.stop("immediate")
        shutil.rmtree(pg_folder, ignore_errors=True)


def client(base: str, who: str) -> httpx.Client:
    """A client with its own address (the replicas trust X-Forwarded-For, as behind nginx), so the rate limit
    of one check does not spill into another."""
    return httpx.Client(base_url=base, headers={"X-Forwarded-For": who}, timeout=30)


def test_a_conversation_moves_between_replicas_and_its_handoff_holds_on_both(cluster):
    a, b = client(cluster["a"], "10.0.0.1"), client(cluster["b"], "10.0.0.1")
    first = a.post("/api/v1/chat", json={"message": "I lost my card"}).json()
    sid = first["session_id"]
    assert first["action"] == "answer"
    waiting = b.post("/api/v1/handoff", json={"session_id": sid}).json()  # the next request lands on the other replica
    assert waiting["state"] == "waiting"
    for replica_client in (a, b):
        silent = replica_client.post("/api/v1/chat", json={"message": "hello? is anyone there", "session_id": sid}).json()
        assert silent["state"] == "waiting" and silent["text"] == ""  # the bot is silent on both
    inbox = httpx.get(f"{cluster['a']}/api/v1/agent/inbox", auth=AGENT, timeout=30).json()
    assert sid in [c["session_id"] for c in inbox]


def test_an_agent_reply_through_one_replica_reaches_a_customer_listening_on_the_other(cluster):
    a, b = client(cluster["a"], "10.0.0.2"), client(cluster["b"], "10.0.0.2")
    sid = a.post("/api/v1/chat", json={"message": "I want to talk to a person"}).json()["session_id"]
    assert httpx.post(f"{cluster['b']}/api/v1/agent/conversations/{sid}/claim", auth=AGENT, timeout=30).status_code == 200
    received: list[str] = []
    stream_open = threading.Event()

    def listen():  # the customer's widget, connected to replica A
        with a.stream("GET", f"/api/v1/conversations/{sid}/events") as response:
            stream_open.set()
            for line in response.iter_lines():
                received.append(line)
                if "through the other replica" in line:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert stream_open.wait(30)
    sent = time.monotonic()
    text = "Hi, Sam here, through the other replica"
    reply = httpx.post(f"{cluster['b']}/api/v1/agent/conversations/{sid}/reply", json={"text": text}, auth=AGENT, timeout=30)
    assert reply.status_code == 200
    listener.join(10)
    assert not listener.is_alive(), "the agent's reply did not reach the customer on the other replica"
    assert time.monotonic() - sent < 2.0  # Redis pub/sub wakes the stream; no waiting for a poll
    events = sse_events("\n".join(received) + "\n\n")
    assert ("agent", "Hi, Sam here, through the other replica") in [(e["event"], e["data"].get("text")) for e in events]
    # The customer's answer, sent to replica B, is in the transcript read from replica A.
    b.post("/api/v1/chat", json={"message": "thanks Sam", "session_id": sid})
    transcript = httpx.get(f"{cluster['a']}/api/v1/agent/conversations/{sid}", auth=AGENT, timeout=30).json()
    assert "thanks Sam" in [i.get("message") for i in transcript["items"]]


def test_the_rate_limit_is_one_count_for_every_replica(cluster):
    a, b = client(cluster["a"], "10.0.0.3"), client(cluster["b"], "10.0.0.3")
    statuses = []
    for i in range(40):  # alternate replicas: 30 a minute for this client in all
        statuses.append((a if i % 2 else b).get("/api/v1/health").status_code)
    assert statuses.count(200) <= 31 and statuses.count(429) >= 9, statuses
    assert a.get("/api/v1/health").status_code == 429 and b.get("/api/v1/health").status_code == 429
    assert client(cluster["a"], "10.0.0.4").get("/api/v1/health").status_code == 200  # another client is not limited


def test_a_promotion_through_one_replica_is_served_by_the_other_within_5_s(cluster):
    from core.registry import ModelRegistry
    from core.store import FeedbackStore

    registry = ModelRegistry(Path(cluster["env"]["CSBOT_MODEL_DIR"]), store=FeedbackStore(cluster["url"]))
    serving = registry.current_version("intent")
    staging = registry.staging_dir("intent")
    shutil.copytree(registry.path("intent", serving), staging, dirs_exist_ok=True)
    candidate = registry.publish("intent", staging, {**registry.card("intent", serving), "note": "a copy, for the rollout test"})
    b = client(cluster["b"], "10.0.0.5")
    assert b.post("/api/v1/chat", json={"message": "where is my card"}).json()["model_version"] == serving
    promoted = httpx.post(f"{cluster['a']}/api/v1/admin/models/promote", json={"version": candidate, "kind": "intent"}, auth=ADMIN, timeout=30)
    assert promoted.status_code == 200, promoted.text
    at = time.monotonic()
    while b.post("/api/v1/chat", json={"message": "where is my card"}).json()["model_version"] != candidate:
        assert time.monotonic() - at < 5.0, "replica B still serves the old version 5 s after the promotion"
        time.sleep(0.25)
    rolled = httpx.post(f"{cluster['b']}/api/v1/admin/models/rollback", params={"kind": "intent"}, auth=ADMIN, timeout=30)
    assert rolled.json()["serving"] == serving


def test_a_ticket_ingested_from_the_command_line_is_answered_by_both(cluster, tmp_path):
    tickets = tmp_path / "new.csv"
    question = "My card vanished on the ferry to Lisbon yesterday"
    tickets.write_text(f"question,answer,intent\n{question},Lisbon harbour desk: freeze the card in the app first.,lost_or_stolen_card\n")
    out = csbot({**cluster["env"], "CSBOT_HOME": str(cluster["root"] / "cli")}, "ingest", str(tickets), "--intent-col", "intent")
    assert "1 added" in out.stdout or "added 1" in out.stdout, out.stdout
    for base in (cluster["a"], cluster["b"]):
        at = time.monotonic()
        while "Lisbon harbour desk" not in (reply := client(base, "10.0.0.6").post("/api/v1/chat", json={"message": question}).json())["text"]:
            assert time.monotonic() - at < 5.0, f"{base} does not answer with the ingested ticket: {reply['text']}"
            time.sleep(0.25)


def test_redis_down_the_bot_keeps_answering_and_events_fall_back_to_polling(cluster):
    a, b = client(cluster["a"], "10.0.0.7"), client(cluster["b"], "10.0.0.7")
    sid = a.post("/api/v1/chat", json={"message": "I want to talk to a person"}).json()["session_id"]
    assert httpx.post(f"{cluster['b']}/api/v1/agent/conversations/{sid}/claim", auth=AGENT, timeout=30).status_code == 200
    cluster["redis"].stop()
    try:
        for c in (a, b):
            assert c.post("/api/v1/chat", json={"message": "where is my card"}).status_code == 200  # the limit fails open
        received: list[str] = []
        stream_open = threading.Event()

        def listen():
            with a.stream("GET", f"/api/v1/conversations/{sid}/events") as response:
                stream_open.set()
                for line in response.iter_lines():
                    received.append(line)
                    if "while Redis is down" in line:
                        return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert stream_open.wait(30)
        sent = time.monotonic()
        httpx.post(f"{cluster['b']}/api/v1/agent/conversations/{sid}/reply", json={"text": "Sam, while Redis is down"}, auth=AGENT, timeout=30)
        listener.join(10)
        assert not listener.is_alive() and time.monotonic() - sent < 3.0  # the stream's own look at the store (1 s)
        logs = (cluster["root"] / "a" / "serve.log").read_text() + (cluster["root"] / "b" / "serve.log").read_text()
        assert "failing open" in logs
    finally:
        cluster["redis"].start()


def test_postgresql_stopped_and_started_under_load(cluster):
    """While the database is down, customers get a plain 503 (never a 500); when it is back, the same replicas
    answer again without a restart, and every acknowledged turn is stored."""
    import psycopg

    acked: set[str] = set()
    statuses: list[int] = []
    stop = threading.Event()

    def customer(k: int) -> None:
        with client(cluster["a"] if k % 2 else cluster["b"], f"10.2.0.{k}") as c:
            while not stop.is_set():
                try:
                    r = c.post("/api/v1/chat", json={"message": "what is the exchange rate today"})
                except httpx.HTTPError:
                    statuses.append(0)
                    continue
                statuses.append(r.status_code)
                if r.status_code == 200:
                    acked.add(r.json()["turn_id"])
                elif r.status_code == 503:
                    assert "try again" in r.json()["detail"].lower()
                time.sleep(2.5)  # 24 a minute: under the limit of 30

    threads = [threading.Thread(target=customer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    cluster["postgres"].stop("immediate")
    time.sleep(8)
    down = len(statuses)
    cluster["postgres"].start()
    time.sleep(12)
    stop.set()
    for t in threads:
        t.join(30)
    assert 503 in statuses[:down] and 500 not in statuses and 0 not in statuses, statuses
    assert statuses[-4:] == [200] * 4, statuses  # recovered without restarting csbot
    with psycopg.connect(cluster["url"]) as conn:
        stored = {r[0] for r in conn.execute("select id from turns")}
    assert acked <= stored


def test_kill_9_of_one_replica_under_load_loses_nothing_acknowledged(cluster):
    """Last in the module: it kills replica A. Clients spread over both; those on A fail over to B."""
    import psycopg

    acked_turns: set[str] = set()
    acked_votes: set[int] = set()
    stop = threading.Event()
    lock = threading.Lock()

    def customer(k: int) -> None:
        bases = [cluster["a"], cluster["b"]]
        with httpx.Client(headers={"X-Forwarded-For": f"10.1.0.{k}"}, timeout=10) as c:
            i = 0
            while not stop.is_set() and i < 12:  # under the rate limit of 30 a minute
                base = bases[(k + i) % len(bases)]
                try:
                    chat = c.post(f"{base}/api/v1/chat", json={"message": f"my card payment was declined {k}-{i}"})
                    if chat.status_code != 200:
                        i += 1
                        continue
                    turn = chat.json()
                    with lock:
                        acked_turns.add(turn["turn_id"])
                    vote = c.post(f"{base}/api/v1/feedback", json={"turn_id": turn["turn_id"], "vote": "up", "session_id": turn["session_id"]})
                    if vote.status_code == 200:
                        with lock:
                            acked_votes.add(vote.json()["feedback_id"])
                except httpx.HTTPError:
                    bases = [cluster["b"]]  # the load balancer takes the dead replica out
                i += 1

    threads = [threading.Thread(target=customer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(2)
    proc_a = cluster["procs"][0]
    os.kill(proc_a.pid, signal.SIGKILL)
    proc_a.wait(10)
    for t in threads:
        t.join(120)
    stop.set()
    assert len(acked_votes) >= 20
    b = client(cluster["b"], "10.1.1.1")
    assert b.post("/api/v1/chat", json={"message": "I lost my card"}).json()["action"] == "answer"  # the other keeps serving
    with psycopg.connect(cluster["url"]) as conn:
        stored_turns = {r[0] for r in conn.execute("select id from turns")}
        stored_votes = {r[0] for r in conn.execute("select id from feedback")}
    assert acked_turns <= stored_turns and acked_votes <= stored_votes
