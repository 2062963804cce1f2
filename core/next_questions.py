"""'Customers also asked': which intents followed which in real sessions, counted, not written by hand.

``csbot train`` counts the transitions (``FeedbackStore.intent_transitions``: consecutive answered turns of a
session, none voted down) and saves them next to the models; serving offers, after an answer about ``a``,
the intents that most often came next, once enough customers went that way (``MIN_COUNT``). A new
deployment offers nothing until its customers have shown what they ask next.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

MIN_COUNT = 5  # a next question is offered only once this many sessions went that way ...
MIN_SHARE = 0.05  # ... and it is at least this share of what followed the intent
MAX_OFFERED = 3
WINDOW_S = 20 * 60  # the next question must come within 20 minutes of the answer to count
FILE_NAME = "next_questions.json"


@dataclass
class NextQuestions:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # intent -> next intent -> sessions
    counted_at: str = ""

    @classmethod
    def from_transitions(cls, transitions: list[tuple[str, str, int]]) -> NextQuestions:
        counts: dict[str, dict[str, int]] = defaultdict(dict)
        for a, b, n in transitions:
            counts[a][b] = counts[a].get(b, 0) + int(n)
        return cls(dict(counts), datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def suggest(self, intent: str, *, known: set[str] | None = None, k: int = MAX_OFFERED) -> list[tuple[str, float]]:
        """Up to ``k`` (next intent, share of what followed ``intent``), most frequent first."""
        following = self.counts.get(intent, {})
        total = sum(following.values())
        ranked = sorted(following.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(b, n / total) for b, n in ranked if n >= MIN_COUNT and n / total >= MIN_SHARE and b != intent and (known is None or b in known)][:k]

    def save(self, models_dir: Path) -> Path:
        """Atomic: serving never reads half a file."""
        models_dir.mkdir(parents=True, exist_ok=True)
        path = models_dir / FILE_NAME
        tmp = models_dir / f".{FILE_NAME}-{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps({"counted_at": self.counted_at, "min_count": MIN_COUNT, "counts": self.counts}, indent=1, sort_keys=True))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, models_dir: Path) -> NextQuestions:
        path = models_dir / FILE_NAME
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(data.get("counts", {}), data.get("counted_at", ""))
