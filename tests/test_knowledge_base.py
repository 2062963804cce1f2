from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from core.errors import IngestError
from core.store import FeedbackStore
from retrieval.encoder import Encoder
from retrieval.index import TicketIndex, choose_spec
from retrieval.knowledge_base import KnowledgeBase


@pytest.fixture(scope="module")
def encoder():
    return Encoder().warm_up()


def make_kb(tmp_path, encoder) -> KnowledgeBase:
    return KnowledgeBase(FeedbackStore(tmp_path / "csbot.db"), index_dir=tmp_path / "index", encoder=encoder)


def write(tmp_path, name, text) -> object:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "subject,reply,topic\nI lost my card,Freeze it in the app.,lost_card\nMy transfer is late,Transfers take a day.,transfer\n"


def test_ingest_search_and_persist(tmp_path, encoder):
    kb = make_kb(tmp_path, encoder)
    report = kb.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply", intent_col="topic")
    assert (report.added, report.duplicates, report.skipped) == (2, 0, [])
    hits = kb.search(encoder.encode(["someone stole my card"]), k=2)[0]
    assert hits[0][0].answer == "Freeze it in the app."
    reopened = make_kb(tmp_path, encoder).open()
    assert reopened.index.size == 2
    assert reopened.search(encoder.encode(["my money transfer has not arrived"]), k=1)[0][0][0].intent == "transfer"


def test_missing_column_is_a_plain_error_and_loses_nothing(tmp_path, encoder):
    kb = make_kb(tmp_path, encoder)
    kb.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply")
    with pytest.raises(IngestError, match=r"no column --answer-col 'answer'; its columns are: subject, reply, topic"):
        kb.ingest(write(tmp_path, "t2.csv", GOOD), question_col="subject")
    assert kb.count() == 2 and kb.index.size == 2


def test_broken_rows_are_reported_and_the_rest_added(tmp_path, encoder):
    bad_csv = write(tmp_path, "bad.csv", "question,answer\nok one,fine\ntoo,many,fields\n,no question\nok two,fine too\n")
    kb = make_kb(tmp_path, encoder)
    report = kb.ingest(bad_csv)
    assert report.added == 2
    assert [line for line, _ in report.skipped] == [3, 4]
    assert "expected 2 fields, found 3" in report.summary()
    jsonl = write(tmp_path, "t.jsonl", '{"question": "a q", "answer": "an a"}\n{broken\n[1, 2]\n')
    report = kb.ingest(jsonl)
    assert report.added == 1 and [line for line, _ in report.skipped] == [2, 3]
    assert kb.count() == 3 and kb.index.size == 3


def test_unreadable_files(tmp_path, encoder):
    kb = make_kb(tmp_path, encoder)
    with pytest.raises(IngestError, match="no such file"):
        kb.ingest(tmp_path / "missing.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"question,answer\n\xff\xfe\x00bad,x\n")
    with pytest.raises(IngestError, match="not UTF-8"):
        kb.ingest(binary)
    empty = write(tmp_path, "e.csv", "")
    with pytest.raises(IngestError, match="no header"):
        kb.ingest(empty)


def test_duplicates_skipped_and_delete(tmp_path, encoder):
    kb = make_kb(tmp_path, encoder)
    kb.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply")
    again = kb.ingest(write(tmp_path, "t.csv", GOOD.replace("I lost my card", "I LOST my card ")), question_col="subject", answer_col="reply")
    assert (again.added, again.duplicates) == (0, 2)
    first = kb.search(encoder.encode(["lost card"]), k=1)[0][0][0]
    assert kb.delete(first.id) and not kb.delete(first.id)
    assert kb.count() == 1 and kb.index.size == 1
    assert all(t.id != first.id for t, _ in kb.search(encoder.encode(["lost card"]), k=2)[0])


def test_index_catches_up_after_a_crash_between_database_and_index(tmp_path, encoder):
    kb = make_kb(tmp_path, encoder)
    kb.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply")
    # Simulate a crash after the rows were committed but before the index was saved.
    conn = sqlite3.connect(tmp_path / "csbot.db")
    conn.execute("insert into tickets (question, answer, question_key) values ('card got stuck in the ATM', 'Order a new card.', 'k')")
    conn.commit()
    reopened = make_kb(tmp_path, encoder).open()
    assert reopened.index.size == 3
    assert reopened.search(encoder.encode(["ATM kept my card"]), k=1)[0][0][0].answer == "Order a new card."


def test_index_type_follows_size_and_ivf_supports_add_and_remove():
    assert choose_spec(10_000) == "IDMap2,Flat"
    assert choose_spec(1_000_000) == "IVF1000,SQ8"
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 16)).astype("float32")
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = TicketIndex.build(vectors, np.arange(2000), encoder_name="x", spec="IVF16,Flat", nprobe=16)
    ids, _ = index.search(vectors[:5], k=1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]  # nprobe = nlist: exact
    index.add(vectors[:1], np.array([5000]))
    assert index.remove([0, 5000]) == 2 and index.size == 1999


def test_index_built_with_another_encoder_is_refused(tmp_path):
    vectors = np.eye(4, dtype="float32")
    TicketIndex.build(vectors, np.arange(4), encoder_name="a").save(tmp_path)
    assert json.loads((tmp_path / "meta.json").read_text())["count"] == 4
    from core.errors import CsbotError

    with pytest.raises(CsbotError, match="built with encoder 'a'"):
        TicketIndex.load(tmp_path, encoder_name="b")


def test_replicas_follow_one_ticket_log(tmp_path, encoder, database_url):
    """Two processes' knowledge bases on one database (each its own index folder, as on two machines): what one
    ingests, saves or deletes, the other searches at its next look, on both engines."""
    one = KnowledgeBase(FeedbackStore(database_url), index_dir=tmp_path / "one", encoder=encoder, check_s=0.0).open()
    other = KnowledgeBase(FeedbackStore(database_url), index_dir=tmp_path / "other", encoder=encoder, check_s=0.0).open()
    assert other.index.size == 0
    one.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply", intent_col="topic")
    hits = other.search(encoder.encode(["someone stole my card"]), k=2)[0]
    assert hits[0][0].answer == "Freeze it in the app." and other.index.size == 2 and other.version == one.version
    agent_ticket = other.add("Can I pay with my watch?", "Yes: add the card to your watch's wallet.", source="agent")
    assert one.search(encoder.encode(["paying with a smartwatch"]), k=1)[0][0][0].id == agent_ticket
    assert one.delete(hits[0][0].id)
    assert all(t.id != hits[0][0].id for t, _ in other.search(encoder.encode(["lost card"]), k=3)[0]) and other.index.size == 2
    # A third process starts from the stored embeddings: the index is built without encoding a question.
    third = KnowledgeBase(FeedbackStore(database_url), index_dir=tmp_path / "third", encoder=_NoEncoding(encoder), check_s=0.0).open()
    assert third.index.size == 2 and third.version == one.version


def test_changes_are_checked_at_most_once_per_interval(tmp_path, encoder):
    store = FeedbackStore(tmp_path / "csbot.db")
    one = KnowledgeBase(store, index_dir=tmp_path / "one", encoder=encoder).open()
    other = KnowledgeBase(FeedbackStore(tmp_path / "csbot.db"), index_dir=tmp_path / "other", encoder=encoder, check_s=3600).open()
    one.ingest(write(tmp_path, "t.csv", GOOD), question_col="subject", answer_col="reply")
    assert not other.refresh() and other.index.size == 0  # looked a moment ago: not again for an hour
    assert other.refresh(force=True) and other.index.size == 2


def test_an_install_from_before_stored_embeddings_is_embedded_once(tmp_path, encoder):
    store = FeedbackStore(tmp_path / "csbot.db")
    rows = [{"question": q, "answer": "a", "intent": "", "created_at": "", "source": "", "external_id": "", "question_key": q} for q in ("x", "y")]
    store.insert_tickets(rows)  # no vectors, as stored by an older version
    TicketIndex.build(encoder.encode(["x", "y"]), np.array([1, 2]), encoder_name=encoder.name).save(tmp_path / "index")  # no log version
    kb = make_kb(tmp_path, encoder).open()
    assert kb.index.size == 2 and store.tickets_without_vectors() == [] and store.count("ticket_vectors") == 2
    assert kb.search(encoder.encode(["y"]), k=1)[0][0][0].question == "y"


class _NoEncoding:
    """An encoder that fails if asked to encode: proves an index was built from stored embeddings."""

    def __init__(self, encoder: Encoder) -> None:
        self.name, self.dim = encoder.name, encoder.dim

    def encode(self, texts, **kwargs):
        raise AssertionError(f"encoded {len(texts)} texts")


def test_a_damaged_retrieval_map_is_ignored_and_the_encoder_runs(tmp_path):
    from retrieval.query_map import MAP_FILE, QueryMap

    (tmp_path / MAP_FILE).write_bytes(b"not a numpy file")
    assert QueryMap.load(tmp_path) is None
    fitted = QueryMap.fit(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32)[::-1], "enc")
    fitted.save(tmp_path)
    again = QueryMap.load(tmp_path)
    assert again.encoder == "enc" and np.allclose(again(np.eye(4, dtype=np.float32)), np.eye(4)[::-1], atol=0.05)
