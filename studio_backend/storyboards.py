"""Storyboards: ordered shots, takes per shot (one chosen), neighbour-shot requests, grid
requests, and assembly of the chosen takes into one film (moviepy, cross-fades, H.264).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from model.mvl import MVLRequest, MVLValidationError

from .db import Database
from .media import AssetInfo, MediaStore
from .models import Job, Project, Shot, Storyboard, Take
from .services import PermissionDenied, ServiceError, UserRecord, _ensure_asset, require


@dataclass(frozen=True)
class ShotRecord:
    id: int
    position: int
    request: dict
    duration: float
    takes: tuple[tuple[int, int, str | None], ...]  # (take id, job id, result asset id or None)
    chosen_take_id: int | None


@dataclass(frozen=True)
class StoryboardRecord:
    id: int
    project_id: int
    name: str
    shots: tuple[ShotRecord, ...]


class StoryboardService:
    def __init__(self, db: Database, media: MediaStore):
        self.db, self.media = db, media

    # ------------------------------------------------------------ records
    def _record(self, s, sb: Storyboard) -> StoryboardRecord:
        shots = []
        for sh in sb.shots:
            takes = []
            for t in sh.takes:
                job = s.get(Job, t.job_id)
                takes.append((t.id, t.job_id, job.result_asset_id if job else None))
            shots.append(ShotRecord(sh.id, sh.position, dict(sh.request), sh.duration, tuple(takes), sh.chosen_take_id))
        return StoryboardRecord(sb.id, sb.project_id, sb.name, tuple(shots))

    def _owned(self, s, user: UserRecord, storyboard_id: int) -> Storyboard:
        sb = s.get(Storyboard, storyboard_id)
        if sb is None:
            raise ServiceError(f"no storyboard {storyboard_id}")
        p = s.get(Project, sb.project_id)
        if p.owner_id != user.id and user.role != "admin":
            raise PermissionDenied(f"storyboard {storyboard_id} belongs to another creator")
        return sb

    def _shot(self, s, user: UserRecord, shot_id: int) -> Shot:
        sh = s.get(Shot, shot_id)
        if sh is None:
            raise ServiceError(f"no shot {shot_id}")
        self._owned(s, user, sh.storyboard_id)
        return sh

    @staticmethod
    def _check_request(request: dict) -> dict:
        try:
            MVLRequest.from_dict(request).validate()
        except MVLValidationError as e:
            raise ServiceError(f"the shot's request is invalid: {e}") from e
        return request

    # ------------------------------------------------------------ editing
    def create(self, user: UserRecord, project_id: int, name: str) -> StoryboardRecord:
        require(user, "creator")
        with self.db.session() as s:
            p = s.get(Project, project_id)
            if p is None or (p.owner_id != user.id and user.role != "admin"):
                raise ServiceError(f"no project {project_id} of {user.name}")
            sb = Storyboard(project_id=project_id, name=(name or "Storyboard")[:120])
            s.add(sb)
            s.flush()
            return self._record(s, sb)

    def list(self, user: UserRecord, project_id: int) -> list[StoryboardRecord]:
        with self.db.session(write=False) as s:
            p = s.get(Project, project_id)
            if p is None or (p.owner_id != user.id and user.role != "admin"):
                raise ServiceError(f"no project {project_id} of {user.name}")
            return [self._record(s, sb) for sb in s.scalars(select(Storyboard).where(Storyboard.project_id == project_id)
                                                            .order_by(Storyboard.id))]

    def get(self, user: UserRecord, storyboard_id: int) -> StoryboardRecord:
        with self.db.session(write=False) as s:
            return self._record(s, self._owned(s, user, storyboard_id))

    def add_shot(self, user: UserRecord, storyboard_id: int, request: dict, duration: float = 2.0) -> ShotRecord:
        require(user, "creator")
        self._check_request(request)
        if not 0.25 <= duration <= 60:
            raise ServiceError(f"shot duration {duration} s: use 0.25 to 60 seconds")
        with self.db.session() as s:
            sb = self._owned(s, user, storyboard_id)
            sh = Shot(storyboard_id=sb.id, position=len(sb.shots), request=request, duration=duration)
            s.add(sh)
            s.flush()
            return ShotRecord(sh.id, sh.position, request, duration, (), None)

    def reorder(self, user: UserRecord, storyboard_id: int, shot_ids: list[int]) -> StoryboardRecord:
        with self.db.session() as s:
            sb = self._owned(s, user, storyboard_id)
            if sorted(shot_ids) != sorted(sh.id for sh in sb.shots):
                raise ServiceError("reorder needs every shot of the storyboard exactly once")
            pos = {sid: k for k, sid in enumerate(shot_ids)}
            for sh in sb.shots:
                sh.position = pos[sh.id]
            s.flush()
            s.expire(sb, ["shots"])
            return self._record(s, sb)

    def delete_shot(self, user: UserRecord, shot_id: int) -> None:
        with self.db.session() as s:
            sh = self._shot(s, user, shot_id)
            sb_id = sh.storyboard_id
            s.delete(sh)
            s.flush()
            for k, other in enumerate(s.scalars(select(Shot).where(Shot.storyboard_id == sb_id).order_by(Shot.position))):
                other.position = k

    def add_take(self, user: UserRecord, shot_id: int, job_id: int) -> int:
        with self.db.session() as s:
            sh = self._shot(s, user, shot_id)
            if s.get(Job, job_id) is None:
                raise ServiceError(f"no job {job_id}")
            t = Take(shot_id=sh.id, job_id=job_id)
            s.add(t)
            s.flush()
            if sh.chosen_take_id is None:
                sh.chosen_take_id = t.id
            return t.id

    def choose_take(self, user: UserRecord, shot_id: int, take_id: int) -> None:
        with self.db.session() as s:
            sh = self._shot(s, user, shot_id)
            if take_id not in {t.id for t in sh.takes}:
                raise ServiceError(f"take {take_id} is not a take of shot {shot_id}")
            sh.chosen_take_id = take_id

    # ------------------------------------------------------------ requests from neighbours and grids
    def neighbour_request(self, user: UserRecord, shot_id: int, direction: str, prompt: str) -> dict:
        """An MVL request for the shot after (or before) this one, with its chosen take as @Video and
        the shot's reference images and subjects."""
        if direction not in ("next", "previous"):
            raise ServiceError("direction must be 'next' or 'previous'")
        with self.db.session(write=False) as s:
            sh = self._shot(s, user, shot_id)
            take = next((t for t in sh.takes if t.id == sh.chosen_take_id), None)
            job = s.get(Job, take.job_id) if take else None
            if job is None or job.result_asset_id is None:
                raise ServiceError(f"shot {shot_id} has no finished take to continue from; generate it first")
            asset = job.result_asset_id
            carried = dict(sh.request or {})
        words = "The next shot after @Video" if direction == "next" else "The shot before @Video"
        text = prompt if "@Video" in prompt else f"{words}: {prompt}"
        # the shot's own references travel with it, so its @Image_k and @Name still mean the same things
        req = MVLRequest(prompt=text, video=asset, task="next_shot" if direction == "next" else "previous_shot",
                         images=list(carried.get("images") or []), subjects=dict(carried.get("subjects") or {}))
        return self._check_request(req.to_dict())

    @staticmethod
    def grid_request(grid_asset: AssetInfo | str, rows: int, cols: int, prompt: str = "") -> dict:
        from model.mvl import Storyboard as Board

        req = MVLRequest(prompt=prompt or f"Turn the {rows}x{cols} comic grid into one continuous shot.",
                         storyboard=Board(grid=getattr(grid_asset, "id", grid_asset), rows=rows, cols=cols),
                         task="storyboard")
        return StoryboardService._check_request(req.to_dict())

    # ------------------------------------------------------------ assembly
    def assemble(self, user: UserRecord, storyboard_id: int, fps: int = 8, crossfade: float = 0.25) -> AssetInfo:
        """The chosen takes in order, each held for its duration, joined by cross-fades, as H.264 mp4."""
        import numpy as np
        from moviepy import ImageSequenceClip, concatenate_videoclips, vfx

        sb = self.get(user, storyboard_id)
        if not sb.shots:
            raise ServiceError("the storyboard has no shots")
        clips = []
        for sh in sorted(sb.shots, key=lambda x: x.position):
            chosen = next((t for t in sh.takes if t[0] == sh.chosen_take_id), None)
            if chosen is None or chosen[2] is None:
                raise ServiceError(f"shot {sh.position + 1} has no finished, chosen take")
            frames = self.media.load_video(chosen[2])
            n = max(1, int(round(sh.duration * fps)))
            idx = np.arange(n) % len(frames)  # a short take loops to fill its duration
            up = max(1, 256 // frames.shape[1])
            big = frames[idx].repeat(up, 1).repeat(up, 2)
            clip = ImageSequenceClip(list(big), fps=fps)
            if clips and crossfade > 0:
                clip = clip.with_effects([vfx.CrossFadeIn(crossfade)])
            clips.append(clip)
        film = concatenate_videoclips(clips, method="compose", padding=-crossfade if len(clips) > 1 else 0)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "film.mp4"
            film.write_videofile(str(out), fps=fps, codec="libx264", audio=False, logger=None,
                                 ffmpeg_params=["-pix_fmt", "yuv420p", "-movflags", "+faststart"])
            info = self.media._store(out.read_bytes(), "video", "mp4", film.w, film.h,
                                     int(round(film.duration * fps)), f"storyboard-{storyboard_id}.mp4")
        with self.db.session() as s:
            _ensure_asset(s, info)
        return info
