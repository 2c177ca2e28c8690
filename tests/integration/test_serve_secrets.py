"""No secret in anything serve writes or logs.

Canary secrets (the Postgres password, the sources' bearer token, the PII hashing key) are
planted in the environment of one small Postgres-target run (trust auth accepts any
password) through the pipeline functions: extract over HTTP, validate and load, dbt build,
export, report, summarise. Then every file under the run's var/ folder (summaries, exports,
report, dbt logs, data docs, landing, quarantine) and every log record emitted during the run
is scanned for each canary. The scanner is proved first on a planted file. Then the
cx_publish DAG runs once through Airflow (`airflow dags test`, its task logs under var/logs)
on the same warehouse with the same canaries, and its output and task logs are scanned too.

Skipped, with the reason, only when no Postgres server is reachable."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import uuid
from pathlib import Path

import _background
import psycopg2
import pytest
from cxloop import pipeline
from cxloop.config import Settings, SourceSettings, redact
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer

pytestmark = pytest.mark.e2e

AS_OF = dt.datetime(2026, 10, 1)
PG_ENV = {k: os.environ[k] for k in ("CXLOOP_PG_HOST", "CXLOOP_PG_PORT", "CXLOOP_PG_USER") if os.environ.get(k)}


def _admin_dsn() -> str:
    return Settings.from_env({**PG_ENV, "CXLOOP_PG_DBNAME": "postgres"}).pg_dsn()


def scan(root: Path, canaries: dict[str, str], extra_texts: dict[str, str] | None = None) -> list[str]:
    """Every (file or log, canary name) where a canary appears, raw bytes, case-sensitive."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        found += [f"{path}: {name}" for name, value in canaries.items() if value.encode() in data]
    for label, text in (extra_texts or {}).items():
        found += [f"{label}: {name}" for name, value in canaries.items() if value in text]
    return found


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot format is itself worth seeing
            self.lines.append(f"unformattable record {record.name}: {exc}")


def test_redact_hides_dsn_passwords_and_url_credentials():
    assert redact("host=h port=5432 user=u dbname=d password=s3cr3t") == "host=h port=5432 user=u dbname=d password=***"
    assert redact("password='a b' host=h") == "password=*** host=h"
    assert redact("postgresql://u:pw@h:5432/db?sslmode=require") == "postgresql://u:***@h:5432/db?sslmode=require"
    assert redact("https://api.example/x?access_token=abc&page=2") == "https://api.example/x?access_token=***&page=2"
    assert redact("/var/lib/cx.duckdb") == "/var/lib/cx.duckdb"


@pytest.fixture(scope="module")
def secrets_run():
    value = _background.result("secrets_run")
    if "skip" in value:
        pytest.skip(value["skip"])
    return value


@_background.prestart("secrets_run")
def _secrets_run(_param=None) -> dict:
    """The canary run, then cx_publish through Airflow on its warehouse, then its database
    dropped: in a background process while other tests run (tests/_background.py). Returns what
    the tests scan: the run's folder, its log records, its summary and the DAG run's output."""
    try:
        psycopg2.connect(_admin_dsn(), connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        return {"skip": f"no PostgreSQL reachable ({redact(_admin_dsn())}): {str(exc).strip()}"}
    root = _background.workdir("secrets")
    canaries = {
        "CXLOOP_PG_PASSWORD": "pgcanary" + secrets.token_hex(8),
        "source token": "tokcanary" + secrets.token_hex(8),
        "CXLOOP_PII_KEY": "piicanary" + secrets.token_hex(8),
    }
    generate(root / "demo", seed=5, scale=0.1, as_of=AS_OF)
    dbname = f"cx_secrets_{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(
        {
            **PG_ENV,
            "CXLOOP_VAR": str(root / "var"),
            "CXLOOP_TARGET": "postgres",
            "CXLOOP_PG_DBNAME": dbname,
            "CXLOOP_PG_PASSWORD": canaries["CXLOOP_PG_PASSWORD"],
        }
    )
    saved = {k: os.environ.get(k) for k in ("CXLOOP_PII_KEY", "CXLOOP_WAREHOUSE", "CXLOOP_PG_PASSWORD",
                                            "CXLOOP_PG_DBNAME")}
    os.environ["CXLOOP_PII_KEY"] = canaries["CXLOOP_PII_KEY"]
    collect = _Collect()
    collect.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(collect)
    root_logger.setLevel(logging.DEBUG)
    token = canaries["source token"]
    try:
        with DemoServer(root / "demo" / "source", token=token) as base_url:
            batches = [
                pipeline.extract(SourceSettings("salesforce", base_url, token), settings, AS_OF),
                pipeline.extract(
                    SourceSettings("qualtrics", base_url, token, {"directory_id": "POOL_cxloopdemo"}), settings, AS_OF
                ),
            ]
        pipeline.validate_and_load(batches, settings, AS_OF)
        assert pipeline.build(settings, AS_OF)["success"]
        run_id = "scheduled__2026-10-01T00:00:00+00:00"
        assert pipeline.publish(settings, AS_OF, run_id, None) is None
        exported = pipeline.export(settings, AS_OF, run_id, None)
        pipeline.report(settings, AS_OF, run_id, None)
        summary = pipeline.summarise(settings, AS_OF, None, exported)
        publish_rc, publish_output = _publish_dag_run(settings, canaries)
        return {"root": root, "settings": settings, "canaries": canaries, "logs": collect.lines, "summary": summary,
                "publish_rc": publish_rc, "publish_output": publish_output}
    finally:
        root_logger.removeHandler(collect)
        root_logger.setLevel(old_level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        admin = psycopg2.connect(_admin_dsn())
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                        "AND pid <> pg_backend_pid()", (dbname,))
            cur.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        admin.close()


def test_the_scan_finds_a_planted_canary(secrets_run, tmp_path):
    canaries = secrets_run["canaries"]
    planted = tmp_path / "planted" / "deep" / "x.log"
    planted.parent.mkdir(parents=True)
    planted.write_text("connecting: host=h password=" + canaries["CXLOOP_PG_PASSWORD"] + "\n")
    assert scan(tmp_path, canaries) == [f"{planted}: CXLOOP_PG_PASSWORD"]
    assert scan(tmp_path, canaries, {"log": "x " + canaries["source token"]})[-1] == "log: source token"


def test_no_canary_in_any_file_under_var_or_any_log_record(secrets_run):
    canaries = secrets_run["canaries"]
    var = Path(secrets_run["settings"].var_dir)
    written = sorted(p.relative_to(var).parts[0] for p in var.rglob("*") if p.is_file())
    assert {"logs", "exports", "landing"} <= set(written), "the run should have written its files under var/"
    assert (var / "logs" / "last_run_summary.txt").exists() and (var / "logs" / "last_run_summary.json").exists()
    records = secrets_run["logs"]
    assert len(records) > 20, "the run's log records should have been collected"
    assert scan(var, canaries, {"log records": "\n".join(records)}) == []


def _publish_dag_run(settings: Settings, canaries: dict[str, str]) -> tuple[int, str]:
    """cx_publish through Airflow on the canary run's Postgres warehouse (task logs in var/)."""
    from cxloop.airflow_home import airflow_env
    from cxloop.cli import run_dags

    env = airflow_env(settings, dict(_background.ENV))  # the environment before any test changed it
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    env.update(
        {
            "CXLOOP_TARGET": "postgres",
            "CXLOOP_PG_DBNAME": settings.pg["dbname"],
            "CXLOOP_PG_PASSWORD": canaries["CXLOOP_PG_PASSWORD"],
            "CXLOOP_PII_KEY": canaries["CXLOOP_PII_KEY"],
        }
    )
    # the migration, the pool and `dags test cx_publish` in one Airflow process (all its output
    # kept as var/logs/airflow-dags-test.log)
    rc = run_dags(settings, env, AS_OF.isoformat(), dag_ids=("cx_publish",))
    return rc, (settings.logs_dir / "airflow-dags-test.log").read_text()


def test_the_publish_dag_task_logs_hold_no_canary(secrets_run):
    rc, output = secrets_run["publish_rc"], secrets_run["publish_output"]
    assert rc == 0, output[-4000:]
    var = Path(secrets_run["settings"].var_dir)
    # `airflow dags test` runs the tasks in its own process and prints their logs: that output is
    # the task log of this run (kept as var/logs/airflow-dags-test.log, scanned with var/ below)
    assert "cxloop run summary" in output, "the summarise task prints the summary into its log"
    assert "password=***" in output
    assert scan(var, secrets_run["canaries"], {"airflow dags test output": output}) == []


def test_the_summary_names_the_postgres_warehouse_with_its_password_redacted(secrets_run):
    text = secrets_run["summary"]["text"]  # also what the cx_publish task prints into its log
    assert "postgres: host=" in text and "password=***" in text
    assert secrets_run["canaries"]["CXLOOP_PG_PASSWORD"] not in text
