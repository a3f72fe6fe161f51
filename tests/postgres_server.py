"""A real, throw-away PostgreSQL server for the database tests: Debian's postgresql binaries
(installed by `bash scripts/setup.sh --test`), a fresh cluster in a temporary folder, trust
authentication, listening on 127.0.0.1 only, stopped and deleted at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Iterator


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: run bash scripts/setup.sh --test (installs Debian's postgresql)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as Debian's postgres user then
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields the server's base URL (postgresql+psycopg://postgres@127.0.0.1:PORT)."""
    root = tempfile.mkdtemp(prefix="omni-pg-")
    data = os.path.join(root, "data")
    os.makedirs(data)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    subprocess.run(_as_owner([_bin("initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.Popen(_as_owner([_bin("postgres"), "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", root,
                                       "-c", "fsync=off", "-c", "max_connections=200"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import psycopg

        t0 = time.time()
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.time() - t0 > 30:
                    raise RuntimeError("PostgreSQL did not start: " + proc.stderr.read().decode(errors="replace")[-2000:])
                time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def new_database(base_url: str) -> str:
    """A new empty database on the server; its URL."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    port = base_url.rsplit(":", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"
