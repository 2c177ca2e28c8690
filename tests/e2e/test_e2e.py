"""End to end: generated demo data -> demo HTTP sources -> a real Airflow DAG run -> DuckDB marts.

The marts are then checked against values computed independently in Python (tests/oracle.py)
from the generator's ground truth, which never went through the connectors, the gate or dbt.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from pathlib import Path

import _background
import duckdb
import pandas as pd
import pytest
from _mart_compare import MART_KEYS, compare_with_oracle
from cxloop.airflow_home import airflow_env
from cxloop.cli import PIPELINE_DAGS, demo_source_env, run_dags
from cxloop.config import Settings
from cxloop.contract import ENTITY_ORDER
from cxloop.demo.run import DemoOptions, demo_drop_dir, prepare
from cxloop.demo.server import DemoServer
from cxloop.serve.exports import MARTS, verify_manifest
from cxloop.source_config import CRM_ENTITIES, SURVEY_ENTITIES

pytestmark = pytest.mark.e2e

AS_OF = datetime(2026, 10, 1)
SEED = 11
SCALE = 0.2
# a file of the user's, named like a data file, in the configured drop folder and in var/drop
USER_FILE = "accounts.csv"
USER_ROWS = "account_id,account_name\nMINE-1,My own account\n"



@_background.prestart("demo_run")
def _demo_run(sources: tuple[str, str]):
    """One pipeline pass through Airflow (conftest starts it in a background process while
    other tests run: tests/_background.py)."""
    crm, survey = sources
    var = _background.workdir(f"var-{crm}-{survey}")
    settings = Settings.from_env({"CXLOOP_VAR": str(var)})
    for folder in (var / "drop", var / "my-drop"):  # a user's files where older demos wrote theirs
        folder.mkdir(parents=True, exist_ok=True)
        (folder / USER_FILE).write_text(USER_ROWS)
    # the demo's own preparation (as `cxloop demo`): the world at its horizon, the warehouse's record
    plan = prepare(settings, DemoOptions(seed=SEED, scale=SCALE, as_of=AS_OF.isoformat(), crm=crm, survey=survey))
    token = secrets.token_urlsafe(16)
    env = airflow_env(settings, dict(_background.ENV))  # the environment before any test changed it
    env["CXLOOP_PII_KEY"] = _background.ENV["CXLOOP_PII_KEY"]
    env["CXLOOP_FILES_OPT_DROP_DIR"] = str(var / "my-drop")  # the user's configured drop folder
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    with DemoServer(var / "demo" / "source", token=token) as base_url:
        env.update(demo_source_env(settings, base_url, token, crm, survey, as_of=plan.as_of))
        rc = run_dags(settings, env, AS_OF.isoformat())
    return settings, plan.truth, rc


@pytest.fixture(
    scope="module",
    params=[("salesforce", "qualtrics"), ("hubspot", "files")],
    ids=["salesforce+qualtrics", "hubspot+files"],
)
def demo_run(request):
    """The same demo data through two source configurations: switching sources is
    configuration alone, and every mart must come out the same."""
    settings, truth, rc = _background.result("demo_run", request.param)
    output = (settings.logs_dir / "airflow-dags-test.log").read_text()
    assert rc == 0, output[-6000:]
    return settings, truth, output


@pytest.fixture(scope="module")
def warehouse(demo_run):
    settings, _, _ = demo_run
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    yield con
    con.close()


@pytest.fixture(scope="module")
def expected(demo_run):
    import oracle

    settings, _, _ = demo_run
    truth_dir = settings.demo_dir / "truth"
    tables = {e: pd.read_parquet(truth_dir / f"{e}.parquet") for e in ENTITY_ORDER}
    return oracle.compute_marts(tables, AS_OF)


def test_dag_runs_succeeded_and_printed_summary(demo_run):
    settings, _, output = demo_run
    summary = (settings.logs_dir / "last_run_summary.txt").read_text()
    assert "Relationship NPS (respondent)" in summary
    assert "Follow-up SLA attainment" in summary
    assert "cxloop run summary" in output
    for dag_id in PIPELINE_DAGS:
        assert f"dag_id={dag_id}" in output
    assert "DagRun failed" not in output


def test_published_snapshot_and_report(demo_run):
    from cxloop.serve.publish import check_snapshot, published_path

    settings, _, _ = demo_run
    snapshot = check_snapshot(published_path(settings))
    assert snapshot["problems"] == []
    assert snapshot["counts"]["account_nps"] > 0
    reports = list(Path(settings.exports_dir).rglob("governance-report-*.html"))
    assert len(reports) == 1 and reports[0].stat().st_size > 100_000


def test_every_row_is_loaded_or_quarantined(demo_run, warehouse):
    _, truth, _ = demo_run
    for entity_name in ENTITY_ORDER:
        counts = truth["counts"][entity_name]
        loaded = warehouse.execute(f"select count(*) from raw.{entity_name}").fetchone()[0]
        assert loaded == counts["expected_loaded"], entity_name
        received, in_batches, quarantined = warehouse.execute(
            "select sum(received), sum(loaded), sum(quarantined) from raw.batches where entity = ?", [entity_name]
        ).fetchone()
        assert received == counts["served"], entity_name
        assert in_batches + quarantined == received, entity_name
        # rows quarantined only while their parent (in the other domain's DAG) had not arrived
        released = warehouse.execute(
            "select count(*) from raw.quarantine_releases where entity = ? and resolution = 'released'",
            [entity_name],
        ).fetchone()[0]
        assert quarantined - released == counts["expected_quarantined"], entity_name


def test_planted_faults_are_quarantined_with_reasons(demo_run, warehouse):
    settings, _, _ = demo_run
    faults = pd.read_parquet(settings.demo_dir / "truth" / "faults.parquet")
    quarantined = warehouse.execute("select entity, primary_key, reason from raw.quarantine").df()
    for fault in faults.itertuples():
        rows = quarantined[(quarantined.entity == fault.entity) & (quarantined.primary_key == str(fault.key))]
        assert len(rows) >= 1, f"planted {fault.kind} {fault.entity} {fault.key} not quarantined"
        assert rows.reason.str.len().min() > 10


def test_marts_cover_every_period(demo_run, warehouse):
    periods = pd.period_range("2025-01", "2026-09", freq="Q")
    wanted = {p.start_time.date() for p in periods}
    for mart in ("contact_coverage", "account_nps", "portfolio_nps", "response_rate"):
        got = {r[0] for r in warehouse.execute(f"select distinct period_start from marts.{mart}").fetchall()}
        assert wanted <= got, f"{mart} misses periods {sorted(wanted - got)}"


@pytest.mark.parametrize("mart", sorted(MART_KEYS))
def test_mart_equals_independent_computation(mart, warehouse, expected):
    actual = warehouse.execute(f"select * from marts.{mart}").df()
    assert len(actual) > 0, f"marts.{mart} is empty"
    compare_with_oracle(mart, actual, expected[mart])


def test_exports_verify(demo_run):
    settings, _, _ = demo_run
    manifests = list(Path(settings.exports_dir).rglob("manifest.json"))
    assert len(manifests) == 1
    folder = manifests[0].parent
    assert verify_manifest(folder) == []
    manifest = json.loads(manifests[0].read_text())
    assert {f["mart"] for f in manifest["files"]} == set(MARTS)
    assert manifest["dbt_invocation_id"]


FAULT_EXPECTATIONS = {
    "duplicate": "expect_column_values_to_be_unique",
    "orphan": "expect_column_values_to_be_in_set",
    "out_of_range": "expect_column_values_to_be_between",
}


def test_planted_faults_are_visible_in_data_quality(demo_run, warehouse):
    settings, _, _ = demo_run
    faults = pd.read_parquet(settings.demo_dir / "truth" / "faults.parquet")
    failed = warehouse.execute(
        "select entity, expectation, severity, unexpected_count from marts.data_quality where not success"
    ).df()
    for (entity_name, kind), group in faults.groupby(["entity", "kind"]):
        rows = failed[(failed.entity == entity_name) & (failed.expectation == FAULT_EXPECTATIONS[kind])]
        assert len(rows) >= 1, f"{kind} faults in {entity_name} do not show in marts.data_quality"
        assert (rows.severity == "error").all()
        assert rows.unexpected_count.sum() >= len(group)
    passed = warehouse.execute("select count(*) from marts.data_quality where success").fetchone()[0]
    assert passed > len(failed), "most expectations pass on the demo data"


def test_the_demo_left_the_users_drop_folders_alone(demo_run):
    settings, _, _ = demo_run
    for folder in (settings.var_dir / "drop", settings.var_dir / "my-drop"):
        assert sorted(p.name for p in folder.iterdir()) == [USER_FILE]
        assert (folder / USER_FILE).read_text() == USER_ROWS
    # a file drop run read the demo's own folder, never the configured one
    manifests = list((settings.landing_dir / "source=files" / "raw").glob("*/_files.json"))
    for manifest in manifests:
        assert str(demo_drop_dir(settings)) in manifest.read_text() and "my-drop" not in manifest.read_text()


def test_asset_events_carry_the_as_of_and_the_row_counts(demo_run):
    """The events Airflow recorded for the three assets (its metadata database): the raw layers'
    name the run's as_of and, per entity, rows received, loaded and quarantined, matching the
    warehouse's load log; the marts' names the dbt invocation."""
    import sqlite3

    settings, _, _ = demo_run
    con = sqlite3.connect(settings.var_dir / "airflow" / "airflow.db")
    try:
        rows = con.execute(
            "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id order by e.id"
        ).fetchall()
    finally:
        con.close()
    events = {name: json.loads(extra) for name, extra in rows}
    assert sorted(events) == ["cxloop_marts", "cxloop_raw_crm", "cxloop_raw_survey"], rows
    for name, domain in (("cxloop_raw_crm", CRM_ENTITIES), ("cxloop_raw_survey", SURVEY_ENTITIES)):
        extra = events[name]
        assert extra["as_of"] == AS_OF.isoformat() and len(extra["batch_ids"]) == 1
        assert set(extra["rows"]) <= set(domain) and {"accounts", "responses"} & set(extra["rows"]), extra
        for entity, c in extra["rows"].items():
            assert c["received"] == c["loaded"] + c["quarantined"], (entity, c)
        assert sum(c["loaded"] for c in extra["rows"].values()) > 100
    marts = events["cxloop_marts"]
    assert marts["as_of"] == AS_OF.isoformat() and marts["success"] is True
    assert marts["dbt_invocation_id"] and marts["nodes"].get("success", 0) + marts["nodes"].get("pass", 0) > 100


def test_cxloop_docs_generates_and_serves_the_dbt_docs_from_any_directory(tmp_path):
    """`cxloop docs` from /, on the Salesforce + Qualtrics run's warehouse: dbt's site with the
    warehouse's catalog of every mart and the exposures; --serve answers on the loopback."""
    import subprocess
    import sys

    import requests
    from cxloop.config import project_home
    from cxloop.transform.dbt import target_dir

    settings, _, rc = _background.result("demo_run", ("salesforce", "qualtrics"))
    assert rc == 0
    cxloop = Path(sys.executable).with_name("cxloop")
    env = {
        **_background.ENV, "CXLOOP_VAR": str(settings.var_dir), "CXLOOP_HOME": str(project_home()),
        "CXLOOP_PII_KEY": _background.ENV["CXLOOP_PII_KEY"],
    }
    done = subprocess.run([str(cxloop), "docs"], cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    target = target_dir(settings)
    assert f"as of {AS_OF.isoformat()}: {target / 'index.html'}" in done.stdout
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    cataloged = {n["metadata"]["name"] for n in catalog["nodes"].values()}
    assert set(MARTS) <= cataloged, sorted(set(MARTS) - cataloged)
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert {"governance_report", "governance_export", "bi_marts_snapshot"} <= set(exposures)
    assert all(e["owner"]["name"] and e["owner"]["email"] for e in exposures.values())
    url = exposures["governance_report"]["url"]  # where the run wrote its report
    assert url == f"file://{settings.exports_dir.resolve()}/reports/", url
    assert list((settings.exports_dir / "reports").glob("governance-report-*.html"))
    serving = subprocess.Popen(
        [str(cxloop), "docs", "--serve", "--port", "0"], cwd="/", env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = ""
        for _ in range(5000):  # dbt's own log lines come first
            line = serving.stdout.readline()
            if not line or line.startswith("serving them on "):
                break
        assert line.startswith("serving them on http://127.0.0.1:"), line
        url = line.split()[3]
        page = requests.get(url + "index.html", timeout=10)
        assert page.status_code == 200 and "dbt" in page.text.lower()
    finally:
        serving.terminate()
        serving.wait(timeout=30)


def _metadata(settings, query: str) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(settings.var_dir / "airflow" / "airflow.db")
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def _task_instances(settings) -> list[dict]:
    """Every task instance of the demo's DAG runs, with the log filename template of its run (what
    the API server's log reader, Airflow's FileTaskHandler, renders to find the log file)."""
    rows = _metadata(
        settings,
        "select ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number, ti.state, lt.filename "
        "from task_instance ti join dag_run dr on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id "
        "join log_template lt on lt.id = dr.log_template_id order by ti.dag_id, ti.task_id, ti.map_index",
    )
    names = ("dag_id", "task_id", "run_id", "map_index", "try_number", "state", "template")
    return [dict(zip(names, r, strict=True)) for r in rows]


def test_openlineage_events_for_every_task(demo_run):
    """The OpenLineage provider's file transport (the demo home: var/lineage/events.jsonl): a START
    and a COMPLETE event for every task instance, named <dag>.<task> in namespace cxloop, whose
    run facets name the DAG run, its as_of conf and the parent DAG; a COMPLETE per DAG run."""
    from cxloop.airflow_home import LINEAGE_NAMESPACE, lineage_path

    settings, _, _ = demo_run
    events = [json.loads(line) for line in lineage_path(settings).read_text().splitlines() if line.strip()]
    tis = _task_instances(settings)
    assert {t["dag_id"] for t in tis} == set(PIPELINE_DAGS) and all(t["state"] == "success" for t in tis), tis
    by_job: dict[tuple[str, str], list[dict]] = {}
    for e in events:
        assert e["job"]["namespace"] == LINEAGE_NAMESPACE, e["job"]
        by_job.setdefault((e["job"]["name"], e["eventType"]), []).append(e)
    runs = dict(_metadata(settings, "select dag_id, run_id from dag_run"))
    for dag_id in PIPELINE_DAGS:
        dag_complete = by_job.get((dag_id, "COMPLETE"), [])
        assert len(dag_complete) == 1, (dag_id, len(dag_complete))
        assert dag_complete[0]["run"]["facets"]["airflowDagRun"]["dagRun"]["run_id"] == runs[dag_id]
        tasks = [t for t in tis if t["dag_id"] == dag_id]
        for task_id in sorted({t["task_id"] for t in tasks}):
            n = sum(1 for t in tasks if t["task_id"] == task_id)
            job = f"{dag_id}.{task_id}"
            starts, completes = by_job.get((job, "START"), []), by_job.get((job, "COMPLETE"), [])
            assert len(starts) == len(completes) == n, (job, len(starts), len(completes), n)
            for e in starts + completes:
                facets = e["run"]["facets"]
                parent = facets["parent"]
                assert (parent["job"]["namespace"], parent["job"]["name"]) == (LINEAGE_NAMESPACE, dag_id), parent
                assert parent["run"]["runId"] == dag_complete[0]["run"]["runId"], parent  # the DAG run's event
                dag_run = facets["airflow"]["dagRun"]
                assert dag_run["run_id"] == runs[dag_id] and dag_run["conf"] == {"as_of": AS_OF.isoformat()}
                assert facets["airflow"]["taskInstance"]["try_number"] >= 1
            assert {e["run"]["runId"] for e in starts} == {e["run"]["runId"] for e in completes}, job
    assert not [e for e in events if e["eventType"] == "FAIL"]


def test_every_task_log_is_where_the_ui_reads_it(demo_run):
    """`airflow dags test` logs to the console only; cxloop_airflow.run_dags also writes each task's
    log to [logging] base_log_folder / the run's filename template, the file the API server's log
    reader opens. Each holds that task's lines and no other task's."""
    from types import SimpleNamespace

    import jinja2

    settings, _, _ = demo_run
    base = settings.logs_dir / "airflow"
    tis = _task_instances(settings)
    assert len(tis) >= 10
    for t in tis:
        ti = SimpleNamespace(**{k: t[k] for k in ("dag_id", "task_id", "run_id", "map_index", "try_number")})
        path = base / jinja2.Template(t["template"]).render(ti=ti, try_number=t["try_number"])
        assert path.is_file(), f"{t['dag_id']}.{t['task_id']}: no log file {path}"
        text = path.read_text()
        assert "Task instance state updated" in text and "new_state=success" in text, path
        others = {o["task_id"] for o in tis if o["dag_id"] == t["dag_id"] and o["task_id"] != t["task_id"]}
        assert not [o for o in others if f"[DAG TEST] starting task_id={o} " in text], path
        if (t["dag_id"], t["task_id"]) == ("cx_transform", "source_freshness"):
            assert "freshness pass" in text and "dbt source freshness" in text
        if (t["dag_id"], t["task_id"]) == ("cx_transform", "dbt_build"):
            assert "Completed successfully" in text


def test_source_freshness_ran_in_cx_transform(demo_run, warehouse):
    """The transform's source_freshness task judged every landed table fresh at the run's as_of
    (marts.data_quality), and the marts' asset event counts them."""
    from cxloop.contract import ENTITIES

    settings, _, _ = demo_run
    rows = warehouse.execute(
        "select entity, freshness_status, loaded_up_to, reference_at, age_hours from marts.data_quality "
        "where check_kind = 'freshness' order by entity"
    ).fetchall()
    assert rows == [(e, "pass", AS_OF, AS_OF, 0.0) for e in sorted(ENTITIES)], rows
    query = "select e.extra from asset_event e join asset a on a.id = e.asset_id where a.name = 'cxloop_marts'"
    extra = json.loads(_metadata(settings, query)[0][0])
    assert extra["freshness"] == {"pass": len(ENTITIES)}, extra
