"""One Airflow process for a whole pipeline pass: migrate, pool, then ``dags test`` per DAG.

``python -m cxloop_airflow.run_dags --conf JSON --pool NAME:SLOTS:DESCRIPTION DAG [DAG ...]``

Each ``airflow dags test`` process pays Airflow's start-up (about 4 s of imports and the DAG
bag) and, at its first task, the in-process execution API's start-up (about 7 s: Airflow
caches that server once per process). Running the metadata migration, the pool and every DAG
of a pass through Airflow's own command-line functions in one process pays both once, not
once per DAG. What runs is exactly ``airflow db migrate``, ``airflow pools set`` and ``airflow
dags test`` (same parser, same functions, same logs); only the process boundary changes.

``airflow dags test`` runs each task in this process and logs it to the console only, so the
UI's log view said "Log file not found": every task's log is also written (:func:`keep_task_logs`)
where the API server's log reader looks for it, ``[logging] base_log_folder`` / the run's log
filename template (``dag_id=<dag>/run_id=<run>/task_id=<task>/attempt=<n>.log``).

The process ends without the interpreter's teardown (:func:`exit_now`: seconds of freeing
Airflow's, dbt's and GX's modules). Stops at the first DAG whose run fails. Prints
``[cxloop] dag <id> starting`` before each DAG so a caller reading the output can show
progress. Exit status: 0 when every DAG succeeded, 1 when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

MARKER = "[cxloop] dag "


class _Tee:
    """The console, with every write also copied into the running task's log file (``copy``, set
    while a task runs). Installed once as sys.stdout and as the root logging handlers' stream: the
    loggers Airflow caches on first use keep the stream they were created with."""

    def __init__(self, console):
        self._console = console
        self.copy = None

    def write(self, text):
        if self.copy is not None:
            self.copy.write(text)
        return self._console.write(text)

    def flush(self):
        if self.copy is not None:
            self.copy.flush()
        self._console.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self._console, name)


def task_log_path(ti_id, try_number: int) -> Path:
    """Where the API server's log reader (Airflow's FileTaskHandler) looks for a task instance's
    log: ``[logging] base_log_folder`` / the run's log filename template, rendered by Airflow."""
    from airflow.configuration import conf
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.log.file_task_handler import FileTaskHandler
    from airflow.utils.session import create_session

    base = conf.get("logging", "base_log_folder")
    with create_session() as session:
        ti = session.get(TaskInstance, ti_id)
        relative = FileTaskHandler(base_log_folder=base)._render_filename(ti, try_number, session=session)
    return Path(base) / relative


def _install_tee() -> _Tee:
    if isinstance(sys.stdout, _Tee):
        return sys.stdout
    tee = _Tee(sys.stdout)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(tee)
    sys.stdout = tee
    return tee


@contextmanager
def _teed(tee: _Tee, path: Path):
    """The console's output copied into ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        tee.copy = fh
        try:
            yield
        finally:
            tee.copy = None


def keep_task_logs() -> None:
    """Make ``dags test`` write each task's log file (see the module doc): wraps the Task SDK's
    in-process runner, which ``dag.test`` looks up at each task."""
    import airflow.sdk.execution_time.supervisor as supervisor

    original = supervisor.run_task_in_process
    if getattr(original, "_cxloop_logs", False):
        return
    tee = _install_tee()

    def run_task_in_process(ti, task, client=None):
        try:
            path = task_log_path(ti.id, ti.try_number)
        except Exception as exc:  # noqa: BLE001 - a log file must never fail the task
            print(f"[cxloop] no log file for task {ti.task_id}: {type(exc).__name__}: {exc}", flush=True)
            return original(ti, task, client)
        with _teed(tee, path):
            return original(ti, task, client)

    run_task_in_process._cxloop_logs = True
    supervisor.run_task_in_process = run_task_in_process


def _run(parser, argv: list[str]) -> None:
    args = parser.parse_args(argv)
    args.func(args)


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog="python -m cxloop_airflow.run_dags")
    own.add_argument("--conf", default="{}", help="the DAG run conf (JSON), the same for every DAG")
    own.add_argument("--pool", action="append", default=[], help="NAME:SLOTS:DESCRIPTION, set before the runs")
    own.add_argument("--no-migrate", action="store_true", help="skip `airflow db migrate`")
    own.add_argument("dag_ids", nargs="+")
    ours = own.parse_args(argv)

    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    keep_task_logs()
    parser = cli_parser.get_parser()
    if not ours.no_migrate:
        _run(parser, ["db", "migrate"])
    for spec in ours.pool:
        name, slots, description = spec.split(":", 2)
        _run(parser, ["pools", "set", name, slots, description])
    for dag_id in ours.dag_ids:
        print(f"{MARKER}{dag_id} starting", flush=True)
        try:
            _run(parser, ["dags", "test", dag_id, "--conf", ours.conf])
        except SystemExit as exc:  # dag_test raises SystemExit("DagRun failed")
            if exc.code not in (None, 0):
                print(f"{MARKER}{dag_id} failed: {exc.code}", flush=True)
                return 1
        except Exception as exc:  # e.g. an unknown DAG id: one line, the pass stops here
            print(f"{MARKER}{dag_id} failed: {type(exc).__name__}: {exc}", flush=True)
            return 1
        print(f"{MARKER}{dag_id} succeeded", flush=True)
    return 0


def _checkpoint_warehouse() -> None:
    """Fold the DuckDB warehouse's write-ahead log into the file (what closing it does), through
    this process's own database instance: dbt-duckdb keeps its connection open to the end."""
    from cxloop.config import Settings

    settings = Settings.from_env()
    if settings.target != "duckdb" or not settings.warehouse_path.exists():
        return
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _finish_worker_processes(timeout: float = 60.0) -> None:
    """What the interpreter's exit does first with worker processes: every process pool's pending
    work finishes and its workers end (the OpenLineage listener emits each DAG run's events from
    a forked pool worker, which would otherwise outlive this process and hold its stdout open).
    RuntimeError when a child process is still running after ``timeout``."""
    import concurrent.futures.process as pools
    import multiprocessing

    pools._python_exit()  # the exit hook CPython registers for process pools (3.9+)
    for child in multiprocessing.active_children():
        child.join(timeout=timeout)
    if multiprocessing.active_children():
        raise RuntimeError("worker processes still running")


def exit_now(rc: int) -> None:
    """End the process without the interpreter's teardown. Tearing down a process that has
    imported Airflow, dbt and GX (every module's objects freed, one by one) took 4 to 7 s of the
    demo's wall time and does nothing a run needs. What the ordinary exit does that matters is
    done first: process pools finish their work (the OpenLineage events: the same lines land in
    var/lineage either way), the warehouse is checkpointed, the logs are flushed and closed.
    Airflow's metadata is committed as each task ends. If any of that fails the process exits
    the ordinary way."""
    try:
        _finish_worker_processes()
        _checkpoint_warehouse()
    except Exception as exc:  # noqa: BLE001 - the ordinary exit does all of it itself
        print(f"[cxloop] fast exit not possible ({type(exc).__name__}: {exc}); ordinary exit", flush=True)
        sys.exit(rc)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    exit_now(main())
