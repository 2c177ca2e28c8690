"""Every DAG imports cleanly, is documented and tagged, and parses fast."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_pipeline_dags_present(dagbag):
    assert {"cx_ingest_crm", "cx_ingest_survey", "cx_transform", "cx_publish"} <= set(dagbag.dag_ids)


def test_every_dag_has_tags_doc_and_owner(dagbag):
    assert dagbag.dags, "no DAGs found"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md.strip()) > 80, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"
            assert t.on_failure_callback, f"{dag_id}.{t.task_id} has no failure callback"


def test_ingestion_wiring_and_assets(dagbag):
    for domain in ("crm", "survey"):
        dag = dagbag.dags[f"cx_ingest_{domain}"]
        load = dag.get_task("validate_and_load")
        assert "extract" in load.upstream_task_ids
        assert [a.name for a in load.outlets] == [f"cxloop_raw_{domain}"]
        assert load.pool == "warehouse_writer"
        assert dag.get_task("read_watermarks").pool == "warehouse_writer"
        assert dag.get_task("extract").pool != "warehouse_writer", "HTTP extraction must not hold the writer slot"


def test_transform_and_publish_are_asset_scheduled(dagbag):
    transform = dagbag.dags["cx_transform"]
    publish = dagbag.dags["cx_publish"]
    assert {a.name for a in transform.timetable.asset_condition.objects} == {"cxloop_raw_crm", "cxloop_raw_survey"}
    build = transform.get_task("dbt_build")
    assert [a.name for a in build.outlets] == ["cxloop_marts"]
    assert {a.name for a in publish.timetable.asset_condition.objects} == {"cxloop_marts"}
    assert {"publish_snapshot", "export_marts", "governance_report", "summarise"} <= set(publish.task_ids)
    for dag in (transform, publish):
        for t in dag.tasks:
            assert t.pool == "warehouse_writer", f"{dag.dag_id}.{t.task_id} touches the warehouse outside the pool"


@pytest.mark.parametrize("dag_file", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_dag_file_has_no_heavy_top_level_imports(dag_file):
    """Importing a DAG file must not pull in dbt, GX, pandas or duckdb (parse-time cost)."""
    code = (
        "import sys, runpy, time; t = time.perf_counter(); "
        f"runpy.run_path({str(dag_file)!r}); "
        "heavy = [m for m in ('dbt', 'great_expectations', 'pandas', 'duckdb') if m in sys.modules]; "
        "print(heavy); print(time.perf_counter() - t)"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy_line = out.stdout.strip().splitlines()[-2]
    assert heavy_line == "[]", f"{dag_file.name} imports {heavy_line} at top level"
    assert time.perf_counter() - started < 60
