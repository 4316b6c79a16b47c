"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

- The compose file is valid against the Compose Specification's JSON schema, both as written and
  after Compose's variable interpolation. compose_schema.json is a verbatim copy of
  schema/compose-spec.json from github.com/compose-spec/compose-spec (Apache-2.0), commit
  170098ba07d9f53c383a41bfd4c5166b0a4529a6 (file last changed in a08f8d51, 2025-10-28),
  sha256 1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e.
- Every command a service runs is a command and option set the `atelier` CLI really has (the click
  group is walked), and every project service builds the same Settings from one shared block.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shlex
from pathlib import Path

import click
import jsonschema
import pytest
import yaml

from core.messages import QUEUES
from core.settings import ENV_VARS, Settings
from orchestrator.cli import cli
from tests.cli_run import assert_clean_exit, invoke

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose_schema.json")
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
PROJECT_SERVICES = {"migrate", "flower", "worker", "orchestrator"}
REQUIRED_SECRETS = {"REDIS_PASSWORD", "POSTGRES_PASSWORD", "FLOWER_PASSWORD"}
ENV = {"REDIS_PASSWORD": "r3dis", "POSTGRES_PASSWORD": "pg-pw", "FLOWER_PASSWORD": "fl0wer"}
# Variables in the shared block that are not atelier's own.
OTHER_VARS = {"TORCH_HOME"}


class StrictLoader(yaml.SafeLoader):
    """SafeLoader (anchors and << merges included) that rejects duplicate keys, as Compose does."""


def _no_duplicates(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


class InterpolationError(Exception):
    pass


_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, ${VAR:+alt}, ${VAR+alt} in every string value (not in keys), recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        if m["named"]:
            return env.get(m["named"], "")
        parsed = _BRACED.match(m["braced"])
        if parsed is None:
            raise InterpolationError(f"invalid interpolation {m[0]!r}")
        name, op, arg = parsed["name"], parsed["op"], parsed["arg"]
        present = name in env
        usable = present and (env[name] != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return env[name] if usable else arg
        if op in (":?", "?"):
            if not usable:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if usable else ""
        return env.get(name, "")

    return _VAR.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.load((ROOT / "docker-compose.yml").read_text(), Loader=StrictLoader)


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return interpolate(raw, ENV)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    text = SCHEMA.read_bytes()
    assert hashlib.sha256(text).hexdigest() == SCHEMA_SHA256, "compose_schema.json differs from the vendored copy"
    schema = json.loads(text)
    # It declares draft-07 by a URL spelling jsonschema does not map to a validator: name it.
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_valid_against_the_compose_specification(validator, raw, compose):
    assert _errors(validator, raw) == []
    assert _errors(validator, compose) == []


def test_the_validation_is_not_vacuous(validator, compose):
    worker = compose["services"]["worker"]
    broken = {**compose, "services": {**compose["services"], "worker": {**worker, "gpu_count": 1}}}
    assert _errors(validator, broken)
    devices = [{"driver": "nvidia", "count": 1}]  # capabilities is required
    broken["services"]["worker"] = {**worker, "deploy": {"resources": {"reservations": {"devices": devices}}}}
    assert _errors(validator, broken)


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_secrets_are_required(raw, secret):
    for env in ({k: v for k, v in ENV.items() if k != secret}, {**ENV, secret: ""}):
        with pytest.raises(InterpolationError, match=f"{secret} is missing a value: set {secret} in .env"):
            interpolate(raw, env)


def test_env_example_names_every_required_variable(raw):
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    assert required == REQUIRED_SECRETS
    # Every use of a secret is a required one: no silent empty or default password anywhere.
    for name, op in re.findall(r"\$\{(" + "|".join(REQUIRED_SECRETS) + r")([^}]*)\}", text):
        assert op == f":?set {name} in .env", f"${{{name}{op}}}: a secret must be required"
    example = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert required <= example


def _project_services(compose: dict) -> set[str]:
    image = compose["x-atelier"]["image"]
    return {name for name, svc in compose["services"].items() if "build" in svc or svc.get("image") == image}


def test_every_project_service_shares_the_settings(raw, compose):
    assert _project_services(compose) == PROJECT_SERVICES
    shared = raw["x-atelier-settings"]
    assert {k for k in shared if k.startswith("ATELIER_")} <= set(ENV_VARS)
    assert set(shared) - set(ENV_VARS) <= OTHER_VARS
    settings = {}
    for name in PROJECT_SERVICES:
        env = raw["services"][name]["environment"]
        assert {k: env.get(k) for k in shared} == shared, f"{name} does not use the shared settings block"
        assert {k for k in env if k.startswith("ATELIER_")} <= set(ENV_VARS), f"{name}: a variable atelier never reads"
        settings[name] = s = Settings.from_env({k: str(v) for k, v in compose["services"][name]["environment"].items()})
        assert not s.embedded_broker and s.broker_url == "redis://:r3dis@redis:6379/0"
        assert s.database_url == "postgresql+psycopg://atelier:pg-pw@postgres:5432/atelier"
        assert f"artifacts:{s.artifacts}" in compose["services"][name]["volumes"]
    # One visibility timeout and lease for every consumer (celery/celery#5935).
    assert len({(s.visibility_timeout, s.lease_seconds, s.max_attempts) for s in settings.values()}) == 1
    assert settings["worker"].visibility_timeout == Settings.from_env({}).visibility_timeout


def _resolve(group: click.Group, args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    path, command = [], group
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name, *args = args
        assert name in command.commands, f"`atelier {' '.join(path + [name])}`: atelier has no such command"
        path.append(name)
        command = command.commands[name]
    return path, command, args


def test_commands_are_real_atelier_commands(compose):
    for name in PROJECT_SERVICES:
        argv = compose["services"][name]["command"]
        assert isinstance(argv, list) and argv[0] == "atelier", f"{name}: command must be an `atelier ...` list"
        path, command, rest = _resolve(cli, argv[1:])
        assert path and not isinstance(command, click.Group), f"{name}: {shlex.join(argv)} names no command"
        # Parses options and values exactly as the CLI would (unknown options, bad types), without running it.
        command.make_context(" ".join(["atelier", *path]), list(rest))


def test_the_commands_are_the_intended_ones(compose):
    cmd = {name: compose["services"][name]["command"] for name in PROJECT_SERVICES}
    assert cmd["migrate"] == ["atelier", "db", "upgrade"]
    assert cmd["flower"][:4] == ["atelier", "flower", "--port", "5555"]
    assert cmd["worker"] == ["atelier", "worker", "--queues", "gpu", "--gpu", "0"]
    queues = cmd["worker"][cmd["worker"].index("--queues") + 1].split(",")
    assert set(queues) <= set(QUEUES)


def test_redis(compose):
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    argv = redis["command"]
    assert argv[0] == "redis-server"
    options = dict(zip(argv[1::2], argv[2::2]))
    assert options == {"--requirepass": "r3dis", "--appendonly": "yes", "--maxmemory-policy": "noeviction"}
    assert "healthcheck" in redis and redis["healthcheck"]["test"]
    (volume,) = redis["volumes"]
    assert volume.split(":") == ["redis-data", "/data"] and "redis-data" in compose["volumes"]


def test_postgres(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:16"
    assert pg["environment"] == {"POSTGRES_USER": "atelier", "POSTGRES_DB": "atelier", "POSTGRES_PASSWORD": "pg-pw"}
    (volume,) = pg["volumes"]
    assert volume.split(":") == ["postgres-data", "/var/lib/postgresql/data"] and "postgres-data" in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_flower_has_basic_auth(raw, compose):
    flower = compose["services"]["flower"]
    assert raw["services"]["flower"]["environment"]["ATELIER_FLOWER_PASSWORD"].startswith("${FLOWER_PASSWORD:?")
    s = Settings.from_env({k: str(v) for k, v in flower["environment"].items()})
    assert (s.flower_user, s.flower_password) == ("atelier", "fl0wer")
    argv = flower["command"]
    assert argv[argv.index("--address") + 1] == "0.0.0.0"  # reachable through the published port
    (port,) = flower["ports"]
    assert port.rsplit(":", 2)[1:] == ["5555", argv[argv.index("--port") + 1]]
    assert port.startswith("127.0.0.1:")  # loopback unless FLOWER_BIND is set
    # Only Flower gets Flower's credentials.
    for name in PROJECT_SERVICES - {"flower"}:
        assert "ATELIER_FLOWER_PASSWORD" not in compose["services"][name]["environment"]


def test_flower_refuses_to_run_without_a_password(tmp_path):
    env = {k: "" for k in ENV_VARS} | {"ATELIER_HOME": str(tmp_path)}
    result = invoke(["flower", "--port", "5555"], env)
    assert_clean_exit(result, 1)
    assert "ATELIER_FLOWER_PASSWORD" in result.output


def test_worker_reserves_one_gpu_and_scales(compose):
    worker = compose["services"]["worker"]
    assert worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert "ports" not in worker and "replicas" not in worker["deploy"]
    for name, svc in compose["services"].items():
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
    assert worker["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_orchestrator_is_a_one_off_tool(compose):
    orchestrator = compose["services"]["orchestrator"]
    assert orchestrator["profiles"] == ["tools"] and orchestrator["restart"] == "no"
    assert "ports" not in orchestrator


def test_artifacts_volume_is_shared_at_one_path(compose):
    assert "artifacts" in compose["volumes"]
    mounts = {
        name: [v for v in compose["services"][name]["volumes"] if v.startswith("artifacts:")]
        for name in PROJECT_SERVICES
    }
    assert all(m == ["artifacts:/artifacts"] for m in mounts.values()), mounts


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile():
    instructions = _dockerfile()
    (base,) = [arg for op, arg in instructions if op == "FROM"]
    assert base == "python:3.11-slim" or base.startswith("nvidia/cuda:")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert re.search(r"pip install (\S+ )*\.( |$)", runs)
    assert "torch==" in runs and "torchvision==" in runs
    assert not [arg for op, arg in instructions if op == "ENTRYPOINT"]  # commands are whole `atelier ...` lines
    (cmd,) = [json.loads(arg) for op, arg in instructions if op == "CMD"]
    assert cmd[0] == "atelier"
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert "ATELIER_ARTIFACTS=/artifacts" in env


def test_dockerignore_keeps_secrets_out_and_the_sources_in():
    patterns = [
        p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    for must in (".env", ".venv", ".git"):
        assert must in patterns
    copied = []
    for op, arg in _dockerfile():
        if op == "COPY" and not arg.startswith("--from"):
            copied += arg.split()[:-1]
    assert {"pyproject.toml", "README.md", "orchestrator", "worker", "db"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, p) for p in patterns if not p.startswith("!")), (
            f"COPY {source}: excluded by .dockerignore"
        )
