"""A real `python app.py` process for tests that talk to it over raw HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def httpx_errors():
    import httpx

    return httpx.HTTPError


class App:
    def __init__(self, proc: subprocess.Popen, url: str, home: Path, log: Path):
        self.proc, self.url, self.home, self.log = proc, url, home, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""


def start_app(home: Path, model: Path, *extra: str, env: dict | None = None, timeout: float = 300.0) -> App:
    port = free_port()
    log = Path(str(home) + f".app-{port}.log")
    home.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **(env or {}))
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--home", str(home), "--port", str(port), "--model", str(model),
                             *extra], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, text=True)
    out.close()
    app = App(proc, f"http://127.0.0.1:{port}/", home, log)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            import httpx

            if httpx.get(app.url + "studio-api/health", timeout=5).status_code == 200:  # every route is in
                return app
            time.sleep(0.1)
        except (OSError, httpx_errors()):
            if proc.poll() is not None:
                raise RuntimeError("app.py exited: " + app.output()[-4000:])
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"app.py did not serve within {timeout:.0f} s: " + app.output()[-4000:])


def stop_app(app: App) -> None:
    if app.proc.poll() is None:
        app.proc.terminate()
        try:
            app.proc.wait(15)
        except subprocess.TimeoutExpired:
            app.proc.kill()
            app.proc.wait(5)


@contextmanager
def running_app(home: Path, model: Path, *extra: str, env: dict | None = None):
    app = start_app(home, model, *extra, env=env)
    try:
        yield app
    finally:
        stop_app(app)


def accounts_cli(home: Path, *args: str, password: str | None = None) -> str:
    """`python -m studio_backend.accounts ...` on a home, the password on standard input."""
    r = subprocess.run([sys.executable, "-m", "studio_backend.accounts", "--home", str(home), *args,
                        *(["--password-stdin"] if password is not None else [])],
                       cwd=ROOT, input=(password + "\n") if password is not None else None, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, OMNI_DATABASE_URL=""))
    if r.returncode != 0:
        raise RuntimeError(f"accounts {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout
