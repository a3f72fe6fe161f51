"""Alembic environment: batch mode (SQLite ALTER), the studio's metadata, a passed-in connection."""

from alembic import context
from sqlalchemy import create_engine

from studio_backend.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


conn = config.attributes.get("connection")
if conn is not None:
    _run(conn)
else:  # the alembic command line: `alembic -x url=sqlite:///studio_data/studio.db upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as c:
        _run(c)
        c.commit()
