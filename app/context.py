"""What every tab gets: the studio's services, the job worker, and small shared helpers.

Handlers receive the signed-in user as a plain dict from a gr.State (server-side: the page
cannot write it; only the sign-in handlers do) and turn it into a UserRecord through the
services at every request, so roles are checked by the services and a grant or revoke counts
from the next request. How the dict is read depends on the studio's sign-in mode:

- "accounts" (self-hosted, the default): {"token": session token}; the user and the role they
  have now come from the session (studio_backend.accounts). No token: not signed in.
- "space" (a Hugging Face Space): {"name": Hub user}; the role is read from OMNI_ADMINS /
  OMNI_ANNOTATORS at every request. No name: not signed in.
- "open" (`app.py --open-studio`, localhost only): {"name", "role"} picked on the page.
- "trusted" (in-process callers: tests, scripts): {"name", "role"} as given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio_backend.media import MediaError
from studio_backend.services import JobRecord, ServiceError, UserRecord
from studio_backend.studio import Studio

DEFAULT_USER = {"name": "you", "role": "creator"}
MODES = ("trusted", "open", "accounts", "space")
SIGN_IN_FIRST = "sign in first: this needs a signed-in account"


class UIError(Exception):
    """Raised by handlers; the tab turns it into a gr.Error the person can read (refused())."""


def refused(message: str):
    """The pop-up for a request the studio refuses (bad input, a missing role): the person reads the reason; the
    server log gets no traceback for it (a hosted studio's log would otherwise fill with one per refused click)."""
    import gradio as gr

    return gr.Error(message, print_exception=False)


class MediaRefused(UIError, MediaError):
    """An upload the studio refuses, with the studio's own words (caught as a UIError or a MediaError)."""


def check_reference(width: int, height: int, what: str = "the image") -> None:
    """The worker's own rule for a reference image (model.mvl), checked at upload: a view the model
    would refuse later (1x1) is refused now, before anything is stored against it."""
    from model.mvl import MVLValidationError, _check_image

    try:  # a broadcast view: the rule sees the shape, nothing is allocated
        _check_image(np.broadcast_to(np.zeros(3, np.uint8), (int(height), int(width), 3)), what)
    except MVLValidationError as e:
        raise MediaRefused(str(e)) from e


@dataclass
class AppContext:
    studio: Studio
    load_pipeline: Callable[[str], Any]
    worker: Any = None
    job_timeout: float = 600.0
    mode: str = "trusted"

    # ------------------------------------------------------------ users and projects
    def user(self, state: dict | None) -> UserRecord:
        """The signed-in person with the role they hold now; UIError when nobody is signed in."""
        u = self.maybe_user(state)
        if u is None:
            raise UIError(SIGN_IN_FIRST)
        return u

    def signed_in(self, state: dict | None) -> UserRecord | None:
        """The signed-in person, or None for a visitor with no session or an expired one (for what is shown, not
        refused: a refusal says why with `user`)."""
        try:
            return self.maybe_user(state)
        except UIError:
            return None

    def maybe_user(self, state: dict | None) -> UserRecord | None:
        st = state if isinstance(state, dict) else None
        try:
            if self.mode == "accounts":
                return self.studio.accounts.user_for((st or {}).get("token"))
            if self.mode == "space":
                name = (st or {}).get("name")
                return self.studio.users.sync(name, space_role(name)) if name else None
            st = st or DEFAULT_USER
            if self.mode == "open":
                return self.studio.users.get(st.get("name") or "") or self.studio.users.ensure(
                    st.get("name") or "you", st.get("role") or "creator")
            return self.studio.users.ensure(st.get("name") or "you", st.get("role") or "creator")
        except ServiceError as e:
            raise UIError(str(e)) from e

    def creator(self, state: dict | None) -> UserRecord:
        """A signed-in creator (or admin): the one who may write to the media store or generate."""
        u = self.user(state)
        if u.role not in ("creator", "admin"):
            raise UIError(f"{u.name} is an {u.role}: making and uploading media needs the creator role")
        return u

    def project(self, user: UserRecord) -> int:
        """The person's current project (one is made on first use)."""
        mine = [p for p in self.studio.projects.list(user) if p.owner_id == user.id]
        if mine:
            return mine[0].id
        if user.role == "annotator":
            raise UIError("annotators have no projects: sign in as a creator to make videos")
        return self.studio.projects.create(user, f"{user.name}'s project").id

    # ------------------------------------------------------------ media
    def image_asset(self, img: np.ndarray | None, name: str = "image.png") -> str | None:
        if img is None:
            return None
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise MediaRefused(f"{name}: not an RGB image")
        check_reference(arr.shape[1], arr.shape[0], name)
        try:
            return self.studio.media.put_image_array(np.ascontiguousarray(arr.astype(np.uint8)), name).id
        except MediaError as e:
            raise MediaRefused(str(e)) from e

    def image_refusal(self, path: str | None) -> str | None:
        """Why the studio would refuse this uploaded image (None when it would take it), from its bytes and header,
        storing nothing: the page says so at upload instead of at Enhance or Generate."""
        if not path:
            return None
        try:
            data = Path(path).read_bytes()
            w, h = self.studio.media.image_size(data, Path(path).name)
            check_reference(w, h, Path(path).name)
        except OSError:
            return f"{Path(path).name}: the upload could not be read"
        except (MediaRefused, MediaError) as e:
            return str(e)
        return None

    def upload_image(self, path: str | None) -> str | None:
        if not path:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise MediaRefused(f"{Path(path).name}: the upload could not be read") from e
        media = self.studio.media
        try:
            w, h = media.image_size(data, Path(path).name)  # from the header, before anything is stored
            check_reference(w, h, Path(path).name)
            return media.put_image_bytes(data, Path(path).name).id
        except MediaRefused:
            raise
        except MediaError as e:
            raise MediaRefused(str(e)) from e

    def upload_video(self, path: str | None) -> str | None:
        if not path:
            return None
        try:
            return self.studio.media.put_video_file(path, Path(path).name).id
        except MediaError as e:
            raise MediaRefused(str(e)) from e

    def video_path(self, asset_id: str | None) -> str | None:
        """A fresh served link to a stored clip (media/served/<random>.mp4), for the person asking only."""
        return None if not asset_id else str(self.studio.media.serve(asset_id, "mp4"))

    def image_path(self, asset_id: str | None) -> str | None:
        """A fresh served link to a stored image (media/served/<random>.png), for the person asking only."""
        return None if not asset_id else str(self.studio.media.serve(asset_id, "png"))

    # ------------------------------------------------------------ jobs
    def wait(self, job: JobRecord, progress=None) -> JobRecord:
        """Block until the job ends, feeding its stored progress to the page's progress bar."""
        t0 = time.time()
        while True:
            j = self.studio.jobs.get(job.id)
            if progress is not None:
                progress(j.progress, desc=j.message or j.status)
            if j.status in ("succeeded", "failed", "canceled"):
                return j
            if time.time() - t0 > self.job_timeout:
                raise UIError(f"job {job.id} is still {j.status} after {self.job_timeout:.0f} s; see the Jobs tab")
            time.sleep(0.15)

    def default_steps(self) -> int:
        """The active version's own step count (a distilled student: its K; 10 otherwise), read from its
        model_index.json without loading it; the sampler's default when a page does not ask for more."""
        import json

        v = self.studio.registry.active()
        try:
            if v is not None and (v.backend or "embedded") == "embedded":
                cfg = json.loads((Path(v.path) / "model_index.json").read_text()).get("config", {})
                return int(cfg.get("default_steps", 10))
        except (OSError, ValueError, TypeError):
            pass
        return 10

    def active_enhancer(self):
        v = self.studio.registry.active()
        if v is None:
            raise UIError("no active model: train one (bash scripts/train_embedded.sh) or start the app with --model")
        return self.load_pipeline(v.path).enhancer


def space_role(name: str) -> str:
    """A Hub user's role from OMNI_ADMINS / OMNI_ANNOTATORS (comma lists), read now: a name taken
    off a list loses the role at its next request."""
    admins = {x.strip() for x in os.environ.get("OMNI_ADMINS", "").split(",") if x.strip()}
    annotators = {x.strip() for x in os.environ.get("OMNI_ANNOTATORS", "").split(",") if x.strip()}
    return "admin" if name in admins else "annotator" if name in annotators else "creator"


def space_user(profile) -> dict | None:
    """On a Hugging Face Space: the Hub user with the role the lists give now; None when not logged in."""
    name = getattr(profile, "username", None)
    return {"name": name, "role": space_role(name)} if name else None
