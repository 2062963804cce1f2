"""An independent load client (issue 17): locust customers doing what ``benchmarks/load.py``'s do.

Each user asks a test-split question (5% with personal data appended), votes on half of its replies and
starts a new session every five turns, as fast as replies come back. The id of every acknowledged turn and
vote goes to the file ``CSBOT_LOCUST_AUDIT`` (when set) so the driver can look each one up in the database.

Run by ``python benchmarks/load.py --client locust`` (which starts the server, runs locust headless and audits);
by hand: locust -f benchmarks/locustfile.py --headless -u 32 -r 32 -t 60s --host http://127.0.0.1:7860
"""

from __future__ import annotations

import csv
import itertools
import os
import random
from pathlib import Path

from locust import FastHttpUser, constant, task

QUESTIONS = [row["question"] for row in csv.DictReader((Path(__file__).resolve().parent.parent / "data" / "eval.csv").open(newline=""))]
PII = ["my email is jane.doe@example.com", "call me on +44 7700 900123", "card 4111 1111 1111 1111"]
AUDIT = open(os.environ["CSBOT_LOCUST_AUDIT"], "a", buffering=1) if os.environ.get("CSBOT_LOCUST_AUDIT") else None  # noqa: SIM115 - one per run
NUMBERS = itertools.count()


class Customer(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.rng = random.Random(next(NUMBERS))
        self.session: str | None = None
        self.turns = 0

    @task
    def ask_and_vote(self) -> None:
        question = self.rng.choice(QUESTIONS)
        if self.rng.random() < 0.05:
            question = f"{question} {self.rng.choice(PII)}"
        body = {"message": question} if self.session is None else {"message": question, "session_id": self.session}
        with self.client.post("/api/v1/chat", json=body, name="chat", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            reply = response.json()
        if AUDIT:
            AUDIT.write(f"turns {reply['turn_id']}\n")
        self.session, self.turns = reply["session_id"], self.turns + 1
        if self.rng.random() < 0.5:
            vote = {"turn_id": reply["turn_id"], "vote": self.rng.choice(["up", "down"]), "session_id": self.session}
            with self.client.post("/api/v1/feedback", json=vote, name="vote", catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    return
                if AUDIT:
                    AUDIT.write(f"feedback {response.json()['feedback_id']}\n")
        if self.turns >= 5:
            self.session, self.turns = None, 0
