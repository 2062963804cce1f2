"""The knowledge base: historical tickets and their embeddings in the store, searched through a FAISS index.

The database is the source of truth, embeddings included; each process's FAISS index is a cache of it.
Every ticket added or deleted is logged (``ticket_changes``) in the transaction that stores it, and the id
of the latest change is the index version. A process applies the changes it has not seen (checked at most
once per ``check_s``), so a ticket ingested from the command line or saved by an agent on one replica is
searched by every replica within seconds, without a shared folder and without re-encoding: the vectors come
from the database. A crash between two writes cannot leave the index behind, because writes are one
transaction and the index only ever follows the log.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import CsbotError, IngestError, InputError
from core.store import FeedbackStore, utc_now
from core.types import Ticket
from retrieval.encoder import Encoder
from retrieval.index import TicketIndex

log = logging.getLogger(__name__)

MAX_FIELD_CHARS = 10_000
MAX_FILE_BYTES = 2 * 1024**3


@dataclass
class IngestReport:
    """What an ingest did: rows added, identical tickets skipped, broken rows skipped (line, reason)."""

    added: int = 0
    duplicates: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        text = f"added {self.added} tickets, skipped {self.duplicates} duplicates"
        if self.skipped:
            shown = "; ".join(f"line {line}: {why}" for line, why in self.skipped[:5])
            more = f" (and {len(self.skipped) - 5} more)" if len(self.skipped) > 5 else ""
            text += f", skipped {len(self.skipped)} broken rows: {shown}{more}"
        return text


def _question_key(question: str, answer: str) -> str:
    norm = lambda s: re.sub(r"\s+", " ", s.strip().lower())  # noqa: E731
    return norm(question) + "\x1f" + norm(answer)


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str] | None, str]]]:
    """Read a CSV or JSONL file into (columns, [(line, row or None, error)]). Raises IngestError if unreadable."""
    if not path.is_file():
        raise IngestError(f"no such file: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise IngestError(f"{path} is larger than 2 GB; split it into smaller files")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise IngestError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8 and try again") from err
    except OSError as err:
        raise IngestError(f"cannot read {path}: {err.strerror or err}") from err
    rows: list[tuple[int, dict[str, str] | None, str]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        columns: set[str] = set()
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                rows.append((line_no, None, f"not valid JSON ({err})"))
                continue
            columns.update(obj)
            rows.append((line_no, {k: "" if v is None else str(v) for k, v in obj.items()}, ""))
        return sorted(columns), rows
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as err:
        raise IngestError(f"{path} has no header row") from err
    header = [h.strip() for h in header]
    try:
        for values in reader:
            line_no = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                rows.append((line_no, None, f"expected {len(header)} fields, found {len(values)}"))
                continue
            rows.append((line_no, dict(zip(header, values)), ""))
    except csv.Error as err:
        raise IngestError(f"{path} is not valid CSV near line {reader.line_num}: {err}") from err
    return header, rows


class KnowledgeBase:
    """Tickets (in the store) plus the FAISS index that follows them.

    Example:
        >>> kb = KnowledgeBase(store, index_dir=Path("var/index"), encoder=Encoder())   # doctest: +SKIP
        >>> kb.ingest(Path("data/tickets.csv"), question_col="question", answer_col="answer", intent_col="intent")  # doctest: +SKIP
        >>> kb.search(Encoder().encode(["I lost my card"]), k=5)                           # doctest: +SKIP
    """

    def __init__(self, store: FeedbackStore, *, index_dir: Path, encoder: Encoder, check_s: float = 1.0) -> None:
        self.store = store
        self.index_dir = index_dir
        self.encoder = encoder
        self.check_s = check_s
        self._index: TicketIndex | None = None
        self._checked_at = float("-inf")
        self._write_lock = threading.Lock()

    # ---- index lifecycle -------------------------------------------------------------------
    @property
    def index(self) -> TicketIndex:
        if self._index is None:
            self.open()
        assert self._index is not None
        return self._index

    @property
    def version(self) -> int:
        """The last ticket change this process's index has applied."""
        return int(self.index.meta.get("seq", 0))

    def open(self) -> KnowledgeBase:
        """Load the saved index, or build it from the stored embeddings; then apply the changes it has not seen."""
        with self._write_lock:
            self._embed_missing()
            try:
                index = TicketIndex.load(self.index_dir, encoder_name=self.encoder.name)
            except CsbotError as err:
                log.warning("%s; rebuilding it from the database", err)
                index = None
            if index is None or "seq" not in index.meta:  # none yet, or saved before the log existed
                index = self._build()
            self._index = index
            self._follow_log()
            if self._index.size != self.count():
                log.warning("ticket index out of step with the database (%d vs %d); rebuilding", self._index.size, self.count())
                self._index = self._build()
                self._follow_log()
            self._checked_at = time.monotonic()
            return self

    def refresh(self, *, force: bool = False) -> bool:
        """Apply ticket changes made anywhere (another replica, the CLI) since the last look; at most once per
        ``check_s`` unless forced. True when the index changed."""
        now = time.monotonic()
        if self._index is None or (not force and now - self._checked_at < self.check_s):
            return False
        self._checked_at = now
        if self.store.ticket_index_version() == self.version:
            return False
        with self._write_lock:
            return self._follow_log()

    def _embed_missing(self) -> None:
        """Tickets stored without an embedding (an install from before they were stored) get one, once."""
        ids = self.store.tickets_without_vectors()
        if ids:
            log.info("embedding %d tickets stored without one", len(ids))
            vectors = self._encode_ids(ids)
            self.store.add_ticket_vectors({i: v.tobytes() for i, v in zip(ids, vectors)})

    def _build(self) -> TicketIndex:
        """A fresh index from every stored embedding (no encoding); it knows the log up to the version read first."""
        seq = self.store.ticket_index_version()  # read before the vectors: a change in between is applied again, harmlessly
        stored = self.store.ticket_vectors()
        ids = np.fromiter(stored, dtype=np.int64, count=len(stored))
        vectors = self._vectors(list(stored.values()))
        index = TicketIndex.build(vectors, ids, encoder_name=self.encoder.name)
        index.meta["seq"] = seq
        index.save(self.index_dir)
        return index

    def _vectors(self, blobs: list[bytes]) -> np.ndarray:
        if not blobs:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), self.encoder.dim)

    def _follow_log(self) -> bool:
        """Apply the logged changes after the index's version (idempotent: a ticket seen twice is replaced)."""
        assert self._index is not None
        seq = int(self._index.meta.get("seq", 0))
        changes = self.store.ticket_changes(after=seq)
        if not changes:
            if self.store.ticket_index_version() < seq:  # the database was replaced by an older one
                self._index = self._build()
                return True
            return False
        last_op = {c["ticket_id"]: c["op"] for c in changes}
        touched = list(last_op)
        self._index.remove(touched)
        stored = self.store.ticket_vectors([i for i, op in last_op.items() if op == "add"])
        if stored:
            self._index.add(self._vectors(list(stored.values())), np.fromiter(stored, dtype=np.int64, count=len(stored)))
        self._index.meta["seq"] = changes[-1]["id"]
        self._index.save(self.index_dir)
        return True

    def _encode_ids(self, ids: list[int]) -> np.ndarray:
        questions = [t.question for t in self.get(ids).values()]
        return self.encoder.encode(questions, show_progress=len(questions) > 5000)

    # ---- writes ----------------------------------------------------------------------------
    def ingest(
        self,
        path: Path,
        *,
        question_col: str = "question",
        answer_col: str = "answer",
        intent_col: str | None = None,
        id_col: str | None = None,
        source: str | None = None,
    ) -> IngestReport:
        """Add tickets from a CSV or JSONL file; identical tickets are skipped, broken rows reported.

        Raises:
            IngestError: the file cannot be read or lacks a named column. Nothing is stored then.
        """
        columns, raw_rows = read_rows(path)
        wanted = {"--question-col": question_col, "--answer-col": answer_col}
        if intent_col:
            wanted["--intent-col"] = intent_col
        if id_col:
            wanted["--id-col"] = id_col
        missing = [f"{flag} {col!r}" for flag, col in wanted.items() if col not in columns]
        if missing:
            raise IngestError(
                f"{path.name} has no column {', '.join(missing)}; its columns are: {', '.join(columns) or '(none)'}. "
                "Name the right columns with --question-col/--answer-col/--intent-col."
            )
        report = IngestReport()
        records = []
        now = utc_now()
        for line_no, row, error in raw_rows:
            if row is None:
                report.skipped.append((line_no, error))
                continue
            question, answer = row[question_col].strip(), row[answer_col].strip()
            if not question or not answer:
                report.skipped.append((line_no, "empty question" if not question else "empty answer"))
                continue
            if len(question) > MAX_FIELD_CHARS or len(answer) > MAX_FIELD_CHARS:
                report.skipped.append((line_no, f"a field is longer than {MAX_FIELD_CHARS} characters"))
                continue
            records.append(
                {
                    "external_id": row[id_col].strip() if id_col else "",
                    "question": question,
                    "answer": answer,
                    "intent": row[intent_col].strip() if intent_col else "",
                    "created_at": row.get("created_at", "").strip() or now,
                    "source": source or row.get("source", "").strip() or path.name,
                    "question_key": _question_key(question, answer),
                }
            )
        report.added = len(self._insert(records))
        report.duplicates = len(records) - report.added
        return report

    def add(self, question: str, answer: str, *, intent: str = "", source: str) -> int | None:
        """Add one ticket (e.g. an agent's answer) and index it at once; its id, or None when it was already there."""
        question, answer = question.strip(), answer.strip()
        if not question or not answer:
            raise InputError("a ticket needs both a question and an answer")
        if len(question) > MAX_FIELD_CHARS or len(answer) > MAX_FIELD_CHARS:
            raise InputError(f"a ticket's question and answer must be at most {MAX_FIELD_CHARS} characters each")
        record = {"external_id": "", "question": question, "answer": answer, "intent": intent, "created_at": utc_now(), "source": source}
        ids = self._insert([{**record, "question_key": _question_key(question, answer)}])
        return ids[0] if ids else None

    def _insert(self, records: list[dict]) -> list[int]:
        """Store new tickets (identical ones are skipped) with their embeddings, then follow the log; the ids added."""
        known = self.store.known_question_keys([r["question_key"] for r in records])
        fresh = [r for r in records if r["question_key"] not in known]
        if fresh:
            vectors = self.encoder.encode([r["question"] for r in fresh], show_progress=len(fresh) > 5000)
            fresh = [{**r, "vector": v.tobytes()} for r, v in zip(fresh, vectors)]
        added = self.store.insert_tickets(fresh)
        self.refresh(force=True)  # an index not opened yet (a command-line ingest) is left to whoever searches
        return added

    def delete(self, ticket_id: int) -> bool:
        """Remove a ticket from the database, then from the index (through the log, as every replica does)."""
        deleted = self.store.delete_ticket(ticket_id)
        if deleted:
            self.refresh(force=True)
        return deleted

    # ---- reads -----------------------------------------------------------------------------
    def count(self) -> int:
        return self.store.count("tickets")

    def get(self, ids: list[int]) -> dict[int, Ticket]:
        """Tickets by id, in the order asked (unknown ids are left out)."""
        return self.store.tickets(ids)

    def intents(self) -> list[str]:
        """The intents the tickets name: what a reviewer's or an agent's label may be."""
        return self.store.ticket_intents()

    def labelled(self) -> list[Ticket]:
        """All tickets with an intent label, in id order (the intent model's training data)."""
        return list(self.get(self.store.ticket_ids(labelled=True)).values())

    def sample_vectors(self, limit: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
        """Up to ``limit`` tickets (a seeded sample) as (questions, their stored vectors): what a query map is fitted on."""
        ids = self.store.ticket_ids()
        if len(ids) > limit:
            ids = sorted(np.random.default_rng(seed).choice(ids, size=limit, replace=False).tolist())
        stored = self.store.ticket_vectors(ids)
        tickets = self.get(list(stored))
        kept = [i for i in stored if i in tickets]
        return [tickets[i].question for i in kept], self._vectors([stored[i] for i in kept])

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[Ticket, float]]]:
        """Top-``k`` tickets with cosine similarity for each query vector (changes from elsewhere applied first)."""
        self.refresh()
        ids, scores = self.index.search(query_vectors, k)
        tickets = self.get([int(i) for i in np.unique(ids) if i >= 0])
        return [[(tickets[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if int(i) in tickets] for row_ids, row_scores in zip(ids, scores)]
