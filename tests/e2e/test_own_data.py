"""A new user's path on their own data, as subprocesses in a folder outside var/:
`cxloop init --dir`, the skeleton edited to read a file drop, `cxloop check`, `cxloop run`
(the four DAGs through Airflow, no demo server, no demo data), and the summary.

Then, on the same Airflow home (its metadata database is migrated once), the fail-fast rule:
`cx_ingest_crm` against the demo Salesforce with a wrong token fails its extract task once,
with no retry, in well under ten seconds, with one line saying what to fix and without the
token anywhere in the log.

Both run in one background process (tests/_background.py) while other tests run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import _background
import pytest

AS_OF = "2026-10-01T00:00:00"
WRONG_TOKEN = "wrong-token-fail-fast-SECRET-4711"
CLEAN_ENV_PREFIXES = ("CXLOOP_", "AIRFLOW")


def _cxloop(*args: str, env: dict[str, str]) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("cxloop")), *args], env=env, capture_output=True, text=True, timeout=900
    )
    return {"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr, "s": round(time.monotonic() - t0, 1)}


@_background.prestart("own_data")
def _own_data(_param=None) -> dict:
    from cxloop.airflow_home import airflow_bin, airflow_env
    from cxloop.config import Settings
    from cxloop.demo.file_drops import write_file_drops
    from cxloop.demo.generator import generate
    from cxloop.demo.server import DemoServer

    base = _background.workdir("own-data")
    world = base / "world"
    generate(world, seed=11, scale=0.2, as_of=datetime.fromisoformat(AS_OF))
    drop = base / "my-exports"
    write_file_drops(world, drop)
    env = {k: v for k, v in _background.ENV.items() if not k.startswith(CLEAN_ENV_PREFIXES)}
    env["CXLOOP_VAR"] = str(base / "var")
    out: dict = {"base": str(base)}
    config = base / "cfg" / "sources.yml"
    out["init"] = _cxloop("init", "--dir", str(config.parent), env=env)
    out["init_again"] = _cxloop("init", "--dir", str(config.parent), env=env)
    text = config.read_text()
    out["template"] = text
    config.write_text(re.sub(r"(?m)^(\s+drop_dir:) \S+", rf"\1 {drop}", text, count=1))
    out["check"] = _cxloop("check", "--config", str(config), env=env)
    out["run"] = _cxloop("run", "--as-of", AS_OF, "--config", str(config), env=env)

    # the fail-fast rule, on the Airflow home the run migrated
    settings = Settings.from_env({"CXLOOP_VAR": str(base / "var")})
    af = airflow_env(settings, env)
    af.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    af.update({"CXLOOP_CRM_SOURCE": "salesforce", "CXLOOP_SALESFORCE_TOKEN": WRONG_TOKEN})
    af["CXLOOP_PII_KEY"] = (settings.var_dir / "secrets" / "pii.key").read_text().strip()
    with DemoServer(world, token="the-right-token-0000") as url:
        af["CXLOOP_SALESFORCE_BASE_URL"] = url
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(airflow_bin()), "dags", "test", "cx_ingest_crm", "--conf", json.dumps({"as_of": AS_OF})],
            env=af,
            capture_output=True,
            text=True,
            timeout=600,
        )
    out["fail_fast"] = {"rc": proc.returncode, "log": proc.stdout + proc.stderr, "s": round(time.monotonic() - t0, 1)}
    return out


@pytest.fixture(scope="module")
def own_data():
    return _background.result("own_data")


def test_init_writes_a_skeleton_once(own_data):
    assert own_data["init"]["rc"] == 0, own_data["init"]
    template = own_data["template"]
    for key in ("crm:", "survey:", "drop_dir:", "lookback_hours:", "limits:", "# mappings:", "# program:"):
        assert key in template
    again = own_data["init_again"]
    assert again["rc"] == 1
    assert again["err"].strip().count("\n") == 0 and "already exists; not overwritten" in again["err"]


def test_check_passes_on_the_drop(own_data):
    check = own_data["check"]
    assert check["rc"] == 0, check["out"] + check["err"]
    lines = check["out"].splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    assert any(line.startswith("ok   drop responses") and "row(s)" in line for line in lines), lines
    assert any(line.startswith("warn PII key") for line in lines)  # not set: the run makes one


def test_run_goes_through_airflow_and_prints_the_summary(own_data):
    run, base = own_data["run"], Path(own_data["base"])
    assert run["rc"] == 0, run["out"][-3000:] + run["err"][-2000:]
    out = run["out"]
    for dag_id in ("cx_ingest_crm", "cx_ingest_survey", "cx_transform", "cx_publish"):
        assert f"running DAG {dag_id} through Airflow" in out
    m = re.search(r"Relationship NPS \(respondent\): ([+-]\d+\.\d)", out)
    assert m, out[-3000:]
    assert -100 <= float(m.group(1)) <= 100
    assert f"warehouse    {base / 'var' / 'warehouse' / 'cx.duckdb'}" in out
    assert "demo" not in out.lower()  # no demo server, no demo data
    assert not (base / "var" / "demo").exists() and not (base / "var" / "drop").exists()
    assert (base / "var" / "secrets" / "pii.key").exists()
    loaded = re.findall(r"(?m)^\s+files\s+(\w+)\s+(\d+)\s+(\d+)", out)
    assert {e for e, *_ in loaded} >= {"accounts", "contacts", "responses"} and all(int(n) > 0 for _, n, _ in loaded)


def test_a_rejected_token_fails_the_task_once_without_retry(own_data):
    ff = own_data["fail_fast"]
    log = ff["log"]
    assert ff["rc"] != 0
    assert log.count("[DAG TEST] starting task_id=extract") == 1  # one attempt
    assert "up_for_retry" not in log
    line = (
        "salesforce: GET /services/data/v60.0/query answered HTTP 401 (token rejected): set a valid token in "
        "CXLOOP_SALESFORCE_TOKEN or the password of the Airflow connection cx_salesforce"
    )
    assert line in log
    assert WRONG_TOKEN not in log
    stamps = re.findall(r"^(\S+Z) .*(?:starting task_id=extract |new_state=failed)", log, re.M)
    assert len(stamps) == 2, stamps
    started, failed = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
    assert (failed - started).total_seconds() < 10


def test_no_secret_in_the_run_outputs(own_data):
    key = (Path(own_data["base"]) / "var" / "secrets" / "pii.key").read_text().strip()
    for step in ("init", "check", "run"):
        assert key not in own_data[step]["out"] + own_data[step]["err"]
