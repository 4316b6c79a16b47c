"""Shared fixtures: one real redis-server and one PostgreSQL cluster per session,
and per-backend "stacks" (a store, a broker database, a running worker) that the
integration tests share so the suite stays fast on two cores.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.services import PostgresServer, RedisServer, Worker, wait_until

LEASE_SECONDS = "3"  # short leases so lost workers are noticed within the tests' patience


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server():
    server = PostgresServer()
    yield server
    server.stop()


@dataclass
class Stack:
    """Environment of one atelier deployment: a store, a broker, its workers."""

    env: dict[str, str]
    home: Path
    workers: list[Worker] = field(default_factory=list)

    def atelier(self, *args: str, expect: int | None = 0):
        from orchestrator.cli import cli

        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, f"atelier {' '.join(args)} exited {result.exit_code}:\n{result.output}"
        return result

    def json(self, *args: str):
        return json.loads(self.atelier(*args, "--json").stdout)

    def start_worker(self, **kwargs) -> Worker:
        w = Worker(self.process_env(), self.home / f"worker-{len(self.workers)}.log", **kwargs)
        self.workers.append(w)
        w.wait_ready()
        return w

    def process_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}

    def query(self, sql: str) -> list[dict]:
        return json.loads(self.atelier("query", sql, "--format", "json").stdout)

    def wait_job(self, job_id: str, timeout: float = 240) -> dict:
        def done():
            (row,) = self.query(f"SELECT status, error, attempts FROM jobs WHERE id = '{job_id}'")
            return row if row["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_until(done, timeout, f"job {job_id}", interval=0.5)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def make_stack(root: Path, redis_url: str, database_url: str | None = None) -> Stack:
    env = {
        "ATELIER_HOME": str(root / "home"),
        "ATELIER_BROKER_URL": redis_url,
        "ATELIER_LEASE_SECONDS": LEASE_SECONDS,
        "ATELIER_OFFLINE": "1",  # never download weights, even on a machine that could
        "TORCH_HOME": str(root / "torch"),  # an empty torch cache: ImageNet weights only where a test puts them
    }
    if database_url:
        env["ATELIER_DATABASE_URL"] = database_url
    return Stack(env=env, home=root)


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory, redis_server):
    stack = make_stack(tmp_path_factory.mktemp("sqlite-stack"), redis_server.url(1))
    stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def pg_stack(tmp_path_factory, redis_server, pg_server):
    url = pg_server.create_database("atelier_test")
    stack = make_stack(tmp_path_factory.mktemp("pg-stack"), redis_server.url(2), url)
    stack.start_worker()
    yield stack
    stack.stop()


def offline_env(home: Path) -> dict:
    """The environment of a private SQLite store under ``home`` with no broker and no downloads."""
    return {
        "ATELIER_HOME": str(home / "home"),
        "ATELIER_BROKER_URL": "redis://127.0.0.1:1/0",
        "ATELIER_OFFLINE": "1",
        "TORCH_HOME": str(home / "torch"),
    }


def backend_env(request, home: Path, tag: str) -> dict:
    """``offline_env``, on the backend a fixture parametrized by "sqlite" / "postgresql" asks for: a fresh
    PostgreSQL database named after ``tag`` and ``home`` for the latter."""
    env = offline_env(home)
    if request.param == "postgresql":
        name = f"{tag}_{home.name[-8:]}".lower()
        env["ATELIER_DATABASE_URL"] = request.getfixturevalue("pg_server").create_database(name)
    return env


@pytest.fixture
def cli_env(tmp_path):
    """A private SQLite store with no worker, for CLI tests that never enqueue."""
    return offline_env(tmp_path)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
