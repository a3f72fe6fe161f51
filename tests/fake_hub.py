"""A local stand-in for the three Hugging Face Hub endpoints a dataset upload uses (create repo,
preupload, commit), so huggingface_hub's own client can be exercised without a network.

It speaks the wire format huggingface_hub 2.x sends: a JSON body for repos/create, a JSON list of
files for preupload (answered "regular": small files go inline), and an NDJSON commit whose file
lines carry base64 content. Requests without the expected bearer token get 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class HubState:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}  # "datasets/owner/name" -> path -> bytes
        self.commits: list[dict] = []


@contextmanager
def fake_hub(token: str = "hf_test_token") -> Iterator[tuple[str, HubState]]:
    state = HubState(token)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._send(401, {"error": "Invalid credentials in Authorization header"})
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[:3] == ["api", "repos", "create"]:
                req = json.loads(body)
                key = f"{req.get('type', 'model')}s/{req['organization']}/{req['name']}"
                if key in state.repos:
                    return self._send(409, {"error": "You already created this dataset repo", "url": key})
                state.repos[key] = {}
                return self._send(200, {"url": f"http://{self.headers['Host']}/{key}"})
            if len(parts) == 6 and parts[0] == "api" and parts[4] in ("preupload", "commit"):
                key = "/".join(parts[1:4])
                if key not in state.repos:
                    return self._send(404, {"error": "Repository not found"})
                if parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                      for f in files]})
                lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                header = next(x["value"] for x in lines if x["key"] == "header")
                for x in lines:
                    if x["key"] == "file":
                        state.repos[key][x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                oid = hashlib.sha1(body).hexdigest()
                state.commits.append({"repo": key, "summary": header["summary"], "oid": oid})
                return self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{key}/commit/{oid}",
                                        "commitOid": oid})
            return self._send(404, {"error": f"no such endpoint {self.path}"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
