"""The one typed settings object, built once at the entry point.

Nothing below the CLI or the worker entry point reads ``os.environ``: they are
handed a ``Settings``. Every process of a cluster (CLI, workers, Flower) reads
the same variables, so the embedded default and a cluster share one code path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError

# Every variable atelier reads; docker-compose.yml is checked against this list.
ENV_VARS = (
    "ATELIER_HOME",
    "ATELIER_DATABASE_URL",
    "ATELIER_BROKER_URL",
    "ATELIER_ARTIFACTS",
    "ATELIER_VISIBILITY_TIMEOUT",
    "ATELIER_LEASE_SECONDS",
    "ATELIER_MAX_ATTEMPTS",
    "ATELIER_FLOWER_USER",
    "ATELIER_FLOWER_PASSWORD",
    "ATELIER_FAULT_OOM_ABOVE_BATCH",
    "ATELIER_OFFLINE",
    "ATELIER_WORKER_MAX_RSS_MB",
    "ATELIER_COMPILE",
)
COMPILE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    home: Path  # ATELIER_HOME: where the embedded SQLite, Redis and artifacts live
    database_url: str  # ATELIER_DATABASE_URL: SQLAlchemy URL of the store
    broker_url: str  # ATELIER_BROKER_URL: Redis URL; the embedded one when unset
    artifacts: Path  # ATELIER_ARTIFACTS: checkpoints, caches, PNGs (shared storage in a cluster)
    embedded_broker: bool  # True when atelier starts and owns the Redis server itself
    # Redis redelivers an unacked message after this long; every consumer
    # (workers *and* Flower) must share the value (celery/celery#5935).
    visibility_timeout: int = 12 * 3600
    # A running job whose heartbeat is older than this is considered lost.
    lease_seconds: float = 60.0
    max_attempts: int = 3  # claims of one job before it is marked failed
    flower_user: str = "atelier"
    flower_password: str | None = field(default=None, repr=False)
    # Fault injection for tests: a forward pass over more samples than this raises
    # torch.OutOfMemoryError, as CUDA would, so the OOM path runs without a GPU.
    fault_oom_above_batch: int | None = None
    # Never reach for the network (torchvision's weight downloads): weights must be cached or imported.
    # Tests set it, so a test machine that happens to be online behaves like this offline one.
    offline: bool = False
    # A worker's long-lived child is replaced after a job once its resident memory passes this (MiB);
    # caches it keeps between jobs are bounded by count, this bounds what leaks or fragments past them.
    worker_max_rss_mb: int = 8192
    # torch.compile for the style loss and the training step: "auto" compiles on CUDA only (where it pays
    # and the compile is amortised by a long-lived child), "on" also on the CPU, "off" never.
    compile: str = "auto"

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never with a password in them.
        shown = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "flower_password"}
        shown["database_url"], shown["broker_url"] = redact(self.database_url), redact(self.broker_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def heartbeat_seconds(self) -> float:
        # Four beats per lease: one missed beat never costs a claim.
        return self.lease_seconds / 4

    @property
    def redis_socket(self) -> Path:
        return self.home / "redis.sock"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("ATELIER_HOME") or Path.home() / ".atelier").expanduser().resolve()
        db_url = env.get("ATELIER_DATABASE_URL") or f"sqlite:///{home / 'atelier.db'}"
        broker = env.get("ATELIER_BROKER_URL") or ""
        artifacts = Path(env.get("ATELIER_ARTIFACTS") or home / "artifacts").expanduser().resolve()
        return cls(
            home=home,
            database_url=db_url,
            broker_url=broker or f"redis+socket://{home / 'redis.sock'}",
            artifacts=artifacts,
            embedded_broker=not broker,
            visibility_timeout=_number(env, "ATELIER_VISIBILITY_TIMEOUT", 12 * 3600, int),
            lease_seconds=_number(env, "ATELIER_LEASE_SECONDS", 60.0, float),
            max_attempts=_number(env, "ATELIER_MAX_ATTEMPTS", 3, int),
            flower_user=env.get("ATELIER_FLOWER_USER") or "atelier",
            flower_password=env.get("ATELIER_FLOWER_PASSWORD") or None,
            fault_oom_above_batch=_number(env, "ATELIER_FAULT_OOM_ABOVE_BATCH", None, int),
            offline=(env.get("ATELIER_OFFLINE") or "0").strip().lower() not in ("0", "", "false", "no"),
            worker_max_rss_mb=_number(env, "ATELIER_WORKER_MAX_RSS_MB", 8192, int),
            compile=_choice(env, "ATELIER_COMPILE", COMPILE_MODES),
        )


def _number(env: Mapping[str, str], name: str, default, kind):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def redact(url: str) -> str:
    """A URL with its password replaced, for logs, rows and status output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
