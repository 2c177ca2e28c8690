"""Backfill: running the ingestion DAGs over a range of past intervals, then the transform once,
produces the same warehouse as one full run at the final as_of (issue 7).

The backfill goes through Airflow (`airflow dags test`); the reference full run calls the same
pipeline functions the DAG tasks call (cxloop.pipeline: extract, validate_and_load per domain,
then build) in one child process, started alongside the backfill to keep the test short on a
small machine. Both read the same demo sources, each in a private CXLOOP_VAR (its own DuckDB
warehouse, landing zone and logs).

The backfill runs each ingestion DAG by *logical date*, with no as_of: `cx_ingest_*` is
@daily, whose timetable (CronTriggerTimetable) gives a manual run with logical date D the data
interval [D, D], so the run's as_of is its data interval end D. The test checks that every
backfill run recorded exactly that window end. The transform then runs once without as_of,
as an asset-triggered run would: it takes the warehouse's data window end.

Compared afterwards: every raw table (the contract's columns; the lineage columns _batch_id,
_source and _extracted_at name the batch and differ by construction) and every table of the
`marts` schema, rows sorted, floats within 1e-9. Excluded, by construction:
`marts.data_quality`, one row per (batch, expectation), i.e. the audit log of the batches
themselves (three batches per entity in the backfill, one in the full run).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from cxloop.airflow_home import airflow_bin, airflow_env
from cxloop.cli import demo_source_env, prepare_airflow
from cxloop.config import Settings
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("CXLOOP_SLOW_TESTS") != "1",
        reason="about 4 minutes, over the CI budget of make test: make test-slow runs it",
    ),
]

AS_OF = datetime(2026, 10, 1)
SEED = 11
SCALE = 0.2
# Past intervals spread over the demo period (it starts 2025-01-01); the last is the full run's.
BACKFILL_DATES = (datetime(2025, 6, 1), datetime(2026, 2, 1), AS_OF)
INGEST_DAGS = ("cx_ingest_crm", "cx_ingest_survey")
# Batch audit rows, not data: one row per batch and expectation (see the module docstring).
BATCH_SCOPED_MARTS = {"data_quality"}


def _dags_test(env: dict[str, str], log: Path, dag_id: str, *extra: str) -> None:
    cmd = [str(airflow_bin()), "dags", "test", dag_id, *extra]
    with open(log, "a") as fh:
        fh.write(f"\n=== {' '.join(cmd[1:])}\n")
        fh.flush()
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    assert rc == 0, f"{' '.join(cmd[1:])} failed (exit {rc}):\n" + log.read_text()[-6000:]


def _window_ends(settings: Settings) -> set[datetime]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {r[0] for r in con.execute("select distinct as_of from raw.extraction_windows").fetchall()}
    finally:
        con.close()


def _full_run(env: dict[str, str], log: Path) -> subprocess.Popen:
    """One full run at AS_OF in a child process (dbt-duckdb keeps the warehouse open in the
    process that ran dbt): crm then survey, as the asset chain runs them, then dbt build."""
    code = (
        "import sys; from datetime import datetime; "
        "sys.path.insert(0, sys.argv[1]); from test_backfill import reference_run; "
        "reference_run(datetime.fromisoformat(sys.argv[2]))"
    )
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(Path(__file__).resolve().parents[1]), AS_OF.isoformat()],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def reference_run(as_of: datetime) -> None:
    from cxloop.config import source_from_env
    from cxloop.pipeline import build, extract, validate_and_load
    from cxloop.source_config import DOMAINS, load_source_config

    settings = Settings.from_env()
    config = load_source_config()
    for domain in INGEST_DAGS:
        domain = domain.removeprefix("cx_ingest_")
        source = source_from_env(config.source_for(domain))
        batch = extract(source, settings, as_of, entities=DOMAINS[domain], config=config)
        validate_and_load([batch], settings, as_of)
    print(build(settings, as_of))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    started = time.perf_counter()
    root = tmp_path_factory.mktemp("backfill")
    generate(root / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    token = secrets.token_urlsafe(16)
    backfill = Settings.from_env({"CXLOOP_VAR": str(root / "var-backfill")})
    full = Settings.from_env({"CXLOOP_VAR": str(root / "var-full")})
    with DemoServer(root / "demo" / "source", token=token) as base_url:
        envs = {}
        for name, settings in (("backfill", backfill), ("full", full)):
            settings.ensure_dirs()
            env = airflow_env(settings)
            env["CXLOOP_PII_KEY"] = os.environ["CXLOOP_PII_KEY"]
            env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
            env.update(demo_source_env(settings, base_url, token, "salesforce", "qualtrics"))
            envs[name] = env
        full_log = full.logs_dir / "full-run.log"
        reference = _full_run(envs["full"], full_log)
        try:
            prepare_airflow(envs["backfill"], backfill.logs_dir)
            log = backfill.logs_dir / "backfill-dags-test.log"
            for logical_date in BACKFILL_DATES:
                for dag_id in INGEST_DAGS:
                    _dags_test(envs["backfill"], log, dag_id, logical_date.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
                # @daily, manual run at logical date D: data interval end (the run's as_of) is D
                assert _window_ends(backfill) == {logical_date}, f"backfill run {logical_date}: see {log}"
            _dags_test(envs["backfill"], log, "cx_transform")  # as an asset-triggered run: no as_of
            assert reference.wait(timeout=900) == 0, "the full run failed:\n" + full_log.read_text()[-6000:]
        finally:
            if reference.poll() is None:
                reference.kill()
                reference.wait()
    print(f"backfill through Airflow and the full run: {time.perf_counter() - started:.0f}s")
    cons = {
        "backfill": duckdb.connect(str(backfill.warehouse_path), read_only=True),
        "full": duckdb.connect(str(full.warehouse_path), read_only=True),
    }
    yield cons
    for con in cons.values():
        con.close()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order: non-float columns first (as text), then floats rounded."""
    floats = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    others = [c for c in frame.columns if c not in floats]
    key = pd.DataFrame(
        {
            **{c: frame[c].astype(object).where(frame[c].notna(), None).map(repr) for c in others},
            **{c: frame[c].round(6).fillna(np.inf) for c in floats},
        }
    )
    order = key.sort_values(list(key.columns), kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _assert_same(name: str, backfilled: pd.DataFrame, full: pd.DataFrame) -> None:
    assert list(backfilled.columns) == list(full.columns), f"{name}: columns differ"
    assert len(backfilled) == len(full), f"{name}: {len(backfilled)} rows after the backfill, {len(full)} after one run"
    a, b = _sorted(backfilled), _sorted(full)
    problems = []
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            xv, yv = x.astype(float).to_numpy(), y.astype(float).to_numpy()
            bad = ~((np.isnan(xv) & np.isnan(yv)) | (np.abs(xv - yv) <= 1e-9))
        else:
            xs, ys = x.astype(object).where(x.notna(), None), y.astype(object).where(y.notna(), None)
            bad = np.array([p != q for p, q in zip(xs, ys, strict=True)], dtype=bool)
        if bad.any():
            sample = pd.DataFrame({"backfill": x[bad].head(5).to_numpy(), "full run": y[bad].head(5).to_numpy()})
            problems.append(f"{col}: {int(bad.sum())} rows differ\n{sample.to_string()}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def _tables(con, schema: str) -> set[str]:
    return {
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ? and table_type = 'BASE TABLE'",
            [schema],
        ).fetchall()
    }


@pytest.mark.parametrize("entity_name", ENTITY_ORDER)
def test_raw_table_equals_one_full_run(runs, entity_name):
    columns = ", ".join(f'"{c.name}"' for c in ENTITIES[entity_name].columns)
    sql = f"select {columns} from raw.{entity_name}"
    backfilled, full = (runs[k].execute(sql).df() for k in ("backfill", "full"))
    assert len(full) > 0, f"raw.{entity_name} is empty"
    _assert_same(f"raw.{entity_name}", backfilled, full)


def test_every_mart_equals_one_full_run(runs):
    marts = _tables(runs["full"], "marts")
    assert marts == _tables(runs["backfill"], "marts")
    assert {"account_nps", "portfolio_nps", "contact_coverage", "response_rate", "follow_up_sla"} <= marts
    for mart in sorted(marts - BATCH_SCOPED_MARTS):
        sql = f"select * from marts.{mart}"
        backfilled, full = (runs[k].execute(sql).df() for k in ("backfill", "full"))
        _assert_same(f"marts.{mart}", backfilled, full)


def test_backfill_loaded_in_several_batches(runs):
    """The backfill really is incremental: every entity arrived in one batch per interval
    (or more: a release pass records a batch of its own), the full run in fewer."""
    sql = "select entity, count(distinct batch_id) from raw.batches group by entity"
    backfilled = dict(runs["backfill"].execute(sql).fetchall())
    full = dict(runs["full"].execute(sql).fetchall())
    assert set(backfilled) == set(full) == set(ENTITY_ORDER)
    for entity_name in ENTITY_ORDER:
        assert backfilled[entity_name] >= len(BACKFILL_DATES), entity_name
        assert backfilled[entity_name] > full[entity_name], entity_name
