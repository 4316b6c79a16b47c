"""The workers' Celery application: the shared configuration (core.messages) plus
the tasks, and the one settings object the entry point built (``app.settings``).
"""

from __future__ import annotations

from celery import Celery

from core.messages import configure
from core.settings import Settings


class WorkerApp(Celery):
    """A Celery app that carries the worker's settings, typed, for the tasks to read."""

    settings: Settings | None = None

    def use(self, settings: Settings) -> WorkerApp:
        configure(settings, self)
        self.settings = settings
        return self


app = WorkerApp("atelier", include=["worker.tasks"])
