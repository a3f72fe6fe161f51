"""The studio's tables (SQLAlchemy 2.0 typed ORM). Only services touch these classes."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # creator | annotator | admin
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # scrypt; None: cannot sign in
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Session(Base):
    """A signed-in browser: only the SHA-256 of its token is stored."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Asset(Base):
    """A file of the media store, by content hash (the same bytes are stored once)."""

    __tablename__ = "assets"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the stored bytes
    kind: Mapped[str] = mapped_column(String(16))  # image | video
    path: Mapped[str] = mapped_column(String(255))  # relative to the media folder
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer, default=1)
    original_name: Mapped[str] = mapped_column(String(255), default="")  # shown only, never used as a path
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Subject(Base):
    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    images: Mapped[list["SubjectImage"]] = relationship(cascade="all, delete-orphan", order_by="SubjectImage.position")


class SubjectImage(Base):
    __tablename__ = "subject_images"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"))
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="candidate")  # candidate | active | retired
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    run_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # DESIGN 3.5: which backend serves `path` (a model directory, or a Hub id for wan), and an optional
    # LoRA adapter directory loaded on top of it
    backend: Mapped[str] = mapped_column(String(16), default="embedded", server_default="embedded")
    adapter: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # generate | train
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    request: Mapped[dict] = mapped_column(JSON)  # the MVL request (media as asset ids) or training parameters
    seed: Mapped[int] = mapped_column(Integer, default=0)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result_asset_id: Mapped[str | None] = mapped_column(ForeignKey("assets.id"), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid:worker:nonce running it
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the worker that took it last
    plan: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the enhancer's layout plan (model/layout.py)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Comparison(Base):
    """Two generations of the same request, shown blind to annotators."""

    __tablename__ = "comparisons"
    __table_args__ = (Index("ix_comparisons_gold_votes", "gold", "vote_count", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # dpo (two seeds) | eval (two versions)
    family: Mapped[str] = mapped_column(String(32), default="")
    request: Mapped[dict] = mapped_column(JSON)
    asset_a: Mapped[str] = mapped_column(ForeignKey("assets.id"))
    asset_b: Mapped[str] = mapped_column(ForeignKey("assets.id"))
    version_a_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    version_b_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), nullable=True)
    seed_a: Mapped[int] = mapped_column(Integer, default=0)
    seed_b: Mapped[int] = mapped_column(Integer, default=0)
    gold: Mapped[str | None] = mapped_column(String(1), nullable=True)  # known overall answer for A vs B: G|S|B
    vote_count: Mapped[int] = mapped_column(Integer, default=0, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("idempotency_key"), UniqueConstraint("comparison_id", "annotator_id"),
                      Index("ix_votes_annotator_comparison", "annotator_id", "comparison_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64))
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    left_is_a: Mapped[bool] = mapped_column(Boolean)  # the side the annotator saw A on
    verdicts: Mapped[dict] = mapped_column(JSON)  # dimension -> G|S|B, for A against B (not left/right)
    overall: Mapped[str] = mapped_column(String(1))
    # DenseDPO: one overall G|S|B per segment of the clips (services.VOTE_SEGMENTS equal runs of frames), A against B;
    # None where the annotator judged the whole clips only
    segments: Mapped[list | None] = mapped_column(JSON, nullable=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Storyboard(Base):
    __tablename__ = "storyboards"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    shots: Mapped[list["Shot"]] = relationship(cascade="all, delete-orphan", order_by="Shot.position")


class Shot(Base):
    __tablename__ = "shots"
    id: Mapped[int] = mapped_column(primary_key=True)
    storyboard_id: Mapped[int] = mapped_column(ForeignKey("storyboards.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    request: Mapped[dict] = mapped_column(JSON)  # the shot's MVL request, media as asset ids
    duration: Mapped[float] = mapped_column(Float, default=2.0)  # seconds in the assembled film
    chosen_take_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    takes: Mapped[list["Take"]] = relationship(cascade="all, delete-orphan", order_by="Take.id")


class Take(Base):
    __tablename__ = "takes"
    id: Mapped[int] = mapped_column(primary_key=True)
    shot_id: Mapped[int] = mapped_column(ForeignKey("shots.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
