"""Shared test set-up: the repository root on sys.path, offline hub settings."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for k, v in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(k, v)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    """The base URL of a real PostgreSQL server started for this test session."""
    from tests.postgres_server import postgres_server

    with postgres_server() as url:
        yield url
