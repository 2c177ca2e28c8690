"""`cxloop check` against real sources: the demo server over loopback (its Salesforce, Qualtrics
and HubSpot protocols), real drop folders, a real DuckDB folder.

Each check is one line ``ok`` / ``warn`` / ``FAIL`` with what to fix; any FAIL exits non-zero.
The checks are called in-process with an explicit environment (fast); one test runs the
command itself as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cxloop.check import main_check
from cxloop.demo.file_drops import write_file_drops
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer

TOKEN = "check-token-0123456789abcdef-good"
BAD_TOKEN = "check-token-wrong-9876543210"
AS_OF = datetime(2026, 10, 1)
PII = "k" * 64


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("check-world")
    generate(out, seed=5, scale=0.1, as_of=AS_OF)
    return out


@pytest.fixture(scope="module")
def base_url(world):
    with DemoServer(world, token=TOKEN) as url:
        yield url


def _env(tmp_path: Path, config: str, **extra: str) -> dict[str, str]:
    path = tmp_path / "sources.yml"
    path.write_text(config)
    env = {
        "CXLOOP_SOURCES_CONFIG": str(path),
        "CXLOOP_VAR": str(tmp_path / "var"),
        "CXLOOP_PII_KEY": PII,
        "PATH": "/usr/bin:/bin",
    }
    env.update(extra)
    return env


def _http_env(base_url: str, token: str, *names: str) -> dict[str, str]:
    env = {}
    for name in names:
        env[f"CXLOOP_{name.upper()}_BASE_URL"] = base_url
        env[f"CXLOOP_{name.upper()}_TOKEN"] = token
    return env


def _check(env: dict[str, str]) -> tuple[int, list[str]]:
    lines: list[str] = []
    rc = main_check(env, out=lines.append)
    return rc, lines


def _line(lines: list[str], name: str) -> str:
    found = [line for line in lines if line.split(None, 1)[1].startswith(name)]
    assert len(found) == 1, (name, lines)
    return found[0]


HTTP_CONFIG = "crm: salesforce\nsurvey: qualtrics\noptions:\n  qualtrics:\n    directory_id: POOL_cxloopdemo\n"


def test_good_token_every_check_ok(tmp_path, base_url):
    env = _env(tmp_path, HTTP_CONFIG, **_http_env(base_url, TOKEN, "salesforce", "qualtrics"))
    rc, lines = _check(env)
    assert rc == 0, lines
    assert _line(lines, "salesforce reachable").startswith("ok ")
    assert "authenticated GET /services/data/v60.0/query answered" in _line(lines, "salesforce reachable")
    assert _line(lines, "qualtrics reachable").startswith("ok ")
    assert _line(lines, "warehouse").startswith("ok ") and str(tmp_path / "var") in _line(lines, "warehouse")
    assert _line(lines, "PII key").startswith("ok ")
    assert lines[-1].startswith("all checks passed")
    assert not any(TOKEN in line for line in lines)


def test_hubspot_good_token_ok(tmp_path, base_url):
    config = HTTP_CONFIG.replace("crm: salesforce", "crm: hubspot")
    env = _env(tmp_path, config, **_http_env(base_url, TOKEN, "hubspot", "qualtrics"))
    rc, lines = _check(env)
    assert rc == 0, lines
    assert "GET /crm/v3/owners answered" in _line(lines, "hubspot reachable")


def test_bad_token_fails_naming_the_variable(tmp_path, base_url):
    env = _env(
        tmp_path,
        HTTP_CONFIG,
        **_http_env(base_url, BAD_TOKEN, "salesforce"),
        **_http_env(base_url, TOKEN, "qualtrics"),
    )
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "salesforce reachable")
    assert line.startswith("FAIL ")
    assert "token rejected (HTTP 401)" in line and "CXLOOP_SALESFORCE_TOKEN" in line and "cx_salesforce" in line
    assert _line(lines, "qualtrics reachable").startswith("ok ")
    assert lines[-1].startswith("1 check(s) failed")
    assert not any(BAD_TOKEN in line or TOKEN in line for line in lines)


def test_the_command_exits_non_zero_on_a_bad_token(tmp_path, base_url):
    env = _env(tmp_path, HTTP_CONFIG, **_http_env(base_url, BAD_TOKEN, "salesforce", "qualtrics"))
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cxloop")), "check"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 2 and all("token rejected" in line for line in fails)
    assert "CXLOOP_QUALTRICS_TOKEN" in proc.stdout and BAD_TOKEN not in proc.stdout + proc.stderr


def test_missing_credentials_and_refused_connection(tmp_path):
    env = _env(tmp_path, HTTP_CONFIG, CXLOOP_QUALTRICS_BASE_URL="http://127.0.0.1:9", CXLOOP_QUALTRICS_TOKEN="t")
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "salesforce credentials")
    assert line.startswith("FAIL ") and "CXLOOP_SALESFORCE_BASE_URL and CXLOOP_SALESFORCE_TOKEN not set" in line
    line = _line(lines, "qualtrics reachable")
    assert line.startswith("FAIL ") and "cannot reach http://127.0.0.1:9 (connection refused)" in line


def test_unknown_keys_are_named(tmp_path, base_url):
    config = HTTP_CONFIG + "  salesforce:\n    api_versoin: v61.0\nlimits:\n  file_row: 10\n"
    env = _env(tmp_path, config, **_http_env(base_url, TOKEN, "salesforce", "qualtrics"))
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "configuration")
    assert line.startswith("FAIL ") and "unknown key(s) options.salesforce.api_versoin, limits.file_row" in line


def test_an_unknown_top_level_key_is_named(tmp_path):
    env = _env(tmp_path, "crm: files\nsurvy: files\n")
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "configuration")
    assert line.startswith("FAIL ") and "unknown key(s) survy" in line


def test_missing_drop_folder(tmp_path):
    drop = tmp_path / "no-such-drop"
    env = _env(tmp_path, f"crm: files\nsurvey: files\noptions:\n  files:\n    drop_dir: {drop}\n")
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "drop folder")
    assert line.startswith("FAIL ") and f"{drop} does not exist" in line


def test_empty_drop_folder_and_unknown_files(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    env = _env(tmp_path, f"crm: files\nsurvey: files\noptions:\n  files:\n    drop_dir: {drop}\n")
    rc, lines = _check(env)
    assert rc == 1
    assert "holds no data files" in _line(lines, "drop folder")
    (drop / "notes.txt").write_text("hello")
    (drop / "customers.csv").write_text("id\n1\n")
    rc, lines = _check(env)
    assert rc == 1
    fail = [line for line in lines if line.startswith("FAIL") and "drop folder" in line]
    assert len(fail) == 2, lines
    assert "notes.txt (unsupported file" in fail[0] and "customers.csv (unknown entity 'customers'" in fail[0]


def test_a_full_drop_is_ok_with_rows_per_entity(tmp_path, world):
    drop = tmp_path / "drop"
    write_file_drops(world, drop)
    (drop / "README.md").write_text("what this drop is")
    outside = tmp_path / "outside.csv"
    outside.write_text("owner_id\nx\n")
    (drop / "owners-extra.csv").symlink_to(outside)
    env = _env(tmp_path, f"crm: files\nsurvey: files\noptions:\n  files:\n    drop_dir: {drop}\n")
    rc, lines = _check(env)
    assert rc == 1  # the link
    fail = [line for line in lines if line.startswith("FAIL")]
    assert len(fail) == 1 and "owners-extra.csv (a symbolic link" in fail[0], lines
    (drop / "owners-extra.csv").unlink()
    rc, lines = _check(env)
    assert rc == 0, lines
    assert "README.md" in [line for line in lines if line.startswith("warn") and "ignored" in line][0]
    for entity in ("owners", "accounts", "contacts", "follow_ups", "surveys", "invitations", "responses"):
        line = _line(lines, f"drop {entity}")
        assert line.startswith("ok ") and "row(s)" in line, line


def test_postgres_warehouse_database_is_created_when_the_user_may(tmp_path):
    import os
    import uuid

    import psycopg2
    from cxloop.config import Settings

    pg = {k: os.environ[k] for k in ("CXLOOP_PG_HOST", "CXLOOP_PG_PORT", "CXLOOP_PG_USER") if os.environ.get(k)}
    name = f"owndata_cli_check_{uuid.uuid4().hex[:8]}"
    env = _env(tmp_path, "crm: files\nsurvey: files\n", CXLOOP_TARGET="postgres", CXLOOP_PG_DBNAME=name, **pg)
    admin_dsn = Settings.from_env({**pg, "CXLOOP_PG_DBNAME": "postgres"}).pg_dsn()
    try:
        admin = psycopg2.connect(admin_dsn, connect_timeout=3)
    except psycopg2.OperationalError:
        pytest.skip("no Postgres on 127.0.0.1:5432")
    admin.autocommit = True
    try:
        _, lines = _check(env)
        line = _line(lines, "warehouse")
        assert line.startswith("ok ") and f"dbname={name}" in line and "database created" in line, line
        _, lines = _check(env)
        assert "database created" not in _line(lines, "warehouse")  # there now
        env["CXLOOP_PG_PORT"] = "1"
        _, lines = _check(env)
        line = _line(lines, "warehouse")
        assert line.startswith("FAIL ") and "not reachable" in line and "CXLOOP_PG_HOST" in line
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


def test_the_program_and_mappings_sections_are_validated_and_the_settings_printed(tmp_path):
    env = _env(tmp_path, "crm: files\nsurvey: files\nprogram:\n  no_such_setting: 1\n", no_proxy="127.0.0.1")
    rc, lines = _check(env)
    assert rc == 1
    line = _line(lines, "program")
    assert line.startswith("FAIL ") and "unknown program setting(s) no_such_setting" in line
    # a valid program: every setting printed with where its value came from (file, env, default)
    env = _env(
        tmp_path, "crm: files\nsurvey: files\nprogram:\n  period_grain: month\n"
        "mappings:\n  files:\n    buying_role: {system_admin: user}\n", no_proxy="127.0.0.1",
    )
    env["CXLOOP_PROGRAM_SLA_CLOCK"] = "business"
    _, lines = _check(env)
    program = [x for x in lines if x.split()[1:2] == ["program"]]
    assert any("period_grain = month" in x for x in program), program
    assert any("sla_clock = business" in x and "CXLOOP_PROGRAM_SLA_CLOCK" in x for x in program), program
    assert all(x.startswith("ok ") for x in program)
    assert _line(lines, "mappings").startswith("ok ")
    env = _env(tmp_path, "crm: files\nsurvey: files\nmappings:\n  files:\n    colour: {a: b}\n", no_proxy="127.0.0.1")
    _, lines = _check(env)
    assert _line(lines, "mappings").startswith("FAIL ")
