"""A small JSON API beside the Gradio page, for annotation clients at crowd speed (issue 19).

    GET  /studio-api/health                                                 -> {"ok": true, ...} (served once ready)
    POST /studio-api/sign-in      {"name": ..., "password": ...}            -> {"token": ...}
    POST /studio-api/arena/next   (Authorization: Bearer TOKEN)             -> {"pair": ..., "prompt": ..., "left": URL, "right": URL}
    POST /studio-api/arena/vote   {"pair": ..., "overall": "G", "verdicts": {...}} -> {"stored": true|false, "next": {...}}

The same services and rules as the Arena tab (roles checked by the services, an account's role
read at every request, blind pairs with an opaque per-showing token, clips under fresh served
names), without a Gradio event's queue and state round trip per vote: a Gradio event costs
about 12 ms of server CPU before the handler runs, this route about 1. The pair token is the
vote's idempotency key, so a resubmitted vote is stored once, on the pair it was cast on.
Only in accounts mode (a self-hosted studio).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from studio_backend.services import DIMENSIONS, VOTE_SEGMENTS, ServiceError

from .context import AppContext

PREFIX = "/studio-api"
MAX_BODY = 16 * 1024  # bytes: a vote or a sign-in is under 1 KB


def _json(obj: Any) -> Response:
    """A JSON answer written by orjson, without FastAPI's encoder walk (a vote's answer on every vote)."""
    return Response(orjson.dumps(obj), media_type="application/json")


async def json_body(request: Request) -> dict:
    """The request's JSON object, read at most MAX_BODY bytes (a declared or a streamed larger body is
    refused with 413 before it is held in memory); 422 for anything but a JSON object."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise HTTPException(413, f"the request body is over {MAX_BODY} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HTTPException(413, f"the request body is over {MAX_BODY} bytes")
    try:
        body = orjson.loads(bytes(data) or b"{}")
    except orjson.JSONDecodeError:
        raise HTTPException(422, "the request body must be a JSON object")
    if not isinstance(body, dict):
        raise HTTPException(422, "the request body must be a JSON object")
    return body


# Sent with every HTTP response of the studio (app.py) and of the arena API (app/api_server.py): no MIME sniffing
# (an uploaded file served back is what its type says), no full URL leaked to other sites, and the page framed only
# by itself and by Hugging Face (a Space's page embeds the app in an iframe).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", b"frame-ancestors 'self' https://huggingface.co https://*.hf.space"),
)


class _SecurityHeaders:
    """A pure ASGI wrapper adding SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.inner(scope, receive, send_with_headers)


def secure_headers(app) -> None:
    """Wrap a Starlette / FastAPI app's middleware stack (also one already started, as Gradio's is after launch,
    where add_middleware is refused) so every response carries SECURITY_HEADERS."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    if not isinstance(app.middleware_stack, _SecurityHeaders):
        app.middleware_stack = _SecurityHeaders(app.middleware_stack)


def install(app, ctx: AppContext) -> None:
    """Put the routes first in the launched app's router (before Gradio's own catch-alls)."""
    router = APIRouter()

    def user_of(request: Request):
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        user = ctx.studio.accounts.user_for(token) if ctx.mode == "accounts" else None
        if user is None:
            raise HTTPException(401, "sign in first: POST /studio-api/sign-in, then send Authorization: Bearer TOKEN")
        return user

    def pair_json(user) -> dict[str, Any] | None:
        p = ctx.studio.arena.next_pair(user)
        if p is None:
            return None
        return {"pair": p.left_is_a_token, "prompt": p.prompt,
                "left": f"/gradio_api/file={ctx.video_path(p.left_asset)}",
                "right": f"/gradio_api/file={ctx.video_path(p.right_asset)}"}

    @router.get(PREFIX + "/health")
    def health():
        return {"ok": True, "accounts": ctx.mode == "accounts"}

    @router.post(PREFIX + "/sign-in")
    def sign_in(body: dict = Depends(json_body)):
        if ctx.mode != "accounts":
            raise HTTPException(404, "this studio has no accounts")
        try:
            _, token = ctx.studio.accounts.sign_in(str(body.get("name", "")), str(body.get("password", "")))
        except ServiceError as e:
            raise HTTPException(401, str(e))
        return _json({"token": token})

    @router.post(PREFIX + "/arena/next")
    def arena_next(request: Request):
        user = user_of(request)
        try:
            return _json({"next": pair_json(user)})
        except ServiceError as e:
            raise HTTPException(403, str(e))

    @router.post(PREFIX + "/arena/vote")
    def arena_vote(request: Request, body: dict = Depends(json_body)):
        user = user_of(request)
        token = str(body.get("pair", ""))
        verdicts = body.get("verdicts") or {}
        if not isinstance(verdicts, dict) or any(d not in DIMENSIONS for d in verdicts):
            raise HTTPException(422, f"verdicts: a map of {', '.join(DIMENSIONS)} to G, S or B")
        segments = body.get("segments")
        if segments is not None and not isinstance(segments, list):
            raise HTTPException(422, f"segments: a list of {VOTE_SEGMENTS} verdicts (G, S or B), one per quarter")
        try:
            rec = ctx.studio.arena.vote(user, token, {str(k): str(v) for k, v in verdicts.items()},
                                        str(body.get("overall", "")), token, seconds=float(body.get("seconds", 0) or 0),
                                        segments=None if segments is None else [str(v) for v in segments])
            return _json({"stored": rec.created, "next": pair_json(user)})
        except (ServiceError, ValueError) as e:
            raise HTTPException(403 if "role" in str(e) else 422, str(e))

    for route in reversed(router.routes):
        app.router.routes.insert(0, route)
