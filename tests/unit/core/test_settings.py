from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, redact


def test_defaults_live_under_home(tmp_path):
    s = Settings.from_env({"ATELIER_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'atelier.db'}"
    assert s.embedded_broker and s.broker_url == f"redis+socket://{tmp_path / 'redis.sock'}"
    assert s.artifacts == tmp_path / "artifacts"


def test_explicit_urls_win(tmp_path):
    s = Settings.from_env(
        {
            "ATELIER_HOME": str(tmp_path),
            "ATELIER_BROKER_URL": "redis://h:6379/0",
            "ATELIER_DATABASE_URL": "postgresql+psycopg://u@h/db",
            "ATELIER_ARTIFACTS": "/srv/art",
            "ATELIER_LEASE_SECONDS": "8",
        }
    )
    assert not s.embedded_broker and s.broker_url == "redis://h:6379/0"
    assert s.artifacts == Path("/srv/art") and s.lease_seconds == 8.0 and s.heartbeat_seconds == 2.0


@pytest.mark.parametrize("value", ["abc", "-1", "0"])
def test_bad_numbers_are_config_errors(tmp_path, value):
    with pytest.raises(ConfigError, match="ATELIER_LEASE_SECONDS"):
        Settings.from_env({"ATELIER_HOME": str(tmp_path), "ATELIER_LEASE_SECONDS": value})


def test_redact_hides_passwords_only():
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:pw@host/1") == "rediss://user:***@host/1"
    assert redact("redis://host:6379/0") == "redis://host:6379/0"


def test_repr_never_shows_a_password(tmp_path):
    s = Settings.from_env(
        {
            "ATELIER_HOME": str(tmp_path),
            "ATELIER_BROKER_URL": "rediss://:s3cret-b@redis:6380/0",
            "ATELIER_DATABASE_URL": "postgresql+psycopg://lab:s3cret-d@db/atelier",
            "ATELIER_FLOWER_PASSWORD": "s3cret-f",
        }
    )
    text = repr(s) + str(s)
    assert "s3cret" not in text
    assert "rediss://:***@redis:6380/0" in text and "lab:***@db" in text


def test_celery_speaks_json_only(tmp_path):
    from core.messages import configure

    conf = configure(
        Settings.from_env({"ATELIER_HOME": str(tmp_path), "ATELIER_BROKER_URL": "redis://127.0.0.1:1/0"})
    ).conf
    assert conf.task_serializer == conf.result_serializer == conf.event_serializer == "json"
    assert list(conf.accept_content) == list(conf.result_accept_content) == ["json"]


def test_worker_memory_limit_and_compile_mode(tmp_path):
    s = Settings.from_env({"ATELIER_HOME": str(tmp_path)})
    assert (s.worker_max_rss_mb, s.compile) == (8192, "auto")
    s = Settings.from_env(
        {"ATELIER_HOME": str(tmp_path), "ATELIER_WORKER_MAX_RSS_MB": "2048", "ATELIER_COMPILE": " OFF "}
    )
    assert (s.worker_max_rss_mb, s.compile) == (2048, "off")
    from core.messages import configure

    assert configure(s).conf.worker_max_memory_per_child == 2048 * 1024  # KiB, as Celery counts
    with pytest.raises(ConfigError, match="ATELIER_COMPILE must be one of auto, on, off"):
        Settings.from_env({"ATELIER_HOME": str(tmp_path), "ATELIER_COMPILE": "sometimes"})
    with pytest.raises(ConfigError, match="ATELIER_WORKER_MAX_RSS_MB"):
        Settings.from_env({"ATELIER_HOME": str(tmp_path), "ATELIER_WORKER_MAX_RSS_MB": "0"})
