"""The dbt project on its own: Postgres build, documentation completeness, incremental = full refresh.

Data: the demo generator's canonical truth tables (``truth/<entity>.parquet``) loaded straight
into ``raw.<entity>`` with the lineage columns, bypassing connectors and the gate (those are
covered by tests/e2e/test_e2e.py). dbt runs as a subprocess of the project's virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import _background
import duckdb
import numpy as np
import pandas as pd
import pytest
from _mart_compare import MART_GRAIN
from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.demo.generator import generate
from cxloop.store.duckdb_store import RESULTS_DDL, SQL_TYPES, ensure_raw_schema

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"
AS_OF = datetime(2026, 10, 1)
SEED = 11
SCALE = 0.2
MARTS = [
    "account_nps", "portfolio_nps", "contact_coverage", "response_rate", "follow_up_sla",
    "follow_up_attainment", "portfolio_coverage", "governance_kpis", "at_risk_accounts", "data_quality",
    "account_team_worklist",
]
PG_TYPES = {**SQL_TYPES, "float": "DOUBLE PRECISION", "string": "TEXT"}


# ---------------------------------------------------------------------------- data and loaders


@pytest.fixture(scope="module")
def truth(incremental_run) -> dict[str, pd.DataFrame]:
    """The generator's truth tables, generated for the incremental builds below."""
    return incremental_run["truth"]


def generate_truth(out: Path) -> tuple[dict[str, pd.DataFrame], Path]:
    generate(out, seed=SEED, scale=SCALE, as_of=AS_OF)
    return {e: pd.read_parquet(out / "truth" / f"{e}.parquet") for e in ENTITY_ORDER}, out / "truth"


def with_lineage(frame: pd.DataFrame, batch_id: str, loaded_at: datetime) -> pd.DataFrame:
    out = frame.copy()
    out["_batch_id"] = batch_id
    out["_source"] = "demo"
    out["_extracted_at"] = pd.Timestamp(loaded_at)
    out["_loaded_at"] = pd.Timestamp(loaded_at)
    return out


def _columns(entity_name: str) -> list[str]:
    return ENTITIES[entity_name].column_names + [c.name for c in LINEAGE_COLUMNS]


def load_duckdb(path: Path, tables: dict[str, pd.DataFrame], *, replace_keys: bool = True) -> None:
    """Upsert canonical rows (with lineage columns) into raw.<entity> of a DuckDB file."""
    con = duckdb.connect(str(path))
    try:
        ensure_raw_schema(con)
        for name, frame in tables.items():
            e = ENTITIES[name]
            frame = frame[_columns(name)]
            con.register("incoming", frame)
            if replace_keys:
                key = f'"{e.primary_key}"'
                con.execute(f'delete from raw."{name}" where {key} in (select {key} from incoming)')
            con.execute(f'insert into raw."{name}" select * from incoming')
            con.unregister("incoming")
    finally:
        con.close()


def demo_validation_results(tables: dict[str, pd.DataFrame], checked_at: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"batch_id": "b-demo", "source": "demo", "entity": name, "expectation": "primary_key_unique",
             "column": ENTITIES[name].primary_key, "severity": "error", "success": True,
             "rows_checked": len(frame), "unexpected_count": 0, "checked_at": pd.Timestamp(checked_at)}
            for name, frame in tables.items()
        ]
    )


def pg_connect(dbname: str = "postgres"):
    import psycopg2

    return psycopg2.connect(
        host=os.environ.get("CXLOOP_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("CXLOOP_PG_PORT", "5432")),
        user=os.environ.get("CXLOOP_PG_USER", "postgres"),
        password=os.environ.get("CXLOOP_PG_PASSWORD", ""),
        dbname=dbname,
        connect_timeout=3,
    )


def load_postgres(dbname: str, tables: dict[str, pd.DataFrame], results: pd.DataFrame) -> None:
    """Create raw.<entity> (contract types) in a Postgres database and COPY the rows in."""
    con = pg_connect(dbname)
    try:
        with con, con.cursor() as cur:
            cur.execute("create schema if not exists raw")
            for name, frame in tables.items():
                e = ENTITIES[name]
                cols = [f'"{c.name}" {PG_TYPES[c.type]}' for c in e.columns]
                cols += [f'"{c.name}" {PG_TYPES[c.type]} not null' for c in LINEAGE_COLUMNS]
                cur.execute(f'create table raw."{name}" ({", ".join(cols)})')
                frame = frame[_columns(name)].copy()
                for col in e.columns:
                    if col.type == "int":
                        frame[col.name] = frame[col.name].astype("Int64")
                _copy(cur, f'raw."{name}"', frame)
            cur.execute(RESULTS_DDL.replace("VARCHAR", "TEXT"))
            _copy(cur, "raw.validation_results", results)
    finally:
        con.close()


def _copy(cur, table: str, frame: pd.DataFrame) -> None:
    import io

    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f")
    buf.seek(0)
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    cur.copy_expert(f"copy {table} ({cols}) from stdin with (format csv, null '\\N')", buf)


def dbt(command: list[str], *, target: str, env: dict[str, str], cwd: Path, as_of: datetime = AS_OF,
        extra_vars: dict | None = None) -> subprocess.CompletedProcess:
    args = [
        str(DBT), *command,
        "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target", target,
        "--target-path", str(cwd / "target"), "--log-path", str(cwd / "logs"),
        "--vars", json.dumps({"as_of": as_of.strftime("%Y-%m-%dT%H:%M:%S"), **(extra_vars or {})}),
    ]
    # the environment before any test changed it: the builds below may run in the background
    full_env = {**(_background.ENV or os.environ), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env}
    run = subprocess.run(args, env=full_env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"dbt {' '.join(command)} failed:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"
    return run


def read_marts(path: Path) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {m: con.execute(f"select * from marts.{m}").df() for m in MARTS}
    finally:
        con.close()


def assert_frames_equal(name: str, left: pd.DataFrame, right: pd.DataFrame) -> None:
    keys = MART_GRAIN[name]
    assert list(left.columns) == list(right.columns), name
    assert len(left) == len(right), f"{name}: {len(left)} rows vs {len(right)}"
    a = left.sort_values(keys, na_position="first").reset_index(drop=True)
    b = right.sort_values(keys, na_position="first").reset_index(drop=True)
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            xv, yv = x.astype(float).to_numpy(), y.astype(float).to_numpy()
            ok = (np.isnan(xv) & np.isnan(yv)) | np.isclose(xv, yv, rtol=1e-12, atol=1e-9)
        else:
            xs, ys = x.astype(object).where(x.notna(), None), y.astype(object).where(y.notna(), None)
            ok = np.array([p == q for p, q in zip(xs, ys, strict=True)])
        assert ok.all(), (
            f"{name}.{col}: {int((~ok).sum())} rows differ\n"
            f"{a.loc[~ok, keys + [col]].head()}\n{b.loc[~ok, keys + [col]].head()}"
        )


# ------------------------------------------------------------ incremental equals full refresh

CUT = datetime(2026, 4, 1)
NO_TESTS = ["--exclude", "resource_type:test", "resource_type:unit_test"]


@pytest.fixture(scope="module")
def incremental_run():
    run = _background.result("incremental_run")
    return run | {"truth": {e: pd.read_parquet(run["truth_dir"] / f"{e}.parquet") for e in ENTITY_ORDER}}


@_background.prestart("incremental_run")
def _incremental_run(_param=None):
    """Build on DuckDB in three incremental steps, then a --full-refresh of the same raw data.

    Step 1 loads the CRM and the responses / invitations before CUT (loaded at CUT) minus a few
    withheld responses; step 2 the rest (loaded at AS_OF + 1 h); step 3 re-delivers the
    withheld responses late with a _loaded_at a month older than the latest stored one, and one
    response re-delivered with a changed score (a merge on the key).

    conftest starts this in a background process while other tests run (tests/_background.py)."""
    truth, truth_dir = generate_truth(_background.workdir("demo"))
    work = _background.workdir("incremental")
    inc_db = work / "incremental.duckdb"
    env = {"CXLOOP_WAREHOUSE": str(inc_db)}
    responses, invitations = truth["responses"], truth["invitations"]
    early_resp = responses[responses.recorded_at < CUT]
    withheld = early_resp.iloc[::10]
    early_resp = early_resp.drop(withheld.index)
    crm = {e: with_lineage(truth[e], "b-crm", CUT) for e in ("owners", "accounts", "contacts", "surveys", "follow_ups")}

    t1 = CUT + timedelta(hours=1)
    load_duckdb(inc_db, {
        **crm,
        "invitations": with_lineage(invitations[invitations.sent_at < CUT], "b-1", t1),
        "responses": with_lineage(early_resp, "b-1", t1),
    })
    con = duckdb.connect(str(inc_db))
    con.register("results", demo_validation_results(truth, t1))
    con.execute("insert into raw.validation_results select * from results")
    con.close()
    timings = {}
    started = datetime.now()
    dbt(["build", *NO_TESTS], target="duckdb", env=env, cwd=work)
    timings["step1"] = (datetime.now() - started).total_seconds()

    t2 = AS_OF + timedelta(hours=1)
    load_duckdb(inc_db, {
        "invitations": with_lineage(invitations[invitations.sent_at >= CUT], "b-2", t2),
        "responses": with_lineage(responses[responses.recorded_at >= CUT], "b-2", t2),
    })
    started = datetime.now()
    dbt(["build", *NO_TESTS], target="duckdb", env=env, cwd=work)
    timings["step2"] = (datetime.now() - started).total_seconds()
    con = duckdb.connect(str(inc_db), read_only=True)
    rows_after_step2 = con.execute("select count(*) from staging.base_survey__responses").fetchone()[0]
    con.close()

    changed = early_resp[early_resp.nps_score.notna()].iloc[[0]].copy()
    changed["nps_score"] = 10.0 if changed["nps_score"].iloc[0] <= 6 else 0.0
    t3 = t2 - timedelta(days=30)  # late: loaded_at a month older than the latest stored one
    load_duckdb(inc_db, {"responses": with_lineage(pd.concat([withheld, changed]), "b-3", t3)})
    started = datetime.now()
    run = dbt(["build", *NO_TESTS], target="duckdb", env=env, cwd=work)
    timings["step3"] = (datetime.now() - started).total_seconds()
    run_results = json.loads((work / "target" / "run_results.json").read_text())

    full_db = work / "full.duckdb"
    shutil.copy(inc_db, full_db)
    started = datetime.now()
    dbt(["build", "--full-refresh", *NO_TESTS], target="duckdb", env={"CXLOOP_WAREHOUSE": str(full_db)}, cwd=work)
    timings["full_refresh_build"] = (datetime.now() - started).total_seconds()
    return {
        "work": work, "inc_db": inc_db, "full_db": full_db, "changed": changed, "withheld": withheld,
        "rows_after_step2": rows_after_step2, "run_results": run_results, "timings": timings, "log": run.stdout,
        "truth_dir": truth_dir,  # the frames are read by the fixture, in the pytest process
    }


def test_incremental_models_ran_incrementally(incremental_run, truth):
    print("incremental timings (s):", incremental_run["timings"])
    compiled = {
        r["unique_id"].split(".")[-1]: r.get("compiled_code") or ""
        for r in incremental_run["run_results"]["results"]
    }
    for model in ("base_survey__responses", "base_survey__invitations"):
        assert "_batch_id not in" in compiled[model], f"{model} did not run incrementally"
    con = duckdb.connect(str(incremental_run["inc_db"]), read_only=True)
    try:
        n = con.execute("select count(*) from staging.base_survey__responses").fetchone()[0]
        changed = incremental_run["changed"].iloc[0]
        score = con.execute(
            "select nps_score from staging.base_survey__responses where response_id = ?", [changed.response_id]
        ).fetchone()[0]
    finally:
        con.close()
    assert incremental_run["rows_after_step2"] == len(truth["responses"]) - len(incremental_run["withheld"])
    assert n == len(truth["responses"]), "late-arriving responses were not merged"
    assert score == int(changed.nps_score), "a re-delivered response did not replace the stored row"


@pytest.mark.parametrize("mart", MARTS)
def test_incremental_equals_full_refresh(incremental_run, mart):
    inc = read_marts(incremental_run["inc_db"])[mart]
    full = read_marts(incremental_run["full_db"])[mart]
    assert len(full) > 0 or mart == "at_risk_accounts", f"marts.{mart} is empty"
    assert_frames_equal(mart, inc, full)


def test_unit_tests_pass(incremental_run):
    """The pipeline's scheduled builds leave dbt's unit tests out (they test the SQL logic on
    fixed inputs, not the data); they run here, on every make test."""
    work = incremental_run["work"]
    env = {"CXLOOP_WAREHOUSE": str(incremental_run["full_db"])}
    dbt(["test", "--select", "test_type:unit"], target="duckdb", env=env, cwd=work)
    results = json.loads((work / "target" / "run_results.json").read_text())["results"]
    units = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert len(units) >= 12 and all(r["status"] == "pass" for r in units), [
        (r["unique_id"], r["status"]) for r in units
    ]


def test_not_null_columns_reports_each_null_column(incremental_run):
    """The grouped not-null test (one scan for all of a model's columns) fails on a null and
    names the column and the number of nulls."""
    work = incremental_run["work"]
    db = work / "nulls.duckdb"
    shutil.copy(incremental_run["full_db"], db)
    con = duckdb.connect(str(db))
    con.execute("update staging.base_survey__responses set loaded_at = null where response_id in "
                "(select response_id from staging.base_survey__responses order by response_id limit 3)")
    con.close()
    args = [
        str(DBT), "test", "--select", "base_survey__responses,test_name:not_null_columns",
        "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT), "--target", "duckdb",
        "--target-path", str(work / "target-nulls"), "--log-path", str(work / "logs"),
        "--vars", json.dumps({"as_of": AS_OF.strftime("%Y-%m-%dT%H:%M:%S")}),
    ]
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "CXLOOP_WAREHOUSE": str(db)}
    run = subprocess.run(args, env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0, run.stdout[-3000:]
    results = json.loads((work / "target-nulls" / "run_results.json").read_text())["results"]
    tests = [r for r in results if r["unique_id"].startswith("test.")]  # not the on-run-start hook
    assert [(r["status"], r["failures"]) for r in tests] == [("fail", 3)], results


# --------------------------------------------------------------------------------- dbt docs


def test_docs_generate_describes_every_mart_and_column(incremental_run):
    work = incremental_run["work"]
    env = {"CXLOOP_WAREHOUSE": str(incremental_run["full_db"])}
    dbt(["docs", "generate", "--no-compile"], target="duckdb", env=env, cwd=work)
    manifest = json.loads((work / "target" / "manifest.json").read_text())
    catalog = json.loads((work / "target" / "catalog.json").read_text())
    problems = []
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot", "seed")}
    for name, node in models.items():
        if len((node.get("description") or "").strip()) < 20:
            problems.append(f"{node['resource_type']} {name}: no description")
        if node["resource_type"] == "model" and "grain" not in node["description"].lower():
            problems.append(f"model {name}: the description does not state its grain")
    for mart in MARTS + ["contact_coverage_by_role"]:
        node = models[mart]
        assert node["config"]["contract"]["enforced"], f"{mart}: contract not enforced"
        cat = catalog["nodes"][node["unique_id"]]
        for column in cat["columns"]:
            doc = node["columns"].get(column) or node["columns"].get(column.lower())
            if not doc or len((doc.get("description") or "").strip()) < 5:
                problems.append(f"marts.{mart}.{column}: no description")
    exposures = {e["name"] for e in manifest["exposures"].values()}
    assert {"governance_report", "governance_export", "bi_marts_snapshot"} <= exposures
    assert not problems, "\n".join(problems)

# dbt build on Postgres, and its marts against the oracle and DuckDB, are checked by
# tests/integration/test_parity.py (the pipeline's own Postgres path: COPY load, then dbt build).
