"""The studio's services: the rules and the transactions, plain records in and out.

One service per concern (users and projects, subject library, model registry, jobs,
arena); each takes the Database and returns frozen dataclasses, never ORM objects.
Roles are checked here, not in the UI.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import os
import random
import re
import socket
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from .db import Database
from .media import AssetInfo, MediaStore
from .models import Asset, Comparison, Job, ModelVersion, Project, Subject, SubjectImage, User, Vote

ROLES = ("creator", "annotator", "admin")
DIMENSIONS = ("dynamic_quality", "visual_quality", "prompt_following", "identity_consistency", "video_consistency")
VERDICTS = ("G", "S", "B")
VOTE_SEGMENTS = 4  # a vote's segment verdicts (DenseDPO): the clips' frames in this many equal runs
LEASE_SECONDS = 15.0  # a running job's lease; its worker renews it every LEASE_SECONDS / 5
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class ServiceError(ValueError):
    """A request the studio refuses; the message names the input and the fix."""


class PermissionDenied(ServiceError):
    pass


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class ProjectRecord:
    id: int
    name: str
    owner_id: int


@dataclass(frozen=True)
class SubjectRecord:
    id: int
    project_id: int
    name: str
    image_ids: tuple[str, ...]


@dataclass(frozen=True)
class VersionRecord:
    id: int
    name: str
    path: str
    parent_id: int | None
    status: str
    metrics: dict
    backend: str = "embedded"  # DESIGN 3.5: embedded | wan
    adapter: str | None = None  # a LoRA adapter directory loaded on top of `path`


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    status: str
    progress: float
    message: str
    request: dict
    seed: int
    model_version_id: int | None
    result_asset_id: str | None
    project_id: int | None
    created_at: datetime
    worker: str | None = None  # the worker that took the job (workers may run on other hosts)
    user_id: int | None = None  # who submitted it
    lease_owner: str | None = None  # host:pid:worker:nonce holding the running job's lease
    plan: dict | None = None  # the layout plan the generation was rendered from (LayoutPlan.to_dict())


@dataclass(frozen=True)
class PairRecord:
    """What an annotator receives: nothing names a model, a version or a seed."""

    comparison_id: int
    prompt: str
    left_asset: str
    right_asset: str
    left_is_a_token: str  # opaque: which side is A, sealed for the vote (not readable by the page)


@dataclass(frozen=True)
class VoteRecord:
    id: int
    comparison_id: int
    annotator_id: int
    verdicts: dict
    overall: str
    created: bool  # False when the idempotency key had been used already


def _user(u: User) -> UserRecord:
    return UserRecord(u.id, u.name, u.role)


def _subject(s: Subject) -> SubjectRecord:
    return SubjectRecord(s.id, s.project_id, s.name, tuple(i.asset_id for i in s.images))


def _version(v: ModelVersion) -> VersionRecord:
    return VersionRecord(v.id, v.name, v.path, v.parent_id, v.status, dict(v.metrics or {}), v.backend or "embedded",
                         v.adapter)


def _job(j: Job) -> JobRecord:
    return JobRecord(j.id, j.kind, j.status, j.progress, j.message, dict(j.request), j.seed, j.model_version_id,
                     j.result_asset_id, j.project_id, j.created_at, j.worker, j.user_id,
                     j.lease_owner, j.plan)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def check_text(text, what: str) -> None:
    """Text shown to other people holds no NUL, control or direction-override characters."""
    if isinstance(text, str) and _CONTROL.search(text):
        c = _CONTROL.search(text).group(0)
        raise ServiceError(f"{what} holds a control character (U+{ord(c):04X}): remove it")


def require(user: UserRecord, *roles: str) -> None:
    if user.role not in roles and user.role != "admin":
        raise PermissionDenied(f"{user.name} is a {user.role}; this needs the {' or '.join(roles)} role")


# ---------------------------------------------------------------- users and projects
class UserService:
    def __init__(self, db: Database):
        self.db = db

    def ensure(self, name: str, role: str = "creator") -> UserRecord:
        if role not in ROLES:
            raise ServiceError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if not re.match(r"^[\w.\-@ ]{1,64}$", name or ""):
            raise ServiceError(f"user name {name!r}: use 1-64 letters, digits, spaces, . - _ @")
        with self.db.session() as s:
            u = s.scalar(select(User).where(User.name == name))
            if u is None:
                u = User(name=name, role=role)
                s.add(u)
                s.flush()
            return _user(u)

    def get(self, name: str) -> UserRecord | None:
        """The user of that name with the role stored now (None if unknown)."""
        with self.db.session(write=False) as s:
            u = s.scalar(select(User).where(User.name == name))
            return _user(u) if u else None

    def sync(self, name: str, role: str) -> UserRecord:
        """The user of that name, made or updated to hold exactly this role (a Space sign-in: the role
        lists are the truth at every sign-in; open-studio mode: the role picked on the host's own machine)."""
        u = self.ensure(name, role)
        if u.role == role:
            return u
        with self.db.session() as s:
            row = s.get(User, u.id)
            row.role = role
            return _user(row)

    def set_role(self, actor: UserRecord, user_id: int, role: str) -> UserRecord:
        require(actor, "admin")
        if role not in ROLES:
            raise ServiceError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self.db.session() as s:
            u = s.get(User, user_id)
            if u is None:
                raise ServiceError(f"no user {user_id}")
            u.role = role
            return _user(u)


class ProjectService:
    def __init__(self, db: Database):
        self.db = db

    def create(self, user: UserRecord, name: str) -> ProjectRecord:
        require(user, "creator")
        name = (name or "").strip()
        if not 1 <= len(name) <= 120:
            raise ServiceError("a project needs a name of 1 to 120 characters")
        check_text(name, "the project name")
        with self.db.session() as s:
            p = Project(name=name, owner_id=user.id)
            s.add(p)
            s.flush()
            return ProjectRecord(p.id, p.name, p.owner_id)

    def list(self, user: UserRecord) -> list[ProjectRecord]:
        with self.db.session(write=False) as s:
            q = select(Project).order_by(Project.id)
            if user.role != "admin":
                q = q.where(Project.owner_id == user.id)
            return [ProjectRecord(p.id, p.name, p.owner_id) for p in s.scalars(q)]

    def get(self, user: UserRecord, project_id: int) -> ProjectRecord:
        with self.db.session(write=False) as s:
            p = s.get(Project, project_id)
            if p is None or (p.owner_id != user.id and user.role != "admin"):
                raise ServiceError(f"no project {project_id} of {user.name}")
            return ProjectRecord(p.id, p.name, p.owner_id)


# ---------------------------------------------------------------- subject library
class SubjectService:
    """Subjects usable as `@Name` in prompts: names validated and unique per project."""

    def __init__(self, db: Database, media: MediaStore, projects: ProjectService):
        self.db, self.media, self.projects = db, media, projects

    @staticmethod
    def check_name(name: str) -> str:
        if not NAME_RE.match(name or "") or name == "Video" or re.match(r"^Image_\d+$", name):
            raise ServiceError(f"subject name {name!r} cannot be an @reference: start with a letter, then letters, "
                               "digits or _ (at most 32), and not Image_N or Video")
        return name

    def create(self, user: UserRecord, project_id: int, name: str, images: list[AssetInfo]) -> SubjectRecord:
        require(user, "creator")
        self.projects.get(user, project_id)
        self.check_name(name)
        if not 1 <= len(images) <= 8:
            raise ServiceError(f"a subject needs 1 to 8 images (views); got {len(images)}")
        if any(i.kind != "image" for i in images):
            raise ServiceError("subject views must be images")
        for k, i in enumerate(images, 1):  # the model's own rule (model.mvl), now rather than at every generation
            if not (8 <= i.width <= 4096 and 8 <= i.height <= 4096):
                raise ServiceError(f"view {k} of @{name} is {i.width}x{i.height}; images must be 8..4096 pixels a side")
        with self.db.session() as s:
            if s.scalar(select(Subject).where(Subject.project_id == project_id, Subject.name == name)):
                raise ServiceError(f"@{name} already exists in this project; pick another name or rename it")
            for info in images:
                _ensure_asset(s, info)
            sub = Subject(project_id=project_id, name=name,
                          images=[SubjectImage(asset_id=i.id, position=k) for k, i in enumerate(images)])
            s.add(sub)
            s.flush()
            return _subject(sub)

    def list(self, user: UserRecord, project_id: int) -> list[SubjectRecord]:
        self.projects.get(user, project_id)
        with self.db.session() as s:
            return [_subject(x) for x in s.scalars(select(Subject).where(Subject.project_id == project_id)
                                                   .order_by(Subject.name))]

    def rename(self, user: UserRecord, subject_id: int, new_name: str) -> SubjectRecord:
        require(user, "creator")
        self.check_name(new_name)
        with self.db.session() as s:
            sub = self._owned(s, user, subject_id)
            clash = s.scalar(select(Subject).where(Subject.project_id == sub.project_id, Subject.name == new_name,
                                                   Subject.id != sub.id))
            if clash:
                raise ServiceError(f"@{new_name} already exists in this project")
            sub.name = new_name
            return _subject(sub)

    def delete(self, user: UserRecord, subject_id: int) -> None:
        require(user, "creator")
        with self.db.session() as s:
            s.delete(self._owned(s, user, subject_id))

    def resolve(self, user: UserRecord, project_id: int, names: list[str]) -> dict[str, list[str]]:
        """Asset ids of the named subjects; refuses a name that is not (or no longer) in the library."""
        lib = {x.name: list(x.image_ids) for x in self.list(user, project_id)}
        missing = [n for n in names if n not in lib]
        if missing:
            raise ServiceError(f"@{missing[0]} is not in this project's subject library"
                               + (f" (known: {', '.join('@' + n for n in sorted(lib))})" if lib else ""))
        return {n: lib[n] for n in names}

    def _owned(self, s, user: UserRecord, subject_id: int) -> Subject:
        sub = s.get(Subject, subject_id)
        if sub is None:
            raise ServiceError(f"no subject {subject_id}")
        p = s.get(Project, sub.project_id)
        if p.owner_id != user.id and user.role != "admin":
            raise PermissionDenied(f"subject {subject_id} belongs to another creator's project")
        return sub


def _ensure_asset(s, info: AssetInfo) -> None:
    if s.get(Asset, info.id) is None:
        s.add(Asset(id=info.id, kind=info.kind, path=info.rel_path, width=info.width, height=info.height,
                    frames=info.frames, original_name=info.original_name))
        s.flush()


# ---------------------------------------------------------------- model registry
class ModelRegistry:
    def __init__(self, db: Database):
        self.db = db

    def register(self, name: str, path: str, parent_id: int | None = None, metrics: dict | None = None,
                 run_job_id: int | None = None, status: str = "candidate", backend: str = "embedded",
                 adapter: str | None = None) -> VersionRecord:
        """A version is (backend, model directory or id, optional LoRA adapter), DESIGN 3.5."""
        from model.backends import BACKENDS

        if backend not in BACKENDS:
            raise ServiceError(f"unknown backend {backend!r}; backends: {', '.join(BACKENDS)}")
        with self.db.session() as s:
            if s.scalar(select(ModelVersion).where(ModelVersion.name == name)):
                raise ServiceError(f"model version {name!r} exists already")
            if status == "active":
                s.execute(update(ModelVersion).where(ModelVersion.status == "active").values(status="retired"))
            v = ModelVersion(name=name, path=path, parent_id=parent_id, metrics=metrics or {}, run_job_id=run_job_id,
                             status=status, backend=backend, adapter=adapter)
            s.add(v)
            s.flush()
            return _version(v)

    def active(self) -> VersionRecord | None:
        with self.db.session(write=False) as s:
            v = s.scalar(select(ModelVersion).where(ModelVersion.status == "active"))
            return _version(v) if v else None

    def list(self) -> list[VersionRecord]:
        with self.db.session(write=False) as s:
            return [_version(v) for v in s.scalars(select(ModelVersion).order_by(ModelVersion.id))]

    def get(self, version_id: int) -> VersionRecord:
        with self.db.session(write=False) as s:
            v = s.get(ModelVersion, version_id)
            if v is None:
                raise ServiceError(f"no model version {version_id}")
            return _version(v)

    def promote(self, user: UserRecord, version_id: int) -> VersionRecord:
        """Make a version the active one (the previous active one is retired); new jobs use it."""
        require(user, "admin")
        with self.db.session() as s:
            v = s.get(ModelVersion, version_id)
            if v is None:
                raise ServiceError(f"no model version {version_id}")
            s.execute(update(ModelVersion).where(ModelVersion.status == "active").values(status="retired"))
            v.status = "active"
            return _version(v)

    def roll_back(self, user: UserRecord) -> VersionRecord:
        """Retire the active version and re-activate its parent."""
        require(user, "admin")
        with self.db.session() as s:
            cur = s.scalar(select(ModelVersion).where(ModelVersion.status == "active"))
            if cur is None or cur.parent_id is None:
                raise ServiceError("nothing to roll back to: the active version has no parent")
            parent = s.get(ModelVersion, cur.parent_id)
            cur.status = "retired"
            parent.status = "active"
            return _version(parent)


# ---------------------------------------------------------------- jobs
class JobService:
    """The persistent queue (DESIGN 3.7): queued -> running -> succeeded | failed | canceled."""

    def __init__(self, db: Database):
        self.db = db

    def submit(self, user: UserRecord, kind: str, request: dict, seed: int = 0, project_id: int | None = None,
               model_version_id: int | None = None) -> JobRecord:
        require(user, "admin" if kind == "train" else "creator")
        if kind not in ("generate", "train"):
            raise ServiceError(f"unknown job kind {kind!r}")
        check_text(request.get("prompt", ""), "the prompt")
        if kind == "generate":
            self.check_backend(request, model_version_id)
        with self.db.session() as s:
            j = Job(kind=kind, request=request, seed=seed, project_id=project_id, user_id=user.id,
                    model_version_id=model_version_id)
            s.add(j)
            s.flush()
            return _job(j)

    def check_backend(self, request: dict, model_version_id: int | None = None) -> None:
        """Refuse, before anything is queued, a request the version's backend cannot serve (a task family
        it has no mapping for, sizes it does not make); the message names the family and the backend.
        A malformed request is left to the worker, which fails the job with the reason."""
        from model.backends import UnsupportedRequest, check_request
        from model.mvl import MVLRequest, MVLValidationError

        with self.db.session(write=False) as s:
            v = (s.get(ModelVersion, model_version_id) if model_version_id is not None else
                 s.scalar(select(ModelVersion).where(ModelVersion.status == "active")))
            backend = (v.backend or "embedded") if v is not None else None
            model = v.path if v is not None else None
        if backend is None:
            return
        try:
            req = MVLRequest.from_dict({k: x for k, x in request.items() if not k.startswith("_")})
        except MVLValidationError:
            return
        try:
            check_request(backend, req, model)
        except UnsupportedRequest as e:
            raise ServiceError(str(e)) from e

    def get(self, job_id: int) -> JobRecord:
        with self.db.session(write=False) as s:
            j = s.get(Job, job_id)
            if j is None:
                raise ServiceError(f"no job {job_id}")
            return _job(j)

    def list(self, project_id: int | None = None, limit: int = 50, user: UserRecord | None = None) -> list[JobRecord]:
        """The newest jobs (of a project); with a user, only what that person may see: their own
        jobs, or every job for an admin."""
        with self.db.session(write=False) as s:
            q = select(Job).order_by(Job.id.desc()).limit(limit)
            if project_id is not None:
                q = q.where(Job.project_id == project_id)
            if user is not None and user.role != "admin":
                q = q.where(Job.user_id == user.id)
            return [_job(j) for j in s.scalars(q)]

    def cancel(self, user: UserRecord, job_id: int) -> JobRecord:
        with self.db.session() as s:
            j = s.get(Job, job_id)
            if j is None:
                raise ServiceError(f"no job {job_id}")
            if j.user_id != user.id and user.role != "admin":
                raise PermissionDenied(f"job {job_id} is someone else's")
            if j.status == "queued":
                j.status, j.finished_at = "canceled", datetime.now(timezone.utc)
            elif j.status == "running":
                j.cancel_requested = True  # the worker sees it at its next step
            return _job(j)

    # the worker's side: leases (DESIGN 3.7)
    def _takeable(self, now: datetime):
        """Queued, or running under a lease that has run out (its worker stopped renewing it)."""
        return or_(Job.status == "queued",
                   and_(Job.status == "running", or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)))

    def claim(self, worker: str, kinds: tuple[str, ...] | None = None, job_id: int | None = None,
              lease_s: float = LEASE_SECONDS) -> JobRecord | None:
        """Atomically take the oldest queued job (or one whose lease expired), of the given kinds if
        any, or that one job, under a fresh lease of lease_s seconds that the caller renews
        (heartbeat / keep_lease). A job whose lease is live is never taken: two workers never run
        one job."""
        owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{worker[:40]}:{uuid.uuid4().hex[:8]}"
        with self.db.session() as s:
            for _ in range(5):
                now = datetime.now(timezone.utc)
                q = select(Job).where(self._takeable(now))
                if kinds:
                    q = q.where(Job.kind.in_(kinds))
                if job_id is not None:
                    q = q.where(Job.id == job_id)
                j = s.scalar(q.order_by(Job.id).limit(1))
                if j is None:
                    return None
                taken_back = j.status == "running"
                n = s.execute(update(Job).where(Job.id == j.id, self._takeable(now))
                              .values(status="running", started_at=now, worker=worker, lease_owner=owner,
                                      lease_expires_at=now + timedelta(seconds=lease_s), attempts=Job.attempts + 1,
                                      message="resumed: its lease had run out" if taken_back else worker)
                              .execution_options(synchronize_session=False)).rowcount  # (SQLite: naive times)
                if n == 1:
                    s.flush()
                    s.refresh(j)
                    return _job(j)
            return None

    def heartbeat(self, job_id: int, owner: str | None, lease_s: float = LEASE_SECONDS) -> bool:
        """Renew the lease; False when this owner no longer holds it (the job was taken back or ended)."""
        if not owner:
            return True
        with self.db.session() as s:
            return s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                             .values(lease_expires_at=datetime.now(timezone.utc) + timedelta(seconds=lease_s))
                             ).rowcount == 1

    def release(self, job_id: int, owner: str | None) -> None:
        """Give a lease up at once (the holder stopped working on the job without finishing it)."""
        if owner:
            with self.db.session() as s:
                s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.status == "running")
                          .values(lease_expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))

    @contextmanager
    def keep_lease(self, job: JobRecord, lease_s: float = LEASE_SECONDS):
        """Renew the job's lease every lease_s / 5 seconds while the block runs; yields an Event that
        is set if the lease was lost (the caller stops at its next step). Leaving the block by an
        exception gives the lease up, so the job can be taken back at once."""
        lost, stop = threading.Event(), threading.Event()

        def beat():
            while not stop.wait(lease_s / 5):
                try:
                    if not self.heartbeat(job.id, job.lease_owner, lease_s):
                        lost.set()
                        return
                except Exception:  # a database hiccup: try again at the next beat
                    continue

        t = threading.Thread(target=beat, name=f"lease-{job.id}", daemon=True)
        t.start()
        ok = False
        try:
            yield lost
            ok = True
        finally:
            stop.set()
            t.join(5)
            if not ok:
                self.release(job.id, job.lease_owner)

    def progress(self, job_id: int, fraction: float, message: str = "") -> bool:
        """Store progress; returns True when a cancel was requested."""
        with self.db.session() as s:
            j = s.get(Job, job_id)
            j.progress = float(min(max(fraction, 0.0), 1.0))
            if message:
                j.message = message
            return bool(j.cancel_requested)

    def finish(self, job_id: int, status: str, message: str = "", result_asset: AssetInfo | None = None,
               model_version_id: int | None = None, plan: dict | None = None) -> JobRecord:
        with self.db.session() as s:
            j = s.get(Job, job_id)
            if plan is not None:
                j.plan = plan
            if result_asset is not None:
                _ensure_asset(s, result_asset)
                j.result_asset_id = result_asset.id
            if model_version_id is not None:
                j.model_version_id = model_version_id
            j.status, j.message, j.finished_at = status, message, datetime.now(timezone.utc)
            if status == "succeeded":
                j.progress = 1.0
            return _job(j)

    def requeue_interrupted(self) -> int:
        """On start-up: running jobs whose lease ran out, or whose holder was a process of this host that
        is gone (killed, crashed), go back to the queue. A job whose holder is alive is left alone."""
        host = socket.gethostname()[:40]
        now = datetime.now(timezone.utc)
        back = []
        with self.db.session(write=False) as s:
            for jid, owner, expires in s.execute(select(Job.id, Job.lease_owner, Job.lease_expires_at)
                                                 .where(Job.status == "running")).all():
                expired = expires is None or (expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)) < now
                if expired or _dead_local_owner(owner, host):
                    back.append((jid, owner))
        n = 0
        with self.db.session() as s:
            for jid, owner in back:
                n += s.execute(update(Job).where(Job.id == jid, Job.status == "running",
                                                 (Job.lease_owner == owner) if owner else Job.lease_owner.is_(None))
                               .values(status="queued", message="resumed after a restart", progress=0.0,
                                       lease_owner=None, lease_expires_at=None)).rowcount
        return n


def _dead_local_owner(owner: str | None, host: str) -> bool:
    try:
        h, pid, _ = (owner or "").split(":", 2)
        if h != host:
            return False
        os.kill(int(pid), 0)
        return False
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OSError):
        return False


# ---------------------------------------------------------------- arena
# The arena's hot path (every vote: its writes, and the next pair) as SQL text written once: building the
# same statements as Core objects cost ~0.4 ms each per call, more than SQLite's own work (measured in
# benchmarks/votes_http.py). Named parameters and typed columns keep them portable (SQLite, PostgreSQL).
_V, _C = Vote.__table__.c, Comparison.__table__.c
_GOLD_OF = text("SELECT id, gold FROM comparisons WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
_TAKEN = text("SELECT idempotency_key, comparison_id, annotator_id FROM votes WHERE idempotency_key IN :keys "
              "OR (comparison_id IN :cids AND annotator_id IN :annotators)").bindparams(
    bindparam("keys", expanding=True), bindparam("cids", expanding=True), bindparam("annotators", expanding=True))
_INSERT_VOTE = text("INSERT INTO votes (idempotency_key, comparison_id, annotator_id, left_is_a, verdicts, overall, "
                    "segments, seconds, is_gold, created_at) VALUES (:idempotency_key, :comparison_id, :annotator_id, "
                    ":left_is_a, :verdicts, :overall, :segments, :seconds, :is_gold, :created_at) RETURNING id"
                    ).bindparams(*(bindparam(k, type_=_V[k].type)
                                   for k in ("left_is_a", "verdicts", "segments", "seconds", "is_gold", "created_at")))
_BUMP = text("UPDATE comparisons SET vote_count = vote_count + :n WHERE id = :id")
_NEXT = {gold: text("SELECT id, asset_a, asset_b, request FROM comparisons WHERE id NOT IN "
                    "(SELECT comparison_id FROM votes WHERE annotator_id = :annotator)"
                    + {True: " AND gold IS NOT NULL", False: " AND gold IS NULL", None: ""}[gold]
                    + " ORDER BY vote_count, id LIMIT 1").columns(_C.id, _C.asset_a, _C.asset_b, _C.request)
         for gold in (True, False, None)}


class GroupWriter:
    """Votes are written many to a transaction (group commit): with SQLite's single writer, 32
    annotators committing one by one queue behind each other; here every waiting vote goes into
    the next commit. There is no writer thread: the first voter in the queue is the leader and
    writes the votes queued behind it (its own first) in one transaction, tells each of them,
    and hands the lead to the next voter waiting (as LevelDB's writers do), so a vote never waits
    for another thread to be scheduled before it is written. Duplicates are found before the
    insert (see _write_fast) and fail alone; if another process races in anyway, the batch is
    redone with a savepoint per vote."""

    def __init__(self, db: Database, max_batch: int = 256):
        self.db, self.max_batch = db, max_batch
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()  # (row, box, event); the first one leads

    def write(self, row: dict) -> int | None:
        """The new vote's id, or None when a unique constraint refused it; raises on other errors."""
        me = (row, {}, threading.Event())
        with self._lock:
            self._queue.append(me)
            leads = len(self._queue) == 1
        if not leads:
            me[2].wait()  # set when a leader has written this vote, or when it is this voter's turn to lead
        if not me[1]:  # not written yet: lead
            with self._lock:
                batch = list(itertools.islice(self._queue, self.max_batch))
            try:
                self.commit(batch)
            finally:
                for _, box, done in batch:  # (commit tells every vote; this covers an interrupted one)
                    if not box:
                        box["error"] = ServiceError("the vote was not written: submit it again")
                        done.set()
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                    nxt = self._queue[0] if self._queue else None
                if nxt is not None:
                    nxt[2].set()  # its box is empty: it leads the next batch
        box = me[1]
        if "error" in box:
            raise box["error"]
        return box["id"]

    def commit(self, batch: list) -> None:
        """Write one batch of (row, box, done) in one transaction and tell every waiting voter."""
        try:
            try:
                self._write_fast(batch)
            except IntegrityError:  # another process wrote a clashing vote meanwhile: one savepoint each
                for _, box, _ in batch:
                    box.clear()
                self._write_each(batch)
        except Exception as e:  # the whole commit failed: every vote of the batch is told
            for _, box, _ in batch:
                box["error"] = e
        for _, _, done in batch:
            done.set()

    def _write_fast(self, batch: list) -> None:
        """The whole batch in a few statements: duplicates (taken idempotency key, or this annotator
        on this pair, stored or earlier in the batch) are found by one look-up and left out, the
        rest inserted one INSERT ... RETURNING each (prepared SQL text) and the counters bumped per pair."""
        rows = [row for row, _, _ in batch]
        cids = {r["comparison_id"] for r in rows}
        with self.db.transaction() as s:  # plain rows and SQL text: this runs for every batch of votes
            gold = dict(s.execute(_GOLD_OF, {"ids": list(cids)}).all())
            # one look-up for both kinds of duplicate (each statement is a round trip into SQLite,
            # and a chance for another thread to take the interpreter lock from the writer)
            taken = s.execute(_TAKEN, {"keys": [r["idempotency_key"] for r in rows], "cids": list(cids),
                                       "annotators": list({r["annotator_id"] for r in rows})}).all()
            keys = {k for k, _, _ in taken}
            pairs = {(c, a) for _, c, a in taken}
            fresh = []
            for row, box, _ in batch:
                pair = (row["comparison_id"], row["annotator_id"])
                if row["comparison_id"] not in gold:
                    box["error"] = ServiceError("this pair no longer exists: load the next pair")
                elif row["idempotency_key"] in keys or pair in pairs:
                    box["id"] = None
                else:
                    keys.add(row["idempotency_key"])
                    pairs.add(pair)
                    fresh.append(({"segments": None, **row, "is_gold": gold[row["comparison_id"]] is not None}, box))
            bump: dict[int, int] = {}
            for r, box in fresh:
                box["id"] = s.execute(_INSERT_VOTE, r).scalar_one()
                bump[r["comparison_id"]] = bump.get(r["comparison_id"], 0) + 1
            if bump:  # an increment per pair: exact on PostgreSQL too
                s.execute(_BUMP, [{"id": c, "n": n} for c, n in bump.items()])

    def _write_each(self, batch: list) -> None:
        with self.db.session() as s:
            for row, box, _ in batch:
                try:
                    with s.begin_nested():
                        gold = s.execute(select(Comparison.gold).where(Comparison.id == row["comparison_id"])
                                         ).scalar_one_or_none()
                        box["id"] = s.execute(insert(Vote).values(**row, is_gold=gold is not None)
                                              ).inserted_primary_key[0]
                        s.execute(update(Comparison).where(Comparison.id == row["comparison_id"])
                                  .values(vote_count=Comparison.vote_count + 1))
                except IntegrityError:
                    box["id"] = None


class ArenaService:
    def __init__(self, db: Database, secret: bytes, gold_rate: float = 0.1, seed: int | None = None):
        self.db = db
        self.secret = secret  # signs presentation tokens: any studio process with the same home can take the vote
        self.gold_rate = gold_rate
        self.rng = random.Random(seed)
        self._writer = GroupWriter(db)

    def _seal(self, comparison_id: int, left_is_a: bool) -> str:
        """An opaque token for one showing of a pair: the comparison and the side of A, encrypted
        (HMAC-SHA256 keystream on a random 8-byte nonce) and authenticated (96-bit HMAC-SHA256 tag), as
        58 hex digits. The page sees neither the pair's id nor which side is A; every showing gets another
        token (so it can serve as the vote's idempotency key)."""
        nonce = os.urandom(8)
        plain = int(comparison_id).to_bytes(8, "big") + bytes([1 if left_is_a else 0])
        stream = hmac.new(self.secret, b"k" + nonce, hashlib.sha256).digest()[:len(plain)]
        body = nonce + bytes(a ^ b for a, b in zip(plain, stream))
        tag = hmac.new(self.secret, b"m" + body, hashlib.sha256).digest()[:12]
        return (body + tag).hex()

    def _unseal(self, token: str) -> tuple[int, bool] | None:
        if not isinstance(token, str) or len(token) != 58:
            return None
        try:
            raw = bytes.fromhex(token)
        except ValueError:
            return None
        body, tag = raw[:17], raw[17:]
        if not hmac.compare_digest(tag, hmac.new(self.secret, b"m" + body, hashlib.sha256).digest()[:12]):
            return None
        nonce, enc = body[:8], body[8:]
        stream = hmac.new(self.secret, b"k" + nonce, hashlib.sha256).digest()[:len(enc)]
        plain = bytes(a ^ b for a, b in zip(enc, stream))
        return int.from_bytes(plain[:8], "big"), plain[8] == 1

    def add_comparison(self, purpose: str, request: dict, asset_a: AssetInfo, asset_b: AssetInfo, family: str = "",
                       version_a: int | None = None, version_b: int | None = None, seed_a: int = 0, seed_b: int = 0,
                       gold: str | None = None) -> int:
        if purpose not in ("dpo", "eval"):
            raise ServiceError(f"comparison purpose must be 'dpo' or 'eval', not {purpose!r}")
        if gold is not None and gold not in VERDICTS:
            raise ServiceError(f"gold answer must be one of G, S, B, not {gold!r}")
        with self.db.session() as s:
            _ensure_asset(s, asset_a)
            _ensure_asset(s, asset_b)
            c = Comparison(purpose=purpose, family=family, request=request, asset_a=asset_a.id, asset_b=asset_b.id,
                           version_a_id=version_a, version_b_id=version_b, seed_a=seed_a, seed_b=seed_b, gold=gold)
            s.add(c)
            s.flush()
            return c.id

    def next_pair(self, annotator: UserRecord) -> PairRecord | None:
        """Fewest votes first, never a pair this annotator voted on, gold pairs mixed in at the set rate;
        sides are random and sealed in a token the vote must bring back."""
        require(annotator, "annotator")
        with self.db.read_engine.connect() as conn:  # plain rows, no ORM session: this runs before every vote
            want_gold = self.rng.random() < self.gold_rate
            c = conn.execute(_NEXT[want_gold], {"annotator": annotator.id}).first()
            if c is None:
                c = conn.execute(_NEXT[None], {"annotator": annotator.id}).first()
            if c is None:
                return None
            left_is_a = self.rng.random() < 0.5
            token = self._seal(c.id, left_is_a)
            left, right = (c.asset_a, c.asset_b) if left_is_a else (c.asset_b, c.asset_a)
            return PairRecord(c.id, str(c.request.get("prompt", "")), left, right, token)

    def vote(self, annotator: UserRecord, token: str, verdicts_left_vs_right: dict[str, str], overall: str,
             idempotency_key: str, seconds: float = 0.0, segments: list[str] | None = None) -> VoteRecord:
        """Store one vote exactly once. Verdicts are given for left against right and stored for A against B.
        `segments`: optionally one overall verdict per segment of the clips (VOTE_SEGMENTS of them, in time order;
        DenseDPO's segment-level preference), also left against right."""
        require(annotator, "annotator")
        if not re.match(r"^[\w\-]{8,64}$", idempotency_key or ""):
            raise ServiceError("the vote needs an idempotency key of 8-64 letters, digits, - or _")
        sealed = self._unseal(token)
        if sealed is None:
            existing = self._existing(idempotency_key)
            if existing is not None and existing.annotator_id == annotator.id:
                return existing
            raise ServiceError("the pair token is not valid (a stale or edited page): load the next pair")
        comparison_id, left_is_a = sealed
        bad = [d for d in verdicts_left_vs_right if d not in DIMENSIONS]
        if bad:
            raise ServiceError(f"unknown dimension {bad[0]!r}; dimensions: {', '.join(DIMENSIONS)}")
        if overall not in VERDICTS or any(v not in VERDICTS for v in verdicts_left_vs_right.values()):
            raise ServiceError("each verdict is G (left better), S (same) or B (right better)")
        if segments is not None and (not isinstance(segments, (list, tuple)) or len(segments) != VOTE_SEGMENTS
                                     or any(v not in VERDICTS for v in segments)):
            raise ServiceError(f"segment verdicts: give {VOTE_SEGMENTS}, one per quarter of the clips in time order, "
                               "each G (left better), S (same) or B (right better)")
        flip = {"G": "B", "S": "S", "B": "G"}
        to_a = (lambda v: v) if left_is_a else (lambda v: flip[v])
        verdicts = {d: to_a(v) for d, v in verdicts_left_vs_right.items()}
        row = dict(idempotency_key=idempotency_key, comparison_id=comparison_id, annotator_id=annotator.id,
                   left_is_a=left_is_a, verdicts=verdicts, overall=to_a(overall), seconds=float(seconds),
                   segments=None if segments is None else [to_a(v) for v in segments],
                   created_at=datetime.now(timezone.utc))
        vote_id = self._writer.write(row)  # returns once the vote is committed
        if vote_id is None:  # the idempotency key, or this annotator on this pair, is taken
            existing = self._existing(idempotency_key)
            if existing is not None and (existing.comparison_id, existing.annotator_id) == (comparison_id,
                                                                                           annotator.id):
                return existing  # a retried submit: the vote is already stored once, on its own pair
            if existing is not None:  # the key is bound to the pair (and the person) it was first cast on
                raise ServiceError("this vote's key was used for another pair: load the next pair")
            raise ServiceError(f"{annotator.name} already voted on this pair")
        return VoteRecord(vote_id, comparison_id, annotator.id, verdicts, to_a(overall), True)

    def _existing(self, key: str) -> VoteRecord | None:
        with self.db.transaction(write=False) as conn:  # a retried submit: plain rows, as the writer
            v = conn.execute(select(Vote.id, Vote.comparison_id, Vote.annotator_id, Vote.verdicts, Vote.overall)
                             .where(Vote.idempotency_key == key)).first()
            return None if v is None else VoteRecord(v.id, v.comparison_id, v.annotator_id, dict(v.verdicts),
                                                      v.overall, False)

    def annotator_count(self, annotator: UserRecord) -> int:
        with self.db.session(write=False) as s:
            return int(s.scalar(select(func.count()).select_from(Vote).where(Vote.annotator_id == annotator.id)))

    def votes(self) -> list[dict[str, Any]]:
        """Every vote with its comparison's versions and family, for statistics and export."""
        with self.db.session(write=False) as s:
            rows = s.execute(select(Vote, Comparison).join(Comparison, Vote.comparison_id == Comparison.id)
                             .order_by(Vote.id)).all()
            return [{"vote_id": v.id, "comparison_id": c.id, "annotator_id": v.annotator_id, "overall": v.overall,
                     "verdicts": dict(v.verdicts), "version_a": c.version_a_id, "version_b": c.version_b_id,
                     "family": c.family, "purpose": c.purpose, "gold": c.gold, "seconds": v.seconds,
                     "asset_a": c.asset_a, "asset_b": c.asset_b, "seed_a": c.seed_a, "seed_b": c.seed_b,
                     "request": c.request, "segments": None if v.segments is None else list(v.segments)}
                    for v, c in rows]
