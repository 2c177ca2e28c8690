"""Every DAG imports cleanly, is documented and tagged, and parses fast."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_pipeline_dag_present(dagbag):
    assert "cx_pipeline" in dagbag.dag_ids


def test_every_dag_has_tags_doc_and_owner(dagbag):
    assert dagbag.dags, "no DAGs found"
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md.strip()) > 80, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", f"{dag_id}.{t.task_id} has no owner"


def test_pipeline_wiring(dagbag):
    dag = dagbag.dags["cx_pipeline"]
    ids = set(dag.task_ids)
    assert {"extract_crm", "extract_survey", "validate_and_load", "dbt_build", "export_marts"} <= ids
    assert dag.get_task("dbt_build").upstream_task_ids == {"validate_and_load", "resolve_as_of"}
    assert "dbt_build" in dag.get_task("export_marts").upstream_task_ids


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
