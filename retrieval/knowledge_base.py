"""The knowledge base: historical tickets in SQLite and their embeddings in a FAISS index beside it.

SQLite is the source of truth; the index is derived. Ingest commits the rows first and then adds their
vectors, so a crash in between is repaired on the next open by indexing the tickets the index lacks.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import IngestError, InputError
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
    """Tickets (SQLite, through the store's connection) plus their FAISS index.

    Example:
        >>> kb = KnowledgeBase(store, index_dir=Path("var/index"), encoder=Encoder())   # doctest: +SKIP
        >>> kb.ingest(Path("data/tickets.csv"), question_col="question", answer_col="answer", intent_col="intent")  # doctest: +SKIP
        >>> kb.search("I lost my card", k=5)                                            # doctest: +SKIP
    """

    def __init__(self, store: FeedbackStore, *, index_dir: Path, encoder: Encoder) -> None:
        self.store = store
        self.index_dir = index_dir
        self.encoder = encoder
        self._index: TicketIndex | None = None
        self._write_lock = threading.Lock()

    # ---- index lifecycle -------------------------------------------------------------------
    @property
    def index(self) -> TicketIndex:
        if self._index is None:
            self.open()
        assert self._index is not None
        return self._index

    def open(self) -> KnowledgeBase:
        """Load the persisted index and index any tickets it is missing (after a crash, or first start)."""
        with self._write_lock:
            index = TicketIndex.load(self.index_dir, encoder_name=self.encoder.name)
            count = self.count()
            if index is not None and index.size != count:
                # Rows committed after the index was last saved have ids above its high-water mark.
                missing = self.store.ticket_ids(from_id=index.meta.get("max_id", -1) + 1)
                self._add_to_index(index, missing)
                if index.size != count:
                    log.warning("ticket index out of step with the database (%d vs %d); rebuilding", index.size, count)
                    index = None
            if index is None:
                index = self._rebuild()
            self._index = index
            return self

    def _rebuild(self) -> TicketIndex:
        ids = self.store.ticket_ids()
        vectors = self._encode_ids(ids) if ids else np.zeros((0, self.encoder.dim), dtype=np.float32)
        index = TicketIndex.build(vectors, np.asarray(ids), encoder_name=self.encoder.name)
        index.save(self.index_dir)
        return index

    def _encode_ids(self, ids: list[int]) -> np.ndarray:
        questions = [t.question for t in self.get(ids).values()]
        return self.encoder.encode(questions, show_progress=len(questions) > 5000)

    def _add_to_index(self, index: TicketIndex, ids: list[int]) -> None:
        if ids:
            index.add(self._encode_ids(ids), np.asarray(ids))
            index.save(self.index_dir)

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
        """Store new tickets (identical ones are skipped) and add them to the index; the ids added."""
        with self._write_lock:
            added = self.store.insert_tickets(records)
            if self._index is not None:
                self._add_to_index(self._index, added)
        if self._index is None:
            self.open()
        return added

    def delete(self, ticket_id: int) -> bool:
        """Remove a ticket from the database and the index; False if it did not exist."""
        with self._write_lock:
            deleted = self.store.delete_ticket(ticket_id)
            if deleted and self._index is not None:
                self._index.remove([ticket_id])
                self._index.save(self.index_dir)
        return bool(deleted)

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

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[Ticket, float]]]:
        """Top-``k`` tickets with cosine similarity for each query vector."""
        ids, scores = self.index.search(query_vectors, k)
        tickets = self.get([int(i) for i in np.unique(ids) if i >= 0])
        return [[(tickets[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if int(i) in tickets] for row_ids, row_scores in zip(ids, scores)]
