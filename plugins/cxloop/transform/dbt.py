"""Run the dbt project (in-process, through dbt's programmatic runner) and report per node."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cxloop.config import Settings
from cxloop.program import Program, load_program

log = logging.getLogger(__name__)


class DbtBuildFailed(RuntimeError):
    pass


@dataclass
class NodeResult:
    name: str
    resource_type: str
    status: str
    seconds: float
    message: str | None = None


@dataclass
class BuildResult:
    success: bool
    invocation_id: str | None
    elapsed_s: float
    nodes: list[NodeResult] = field(default_factory=list)

    def failures(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in {"error", "fail", "runtime error"}]

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "invocation_id": self.invocation_id,
            "elapsed_s": round(self.elapsed_s, 3),
            "counts": {s: sum(1 for n in self.nodes if n.status == s) for s in {n.status for n in self.nodes}},
            "failures": [f"{n.resource_type} {n.name}: {n.message}" for n in self.failures()],
        }


#: The one-row table that carries the run's as_of to dbt (macros/as_of.sql reads it).
RUN_CONTROL = "raw.cx_run_control"


def dbt_vars(as_of: datetime | None = None, extra: dict | None = None, program: Program | None = None) -> dict:
    """The vars of one dbt invocation: the program settings (config file ``program:`` section
    and CXLOOP_PROGRAM_* overrides, :mod:`cxloop.program`), then ``extra`` (a test's or a
    caller's explicit override) on top.

    The run's as_of is not among them: it goes to :data:`RUN_CONTROL` (:func:`write_run_control`).
    dbt re-parses the whole project whenever ``--vars`` change (about 6 s of a build); with the
    as_of kept out, the vars only change with the program settings, and each run reuses the
    previous run's partial parse. ``as_of`` is accepted, and ignored, for the callers' symmetry."""
    program = program or load_program()
    return {**program.dbt_vars(), **(extra or {})}


def write_run_control(settings: Settings, as_of: datetime) -> None:
    """Record the run's as_of in :data:`RUN_CONTROL` (one row, replaced each time), where the
    models read it. The warehouse is the pipeline's single writer's at this point: dbt is
    about to open it."""
    from cxloop.store import open_store

    store = open_store(settings)
    try:
        db = store.db
        db.execute("CREATE SCHEMA IF NOT EXISTS raw")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {RUN_CONTROL} (as_of TIMESTAMP NOT NULL, recorded_at TIMESTAMP NOT NULL)"
        )
        db.execute(f"DELETE FROM {RUN_CONTROL}")
        db.execute(
            f"INSERT INTO {RUN_CONTROL} VALUES (?, ?)",
            [as_of.replace(tzinfo=None), datetime.now(UTC).replace(tzinfo=None)],
        )
    finally:
        store.close()


def dbt_args(
    command: str, settings: Settings, as_of: datetime, *, target: str | None = None,
    select: list[str] | None = None, extra_vars: dict | None = None, unit_tests: bool = False,
    program: Program | None = None,
) -> list[str]:
    args = [
        *command.split(),  # "build", or a command with its subcommand: "docs generate"
        "--project-dir", str(settings.dbt_project_dir),
        "--profiles-dir", str(settings.dbt_project_dir),
        "--target", target or settings.dbt_target,
        "--target-path", str(target_dir(settings)),
        "--log-path", str(settings.logs_dir / "dbt"),
        "--vars", json.dumps(dbt_vars(as_of, extra_vars, program)),
    ]
    if select:
        args += ["--select", *select]
    if command == "build" and not unit_tests:
        # dbt's unit tests check the SQL logic on fixed inputs, not the data: they belong to
        # development and CI (make test runs them), not to every scheduled build (dbt Labs'
        # recommendation too); this keeps 12 nodes off each run's critical path
        args += ["--exclude-resource-type", "unit_test"]
    return args


def _release_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after an invocation, so
    the warehouse file's lock is free for other processes (the publish step's readers, the next
    task, a BI tool) as soon as dbt returns, not when this process exits. The next invocation
    opens it again. dbt-duckdb has no public call for this; without the class, nothing to do."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        env.close()


def run_dbt(
    command: str, settings: Settings, as_of: datetime, *, target: str | None = None,
    select: list[str] | None = None, extra_vars: dict | None = None, unit_tests: bool = False,
    program: Program | None = None,
) -> BuildResult:
    """Invoke dbt in this process. The warehouse path reaches the profile via CXLOOP_WAREHOUSE."""
    from dbt.cli.main import dbtRunner  # heavy imports: only inside the task
    from dbt_common.invocation import get_invocation_id

    os.environ["CXLOOP_WAREHOUSE"] = str(settings.warehouse_path)
    os.environ["CXLOOP_DBT_EXPORTS_DIR"] = str(settings.exports_dir.resolve())  # the report exposure's url
    if (target or settings.dbt_target) == "postgres":
        # profiles.yml reads the Postgres connection from CXLOOP_PG_*: export this run's
        # settings (and drop keys it does not set, so a stale value cannot leak in)
        for key in ("host", "port", "user", "password", "dbname"):
            if settings.pg.get(key):
                os.environ[f"CXLOOP_PG_{key.upper()}"] = settings.pg[key]
            else:
                os.environ.pop(f"CXLOOP_PG_{key.upper()}", None)
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    started = datetime.now()
    if command not in {"parse", "deps", "clean", "debug"}:
        write_run_control(settings, as_of)
    args = dbt_args(
        command, settings, as_of, target=target, select=select, extra_vars=extra_vars, unit_tests=unit_tests,
        program=program,
    )
    log.info("dbt %s", " ".join(args))
    try:
        res = dbtRunner().invoke(args)
    finally:
        _release_duckdb()
    elapsed = (datetime.now() - started).total_seconds()
    nodes: list[NodeResult] = []
    invocation_id = get_invocation_id()  # dbt's id of the invocation that just ran
    result = res.result
    if result is not None and hasattr(result, "results"):
        for r in result.results:
            node = r.node
            nodes.append(
                NodeResult(
                    name=node.name,
                    resource_type=str(node.resource_type),
                    status=str(r.status),
                    seconds=float(r.execution_time or 0.0),
                    message=r.message,
                )
            )
    build = BuildResult(success=bool(res.success), invocation_id=invocation_id, elapsed_s=elapsed, nodes=nodes)
    for n in nodes:
        log.info("dbt %-6s %-12s %-40s %6.2fs", n.status, n.resource_type, n.name, n.seconds)
    if not res.success:
        detail = "; ".join(build.to_dict()["failures"]) or repr(res.exception)
        raise DbtBuildFailed(f"dbt {command} failed: {detail} (full log: {settings.logs_dir / 'dbt'})")
    return build


def generate_docs(settings: Settings, as_of: datetime, program: Program | None = None) -> Path:
    """dbt's documentation site of this warehouse (``dbt docs generate``: models, columns, tests,
    exposures and lineage, with the warehouse's catalog), from any working directory: the
    profile reaches the warehouse through these settings, as in a build. Returns index.html."""
    run_dbt("docs generate", settings, as_of, program=program)
    return target_dir(settings) / "index.html"


def manifest_path(settings: Settings) -> Path:
    return target_dir(settings) / "manifest.json"


def target_dir(settings: Settings) -> Path:
    """dbt's target folder of this var dir (manifest, run results, the docs site)."""
    return settings.var_dir / "dbt" / "target"


RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS raw.dbt_results (
    invocation_id VARCHAR,
    as_of TIMESTAMP NOT NULL,
    node VARCHAR NOT NULL,
    resource_type VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    message VARCHAR,
    recorded_at TIMESTAMP NOT NULL
)"""


def record_results(settings: Settings, build: BuildResult, as_of: datetime) -> int:
    """Keep every node's result of a dbt invocation in ``raw.dbt_results`` (BI can chart the
    pipeline's own health next to the data's)."""
    from cxloop.store import open_store

    store = open_store(settings)
    try:
        db = store.db
        db.execute("CREATE SCHEMA IF NOT EXISTS raw")
        db.execute(RESULTS_DDL)
        db.execute("DELETE FROM raw.dbt_results WHERE invocation_id = ?", [build.invocation_id])
        now = datetime.now(UTC).replace(tzinfo=None)
        for n in build.nodes:
            db.execute(
                "INSERT INTO raw.dbt_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [build.invocation_id, as_of, n.name, n.resource_type, n.status, n.seconds, n.message, now],
            )
        return len(build.nodes)
    finally:
        store.close()
