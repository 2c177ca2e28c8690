"""scripts/celery_run.py (`make celery`): the distributed deployment on this machine.

The checks of the proof run here on made-up data, always. The real run (Airflow with the
CeleryExecutor, two workers, the local Postgres and Redis; marked e2e) took 3.6 to 4.3 minutes
on the two-core development machine, depending on its load: more than the suite's budget for one
test, so it runs only when asked for (`make celery` runs the same thing on its own):

    CXLOOP_CELERY_TEST=1 make test
    CXLOOP_CELERY_TEST=1 .venv/bin/python -m pytest tests/e2e/test_celery_run.py -m e2e -s
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import celery_run  # noqa: E402

W1, W2 = "cxloop-worker-1", "cxloop-worker-2"
RUNS = [
    ("cx_ingest_crm", "manual__1", "success", "manual", 25.0),
    ("cx_ingest_survey", "manual__2", "success", "manual", 40.0),
    ("cx_transform", "asset__1", "success", "asset_triggered", 50.0),
    ("cx_publish", "asset__2", "success", "asset_triggered", 20.0),
]
REQUIRED = {"cx_ingest_crm", "cx_ingest_survey", "cx_publish"}


def ti(dag_id, run_id, task_id, host, celery_id, state="success", duration=3.0):
    return (dag_id, run_id, task_id, -1, state, host, duration, 1, "warehouse_writer", celery_id)


TIS = [
    ti("cx_ingest_crm", "manual__1", "extract", W1, "a" * 8),
    ti("cx_ingest_survey", "manual__2", "extract", W2, "b" * 8),
    ti("cx_transform", "asset__1", "dbt_build", W1, "c" * 8),
    ti("cx_publish", "asset__2", "summarise", W2, "d" * 8),
]
CELERY = {"a" * 8: W1, "b" * 8: W2, "c" * 8: W1, "d" * 8: W2}
MARTS = {"account_nps": 981, "portfolio_nps": 680}


def check(runs=RUNS, tis=TIS, celery=CELERY, marts=MARTS):
    return celery_run.check(runs, tis, [W1, W2], celery, marts, REQUIRED)


def test_a_run_spread_over_both_workers_passes():
    lines, problems = check()
    assert problems == []
    text = "\n".join(lines)
    assert f"{W1}: 2 tasks" in text and f"{W2}: 2 tasks" in text
    assert "confirm the worker of 4 of 4 task instances (all agree)" in text


def test_all_tasks_on_one_worker_fails():
    tis = [t[:5] + (W1,) + t[6:] for t in TIS]
    _, problems = check(tis=tis, celery=dict.fromkeys(CELERY, W1))
    assert any(f"no task ran on {W2}" in p for p in problems)


def test_a_failed_or_missing_run_fails():
    runs = RUNS[:-1] + [("cx_publish", "asset__2", "failed", "asset_triggered", 5.0)]
    assert any("not successful" in p for p in check(runs=runs)[1])
    assert any("no run of cx_publish" in p for p in check(runs=RUNS[:-1])[1])


def test_hostname_must_agree_with_the_celery_worker_log():
    celery = dict(CELERY, **{"a" * 8: W2})
    assert any("disagrees with the Celery worker logs" in p for p in check(celery=celery)[1])


def test_tasks_on_a_foreign_host_and_an_empty_warehouse_fail():
    tis = TIS + [ti("cx_publish", "asset__2", "export", "somewhere-else", "e" * 8)]
    problems = check(tis=tis, marts={"account_nps": 0})[1]
    assert any("not this run's workers" in p for p in problems)
    assert any("no rows in schema marts" in p for p in problems)


def test_run_labels_number_repeated_runs():
    runs = RUNS + [("cx_transform", "asset__3", "success", "asset_triggered", 1.0)]
    labels = celery_run.run_labels(runs)
    assert labels[("cx_ingest_crm", "manual__1")] == "cx_ingest_crm"
    assert labels[("cx_transform", "asset__1")] == "cx_transform#1"
    assert labels[("cx_transform", "asset__3")] == "cx_transform#2"


def test_celery_task_ids_are_read_from_each_workers_log(tmp_path):
    tid = "0f3f93d5-b677-4ebc-a736-1c4372155514"
    (tmp_path / "worker-1.log").write_text(f"[info] Task execute_workload[{tid}] received [celery.worker.strategy]\n")
    (tmp_path / "worker-2.log").write_text("nothing\n")
    assert celery_run.celery_task_workers(tmp_path, [W1, W2]) == {tid: W1}


def test_worker_hostname_is_the_workers_own_name(monkeypatch):
    monkeypatch.setenv(celery_run.WORKER_NAME_ENV, W2)
    assert celery_run.worker_hostname() == W2
    monkeypatch.delenv(celery_run.WORKER_NAME_ENV)
    assert celery_run.worker_hostname() == socket.getfqdn()


def test_defaults_trigger_the_ingestion_dags_and_wait_for_publish():
    args = celery_run.parse_args([])
    assert args.trigger_ids == ["cx_ingest_crm", "cx_ingest_survey"]
    assert args.wait_for == "cx_publish"
    assert (args.pool_name, args.pool_slots) == ("warehouse_writer", 1)
    with pytest.raises(SystemExit):
        celery_run.parse_args(["--workers", "1"])


def test_the_default_dag_ids_exist_in_the_dags_folder():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    args = celery_run.parse_args([])
    assert set(args.trigger_ids) | {args.wait_for} <= set(bag.dag_ids), bag.import_errors


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.skipif(
    "1" not in (os.environ.get("CXLOOP_CELERY_TEST"), os.environ.get("CXLOOP_SLOW_TESTS")),
    reason="about 3-4 minutes, over the CI budget: make test-slow (or CXLOOP_CELERY_TEST=1, or make celery) runs it",
)
def test_the_pipeline_runs_distributed_over_two_celery_workers(tmp_path):
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
        if not _reachable("127.0.0.1", port):
            pytest.fail(f"{name} is not listening on 127.0.0.1:{port}")
    missing = celery_run.preflight()
    assert missing is None, missing
    log_path = tmp_path / "celery_run.log"
    started = time.monotonic()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "celery_run.py"), "--timeout", "900"],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=1500)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the script stops its Airflow processes itself
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            rc = None
    output = log_path.read_text()
    print(output[-4000:])
    print(f"celery_run took {time.monotonic() - started:.0f}s")
    assert rc == 0, output[-6000:]
    assert "OK: every DAG run succeeded and tasks ran on both workers" in output
    assert f"  {W1}: " in output and f"  {W2}: " in output
    assert "all processes stopped" in output
