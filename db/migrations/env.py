"""Alembic environment: runs against the engine handed in by db.migrate."""

from alembic import context

from db.models import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates tables.
        render_as_batch=True,
    )
    context.run_migrations()
