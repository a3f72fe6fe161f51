"""The studio as a Hugging Face Space: the app launched with the environment a Space with
`hf_oauth: true` gets, against a local stand-in for the Hub's OpenID provider (discovery,
authorize, token with a signed id_token, keys), so the login flow runs end to end offline:
/login/huggingface -> provider -> /login/callback -> the profile in the session -> a role."""

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.test_app import ROOT, _free_port
from tests.test_model import tiny_pipeline

pytestmark = pytest.mark.filterwarnings("ignore:authlib.jose module is deprecated")


class FakeHub:
    """An OpenID provider on 127.0.0.1 that signs in one user, as the Hub would."""

    def __init__(self, username: str):
        from authlib.jose import JsonWebKey  # authlib comes with gradio[oauth]

        self.username = username
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
        self.nonces: dict[str, str] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, obj, code=200):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    return self._json({"issuer": hub.base, "authorization_endpoint": hub.base + "/oauth/authorize",
                                       "token_endpoint": hub.base + "/oauth/token", "jwks_uri": hub.base + "/oauth/jwks",
                                       "userinfo_endpoint": hub.base + "/oauth/userinfo",
                                       "id_token_signing_alg_values_supported": ["RS256"]})
                if url.path == "/oauth/jwks":
                    return self._json({"keys": [hub.key.as_dict(is_private=False)]})
                if url.path == "/oauth/authorize":  # the person says yes at once
                    hub.nonces["code-1"] = q.get("nonce", "")
                    hub.authorized = q
                    back = q["redirect_uri"] + ("&" if "?" in q["redirect_uri"] else "?") + urllib.parse.urlencode(
                        {"code": "code-1", "state": q["state"]})
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.end_headers()
                    return
                self._json({"error": "not found"}, 404)

            def do_POST(self):
                from authlib.jose import jwt

                n = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                if self.path != "/oauth/token" or form.get("code") != "code-1":
                    return self._json({"error": "invalid_grant"}, 400)
                now = int(time.time())
                claims = {"iss": hub.base, "sub": "u-1", "aud": "client-1", "iat": now, "exp": now + 600,
                          "nonce": hub.nonces["code-1"], "preferred_username": hub.username, "name": "Alice A.",
                          "profile": f"https://example.invalid/{hub.username}", "picture": "https://example.invalid/a.png"}
                token = jwt.encode({"alg": "RS256", "kid": hub.key.as_dict()["kid"]}, claims, hub.key).decode()
                self._json({"access_token": "hub-token", "token_type": "Bearer", "expires_in": 600,
                            "scope": "openid profile", "id_token": token})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _session_payload(set_cookie: str) -> dict:
    """Starlette's session cookie: base64(JSON) signed by itsdangerous; read the JSON part."""
    value = set_cookie.split("session=", 1)[1].split(";", 1)[0]
    data = value.split(".", 1)[0]
    return json.loads(base64.b64decode(data + "=" * (-len(data) % 4)))


def test_space_login_through_the_hub_gives_the_configured_role(tmp_path):
    from gradio import OAuthProfile

    from app.context import space_user

    hub = FakeHub("alice")
    tiny_pipeline().save_pretrained(tmp_path / "m")
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", SYSTEM="spaces", SPACE_ID="omni/studio",
               OAUTH_CLIENT_ID="client-1", OAUTH_CLIENT_SECRET="secret-1", OAUTH_SCOPES="openid profile",
               OPENID_PROVIDER_URL=hub.base, OMNI_ADMINS="alice", OMNI_ANNOTATORS="bob")
    env.pop("SPACE_HOST", None)
    proc = subprocess.Popen([sys.executable, "app.py", "--home", str(tmp_path / "home"), "--port", str(port),
                             "--model", str(tmp_path / "m")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    app = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(app + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail("app.py exited in Space mode: " + proc.stdout.read()[-3000:])
            if time.time() - t0 > 60:
                pytest.fail("app.py did not serve within 60 s in Space mode")
            time.sleep(0.3)
        page = httpx.get(app + "/", timeout=10).text
        assert "login" in page.lower()  # the Hub login button is on the page
        # 1. the login button's route sends the person to the Hub with our client id
        r = httpx.get(app + "/login/huggingface", follow_redirects=False, timeout=10)
        assert r.status_code in (302, 307) and r.headers["location"].startswith(hub.base + "/oauth/authorize")
        assert "client_id=client-1" in r.headers["location"]
        cookie = r.headers["set-cookie"].split(";", 1)[0]  # (Secure, so sent by hand over plain http)
        # 2. the Hub says yes and sends the person back to the callback
        r = httpx.get(r.headers["location"], follow_redirects=False, timeout=10)
        assert r.status_code == 302 and r.headers["location"].startswith(app + "/login/callback")
        # 3. the callback trades the code for the signed id token and keeps the profile in the session
        r = httpx.get(r.headers["location"], headers={"Cookie": cookie}, follow_redirects=False, timeout=10)
        assert r.status_code in (302, 307), r.text[:500]
        info = _session_payload(r.headers["set-cookie"])["oauth_info"]
        assert info["userinfo"]["preferred_username"] == "alice"
        # 4. what the studio makes of that profile: the role comes from OMNI_ADMINS / OMNI_ANNOTATORS
        profile = OAuthProfile(info["userinfo"])
        os.environ.update(OMNI_ADMINS="alice", OMNI_ANNOTATORS="bob")
        try:
            assert space_user(profile) == {"name": "alice", "role": "admin"}
            assert space_user(OAuthProfile({**info["userinfo"], "preferred_username": "bob"}))["role"] == "annotator"
            assert space_user(None) is None  # no Hub login: nobody (not a creator), so nothing can be made
            # the lists are read at every sign-in (and request): taken off OMNI_ADMINS, alice is admin no more
            from app.context import AppContext
            from studio_backend.studio import Studio

            ctx = AppContext(Studio.open(tmp_path / "inproc"), lambda p: None, mode="space")
            assert ctx.user(space_user(profile)).role == "admin"
            os.environ["OMNI_ADMINS"] = "carol"
            assert space_user(profile)["role"] == "creator" and ctx.user({"name": "alice"}).role == "creator"
            assert ctx.maybe_user(None) is None
        finally:
            os.environ.pop("OMNI_ADMINS")
            os.environ.pop("OMNI_ANNOTATORS")
    finally:
        proc.terminate()
        proc.wait(10)
        hub.close()
