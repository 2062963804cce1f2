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

``--replicas N --database-url URL --redis-url URL`` (issue 18) runs the same load twice in one go: first one
replica on the home's SQLite file, then N replicas on PostgreSQL and Redis (the home's rows copied there with
``csbot db copy``; each replica its own home, the model folder shared), customers spread over the replicas as a
load balancer would. ``auto`` for both URLs starts Debian's postgresql and redis-server in a temporary folder.
On one machine the replicas share its cores, so the total cannot grow with N: the figure that carries over is
the CPU per reply of each setup (the machine's, database and Redis included) and their ratio.

Usage: python benchmarks/load.py --home var --clients 32 --seconds 60
       python benchmarks/load.py --home var --clients 32 --seconds 60 --replicas 2 --database-url auto --redis-url auto
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

import aiohttp
import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, reference_ceiling, write_result  # noqa: E402

SUMMARY = ("replies_per_s", "p50_ms", "p95_ms", "errors", "lost_turns", "lost_votes", "machine_cpu_ms_per_reply")
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
    """One customer on one keep-alive connection (aiohttp: the client's share of the machine's CPU fell from
    17% with httpx to 4%, which matters when the client shares the server's two cores)."""
    rng = random.Random(cid)
    headers = {"X-Forwarded-For": f"10.0.{cid // 250}.{cid % 250 + 1}"}
    interval = args.clients / args.rate if args.rate else 0.0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=base, timeout=timeout, headers=headers, connector=aiohttp.TCPConnector(limit=1)) as client:
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
                async with client.post("/api/v1/chat", json=body) as r:
                    status, reply = r.status, (await r.json() if r.status == 200 else None)
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                stats["errors"][type(err).__name__] += 1
                continue
            if status != 200:  # refusals (429/503) are counted, not timed: they would flatter the percentiles
                stats["errors"][str(status)] += 1
                continue
            stats["latency"].append(((time.perf_counter() - started) * 1000, time.perf_counter()))
            stats["turns"].append(reply["turn_id"])
            session, turns_in_session = reply["session_id"], turns_in_session + 1
            if rng.random() < args.vote_share:
                vote = {"turn_id": reply["turn_id"], "vote": rng.choice(["up", "down"]), "session_id": session}
                try:
                    async with client.post("/api/v1/feedback", json=vote) as v:
                        status, recorded = v.status, (await v.json() if v.status == 200 else None)
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    stats["errors"][f"vote {type(err).__name__}"] += 1
                    continue
                if status == 200:
                    stats["votes"].append(recorded["feedback_id"])
                else:
                    stats["errors"][f"vote {status}"] += 1
            if turns_in_session >= 5:
                session, turns_in_session = None, 0


async def run_customers(bases: list[str], questions: list[str], args, stats: dict) -> None:
    deadline = time.perf_counter() + args.seconds
    await asyncio.gather(*(customer(i, bases[i % len(bases)], questions, deadline, args, stats) for i in range(args.clients)))


def count_present(db: Path, table: str, ids: list) -> int:
    conn = sqlite3.connect(db)
    found = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        found += conn.execute(f"select count(*) from {table} where id in ({','.join('?' * len(chunk))})", chunk).fetchone()[0]  # noqa: S608
    return found


def count_present_pg(url: str, table: str, ids: list) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return sum(conn.execute(f"select count(*) from {table} where id = any(%s)", [ids[i : i + 5000]]).fetchone()[0] for i in range(0, len(ids), 5000))  # noqa: S608


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy: the server, the database, Redis and the load client together."""
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def measure(bases: list[str], procs: list[subprocess.Popen], questions: list[str], args, present) -> dict:
    """Run the customers against ``bases``; figures for the servers ``procs``; ``present(table, ids)`` audits the rows."""
    stats: dict = {"latency": [], "turns": [], "votes": [], "errors": Counter()}
    rss: list[tuple[float, float]] = []
    stop = threading.Event()

    def total_rss() -> float:
        return sum(server_rss_mb(p) for p in procs)

    def sample_memory() -> None:
        t0 = time.perf_counter()
        while not stop.wait(5):
            rss.append((round(time.perf_counter() - t0, 1), round(total_rss(), 1)))

    sampler = threading.Thread(target=sample_memory, daemon=True)
    me = psutil.Process()
    cpu0, server_cpu0, busy0 = me.cpu_times(), sum(server_cpu_s(p) for p in procs), machine_busy_s()
    rss_start = total_rss()
    started = time.perf_counter()
    sampler.start()
    try:
        asyncio.run(run_customers(bases, questions, args, stats))
    finally:
        wall = time.perf_counter() - started
        stop.set()
        cpu1, server_cpu1, busy1 = me.cpu_times(), sum(server_cpu_s(p) for p in procs), machine_busy_s()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    latencies = np.array([ms for ms, _ in stats["latency"]]) if stats["latency"] else np.zeros(1)
    times = np.array([t for _, t in stats["latency"]]) - started if stats["latency"] else np.zeros(1)
    minutes = [
        {"minute": m, "p50_ms": round(float(np.percentile(latencies[(times >= 60 * m) & (times < 60 * (m + 1))], 50)), 1)}
        for m in range(int(wall // 60))
        if ((times >= 60 * m) & (times < 60 * (m + 1))).any()
    ]
    client_cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    warm_rss = next((mb for t, mb in rss if t >= 60), rss[0][1] if rss else rss_start)
    replies = len(stats["turns"])
    return {
        "clients": args.clients,
        "seconds": round(wall, 1),
        "workers": args.workers,
        "target_rate": args.rate or None,
        "rate_limit": "per-client limit on, one address per customer" if args.rate else "off: each of the clients stands for many customers",
        "replies": replies,
        "replies_per_s": round(replies / wall, 1),
        "votes": len(stats["votes"]),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "errors": sum(v for k, v in stats["errors"].items() if k not in ("429", "503")),
        "errors_by_kind": dict(stats["errors"]),
        "lost_turns": replies - present("turns", stats["turns"]),
        "lost_votes": len(stats["votes"]) - present("feedback", stats["votes"]),
        "client_cpu_share": round(client_cpu / (wall * (os.cpu_count() or 1)), 3),
        "server_cpu_share": round((server_cpu1 - server_cpu0) / (wall * (os.cpu_count() or 1)), 3),
        "server_cpu_ms_per_reply": round(1000 * (server_cpu1 - server_cpu0) / max(replies, 1), 2),
        "machine_cpu_ms_per_reply": round(1000 * (busy1 - busy0 - client_cpu) / max(replies, 1), 2),
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


def measure_locust(base: str, proc: subprocess.Popen, args, present) -> dict:
    """The same customers from an independent client: locust (benchmarks/locustfile.py) headless, one process."""
    work = Path(tempfile.mkdtemp(prefix="csbot-locust-"))
    audit = work / "acknowledged.txt"
    command = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless", "--only-summary"]
    command += ["-u", str(args.clients), "-r", str(args.clients), "-t", f"{int(args.seconds)}s", "--host", base, "--csv", str(work / "run")]
    server_cpu0, busy0 = server_cpu_s(proc), machine_busy_s()
    started = time.perf_counter()
    client = psutil.Popen(command, env={**os.environ, "CSBOT_LOCUST_AUDIT": str(audit)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client_cpu = 0.0
    while client.poll() is None:
        try:
            times = client.cpu_times()
            client_cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.5)
    wall = time.perf_counter() - started
    server_cpu1, busy1 = server_cpu_s(proc), machine_busy_s()
    proc.terminate()
    proc.wait(timeout=60)
    if client.returncode not in (0, 1):  # 1: some requests failed, counted below
        raise SystemExit(f"locust failed: {client.stderr.read().decode()[-2000:]}")
    rows = {row["Name"]: row for row in read_csv(work / "run_stats.csv")}
    chat, vote = rows["chat"], rows.get("vote", {})
    acknowledged: dict[str, list[str]] = {"turns": [], "feedback": []}
    for line in audit.read_text().splitlines() if audit.exists() else []:
        table, _, row_id = line.partition(" ")
        acknowledged[table].append(int(row_id) if table == "feedback" else row_id)
    replies = int(chat["Request Count"]) - int(chat["Failure Count"])
    return {
        "client": "locust (FastHttpUser, one process)",
        "clients": args.clients,
        "seconds": int(args.seconds),
        "wall_seconds": round(wall, 1),  # locust's start and summary included; Requests/s is over its own -t
        "replies": replies,
        "replies_per_s": round(float(chat["Requests/s"]), 1),
        "votes": int(vote.get("Request Count", 0)) - int(vote.get("Failure Count", 0)),
        "p50_ms": float(chat["50%"]),
        "p95_ms": float(chat["95%"]),
        "p99_ms": float(chat["99%"]),
        "errors": int(chat["Failure Count"]) + int(vote.get("Failure Count", 0)),
        "lost_turns": len(acknowledged["turns"]) - present("turns", acknowledged["turns"]),
        "lost_votes": len(acknowledged["feedback"]) - present("feedback", acknowledged["feedback"]),
        "client_cpu_share": round(client_cpu / (wall * (os.cpu_count() or 1)), 3),
        "server_cpu_ms_per_reply": round(1000 * (server_cpu1 - server_cpu0) / max(replies, 1), 2),
        "machine_cpu_ms_per_reply": round(1000 * (busy1 - busy0 - client_cpu) / max(replies, 1), 2),
        "cpu_count": os.cpu_count(),
    }


def run_cluster(home: Path, questions: list[str], args) -> dict:
    """One replica on SQLite, then ``--replicas`` on PostgreSQL + Redis, the same load on each."""
    servers = []
    try:
        database_url, redis_url = args.database_url, args.redis_url
        if "auto" in (database_url, redis_url):
            from tests.servers import PostgresServer, RedisServer

            if database_url == "auto":  # not under a private folder: the server runs as the postgres user
                servers.append(PostgresServer(Path(tempfile.mkdtemp(prefix="csbot-postgres-"))).start())
                database_url = servers[-1].create_database()
            if redis_url == "auto":
                servers.append(RedisServer(Path(tempfile.mkdtemp(prefix="csbot-redis-"))).start())
                redis_url = servers[-1].url
        env = {"CSBOT_RATE_LIMIT": "0"}
        port = free_port()
        proc = start_server(home, port, 1, env)
        sqlite_run = measure([f"http://127.0.0.1:{port}"], [proc], questions, args, lambda t, ids: count_present(home / "csbot.db", t, ids))
        print("1 replica, SQLite:", {k: sqlite_run[k] for k in SUMMARY})
        copy_env = {**os.environ, "CSBOT_HOME": str(home)}
        subprocess.run([sys.executable, "-m", "csbot", "db", "copy", "--to", database_url], env=copy_env, check=True, capture_output=True)
        env = {**env, "CSBOT_DATABASE_URL": database_url, "CSBOT_REDIS_URL": redis_url, "CSBOT_MODEL_DIR": str(home / "models")}
        runs = {}
        for n in sorted({1, args.replicas}):  # 1 replica on PostgreSQL separates the database's cost from the replicas'
            procs, bases = [], []
            for i in range(n):
                port = free_port()
                procs.append(start_server(Path(tempfile.mkdtemp(prefix=f"csbot-replica-{i}-")), port, 1, env))
                bases.append(f"http://127.0.0.1:{port}")
            runs[n] = measure(bases, procs, questions, args, lambda t, ids: count_present_pg(database_url, t, ids))
            print(f"{n} replica(s), PostgreSQL + Redis:", {k: runs[n][k] for k in SUMMARY})
    finally:
        for server in servers:
            server.stop()

    def per_reply(run: dict) -> float:
        return run["machine_cpu_ms_per_reply"]

    return {
        "replicas": args.replicas,
        "sqlite_1_replica": sqlite_run,
        **{f"postgresql_{n}_replica{'s' if n > 1 else ''}": run for n, run in runs.items()},
        "postgresql_cpu_per_reply_vs_sqlite": round(per_reply(runs[1]) / per_reply(sqlite_run), 3),
        f"{args.replicas}_replicas_cpu_per_reply_vs_1_replica_sqlite": round(per_reply(runs[args.replicas]) / per_reply(sqlite_run), 3),
        "note": "one machine: the replicas, PostgreSQL, Redis and the load client share its cores, so replies/s cannot add up; "
        "machine_cpu_ms_per_reply (everything but the load client) is the figure a capacity plan scales. PostgreSQL's own cost is "
        "1 replica on PostgreSQL against 1 on SQLite; N replicas on one machine add the cost of splitting its cores (smaller batches, "
        "more threads than cores), which separate machines do not pay",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None, help="a home with the bundled tickets (default: a new one, first start included)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0, help="total replies/s to pace the customers to (0: as fast as possible)")
    parser.add_argument("--vote-share", type=float, default=0.5)
    parser.add_argument("--replicas", type=int, default=0, help="with --database-url and --redis-url: 1 replica on SQLite, then N on them")
    parser.add_argument("--database-url", default="", help="postgresql://… (empty) for the replicas, or auto: a temporary server")
    parser.add_argument("--redis-url", default="", help="redis://… for the replicas, or auto: a temporary server")
    parser.add_argument("--client", choices=["aiohttp", "locust"], default="aiohttp", help="the load client: ours (asyncio + aiohttp) or locust")
    parser.add_argument("--no-reference", action="store_true", help="skip the encoder's reference ceiling (measured first, before the server starts)")
    parser.add_argument("--name", default=None, help="result file benchmarks/results/NAME.json (default: load, or load_cluster)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="csbot-load-"))
    questions = [r["question"] for r in read_csv(DATA / "eval.csv")]
    ceiling = None if args.no_reference else reference_ceiling(questions)
    if ceiling:
        print(f"reference ceiling (sentence-transformers fp32, batch 32): {ceiling:.1f} sentences/s", flush=True)
    if args.replicas:
        if not (args.database_url and args.redis_url):
            parser.error("--replicas needs --database-url and --redis-url (or auto)")
        result = run_cluster(home, questions, args)
    else:
        port = free_port()
        env = {"CSBOT_RATE_LIMIT": "0"} if not args.rate else {"CSBOT_TRUST_FORWARDED_FOR": "1"}
        proc = start_server(home, port, args.workers, env)
        audit = lambda t, ids: count_present(home / "csbot.db", t, ids)  # noqa: E731
        if args.client == "locust":
            result = measure_locust(f"http://127.0.0.1:{port}", proc, args, audit)
        else:
            result = measure([f"http://127.0.0.1:{port}"], [proc], questions, args, audit)
    if ceiling:
        result["reference_sentences_per_s"] = round(ceiling, 1)
        result["ratio_to_reference"] = round(result["replies_per_s"] / ceiling, 3) if "replies_per_s" in result else None
    print(result)
    print(write_result(f"{args.name or ('load_cluster' if args.replicas else 'load_locust' if args.client == 'locust' else 'load')}.json", result))


if __name__ == "__main__":
    main()
