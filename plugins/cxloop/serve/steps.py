"""The serving steps the pipeline (and so the DAGs) run after a build: publish the BI
snapshot, export the governance marts, write the governance pack pages and the report, write and read the run summary.

Everything written or logged here that names a connection goes through
:func:`cxloop.config.redact` (no DSN password or URL credential leaves the process).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from cxloop.config import Settings, redact

log = logging.getLogger(__name__)


def source_watermarks(settings: Settings) -> dict[str, dict[str, str]]:
    """Every source's watermarks (raw.watermarks) as ISO strings, for the export manifest."""
    from cxloop.serve.reader import WarehouseReader

    with WarehouseReader(settings) as reader:
        exists = reader.df(
            "select count(*) as n from information_schema.tables where table_schema = 'raw' "
            "and table_name = 'watermarks'"
        )
        if not int(exists["n"].iloc[0]):
            return {}
        rows = reader.df("select source, entity, max(watermark) as w from raw.watermarks group by source, entity")
    out: dict[str, dict[str, str]] = {}
    for r in rows.sort_values(["source", "entity"]).itertuples():
        out.setdefault(r.source, {})[r.entity] = r.w.isoformat()
    return out


def publish(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str | None:
    """The read-only BI snapshot (DuckDB only; on Postgres the BI role reads the marts)."""
    from cxloop.serve.publish import publish_snapshot

    path = publish_snapshot(settings, as_of, run_id, dbt_invocation_id)
    return str(path) if path else None


def export(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    """The governance pack of every mart (see cxloop.serve.exports)."""
    from cxloop.serve.exports import export_marts

    folder = export_marts(
        settings,
        settings.exports_dir,
        as_of=as_of,
        run_id=run_id,
        dbt_invocation_id=dbt_invocation_id,
        watermarks=source_watermarks(settings),
    )
    return str(folder)


def report(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    """The offline HTML governance report (see cxloop.serve.report)."""
    from cxloop.serve.report import build_report

    return str(build_report(settings, as_of, run_id, dbt_invocation_id=dbt_invocation_id))


def pack(
    settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None, export_dir: str | Path
) -> str:
    """The governance pack (offline HTML pages) in the run's export folder, listed in its
    manifest (see cxloop.serve.pack)."""
    from cxloop.serve.pack import build_pack

    return str(build_pack(settings, as_of, run_id, Path(export_dir), dbt_invocation_id=dbt_invocation_id))


def summarise(
    settings: Settings,
    as_of: datetime,
    batch_ids: list[str],
    export_dir: str | None,
    extra: dict[str, str] | None = None,
) -> dict:
    """The run summary, printed by `make run` and kept in logs/last_run_summary.{txt,json}.
    ``batch_ids``: the batches whose counts it shows. Every location is redacted (the
    Postgres DSN shows no password)."""
    from cxloop.program import load_program
    from cxloop.serve.reader import WarehouseReader
    from cxloop.serve.summary import headline, load_counts, quality_warnings, render

    grain = str(load_program().period_grain)
    with WarehouseReader(settings) as reader:
        counts = load_counts(reader, batch_ids)
        head = headline(reader, as_of, grain)
        head["quality_warnings"] = quality_warnings(reader, batch_ids)
    warehouse = settings.warehouse_path if settings.target == "duckdb" else "postgres: " + settings.pg_dsn()
    locations = {
        "warehouse": warehouse,
        **(extra or {}),
        "exports": export_dir or "(not exported)",
        "quarantine": settings.quarantine_dir,
        "landing": settings.landing_dir,
        "logs": settings.logs_dir,
    }
    locations = {k: redact(v) for k, v in locations.items()}
    text = render(counts, head, locations)
    summary_path = settings.logs_dir / "last_run_summary.txt"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(text)
    (settings.logs_dir / "last_run_summary.json").write_text(
        json.dumps({"headline": head, "counts": counts, "locations": locations}, indent=2, default=str)
    )
    return {"text": text, "headline": head, "path": str(summary_path)}


def read_summary(settings: Settings) -> str:
    path = Path(settings.logs_dir) / "last_run_summary.txt"
    return path.read_text() if path.exists() else ""
