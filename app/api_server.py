"""The JSON arena API (app/api.py) in processes of its own, for crowds of annotators:

    python -m app.api_server --home studio_data --port 7861 --workers 2

The same routes, services and rules as the ones app.py serves beside its page (accounts mode), run
by uvicorn's own multi-process mode, each worker a process with its own interpreter lock: in the
studio's process a vote shares one interpreter with the page's events and a generation's sampling
loop, which caps it near 160 votes/s on two cores however cheap the handler is
(benchmarks/votes_http.py --topology). Every process opens the same home: the database (SQLite
writers take the file's lock; PostgreSQL for several hosts) and the secret that seals pair tokens,
so a pair shown by one process is voted through any other, once. Its clip links point at the
studio's own file route (/gradio_api/file=...): behind one origin, a reverse proxy sends
/studio-api/ here and the rest to app.py (README, "Hosting safely").
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

ENV_HOME = "OMNI_API_HOME"


def _no_models(path: str):
    raise RuntimeError("the arena API process loads no model")


def create_app():
    """The ASGI app for one worker process (uvicorn's factory): the studio at $OMNI_API_HOME."""
    from fastapi import FastAPI

    from app.api import install, secure_headers
    from app.context import AppContext
    from studio_backend.db import guard_database_files
    from studio_backend.studio import Studio

    studio = Studio.open(Path(os.environ[ENV_HOME]))
    guard_database_files(studio.db)
    studio.media.served_root.mkdir(parents=True, exist_ok=True)
    threads = int(os.environ.get("OMNI_API_THREADS", "4"))

    @asynccontextmanager
    async def lifespan(_app):
        # Handler threads per process (OMNI_API_THREADS; anyio's default is 40). Measured this session with
        # benchmarks/votes_http.py --topology split: 4 and 40 within run-to-run noise, 2 slower; 4 is kept.
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield

    app = FastAPI(title="Omni Studio arena API", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install(app, AppContext(studio, _no_models, mode="accounts"))
    secure_headers(app)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.api_server", description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=os.environ.get("OMNI_HOME", "studio_data"), help="the studio's home folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7861)
    ap.add_argument("--workers", type=int, default=2, help="processes (uvicorn workers); one per core is a start")
    a = ap.parse_args(argv)
    home = Path(a.home).resolve()
    if not (home / "studio.db").is_file() and not os.environ.get("OMNI_DATABASE_URL"):
        ap.error(f"{home} is not a studio home (no studio.db): start app.py with --home {a.home} first")
    if a.workers < 1:
        ap.error("--workers takes 1 or more")
    os.environ[ENV_HOME] = str(home)
    import uvicorn

    uvicorn.run("app.api_server:create_app", factory=True, host=a.host, port=a.port, workers=a.workers,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
