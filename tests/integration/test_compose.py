"""docker-compose.yml, validated by `docker-compose config` (Debian package docker-compose).

No Docker engine is needed: `config` only interpolates, validates and prints the resolved file.
It runs on a temporary copy of the compose file and the Dockerfile with a temporary .env, so
the project's own .env (if any) is never read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
AIRFLOW_COMMANDS = ("api-server", "scheduler", "dag-processor", "triggerer", "celery worker")
MOUNTS = {
    "dags": "dags",
    "plugins": "plugins",
    "dbt_project": "dbt project",
    "expectations": "expectations",
    "config": "source configuration (config/sources.yml)",
}


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if not exe:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (Debian package `docker-compose`)")
        pytest.skip("docker-compose is not installed (apt-get install -y docker-compose)")
    return exe


def required_variables() -> list[str]:
    """The variables docker-compose.yml refuses to run without (``${NAME:?message}``)."""
    return sorted(set(REQUIRED.findall(COMPOSE.read_text())))


def example_variables() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dummy_env() -> dict[str, str]:
    return {name: f"dummy-{name.lower()}" for name in required_variables()}


@pytest.fixture
def project(tmp_path):
    """A copy of what `docker-compose config` reads: the compose file and the build context."""
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    return tmp_path


def compose_config(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    # only the temporary .env may supply values: no COMPOSE_*/secret from the caller's shell
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return subprocess.run(
        [_docker_compose(), "--project-directory", str(project), "-f", str(project / "docker-compose.yml"), "config"],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    project = tmp_path_factory.mktemp("compose")
    shutil.copy(COMPOSE, project / "docker-compose.yml")
    shutil.copy(ROOT / "Dockerfile", project / "Dockerfile")
    run = compose_config(project, dummy_env())
    assert run.returncode == 0, run.stderr
    return yaml.safe_load(run.stdout)


def _command(service: dict) -> str:
    cmd = service.get("command") or ""
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def _airflow_services(config: dict) -> dict[str, dict]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if "AIRFLOW__CORE__EXECUTOR" in (svc.get("environment") or {}) and "db migrate" not in _command(svc)
    }


def _by_command(config: dict, command: str) -> list[str]:
    return [name for name, svc in _airflow_services(config).items() if _command(svc).strip() == command]


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes (`config` prints them as strings or mappings)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume.get("target")
        mounts[target] = source
    return mounts


def _host_of(url: str) -> str:
    return re.match(r"^[\w+]+://(?:[^@/]*@)?([^:/]+)", url).group(1)


def test_required_secrets_are_documented_and_have_no_default():
    required = required_variables()
    for name in (
        "AIRFLOW_DB_PASSWORD",
        "WAREHOUSE_PASSWORD",
        "AIRFLOW_FERNET_KEY",
        "AIRFLOW_JWT_SECRET",
        "AIRFLOW_API_SECRET_KEY",
        "CXLOOP_PII_KEY",
    ):
        assert name in required
    documented = example_variables()
    missing = [name for name in required if name not in documented]
    assert not missing, f"required by docker-compose.yml but not in .env.example: {missing}"
    filled = [name for name in required if documented[name]]
    assert not filled, f".env.example commits values for secrets: {filled}"


def test_no_password_or_secret_is_written_into_the_compose_file():
    literal = []
    for line in COMPOSE.read_text().splitlines():
        m = re.match(r"\s*([A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY|PII_KEY|TOKEN)[A-Z_]*):\s*(.+)$", line)
        if m and not REQUIRED.fullmatch(m.group(2).strip().strip("\"'")):
            literal.append(line.strip())
    assert not literal, literal
    for line in COMPOSE.read_text().splitlines():
        if "://" in line and "@" in line:  # credentials inside URLs come from .env as well
            assert REQUIRED.search(line), line


def test_config_succeeds_with_an_env_file(config):
    assert config["services"]


def test_config_fails_naming_each_missing_secret(project):
    for name in required_variables():
        env = dummy_env()
        del env[name]
        run = compose_config(project, env)
        assert run.returncode != 0, f"docker-compose config succeeded without {name}"
        assert name in run.stderr, run.stderr


def test_config_fails_on_the_unfilled_example(project):
    run = compose_config(project, example_variables())
    assert run.returncode != 0
    assert any(name in run.stderr for name in required_variables()), run.stderr


def test_every_component_is_a_service_with_a_healthcheck(config):
    services = config["services"]
    airflow = _airflow_services(config)
    env = next(iter(airflow.values()))["environment"]
    components = {
        "api-server": _by_command(config, "api-server"),
        "scheduler": _by_command(config, "scheduler"),
        "dag-processor": _by_command(config, "dag-processor"),
        "triggerer": _by_command(config, "triggerer"),
        "Celery worker": _by_command(config, "celery worker"),
        "Redis broker": [_host_of(env["AIRFLOW__CELERY__BROKER_URL"])],
        "metadata Postgres": [_host_of(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])],
        "warehouse Postgres": [env["CXLOOP_PG_HOST"]],
    }
    for what, names in components.items():
        assert names, f"no service runs the {what}"
        for name in names:
            assert name in services, f"{what}: no service {name}"
            check = services[name].get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{what} ({name}) has no healthcheck"
    replicas = sum((services[n].get("deploy") or {}).get("replicas", 1) for n in components["Celery worker"])
    assert replicas >= 2, "the team deployment runs (at least) two Celery workers"
    assert services[components["Redis broker"][0]]["image"].startswith("redis")
    meta, warehouse = components["metadata Postgres"][0], components["warehouse Postgres"][0]
    assert meta != warehouse, "the warehouse must not live in Airflow's metadata database server"
    for name in (meta, warehouse):
        assert services[name]["image"].startswith("postgres")
        assert services[name]["volumes"], f"{name} keeps its data in a volume"


def test_airflow_services_share_configuration_and_mount_the_project(config):
    airflow = _airflow_services(config)
    assert set(AIRFLOW_COMMANDS) <= {_command(s).strip() for s in airflow.values()}
    # secrets the components must agree on: a per-container default would break the execution
    # API (JWT), decrypting connections (Fernet) and reading task logs from workers (API secret key)
    shared = (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "CXLOOP_PII_KEY",
    )
    for key in shared:
        values = {svc["environment"].get(key) for svc in airflow.values()}
        assert len(values) == 1 and None not in values, f"{key} differs between the Airflow services"
    api = _by_command(config, "api-server")[0]
    for name, svc in airflow.items():
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["CXLOOP_TARGET"] == "postgres"
        assert _host_of(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]) == api, name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].rstrip("/").endswith("/execution"), name
        sources = {Path(source).name for source in _mounts(svc).values()}
        for folder, what in MOUNTS.items():
            assert folder in sources, f"{name} does not mount the {what} ({folder}/)"
    for svc in airflow.values():
        if _command(svc).strip() == "celery worker":
            assert svc["depends_on"][api]["condition"] == "service_healthy"


def test_the_scheduler_healthcheck_has_something_to_call(config):
    """The scheduler's healthcheck calls its health server (:8974/health), which Airflow starts
    only when [scheduler] enable_health_check is on."""
    for name in _by_command(config, "scheduler"):
        svc = config["services"][name]
        test = " ".join(svc["healthcheck"]["test"])
        if ":8974/health" in test:
            assert svc["environment"].get("AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK", "").lower() == "true", name


def test_workers_share_landing_and_task_logs(config):
    """A task reads what another worker's task landed, and the api-server shows any task's log:
    both need one volume mounted in every Airflow service."""
    airflow = _airflow_services(config)
    for target in ("/opt/cxloop/var", "/opt/airflow/logs"):
        sources = {name: _mounts(svc).get(target) for name, svc in airflow.items()}
        assert None not in sources.values(), f"{target} is not mounted everywhere: {sources}"
        assert len(set(sources.values())) == 1, f"{target} is not one shared volume: {sources}"
