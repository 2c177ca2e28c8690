"""The pipeline's steps as plain functions: extract, validate and load, build, export, summarise.

The Airflow DAG calls these from its tasks; the tests call them directly too. They pass
small JSON-able dicts between them (paths and counts, never data frames), so every step can
run in its own process.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

from cxloop.config import Settings, SourceSettings
from cxloop.landing import LandedBatch, land_frames, read_landed

log = logging.getLogger(__name__)

SOURCES = ("salesforce", "qualtrics")


def new_batch_id(source: str, extracted_at: datetime) -> str:
    return f"{source}-{extracted_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def extract(source: SourceSettings, settings: Settings, as_of: datetime) -> dict:
    """Pull every entity of one source up to ``as_of`` and land it as an immutable batch."""
    settings.ensure_dirs()
    extracted_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = new_batch_id(source.name, extracted_at)
    raw_dir = settings.landing_dir / f"source={source.name}" / "raw" / batch_id
    if source.name == "salesforce":
        from cxloop.sources.salesforce import extract_salesforce

        frames = extract_salesforce(source.base_url, source.token, landing_dir=raw_dir)
    elif source.name == "qualtrics":
        from cxloop.sources.qualtrics import extract_qualtrics

        directory_id = source.options.get("directory_id")
        if not directory_id:
            raise ValueError("source qualtrics: option directory_id is not configured")
        frames = extract_qualtrics(
            source.base_url,
            source.token,
            directory_id,
            landing_dir=raw_dir,
            nps_question_id=source.options.get("nps_question_id", "QID1"),
            end=as_of,
        )
    else:
        raise ValueError(f"unknown source {source.name!r}; known: {', '.join(SOURCES)}")
    batch = land_frames(
        frames,
        landing_dir=settings.landing_dir,
        source=source.name,
        batch_id=batch_id,
        extracted_at=extracted_at,
        as_of=as_of,
    )
    log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
    return batch.to_dict()


def validate_and_load(batches: list[dict], settings: Settings, as_of: datetime) -> dict:
    """Gate every landed batch of this run through the expectations, then load it.

    The batches of one run are validated together so that references across sources
    (a Qualtrics response to a Salesforce contact) are checked against each other and
    against what the warehouse already holds.
    """
    from cxloop import validation, warehouse

    landed = [LandedBatch.from_dict(b) for b in batches]
    settings.ensure_dirs()
    con = warehouse.connect(settings.warehouse_path)
    try:
        warehouse.ensure_raw_schema(con)
        known = warehouse.known_keys(con)
        frames = {}
        origin = {}
        source_of = {}
        for batch in landed:
            for entity_name, path in batch.files.items():
                frames[entity_name] = read_landed(path)
                origin[entity_name] = path
                source_of[entity_name] = batch.source
        outcome = validation.validate_batch(
            frames,
            batch_ids={e: b.batch_id for b in landed for e in b.files},
            sources=source_of,
            as_of=as_of,
            known_keys=known,
            origin=origin,
            expectations_dir=settings.expectations_dir,
        )
        extracted_at = {e: datetime.fromisoformat(b.extracted_at) for b in landed for e in b.files}
        warehouse.load_outcome(con, outcome, extracted_at=extracted_at, quarantine_dir=settings.quarantine_dir)
    finally:
        con.close()
    report = {
        "batch_ids": sorted({b.batch_id for b in landed}),
        "counts": outcome.counts,
        "failed_expectations": int((~outcome.results["success"]).sum()) if len(outcome.results) else 0,
    }
    log.info("loaded: %s", json.dumps(report["counts"], sort_keys=True))
    return report


def build(settings: Settings, as_of: datetime) -> dict:
    from cxloop.transform import run_dbt

    return run_dbt("build", settings, as_of).to_dict()


def export(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    from cxloop.exports import export_marts

    return str(
        export_marts(
            settings.warehouse_path,
            settings.exports_dir,
            as_of=as_of,
            run_id=run_id,
            dbt_invocation_id=dbt_invocation_id,
        )
    )


def summarise(settings: Settings, as_of: datetime, batch_ids: list[str], export_dir: str | None) -> dict:
    import duckdb

    from cxloop.summary import headline, load_counts, render

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        counts = load_counts(con, batch_ids)
        head = headline(con, as_of)
    finally:
        con.close()
    text = render(
        counts,
        head,
        {
            "warehouse": settings.warehouse_path,
            "exports": export_dir or "(not exported)",
            "quarantine": settings.quarantine_dir,
            "landing": settings.landing_dir,
            "logs": settings.logs_dir,
        },
    )
    summary_path = settings.logs_dir / "last_run_summary.txt"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(text)
    (settings.logs_dir / "last_run_summary.json").write_text(
        json.dumps({"headline": head, "counts": counts}, indent=2, default=str)
    )
    return {"text": text, "headline": head, "path": str(summary_path)}


def read_summary(settings: Settings) -> str:
    path = Path(settings.logs_dir) / "last_run_summary.txt"
    return path.read_text() if path.exists() else ""
