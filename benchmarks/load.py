"""Load: concurrent simulated customers over HTTP against the real server (DESIGN.md benchmark protocol 5, issue 10).

Starts ``csbot serve`` (``--workers N`` processes) on a loopback port over a home with the bundled tickets,
runs ``--clients`` customers for ``--seconds``: each sends a test-split question, waits for the reply and votes on
a share of its turns (a new session every few turns). Afterwards every acknowledged turn and vote is looked up
in the SQLite file. Reports replies/s, latency percentiles, errors by status, lost rows, the server's resident
memory over time and the CPU time of the load client itself (it shares the machine's cores with the server).

``--rate R`` paces the customers to R replies/s in total (the soak test); without it they send as fast as replies
come back. The per-client rate limit is off for the throughput run (32 connections stand for many customers;
a real customer's limit is CSBOT_RATE_LIMIT per minute) and on for the soak run, where every customer
has its own address (X-Forwarded-For, trusted for loopback).

Usage: python benchmarks/load.py --home var --clients 32 --seconds 60
       python benchmarks/load.py --home var --clients 64 --seconds 600 --rate 75 --name soak
       (each soak customer stays under the default 120 requests a minute: 64 x 1.2 replies/s + votes)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402

PII = ["my email is jane.doe@example.com", "call me on +44 7700 900123", "card 4111 1111 1111 1111"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, workers: int, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "CSBOT_HOME": str(home), "CSBOT_PORT": str(port), **env_extra}
    log = open(home / f"server-{port}.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([sys.executable, "-m", "csbot", "serve", "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 900  # a fresh home trains its quick model first
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                # with several workers, wait until all answer (each loads its models)
                time.sleep(3 * (workers - 1))
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not start")


def server_rss_mb(proc: subprocess.Popen) -> float:
    try:
        p = psutil.Process(proc.pid)
        return sum(c.memory_info().rss for c in [p, *p.children(recursive=True)]) / 2**20
    except psutil.Error:
        return float("nan")


def server_cpu_s(proc: subprocess.Popen) -> float:
    p = psutil.Process(proc.pid)
    total = 0.0
    for c in [p, *p.children(recursive=True)]:
        t = c.cpu_times()
        total += t.user + t.system
    return total


async def customer(cid: int, base: str, questions: list[str], deadline: float, args, stats: dict) -> None:
    rng = random.Random(cid)
    headers = {"X-Forwarded-For": f"10.0.{cid // 250}.{cid % 250 + 1}"}
    interval = args.clients / args.rate if args.rate else 0.0
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        session = None
        turns_in_session = 0
        next_at = time.perf_counter() + rng.random() * interval
        while time.perf_counter() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
            question = rng.choice(questions)
            if rng.random() < 0.05:
                question = f"{question} {rng.choice(PII)}"
            body = {"message": question} if session is None else {"message": question, "session_id": session}
            started = time.perf_counter()
            try:
                r = await client.post("/api/v1/chat", json=body)
            except httpx.HTTPError as err:
                stats["errors"][type(err).__name__] += 1
                continue
            if r.status_code != 200:  # refusals (429/503) are counted, not timed: they would flatter the percentiles
                stats["errors"][str(r.status_code)] += 1
                continue
            stats["latency"].append(((time.perf_counter() - started) * 1000, time.perf_counter()))
            reply = r.json()
            stats["turns"].append(reply["turn_id"])
            session, turns_in_session = reply["session_id"], turns_in_session + 1
            if rng.random() < args.vote_share:
                vote = {"turn_id": reply["turn_id"], "vote": rng.choice(["up", "down"]), "session_id": session}
                try:
                    v = await client.post("/api/v1/feedback", json=vote)
                except httpx.HTTPError as err:
                    stats["errors"][f"vote {type(err).__name__}"] += 1
                    continue
                if v.status_code == 200:
                    stats["votes"].append(v.json()["feedback_id"])
                else:
                    stats["errors"][f"vote {v.status_code}"] += 1
            if turns_in_session >= 5:
                session, turns_in_session = None, 0


async def run_customers(base: str, questions: list[str], args, stats: dict) -> None:
    deadline = time.perf_counter() + args.seconds
    await asyncio.gather(*(customer(i, base, questions, deadline, args, stats) for i in range(args.clients)))


def count_present(db: Path, table: str, ids: list) -> int:
    conn = sqlite3.connect(db)
    found = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found += conn.execute(f"select count(*) from {table} where id in ({','.join('?' * len(chunk))})", chunk).fetchone()[0]  # noqa: S608
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="a home with the bundled tickets (default: a new one, first start included)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0, help="total replies/s to pace the customers to (0: as fast as possible)")
    parser.add_argument("--vote-share", type=float, default=0.5)
    parser.add_argument("--name", default="load", help="result file benchmarks/results/NAME.json")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="csbot-load-"))
    questions = [r["question"] for r in read_csv(DATA / "eval.csv")]
    port = free_port()
    env = {"CSBOT_RATE_LIMIT": "0"} if not args.rate else {"CSBOT_TRUST_FORWARDED_FOR": "1"}
    proc = start_server(home, port, args.workers, env)
    base = f"http://127.0.0.1:{port}"
    stats: dict = {"latency": [], "turns": [], "votes": [], "errors": Counter()}
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_memory() -> None:
        t0 = time.perf_counter()
        while not stop.wait(5):
            rss.append((round(time.perf_counter() - t0, 1), round(server_rss_mb(proc), 1)))

    sampler = threading.Thread(target=sample_memory, daemon=True)
    me = psutil.Process()
    cpu0, server_cpu0 = me.cpu_times(), server_cpu_s(proc)
    rss_start = server_rss_mb(proc)
    started = time.perf_counter()
    sampler.start()
    try:
        asyncio.run(run_customers(base, questions, args, stats))
    finally:
        wall = time.perf_counter() - started
        stop.set()
        cpu1, server_cpu1 = me.cpu_times(), server_cpu_s(proc)
        proc.terminate()
        proc.wait(timeout=60)
    db = home / "csbot.db"
    latencies = np.array([ms for ms, _ in stats["latency"]]) if stats["latency"] else np.zeros(1)
    times = np.array([t for _, t in stats["latency"]]) - started if stats["latency"] else np.zeros(1)
    minutes = [
        {"minute": m, "p50_ms": round(float(np.percentile(latencies[(times >= 60 * m) & (times < 60 * (m + 1))], 50)), 1)}
        for m in range(int(wall // 60))
        if ((times >= 60 * m) & (times < 60 * (m + 1))).any()
    ]
    client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    warm_rss = next((mb for t, mb in rss if t >= 60), rss[0][1] if rss else rss_start)
    result = {
        "clients": args.clients,
        "seconds": round(wall, 1),
        "workers": args.workers,
        "target_rate": args.rate or None,
        "rate_limit": "per-client limit on, one address per customer" if args.rate else "off: each of the clients stands for many customers",
        "replies": len(stats["turns"]),
        "replies_per_s": round(len(stats["turns"]) / wall, 1),
        "votes": len(stats["votes"]),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "errors": sum(v for k, v in stats["errors"].items() if k not in ("429", "503")),
        "errors_by_kind": dict(stats["errors"]),
        "lost_turns": len(stats["turns"]) - count_present(db, "turns", stats["turns"]),
        "lost_votes": len(stats["votes"]) - count_present(db, "feedback", stats["votes"]),
        "client_cpu_share": round(client_cpu / (wall * (os.cpu_count() or 1)), 3),
        "server_cpu_share": round((server_cpu1 - server_cpu0) / (wall * (os.cpu_count() or 1)), 3),
        "cpu_count": os.cpu_count(),
        "server_rss_mb": {
            "start": round(rss_start, 1),
            "after_warm_up": warm_rss,
            "end": rss[-1][1] if rss else None,
            "growth_after_warm_up": round(rss[-1][1] - warm_rss, 1) if rss else None,
        },
        "p50_ms_per_minute": minutes,
        "rss_samples": rss[:: max(1, len(rss) // 60)],
    }
    print(result)
    print(write_result(f"{args.name}.json", result))


if __name__ == "__main__":
    main()
