"""One Airflow process for a whole pipeline pass: migrate, pool, then ``dags test`` per DAG.

``python -m cxloop_airflow.run_dags --conf JSON --pool NAME:SLOTS:DESCRIPTION DAG [DAG ...]``

Each ``airflow dags test`` process pays Airflow's start-up (about 4 s of imports and the DAG
bag) and, at its first task, the in-process execution API's start-up (about 7 s: Airflow
caches that server once per process). Running the metadata migration, the pool and every DAG
of a pass through Airflow's own command-line functions in one process pays both once, not
once per DAG. What runs is exactly ``airflow db migrate``, ``airflow pools set`` and ``airflow
dags test`` (same parser, same functions, same logs); only the process boundary changes.

Stops at the first DAG whose run fails. Prints ``[cxloop] dag <id> starting`` before each DAG
so a caller reading the output can show progress. Exit status: 0 when every DAG succeeded, 1
when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

MARKER = "[cxloop] dag "


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


if __name__ == "__main__":
    sys.exit(main())
