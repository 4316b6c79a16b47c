"""docker-compose.yml is honest without a Docker engine: valid against the Compose
Specification's schema, and every command and variable is one atelier accepts.

compose_spec.json is the Compose Specification schema as shipped in
docker-compose 1.29.2 (compose/config/compose_spec.json, Apache-2.0).
"""

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestrator.cli import cli
from orchestrator.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parents[2]
PROJECT_SERVICES = ("flower", "worker", "orchestrator")
SECRETS = {"REDIS_PASSWORD": "r3dis", "POSTGRES_PASSWORD": "pg", "FLOWER_PASSWORD": "fl", "FLOWER_USER": "admin"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def interpolate(value: str) -> str:
    """Compose's ${VAR:?msg} / ${VAR:-default} substitution, with test secrets."""
    def sub(m):
        name, _, rest = m.group(1).partition(":")
        return SECRETS.get(name) or (rest[1:] if rest.startswith("-") else "")

    return re.sub(r"\$\{([^}]+)\}", sub, value)


def test_valid_against_the_compose_specification(compose):
    schema = json.loads((Path(__file__).parent / "compose_spec.json").read_text())
    # The file names the draft-07 metaschema by a URL jsonschema does not recognise; name the validator.
    jsonschema.Draft7Validator(schema).validate(compose)


def test_commands_are_real_atelier_commands(compose):
    for name in PROJECT_SERVICES:
        args = compose["services"][name]["command"]
        command = cli.commands[args[0]]
        command.make_context(args[0], list(args[1:]))  # raises on an unknown option or value


def test_every_service_shares_the_settings(compose):
    for name in PROJECT_SERVICES:
        env = {k: interpolate(str(v)) for k, v in compose["services"][name]["environment"].items()}
        assert set(env) <= set(ENV_VARS), set(env) - set(ENV_VARS)
        s = Settings.from_env(env)
        assert not s.embedded_broker and s.broker_url == "redis://:r3dis@redis:6379/0"
        assert s.database_url.startswith("postgresql+psycopg://atelier:pg@postgres")
        assert str(s.artifacts) == "/artifacts" and s.flower_password == "fl"
        assert "artifacts:/artifacts" in compose["services"][name]["volumes"]


def test_redis_postgres_flower_and_gpu_workers(compose):
    svc = compose["services"]
    redis_cmd = " ".join(svc["redis"]["command"])
    assert "--requirepass" in redis_cmd and "--appendonly yes" in redis_cmd and "noeviction" in redis_cmd
    assert any(v.startswith("postgres:") for v in svc["postgres"]["volumes"])
    assert svc["flower"]["environment"]["ATELIER_FLOWER_PASSWORD"].startswith("${FLOWER_PASSWORD:?")
    worker = svc["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "container_name" not in worker and "ports" not in worker  # scalable with --scale worker=N
