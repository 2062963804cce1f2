"""People answering customers, live, under chat load (issue 14): delivery both ways and nothing lost.

Starts the real server (``csbot serve``) over a copy of a home, adds 5 agents, then:
- 50 customers ask for a person (``/api/v1/chat``), each follows its conversation's event stream (SSE);
- 5 agents follow the inbox stream (SSE, ``/api/v1/agent/events``), claim 10 conversations each, and then
  agents and customers take turns: each agent reply carries a unique token, timed from the POST until the
  customer's stream shows it; each customer message likewise until an agent's stream shows it;
- meanwhile other customers chat with the bot at ``--chat-rate`` replies/s (the load benchmark's traffic).
Afterwards every token is looked up in the SQLite file (lost = acknowledged but not stored, or stored but
never delivered). Also counts how often the angry-words rule (``bot.mood``) fires on the 3,080 BANKING77
test queries: calm questions, so every offer there is a false one.

Usage: python benchmarks/handoff.py --home var
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from benchmarks.load import free_port, start_server  # noqa: E402

AGENTS = [f"Agent{i}" for i in range(5)]
PASSWORD = "benchmark-password"


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values) * 1000
    p50, p95 = np.percentile(a, 50), np.percentile(a, 95)
    return {"n": len(values), "p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "max_ms": round(float(a.max()), 1)}


async def follow(client: httpx.AsyncClient, url: str, seen: dict[str, float], stop: asyncio.Event, **kw) -> None:
    """Read a server-sent event stream, noting when each token first arrives."""
    async with client.stream("GET", url, timeout=None, **kw) as response:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                text = json.loads(line[5:].strip()).get("text", "")
                if text.startswith("tok-"):
                    seen.setdefault(text.split()[0], time.perf_counter())
            if stop.is_set():
                return


async def chat_traffic(client: httpx.AsyncClient, base: str, questions: list[str], rate: float, stop: asyncio.Event, stats: dict) -> None:
    """Other customers talking to the bot at ``rate`` replies/s (new session every 5 messages)."""
    rng, session, sent = random.Random(7), None, 0
    interval, next_at = 1.0 / rate, time.perf_counter()

    async def one(message: str, sid: str | None) -> None:
        try:
            r = await client.post(f"{base}/api/v1/chat", json={"message": message, **({"session_id": sid} if sid else {})}, timeout=60)
            stats["chat_ok" if r.status_code == 200 else "chat_errors"] += 1
        except httpx.HTTPError:
            stats["chat_errors"] += 1

    tasks = []
    while not stop.is_set():
        if sent % 5 == 0:
            session = uuid.uuid4().hex
        tasks.append(asyncio.create_task(one(rng.choice(questions), session)))
        sent += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*tasks)


async def run(base: str, args, questions: list[str]) -> dict:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(limits=limits) as client:
        stop = asyncio.Event()
        stats = {"chat_ok": 0, "chat_errors": 0}
        # 50 customers ask for a person.
        sessions = []
        for _ in range(args.customers):
            r = await client.post(f"{base}/api/v1/chat", json={"message": "I want to talk to a person"}, timeout=60)
            r.raise_for_status()
            sessions.append(r.json()["session_id"])
        at_customer: dict[str, float] = {}
        at_agents: dict[str, float] = {}
        streams = [asyncio.create_task(follow(client, f"{base}/api/v1/conversations/{sid}/events", at_customer, stop)) for sid in sessions]
        streams += [asyncio.create_task(follow(client, f"{base}/api/v1/agent/events", at_agents, stop, auth=(a, PASSWORD))) for a in AGENTS]
        await asyncio.sleep(1.0)
        traffic = asyncio.create_task(chat_traffic(client, base, questions, args.chat_rate, stop, stats))
        owner = {sid: AGENTS[i % len(AGENTS)] for i, sid in enumerate(sessions)}
        for sid, agent in owner.items():
            (await client.post(f"{base}/api/v1/agent/conversations/{sid}/claim", auth=(agent, PASSWORD), timeout=60)).raise_for_status()

        sent_agent: dict[str, float] = {}
        sent_customer: dict[str, float] = {}
        acked_agent, acked_customer, errors = [], [], 0
        started = time.perf_counter()

        async def conversation(sid: str) -> None:
            nonlocal errors
            rng = random.Random(sid)
            name = "".join(chr(97 + int(c, 16)) for c in sid[:10])  # letters only: digits could be redacted as a phone number
            await asyncio.sleep(rng.random() * 2)
            for turn in range(args.exchanges):
                token = f"tok-a-{name}-{chr(97 + turn)}"
                sent_agent[token] = time.perf_counter()
                r = await client.post(
                    f"{base}/api/v1/agent/conversations/{sid}/reply", json={"text": f"{token} how can I help?"}, auth=(owner[sid], PASSWORD), timeout=60
                )
                if r.status_code == 200:
                    acked_agent.append(token)
                else:
                    errors += 1
                await asyncio.sleep(1 + rng.random())
                token = f"tok-c-{name}-{chr(97 + turn)}"
                sent_customer[token] = time.perf_counter()
                r = await client.post(f"{base}/api/v1/chat", json={"message": f"{token} my card is blocked", "session_id": sid}, timeout=60)
                if r.status_code == 200 and r.json()["text"] == "":  # stored, and the bot stays silent
                    acked_customer.append(token)
                else:
                    errors += 1
                await asyncio.sleep(1 + rng.random())

        await asyncio.gather(*(conversation(sid) for sid in sessions))
        await asyncio.sleep(3)  # the last deliveries
        elapsed = time.perf_counter() - started
        stop.set()
        await traffic
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)

    to_customer = [at_customer[t] - sent_agent[t] for t in acked_agent if t in at_customer]
    to_agent = [at_agents[t] - sent_customer[t] for t in acked_customer if t in at_agents]
    return {
        "sessions": sessions,
        "acked_agent": acked_agent,
        "acked_customer": acked_customer,
        "agent_to_customer": percentiles(to_customer),
        "customer_to_agent": percentiles(to_agent),
        "undelivered_to_customer": len(acked_agent) - len(to_customer),
        "undelivered_to_agent": len(acked_customer) - len(to_agent),
        "request_errors": errors,
        "chat_traffic": {**stats, "replies_per_s": round(stats["chat_ok"] / elapsed, 1), "target_per_s": args.chat_rate},
        "seconds": round(elapsed, 1),
    }


def audit(db: Path, acked_agent: list[str], acked_customer: list[str]) -> dict:
    con = sqlite3.connect(db)
    stored = {row[0].split()[0] for row in con.execute("select text from session_events where text like 'tok-%'")}
    turns = {row[0].split()[0] for row in con.execute("select message from turns where message like 'tok-%' and text = ''")}
    return {
        "agent_messages_lost": sum(t not in stored for t in acked_agent),
        "customer_messages_lost": sum(t not in stored for t in acked_customer),
        "customer_messages_without_a_silent_turn": sum(t not in turns for t in acked_customer),
    }


def false_offers() -> dict:
    from bot.mood import angry

    queries = [r["question"] for r in read_csv(DATA / "eval.csv")]
    fired = [q for q in queries if angry(q)]
    return {"queries": len(queries), "angry_word_offers": len(fired), "rate": round(len(fired) / len(queries), 4), "all": fired}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="a home to copy (default: a fresh one, trained on first start)")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--exchanges", type=int, default=5, help="agent reply + customer message pairs per conversation")
    parser.add_argument("--chat-rate", type=float, default=30.0)
    args = parser.parse_args()
    questions = [r["question"] for r in read_csv(DATA / "eval.csv")]

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        if args.home:
            shutil.copytree(args.home, home, ignore=shutil.ignore_patterns("*.log", "logs"))
        from bot.agents import AgentDirectory
        from core.store import FeedbackStore

        directory = AgentDirectory(FeedbackStore(home / "csbot.db"))
        for agent in AGENTS:
            directory.add(agent, PASSWORD)
        port = free_port()
        server = start_server(home, port, 1, {"CSBOT_RATE_LIMIT": "0", "CSBOT_AGENT_AWAY_MINUTES": "0"})
        try:
            measured = asyncio.run(run(f"http://127.0.0.1:{port}", args, questions))
        finally:
            server.terminate()
            server.wait(timeout=60)
        lost = audit(home / "csbot.db", measured.pop("acked_agent"), measured.pop("acked_customer"))
        measured.pop("sessions")

    result = {
        "protocol": f"{args.customers} customers waiting, {len(AGENTS)} agents, {args.exchanges} exchanges each way per conversation, "
        f"bot chat traffic at {args.chat_rate} replies/s beside it; one server process; client and server on the same machine",
        **measured,
        "lost_in_database": lost,
        "frustration_false_offers_on_test_queries": false_offers(),
        "goal": "delivery p95 <= 500 ms both ways, 0 lost",
    }
    print(json.dumps(result, indent=2))
    write_result("handoff.json", result)


if __name__ == "__main__":
    main()
