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
        db.execute(FRESHNESS_DDL)  # read by marts.data_quality, even before any freshness run
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


def _invoke(
    command: str, settings: Settings, as_of: datetime, *, target: str | None = None,
    select: list[str] | None = None, extra_vars: dict | None = None, unit_tests: bool = False,
    program: Program | None = None, extra_args: list[str] | None = None,
):
    """One dbt invocation in this process: (dbt's result, seconds, invocation id)."""
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
    ) + list(extra_args or [])
    log.info("dbt %s", " ".join(args))
    try:
        res = dbtRunner().invoke(args)
    finally:
        _release_duckdb()
    return res, (datetime.now() - started).total_seconds(), get_invocation_id()


def run_dbt(
    command: str, settings: Settings, as_of: datetime, *, target: str | None = None,
    select: list[str] | None = None, extra_vars: dict | None = None, unit_tests: bool = False,
    program: Program | None = None,
) -> BuildResult:
    """Invoke dbt in this process. The warehouse path reaches the profile via CXLOOP_WAREHOUSE."""
    res, elapsed, invocation_id = _invoke(
        command, settings, as_of, target=target, select=select, extra_vars=extra_vars, unit_tests=unit_tests,
        program=program,
    )
    nodes: list[NodeResult] = []
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


# -- source freshness ---------------------------------------------------------------------------

#: Where each run's `dbt source freshness` results are kept (one row per source table and as_of;
#: a rerun of the same as_of replaces its rows). marts.data_quality reads the run's as_of's rows.
FRESHNESS_TABLE = "raw.source_freshness"
FRESHNESS_DDL = f"""
CREATE TABLE IF NOT EXISTS {FRESHNESS_TABLE} (
    as_of TIMESTAMP NOT NULL,
    source_name VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    source_system VARCHAR,
    batch_id VARCHAR,
    status VARCHAR NOT NULL,
    loaded_up_to TIMESTAMP,
    reference_at TIMESTAMP,
    age_hours DOUBLE PRECISION,
    warn_after_hours INTEGER,
    error_after_hours INTEGER,
    invocation_id VARCHAR,
    recorded_at TIMESTAMP NOT NULL
)"""
_PERIOD_HOURS = {"minute": 1 / 60, "hour": 1, "day": 24}


@dataclass
class SourceFreshness:
    """One source table's freshness as dbt judged it (macros/freshness.sql: as_of-relative)."""

    source: str  # the dbt source (crm, survey)
    table: str  # the entity
    status: str  # pass | warn | error | runtime error
    loaded_up_to: datetime | None  # the end of the newest data window the table was loaded up to
    reference_at: datetime | None  # what that window is compared with: max(as_of, newest window of any entity)
    age_hours: float | None
    warn_after_hours: int | None
    error_after_hours: int | None

    @property
    def name(self) -> str:
        return f"{self.source}.{self.table}"


@dataclass
class FreshnessReport:
    invocation_id: str | None
    as_of: datetime
    tables: list[SourceFreshness] = field(default_factory=list)

    def errors(self) -> list[SourceFreshness]:
        return [t for t in self.tables if t.status not in {"pass", "warn"}]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for t in self.tables if t.status == s) for s in sorted({t.status for t in self.tables})}

    def to_dict(self) -> dict:
        return {
            "invocation_id": self.invocation_id,
            "counts": self.counts(),
            "not_fresh": [f"{t.name}: {t.status}, {_hours(t.age_hours)} behind" for t in self.tables
                          if t.status != "pass"],
        }


def _hours(value: float | None) -> str:
    return "never loaded" if value is None else f"{value:.1f} h"


def _naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _threshold_hours(rule) -> int | None:
    if rule is None or rule.count is None or rule.period is None:
        return None
    return round(rule.count * _PERIOD_HOURS[str(getattr(rule.period, "value", rule.period))])


def run_freshness(
    settings: Settings, as_of: datetime, *, target: str | None = None, program: Program | None = None,
) -> FreshnessReport:
    """``dbt source freshness`` of the landed sources, judged against the run's as_of (never the
    wall clock: macros/freshness.sql), with the thresholds of the program settings
    ``freshness_warn_hours`` / ``freshness_error_hours``. A stale source is a result, not a
    failure: the caller records it (:func:`record_freshness`) and alerts; only an invocation that
    produced no results at all raises :class:`DbtBuildFailed`."""
    res, elapsed, invocation_id = _invoke(
        "source freshness", settings, as_of, target=target, program=program,
    )  # dbt also writes target/sources.json
    result = res.result
    if result is None or not hasattr(result, "results"):
        raise DbtBuildFailed(
            f"dbt source freshness failed: {res.exception!r} (full log: {settings.logs_dir / 'dbt'})"
        )
    report = FreshnessReport(invocation_id=invocation_id, as_of=as_of)
    for r in result.results:
        node = r.node
        if str(getattr(node, "resource_type", "")) != "source":
            continue  # the project's on-run-start hook
        criteria = getattr(node, "freshness", None)
        max_loaded = _naive(getattr(r, "max_loaded_at", None))
        if max_loaded is not None and max_loaded.year <= 1:  # dbt's "never loaded" (no window)
            max_loaded = None
        age = getattr(r, "age", None)
        report.tables.append(
            SourceFreshness(
                source=node.source_name,
                table=node.name,
                status=str(getattr(r.status, "value", r.status)),
                loaded_up_to=max_loaded,
                reference_at=_naive(getattr(r, "snapshotted_at", None)),
                age_hours=None if age is None or max_loaded is None else round(float(age) / 3600.0, 6),
                warn_after_hours=_threshold_hours(getattr(criteria, "warn_after", None)),
                error_after_hours=_threshold_hours(getattr(criteria, "error_after", None)),
            )
        )
    report.tables.sort(key=lambda t: (t.source, t.table))
    for t in report.tables:
        log.info("freshness %-6s %-24s %s", t.status, t.name, _hours(t.age_hours))
    log.info("dbt source freshness: %s in %.1f s", report.counts(), elapsed)
    return report


def record_freshness(settings: Settings, report: FreshnessReport) -> int:
    """Keep a freshness report in :data:`FRESHNESS_TABLE` (its as_of's rows replaced), each table
    with the source system and the batch that loaded its newest window (raw.extraction_windows)."""
    from cxloop.store import open_store

    store = open_store(settings)
    try:
        db = store.db
        db.execute("CREATE SCHEMA IF NOT EXISTS raw")
        db.execute(FRESHNESS_DDL)
        db.execute(f"DELETE FROM {FRESHNESS_TABLE} WHERE as_of = ?", [report.as_of])
        now = datetime.now(UTC).replace(tzinfo=None)
        windows = {}
        windows_exist = "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = ?"
        if db.execute(windows_exist, ["extraction_windows"])[0][0]:
            # the newest window per entity; on a tie (two systems up to the same end) the first by name
            for system, entity, batch_id in db.execute(
                "SELECT source, entity, batch_id FROM raw.extraction_windows ORDER BY entity, as_of DESC, source"
            ):
                windows.setdefault(entity, (system, batch_id))
        for t in report.tables:
            system, batch_id = windows.get(t.table, (None, None)) if t.loaded_up_to is not None else (None, None)
            db.execute(
                f"INSERT INTO {FRESHNESS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [report.as_of, t.source, t.table, system, batch_id, t.status, t.loaded_up_to, t.reference_at,
                 t.age_hours, t.warn_after_hours, t.error_after_hours, report.invocation_id, now],
            )
        return len(report.tables)
    finally:
        store.close()


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
