"""Database set-up: one engine per studio home, SQLite tuned on connect, migrations at start-up.

SQLite (the default, `OMNI_HOME/studio.db`) gets WAL, foreign keys and a busy timeout on
every connection; `OMNI_DATABASE_URL` may name PostgreSQL instead (same code). The schema
is owned by Alembic (studio_backend/migrations, batch mode for SQLite) and upgraded to head
whenever a studio opens its database.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's busy timeout alone orders writers of different processes
    fcntl = None

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def make_engine(url: str, immediate: bool = True) -> Engine:
    """An engine for `url`. On SQLite, transactions are begun by SQLAlchemy rather than by the
    driver's implicit BEGIN before the first write (which also makes SAVEPOINTs behave), and
    write transactions (`immediate`) take the write lock at BEGIN IMMEDIATE: a deferred
    transaction that reads and then writes cannot wait for another process's writer and fails
    with "database is locked" at once, busy timeout or not."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=40,
                               max_overflow=20)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # every connection, not just the first
            dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver: see _begin
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the latest migration (creates it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_guarded: set[str] = set()  # real paths no Python code of this process may open
_guarded_names: set[str] = set()  # their base names (a cheap first test for every open)
_guard_lock = threading.Lock()


def _refuse_database_opens(event: str, args: tuple) -> None:
    if event != "open" or not _guarded:
        return
    path = args[0] if args else None
    if isinstance(path, int) or path is None:  # an already open descriptor
        return
    try:
        name = os.fsdecode(path)
    except TypeError:
        return
    base = os.path.basename(name)
    if base not in _guarded_names:  # most opens are not ours
        return
    if os.path.realpath(name) in _guarded:
        raise PermissionError(f"{base} is the studio database: only its engine may open it (closing any other "
                              "descriptor on it drops SQLite's locks; DESIGN 3.6)")


def guard_database_files(db: "Database") -> list[str]:
    """Refuse, for the rest of this process, every open of the SQLite database file (and its WAL,
    shared-memory and journal files) that does not come from SQLite itself. SQLite's POSIX locks
    belong to the process: closing *any* descriptor of the file releases them, after which another
    process's read-write open deletes the WAL under the studio (lost writes). SQLite opens its
    files in C, outside Python's audit events, so the engine is unaffected. Returns the paths."""
    if not db.url.startswith("sqlite"):
        return []
    file = make_url(db.url).database
    if not file or file == ":memory:":
        return []
    real = os.path.realpath(file)
    paths = [real + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    with _guard_lock:
        if not _guarded:
            import sys

            sys.addaudithook(_refuse_database_opens)
        _guarded.update(paths)
        _guarded_names.update(os.path.basename(p) for p in paths)
    return paths


class Database:
    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)  # writes (and migrations)
        upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite: reads begin deferred, so they never wait for a writer (WAL lets them run beside it)
        self.read_engine = make_engine(url, immediate=False) if url.startswith("sqlite") else self.engine
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time; queueing writers here (FIFO, no sleeping) instead of in
        # SQLite's busy handler (which backs off in sleeps of up to 100 ms) keeps the tail latency low.
        self._write_lock = threading.Lock() if url.startswith("sqlite") else None
        # and across processes (two app processes, a CLI training job beside the studio): a kernel
        # lock next to the database file, whose waiters are woken when it is released
        db_file = make_url(url).database if url.startswith("sqlite") else None
        self._flock_path = f"{db_file}.writers.lock" if db_file and db_file != ":memory:" and fcntl else None
        self._flock_fd: int | None = None
        self._flock_pid = 0

    def _process_lock(self, take: bool) -> None:
        if self._flock_path is None:
            return
        if take:
            if self._flock_pid != os.getpid():  # a forked child must not share its parent's lock
                self._flock_fd = os.open(self._flock_path, os.O_RDWR | os.O_CREAT, 0o600)
                self._flock_pid = os.getpid()
            fcntl.flock(self._flock_fd, fcntl.LOCK_EX)  # blocks without holding the interpreter lock
        else:
            fcntl.flock(self._flock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _writer(self, write: bool) -> Iterator[None]:
        """Holds this process's and the other processes' writer locks around a write (SQLite)."""
        lock = self._write_lock if write else None
        if lock is None:
            yield
            return
        lock.acquire()
        try:
            self._process_lock(True)
        except BaseException:
            lock.release()
            raise
        try:
            yield
        finally:
            self._process_lock(False)
            lock.release()

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A short transaction: committed on success, rolled back on any error. Reads pass write=False."""
        with self._writer(write):
            with (self.sessions if write else self.read_sessions)() as s:
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Connection]:
        """The same short transaction on a plain Core connection, for hot paths (the vote writer):
        no ORM session to build, no unit of work to flush."""
        with self._writer(write):
            with (self.engine if write else self.read_engine).begin() as conn:
                yield conn
