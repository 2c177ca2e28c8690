"""One Airflow process per pipeline pass (cxloop_airflow.run_dags): the pass stops at the
first DAG that fails, says which in one line, and never starts the DAGs after it. The
successful pass is what every end-to-end test runs (tests/e2e/test_e2e.py)."""

from __future__ import annotations

from cxloop.airflow_home import airflow_env
from cxloop.cli import DAG_MARKER, run_dags
from cxloop.config import Settings
from cxloop_airflow.run_dags import MARKER


def test_the_core_reads_the_runner_markers_it_prints():
    assert DAG_MARKER == MARKER


def test_a_failing_dag_stops_the_pass_and_names_itself(tmp_path):
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    settings.ensure_dirs()
    rc = run_dags(settings, airflow_env(settings), "2026-10-01T00:00:00", dag_ids=("cx_no_such_dag", "cx_publish"))
    log = (settings.logs_dir / "airflow-dags-test.log").read_text()
    assert rc == 1
    assert f"{MARKER}cx_no_such_dag failed:" in log
    assert f"{MARKER}cx_publish" not in log, "a DAG after the failed one was started"
    assert (settings.var_dir / "airflow" / "airflow.db").exists(), "the metadata database was migrated first"


def test_the_demo_ui_binds_the_loopback_unless_told_otherwise(tmp_path):
    """Airflow's api-server binds [api] host, 0.0.0.0 by default: `cxloop airflow` sets it, and
    Airflow itself (its configuration, read in a process of its own) sees the value."""
    import subprocess
    import sys

    from cxloop.cli import airflow_ui_env, parse_args

    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    settings.ensure_dirs()
    args = parse_args(["airflow"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)
    probe = "from airflow.configuration import conf; print(conf.get('api', 'host'), conf.getint('api', 'port'))"
    for host, port in ((args.host, args.port), ("0.0.0.0", 8793)):
        env = airflow_ui_env(settings, port, host)
        seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        assert seen.stdout.splitlines()[-1].split() == [host, str(port)], seen.stderr[-2000:]
