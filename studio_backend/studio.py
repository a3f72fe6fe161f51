"""A studio home (DESIGN 3.6): the database, the media store and every service, wired once.

    studio = Studio.open("studio_data")            # SQLite in studio_data/studio.db
    studio = Studio.open(home, database_url=...)    # or PostgreSQL, media still under home
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .accounts import AccountService
from .db import Database, sqlite_url
from .media import MediaStore
from .services import ArenaService, JobService, ModelRegistry, ProjectService, SubjectService, UserService
from .storyboards import StoryboardService


@dataclass
class Studio:
    home: Path
    db: Database
    media: MediaStore
    users: UserService
    projects: ProjectService
    subjects: SubjectService
    registry: ModelRegistry
    jobs: JobService
    arena: ArenaService
    storyboards: StoryboardService
    accounts: AccountService

    @classmethod
    def open(cls, home: str | Path, database_url: str | None = None, gold_rate: float = 0.1) -> "Studio":
        home = Path(home).resolve()
        home.mkdir(parents=True, exist_ok=True)
        url = database_url or os.environ.get("OMNI_DATABASE_URL") or sqlite_url(home / "studio.db")
        db = Database(url)
        media = MediaStore(home / "media")
        key = home / "secret.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(32))
            key.chmod(0o600)
        projects = ProjectService(db)
        return cls(home, db, media, UserService(db), projects, SubjectService(db, media, projects),
                   ModelRegistry(db), JobService(db), ArenaService(db, key.read_bytes(), gold_rate),
                   StoryboardService(db, media), AccountService(db))
