"""A small raw-HTTP client for a launched Gradio app (the /gradio_api/call routes, server-sent events):
one session per object (its session hash keeps the app's per-session state, e.g. the signed-in
user), every response kept as the raw JSON text the app sent, for tests that search them."""

from __future__ import annotations

import json
import uuid

import httpx


class GradioError(RuntimeError):
    """The app answered an event with an error (the studio's message, when it gave one)."""


class Session:
    def __init__(self, url: str, timeout: float = 120.0, client: httpx.Client | None = None):
        self.url = url.rstrip("/") + "/"
        self.session_hash = uuid.uuid4().hex[:11]
        self.http = client or httpx.Client(timeout=timeout)
        self.responses: list[str] = []  # every raw response body of this session, in order

    def call(self, api_name: str, *data):
        """Run one event by its api name; returns its output list (raises GradioError on an error)."""
        r = self.http.post(f"{self.url}gradio_api/call/{api_name}",
                           json={"data": list(data), "session_hash": self.session_hash})
        self.responses.append(r.text)
        if r.status_code != 200:
            raise GradioError(f"{api_name}: HTTP {r.status_code} {r.text[:300]}")
        event_id = r.json()["event_id"]
        event, payload = None, None
        with self.http.stream("GET", f"{self.url}gradio_api/call/{api_name}/{event_id}") as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line[5:].strip()
                    break
        self.responses.append(payload or "")
        if event != "complete":
            try:
                msg = json.loads(payload) if payload else None
            except json.JSONDecodeError:
                msg = payload
            raise GradioError(f"{api_name}: {msg}")
        return json.loads(payload)

    def get(self, path_or_url: str) -> httpx.Response:
        """GET a URL the app handed out (relative or absolute), or any path on the app."""
        url = path_or_url if path_or_url.startswith("http") else self.url + path_or_url.lstrip("/")
        return self.http.get(url)

    def close(self) -> None:
        self.http.close()


def file_url(value) -> str | None:
    """The URL of a file output ({"url": ...} or a video's {"video": {"url": ...}})."""
    if isinstance(value, dict):
        if "video" in value:
            return file_url(value["video"])
        return value.get("url")
    return None
