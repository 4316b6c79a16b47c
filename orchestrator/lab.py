"""What a command needs from the outside world, built once from the settings:
the store (migrated on first use) and the Celery app (with a reachable broker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from orchestrator.services import broker


@dataclass
class Lab:
    settings: Settings
    _celery: Celery | None = field(default=None, repr=False)

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.database_url)
        upgrade(engine)  # every command applies pending migrations on first use
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    def close(self) -> None:
        """Return pooled connections (called when the command ends)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        if self._celery is not None:
            self._celery.close()

    def celery(self) -> Celery:
        """The configured Celery app, with the broker reachable (started if embedded)."""
        if self._celery is None:
            from core.messages import configure

            broker.ensure(self.settings)
            self._celery = configure(self.settings)
        return self._celery
