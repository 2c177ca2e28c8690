"""Issue 16: the light tasks (resolve_as_of, read_watermarks) and the DAG files import no data stack.

Each check runs in a fresh interpreter (the test process has long imported everything): it imports
the DAG files (dags/*.py, as Airflow's DAG processor does), the glue ``cxloop_airflow`` and the
light tasks' modules, runs what ``resolve_as_of`` and ``read_watermarks`` do against a small real
DuckDB file, and then lists which heavy packages ended up in ``sys.modules``. Great Expectations,
dbt, pandas, pyarrow and plotly must not: a module-level import of one of them in these files, or
a light read through the store's data stack, fails here. ``-X importtime`` reports what the
imports cost (printed with ``-s``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("great_expectations", "dbt", "pandas", "pyarrow", "plotly")

# What a light task does in its own process; prints {"heavy": [...], "as_of": ..., "watermarks": ...}.
LIGHT_TASKS = r"""
import importlib.util, json, sys
from pathlib import Path

for path in sorted(Path(sys.argv[1]).glob("*.py")):  # the DAG files, as the DAG processor parses them
    spec = importlib.util.spec_from_file_location(f"_dag_{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
import cxloop.config, cxloop.pipeline, cxloop.source_config  # noqa: E401 - the light tasks' modules
from cxloop_airflow import INTERVAL, WAREHOUSE, resolve_as_of
from cxloop.config import Settings
from cxloop.store.state import read_watermarks_light

settings = Settings.from_env()
out = {
    "interval": resolve_as_of({}, fallback=INTERVAL, data_interval_end="2026-10-01T00:00:00+00:00"),
    "as_of": resolve_as_of({}, fallback=WAREHOUSE, settings=settings),
    "watermarks": {e: t.isoformat() for e, t in read_watermarks_light(settings, "salesforce").items()},
}
if len(sys.argv) > 3:  # the control: a module known to pull the data stack in
    importlib.import_module(sys.argv[3])
out["heavy"] = sorted(m for m in sys.argv[2].split(",") if m in sys.modules)
print("LIGHT " + json.dumps(out))
"""


@pytest.fixture
def small_warehouse(tmp_path) -> dict[str, str]:
    """A DuckDB warehouse holding only the state the light tasks read (watermarks, extraction
    windows), written by the store's own state functions."""
    import duckdb
    from cxloop.store.state import Db, advance_watermarks, ensure_state_tables, record_window

    var = tmp_path / "var"
    warehouse = var / "warehouse" / "cx.duckdb"
    warehouse.parent.mkdir(parents=True)
    con = duckdb.connect(str(warehouse))
    try:
        db = Db(con)
        ensure_state_tables(db)
        advance_watermarks(db, "salesforce", {"accounts": datetime(2026, 9, 30, 12, 5)}, "b1")
        advance_watermarks(db, "salesforce", {"accounts": datetime(2026, 9, 29)}, "b0")  # never moves back
        record_window(db, "salesforce", ["accounts"], datetime(2026, 10, 1), "b1")
        record_window(db, "qualtrics", ["responses"], datetime(2026, 9, 30), "b2")
    finally:
        con.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env.update(
        CXLOOP_HOME=str(ROOT),
        CXLOOP_VAR=str(var),
        CXLOOP_WAREHOUSE=str(warehouse),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags"), env.get("PYTHONPATH", "")]),
    )
    return env


def _run(env: dict[str, str], *extra: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", LIGHT_TASKS, str(ROOT / "dags"), ",".join(HEAVY), *extra],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LIGHT "))
    return json.loads(line[len("LIGHT "):]), proc.stderr


def _import_cost(importtime: str, top: int = 6) -> list[tuple[int, str]]:
    """The top-level imports by cumulative microseconds (``-X importtime`` lines of indent 0)."""
    rows = []
    for line in importtime.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((int(parts[1]), parts[2].strip()))
    return sorted(rows, reverse=True)[:top]


def test_dags_and_light_tasks_import_no_data_stack(small_warehouse):
    out, importtime = _run(small_warehouse)
    assert out["heavy"] == [], f"the DAG files or a light task imported {out['heavy']}"
    # the light reads read the real state: the earliest window end, the greatest watermark
    assert out["interval"] == "2026-10-01T00:00:00"
    assert out["as_of"] == "2026-09-30T00:00:00"
    assert out["watermarks"] == {"accounts": "2026-09-30T12:05:00"}
    cost = _import_cost(importtime)
    print("top-level imports of the light tasks (cumulative us):", cost)  # noqa: T201
    assert cost and all(name.split(".")[0] not in HEAVY for _, name in cost)


def test_the_check_sees_a_data_stack_import(small_warehouse):
    """The control: the same run, then the DuckDB store's module (pandas, pyarrow at its top) is
    imported; the check must name them, or it could never fail."""
    out, _ = _run(small_warehouse, "cxloop.store.duckdb_store")
    assert {"pandas", "pyarrow"} <= set(out["heavy"])
