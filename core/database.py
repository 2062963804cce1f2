"""The two database engines the store runs on, behind one small interface: SQLite (embedded, the default,
through sqlite-utils) and PostgreSQL (psycopg 3 with a connection pool, for several replicas).

The store writes its SQL once, in the subset both engines speak (``?`` and ``:name`` parameters, ``ON
CONFLICT``, ``RETURNING``, window functions); the few places where they differ are the ``Dialect``'s
snippets. A database that is down, locked or full becomes ``StorageUnavailable``: the customer gets a plain
503 and the server keeps running (PostgreSQL reconnects by itself when it is back).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database as SqliteUtilsDatabase

from core.config import redact_url
from core.errors import CsbotError, StorageUnavailable

log = logging.getLogger(__name__)
STORAGE_UNAVAILABLE = "We could not save that just now (our database is busy or full). Please try again in a moment."
Params = Sequence[Any] | dict[str, Any]


@dataclass(frozen=True)
class Dialect:
    """SQL that differs between the engines."""

    name: str
    group_concat: str  # format with (expression, separator literal)
    seconds_between: str  # format with (later, earlier): ISO-8601 text timestamps
    truncate_to_int: str  # format with (expression): toward zero, as an integer
    lock_row: str  # appended to a select of one row that a read-then-write step depends on
    serialize: str  # format with (an integer key): run first in a transaction that must commit in sequence order

    def in_sequence(self, key: int) -> str | None:
        """SQL that makes transactions of ``key`` commit one after the other (None: the engine already does)."""
        return self.serialize.format(int(key)) if self.serialize else None

    def concat(self, expr: str, sep: str) -> str:
        return self.group_concat.format(expr, sep)

    def seconds(self, later: str, earlier: str) -> str:
        return self.seconds_between.format(later, earlier)

    def truncate(self, expr: str) -> str:
        return self.truncate_to_int.format(expr)


# SQLite's BEGIN IMMEDIATE already holds the write lock for the whole transaction, so it needs no row lock.
SQLITE = Dialect("sqlite", "group_concat({0}, {1})", "((julianday({0}) - julianday({1})) * 86400)", "cast({0} as integer)", "", "")
POSTGRES = Dialect(
    "postgresql",
    "string_agg({0}, {1})",
    "extract(epoch from (cast({0} as timestamptz) - cast({1} as timestamptz)))",
    "cast(trunc({0}) as integer)",
    " for update",
    "select pg_advisory_xact_lock({0})",
)


class SQLiteDatabase:
    """One SQLite file in WAL mode, a connection per thread (sqlite3 connections must not be shared)."""

    dialect = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0, max_size_mb: float = 0.0) -> None:
        from core.migrations import migrations

        self.path = str(path)
        self.url = self.path
        self.busy_timeout_s = busy_timeout_s  # how long a write waits for another writer before it fails
        self.max_size_mb = max_size_mb  # a quota: writes beyond it fail as on a full disk (0 = none)
        self._migrations = migrations
        self._local = threading.local()
        # This process's writers queue here and are woken the moment the lock is free; left to SQLite, each waits
        # in its busy handler, which sleeps and polls (1, 2, 5 ... 100 ms): under 32 customers that was the bottleneck.
        self._write_lock = threading.Lock()
        self._memory_db: SqliteUtilsDatabase | None = None
        if self.path == ":memory:":
            # One shared connection: an in-memory database exists only inside its connection.
            self._memory_db = SqliteUtilsDatabase(sqlite3.connect(":memory:", check_same_thread=False))
            self._prepare(self._memory_db)
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db.execute("select 1")  # open now so migrations run (and errors surface) at start-up

    @property
    def db(self) -> SqliteUtilsDatabase:
        """This thread's sqlite-utils connection."""
        if self._memory_db is not None:
            return self._memory_db
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = SqliteUtilsDatabase(sqlite3.connect(self.path, timeout=self.busy_timeout_s, check_same_thread=False))
                self._prepare(db)
            except sqlite3.DatabaseError as err:
                raise CsbotError(f"cannot open the database {self.path}: {err}") from err
            self._local.db = db
        return db

    def _prepare(self, db: SqliteUtilsDatabase) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        if self.max_size_mb > 0:
            page_size = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {max(1, int(self.max_size_mb * 1024 * 1024 / page_size))}")
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "memory":
            db.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against a killed process (the WAL survives); only power loss can drop a commit.
            db.execute("PRAGMA synchronous = NORMAL")
        self._migrations.apply(db)

    def migrations_applied(self) -> list[str]:
        return [m["name"] for m in self._migrations.applied(self.db)] if self.db["_sqlite_migrations"].exists() else []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, the write lock taken at once (BEGIN IMMEDIATE): a read-then-write step inside it
        cannot interleave with another writer's. A locked or full database becomes StorageUnavailable."""
        conn = self.db.conn
        if conn.in_transaction:  # nested: the outer transaction commits
            yield
            return
        if not self._write_lock.acquire(timeout=self.busy_timeout_s):
            log.error("cannot write to %s: another writer held it for %.0f s", self.path, self.busy_timeout_s)
            raise StorageUnavailable(STORAGE_UNAVAILABLE)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        except sqlite3.OperationalError as err:
            log.error("cannot write to %s: %s", self.path, err)
            raise StorageUnavailable(STORAGE_UNAVAILABLE) from err
        finally:
            self._write_lock.release()

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query(sql, params)]

    def one(self, sql: str, params: Params = ()) -> tuple | None:
        return self.db.execute(sql, params).fetchone()

    def execute(self, sql: str, params: Params = ()) -> int:
        """A write; its row count."""
        with self.transaction():
            return self.db.execute(sql, params).rowcount

    def insert(self, table: str, row: dict[str, Any], *, returning: str | None = "id") -> Any:
        cols = ", ".join(row)
        sql = f"insert into {table} ({cols}) values ({', '.join('?' * len(row))})" + (f" returning {returning}" if returning else "")
        with self.transaction():
            found = self.db.execute(sql, list(row.values())).fetchone()
        return found[0] if found and returning else None

    def insert_many(self, table: str, rows: list[dict[str, Any]], *, ignore_conflicts: bool = False) -> None:
        with self.transaction():
            self.db[table].insert_all(rows, ignore=ignore_conflicts, batch_size=1000)

    def after_explicit_ids(self, table: str) -> None:
        """SQLite's next rowid follows the largest one by itself."""

    def cursor(self, sql: str, params: Params = ()) -> tuple[list[str], Iterator[tuple]]:
        cur = self.db.execute(sql, params)
        return [d[0] for d in cur.description], iter(cur)

    def tables(self) -> list[str]:
        return [t for t in self.db.table_names() if not t.startswith(("_", "sqlite_"))]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_pyformat(sql: str) -> str:
    """``?`` and ``:name`` parameters (sqlite3's) to psycopg's ``%s`` and ``%(name)s``; a literal ``%`` is doubled."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%").replace("?", "%s"))


class PostgresDatabase:
    """PostgreSQL through a psycopg connection pool (autocommit; ``transaction()`` for multi-statement steps)."""

    dialect = POSTGRES

    def __init__(self, url: str, *, busy_timeout_s: float = 10.0, max_size: int = 20) -> None:
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self.path = url
        self.busy_timeout_s = busy_timeout_s  # how long a request waits for a connection before a plain 503
        self._psycopg = psycopg
        self._dict_row = dict_row
        self._local = threading.local()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            timeout=busy_timeout_s,
            check=ConnectionPool.check_connection,  # a connection broken by a server restart is replaced, not handed out
            configure=_configure,
            open=False,
            name="csbot",
        )
        try:
            self.pool.open(wait=True, timeout=busy_timeout_s)
        except Exception as err:
            self.pool.close()
            raise CsbotError(f"cannot reach the database {redact_url(url)}: {err}") from err
        from core.migrations import apply_postgres

        with self._errors(), self.pool.connection() as conn:
            apply_postgres(conn)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        from psycopg_pool import PoolTimeout

        try:
            yield
        except (self._psycopg.OperationalError, PoolTimeout) as err:
            log.error("database %s unavailable: %s", redact_url(self.url), err)
            raise StorageUnavailable(STORAGE_UNAVAILABLE) from err

    @contextlib.contextmanager
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:  # inside this thread's transaction
            yield conn
            return
        with self._errors(), self.pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self._errors(), self.pool.connection() as conn, conn.transaction():
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        with self._connection() as conn, conn.cursor(row_factory=self._dict_row) as cur:
            return cur.execute(to_pyformat(sql), params).fetchall()

    def one(self, sql: str, params: Params = ()) -> tuple | None:
        with self._connection() as conn:
            return conn.execute(to_pyformat(sql), params).fetchone()

    def execute(self, sql: str, params: Params = ()) -> int:
        with self._connection() as conn:
            return conn.execute(to_pyformat(sql), params).rowcount

    def insert(self, table: str, row: dict[str, Any], *, returning: str | None = "id") -> Any:
        sql = f"insert into {table} ({', '.join(row)}) values ({', '.join(['%s'] * len(row))})" + (f" returning {returning}" if returning else "")
        with self._connection() as conn:
            found = conn.execute(sql, list(row.values())).fetchone() if returning else conn.execute(sql, list(row.values()))
        return found[0] if returning and found else None

    def insert_many(self, table: str, rows: list[dict[str, Any]], *, ignore_conflicts: bool = False) -> None:
        if not rows:
            return
        cols = list(rows[0])
        sql = f"insert into {table} ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})" + (" on conflict do nothing" if ignore_conflicts else "")
        with self.transaction(), self._connection() as conn, conn.cursor() as cur:
            cur.executemany(sql, [[r.get(c) for c in cols] for r in rows])
            if "id" in cols:
                self.after_explicit_ids(table)

    def after_explicit_ids(self, table: str) -> None:
        """Rows were stored with explicit ids (a copy, a benchmark): move the table's id sequence past them."""
        if table in SERIAL_TABLES:
            with self._connection() as conn:
                conn.execute(f"select setval(pg_get_serial_sequence('{table}', 'id'), greatest((select max(id) from {table}), 1))")

    def cursor(self, sql: str, params: Params = ()) -> tuple[list[str], Iterator[tuple]]:
        rows = []
        with self._connection() as conn:
            cur = conn.execute(to_pyformat(sql), params)
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
        return columns, iter(rows)

    def tables(self) -> list[str]:
        names = self.rows("select table_name from information_schema.tables where table_schema = current_schema() order by table_name")
        return [r["table_name"] for r in names if not r["table_name"].startswith("_")]

    def migrations_applied(self) -> list[str]:
        return [r["name"] for r in self.rows("select name from _csbot_migrations order by applied_at, name")]

    def close(self) -> None:
        self.pool.close()


SERIAL_TABLES = ("tickets", "feedback", "session_events", "contacts", "serving", "ticket_changes")


def _configure(conn) -> None:
    """Every pooled connection reads NUMERIC as float (a rounded rate is a number in JSON, as on SQLite)."""
    from psycopg.types.numeric import FloatLoader

    conn.adapters.register_loader("numeric", FloatLoader)


def open_database(url: str | Path, *, busy_timeout_s: float = 30.0, max_size_mb: float = 0.0, pool_size: int = 20) -> SQLiteDatabase | PostgresDatabase:
    """``postgresql://…`` opens PostgreSQL; anything else is a SQLite file path (or ``:memory:``)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text, busy_timeout_s=busy_timeout_s, max_size=pool_size)
    return SQLiteDatabase(text, busy_timeout_s=busy_timeout_s, max_size_mb=max_size_mb)
