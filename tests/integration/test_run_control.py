"""The run's as_of reaches dbt through raw.cx_run_control, not --vars, so dbt keeps its partial
parse from one run to the next (macros/as_of.sql, cxloop.transform.dbt.write_run_control).

On a private copy of the session's demo warehouse: two runs with different as_of values, the
second re-uses the first one's parse and still reports on its own as_of; a run with neither
the var nor the run-control row fails with one line that says what to do."""

from __future__ import annotations

import json
import os
from datetime import datetime

import pytest
from _serve_support import copy_warehouse

SELECT = ["int_periods"]


@pytest.fixture
def private(demo_warehouse, tmp_path):
    return copy_warehouse(demo_warehouse.settings, tmp_path / "var")


@pytest.fixture(autouse=True)
def _keep_environment():
    before = os.environ.get("CXLOOP_WAREHOUSE")
    yield
    if before is None:
        os.environ.pop("CXLOOP_WAREHOUSE", None)
    else:
        os.environ["CXLOOP_WAREHOUSE"] = before


def query(settings, statement: str) -> list[tuple]:
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path))  # dbt, in this process, may still hold it
    try:
        return con.execute(statement).fetchall()
    finally:
        con.close()


def _log_text(settings) -> str:
    path = settings.logs_dir / "dbt" / "dbt.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def test_a_new_as_of_reuses_the_parse_and_reaches_the_models(private):
    from cxloop.transform.dbt import dbt_args, run_dbt

    first, second = datetime(2026, 9, 15), datetime(2026, 10, 1)
    args = dbt_args("run", private, first)
    assert "as_of" not in json.loads(args[args.index("--vars") + 1])  # nothing of the window in --vars
    run_dbt("run", private, first, select=SELECT)
    assert query(private, "select max(period_close_at) from intermediate.int_periods")[0][0] == first
    before = len(_log_text(private))
    run_dbt("run", private, second, select=SELECT)
    second_log = _log_text(private)[before:]
    assert "Starting full parse" not in second_log and "Unable to do partial parsing" not in second_log
    assert query(private, "select max(period_close_at) from intermediate.int_periods")[0][0] == second
    assert query(private, "select as_of from raw.cx_run_control") == [(second,)]


def test_without_a_var_or_a_run_control_row_the_run_fails_with_one_clear_line(private):
    from cxloop.transform.dbt import run_dbt

    run_dbt("run", private, datetime(2026, 10, 1), select=SELECT)
    import duckdb

    con = duckdb.connect(str(private.warehouse_path))
    try:
        con.execute("delete from raw.cx_run_control")
    finally:
        con.close()
    from cxloop.transform.dbt import dbt_args
    from dbt.cli.main import dbtRunner

    os.environ["CXLOOP_WAREHOUSE"] = str(private.warehouse_path)
    res = dbtRunner().invoke(dbt_args("run", private, datetime(2026, 10, 1), select=SELECT))
    assert not res.success
    message = str(res.exception)
    assert "no as_of for this run: raw.cx_run_control holds 0 rows" in message, message
    assert "--vars '{as_of:" in message
    # an explicit var wins and needs no run-control row (manual runs and dbt's unit tests); the
    # staging views upstream are rebuilt too, they would read the (empty) run-control table
    explicit = dbt_args(
        "run", private, datetime(2026, 10, 1), select=["+int_periods"], extra_vars={"as_of": "2026-09-01T00:00:00"}
    )
    assert dbtRunner().invoke(explicit).success
    assert query(private, "select max(period_close_at) from intermediate.int_periods")[0][0] == datetime(2026, 9, 1)
    # and a malformed one is refused by name
    bad = dbt_args("run", private, datetime(2026, 10, 1), select=SELECT, extra_vars={"as_of": "yesterday"})
    res = dbtRunner().invoke(bad)
    assert not res.success and "var `as_of` = 'yesterday' is not an ISO-8601 timestamp" in str(res.exception)
