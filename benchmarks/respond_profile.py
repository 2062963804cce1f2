"""Where a reply's time goes outside the model (issue 17: is group commit or less Python worth building?).

cProfile over ``--replies`` warm ``Assistant.respond`` calls in one thread (50 sessions, a thumbs-up on every
second reply, as the load benchmark's customers do), on a private copy of ``--home``. Reported in milliseconds
per reply: the whole call, the model passes (the batchers' waits: the encoder, the head and the FAISS search run
in their threads, unseen by the profiler), and the parts in the calling thread: writing the turn and the vote,
SQLite's commits among them, the session reads, the ranker, PII redaction. cProfile slows the Python parts by
about 1.5-2x, so read them as upper bounds and as shares.

Usage: python benchmarks/respond_profile.py --home var [--replies 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from benchmarks.followups import private_home  # noqa: E402
from core.config import Settings  # noqa: E402
from csbot.wiring import open_assistant  # noqa: E402

# (what, file suffix, function): cumulative time of each, per reply
PARTS = [
    ("respond, whole call", "bot/assistant.py", "respond"),
    ("model passes (waiting for the batchers)", "bot/batcher.py", "__call__"),
    ("writing the turn", "core/store.py", "append_turn"),
    ("writing the vote (Assistant.feedback)", "bot/assistant.py", "feedback"),
    ("SQLite commits", "~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("SQLite statements (execute)", "~", "<method 'execute' of 'sqlite3.Connection' objects>"),
    ("session reads: recent votes", "core/store.py", "recent_votes"),
    ("session reads: context turns", "core/store.py", "recent_turns"),
    ("ranker", "retrieval/ranker.py", "rank"),
    ("PII redaction", "core/redact.py", "redact"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("CSBOT_HOME", "var")))
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--out", default="respond_profile.json")
    args = parser.parse_args()
    assistant = open_assistant(Settings(home=private_home(args.home))).warm_up()
    queries = [r["question"] for r in read_csv(DATA / "eval.csv")]
    rng = random.Random(0)
    sessions = [uuid.uuid4().hex for _ in range(50)]
    for q in queries[:100]:  # warm
        assistant.respond(q, rng.choice(sessions))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for i in range(args.replies):
        reply = assistant.respond(queries[100 + i % (len(queries) - 100)], sessions[i % len(sessions)])
        if i % 2 == 0:
            assistant.feedback(reply.turn_id, 1, session_id=reply.session_id)
    profile.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profile).stats  # {(file, line, function): (calls, primitive calls, tottime, cumtime, callers)}
    per_reply = {}
    for what, suffix, function in PARTS:
        found = [(v[0], v[3]) for (file, _, name), v in stats.items() if name == function and file.endswith(suffix)]
        per_reply[what] = {"calls": sum(c for c, _ in found), "ms_per_reply": round(1000 * sum(t for _, t in found) / args.replies, 3)}
    whole = per_reply["respond, whole call"]["ms_per_reply"] + per_reply["writing the vote (Assistant.feedback)"]["ms_per_reply"]
    model = per_reply["model passes (waiting for the batchers)"]["ms_per_reply"]
    result = {
        "model_version": assistant.model_version,
        "replies": args.replies,
        "votes": (args.replies + 1) // 2,
        "wall_ms_per_reply_profiled": round(1000 * wall / args.replies, 3),
        "parts": per_reply,
        "outside_the_model_ms_per_reply": round(whole - model, 3),
        "commit_share_of_reply": round(per_reply["SQLite commits"]["ms_per_reply"] / whole, 4),
    }
    for what, part in per_reply.items():
        print(f"{what:45s} {part['ms_per_reply']:8.3f} ms/reply  ({part['calls']} calls)")
    print(f"outside the model: {result['outside_the_model_ms_per_reply']} ms/reply; commits {100 * result['commit_share_of_reply']:.1f}% of a reply")
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
