"""Shared fixtures: a small real home (SQLite file, FAISS index, a quick-trained intent model) built once.

Everything is real and offline: the packaged MiniLM, real SQLite files, a real FAISS index, real training.
"""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if "PYTEST_XDIST_WORKER_COUNT" in os.environ and "OMP_NUM_THREADS" not in os.environ:
    # Several pytest workers (scripts/test.sh): each one's torch, and the subprocesses its tests start, get their
    # share of the cores; set before torch is imported. Oversubscribed threads would make every worker slower.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
if "CSBOT_CACHE_DIR" not in os.environ:  # the retrieval encoder's ONNX graph: once a run, removed after it
    os.environ["CSBOT_CACHE_DIR"] = tempfile.mkdtemp(prefix="csbot-cache-")
    atexit.register(shutil.rmtree, os.environ["CSBOT_CACHE_DIR"], ignore_errors=True)

from core.config import Settings  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "data"
PER_INTENT = 15


FOLLOWUPS_PER_INTENT = 4


def first_rows_per(source: Path, dest: Path, column: str, n: int) -> Path:
    """``dest``: ``source``'s header and the first ``n`` rows of each value of ``column``."""
    seen: dict[str, int] = {}
    with source.open() as f, dest.open("w", newline="") as out:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if seen.get(row[column], 0) < n:
                seen[row[column]] = seen.get(row[column], 0) + 1
                writer.writerow(row)
    return dest


@pytest.fixture(scope="session")
def small_tickets(tmp_path_factory) -> Path:
    """A CSV with the first PER_INTENT bundled tickets of every intent (1,155 rows)."""
    return first_rows_per(DATA / "tickets.csv", tmp_path_factory.mktemp("data") / "small.csv", "intent", PER_INTENT)


@pytest.fixture(scope="session")
def small_followups(tmp_path_factory) -> Path:
    """The first FOLLOWUPS_PER_INTENT written follow-ups after each intent (308 of 3,102 rows): a reader fitted in
    a test embeds about a tenth of the pairs a real one does."""
    return first_rows_per(DATA / "followups_train.csv", tmp_path_factory.mktemp("data") / "followups.csv", "earlier_intent", FOLLOWUPS_PER_INTENT)


@pytest.fixture(scope="session")
def ready_home(tmp_path_factory, small_tickets) -> Path:
    """A home with the small knowledge base ingested, indexed and a quick intent model serving (built once). Its
    quick model has no follow-up reader (``first_reader_pairs=0``): the tests that need one fit it
    (``test_conversation``), and the first start's reader has its own test."""
    from csbot.wiring import ensure_ready

    home = tmp_path_factory.mktemp("home")
    ensure_ready(Settings(home=home, default_tickets=small_tickets, first_reader_pairs=0))
    return home


WEIGHT_FILES = (".safetensors", ".onnx", ".bin")  # written once per model version, never in place


def _link_or_copy(src: str, dst: str) -> None:
    """Weights hard-linked (a model version is immutable; ~180 MB a test otherwise, and CI's /tmp is small),
    everything a test may write in place (the database, the index, pointers) copied."""
    if src.endswith(WEIGHT_FILES):
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


@pytest.fixture
def home(ready_home, tmp_path) -> Path:
    """A private copy of the ready home, so each test may write freely."""
    dest = tmp_path / "home"
    shutil.copytree(ready_home, dest, copy_function=_link_or_copy)
    return dest


@pytest.fixture
def settings(home, small_followups) -> Settings:
    # a promotion shows on the next message (the 1 s default: test_registry); readers learn from the small follow-ups
    return Settings(home=home, model_check_s=0.0, followups_file=small_followups)


@pytest.fixture
def assistant(settings):
    from csbot.wiring import open_assistant

    return open_assistant(settings).warm_up()


def with_thresholds(settings: Settings, answer: float, handoff: float) -> Settings:
    return replace(settings, answer_threshold=answer, handoff_threshold=handoff, thresholds_from_model=False)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole run (tests/servers.py); each test takes a fresh database on it."""
    import tempfile

    from tests.servers import PostgresServer

    # Not under pytest's folder: that one is private to root, and the server runs as the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="csbot-postgres-"))
    server = PostgresServer(folder).start()
    yield server
    server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Where a store lives, once per engine: the contract tests run every case on both."""
    if request.param == "sqlite":
        return str(tmp_path / "csbot.db")
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server of its own for one test (tests/servers.py), stopped afterwards."""
    from tests.servers import RedisServer

    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
