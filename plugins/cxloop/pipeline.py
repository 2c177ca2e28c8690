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
from cxloop.contract import ENTITY_ORDER
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


def _validation_groups(landed: list[LandedBatch]) -> list[tuple[LandedBatch, list[str]]]:
    """Entities in reference order (parents first), grouped into consecutive runs of one batch.

    Salesforce's owners, accounts and contacts are gated before Qualtrics' invitations and
    responses that reference them; Salesforce's follow-ups wait for the responses."""
    owner = {e: b for b in landed for e in b.files}
    groups: list[tuple[LandedBatch, list[str]]] = []
    for entity_name in ENTITY_ORDER:
        batch = owner.get(entity_name)
        if batch is None:
            continue
        if groups and groups[-1][0] is batch:
            groups[-1][1].append(entity_name)
        else:
            groups.append((batch, [entity_name]))
    return groups


def raw_store(settings: Settings):
    """The raw layer's module and an open connection for the configured target. Both modules
    offer the same functions: ensure_raw_schema, known_keys, known_invitation_sent_at,
    load_outcome."""
    if settings.target == "postgres":
        from cxloop import warehouse_pg as store

        return store, store.connect(settings.pg_dsn())
    from cxloop import warehouse as store

    return store, store.connect(settings.warehouse_path)


def validate_and_load(batches: list[dict], settings: Settings, as_of: datetime) -> dict:
    """Gate every landed batch of this run through the expectations, then load it.

    Each group is checked against the keys the warehouse already holds (including the groups
    loaded just before it), so references across sources (a Qualtrics response to a
    Salesforce contact) are enforced. A structurally broken batch is rejected whole and fails
    the task; nothing of it is loaded.
    """
    from cxloop import validation

    landed = [LandedBatch.from_dict(b) for b in batches]
    settings.ensure_dirs()
    warehouse, con = raw_store(settings)
    docs_dir = settings.logs_dir / "data_docs" / f"{as_of:%Y%m%dT%H%M%S}"
    counts: dict[str, dict] = {}
    failed_expectations = 0
    try:
        warehouse.ensure_raw_schema(con)
        for batch, entities in _validation_groups(landed):
            frames = {e: read_landed(batch.files[e]) for e in entities}
            outcome = validation.validate_batch(
                frames,
                batch_id=batch.batch_id,
                source=batch.source,
                as_of=as_of,
                known_keys=warehouse.known_keys(con),
                known_sent_at=warehouse.known_invitation_sent_at(con),
                origin={e: batch.files[e] for e in entities},
                suites_dir=settings.expectations_dir,
            )
            warehouse.load_outcome(
                con,
                outcome,
                extracted_at=datetime.fromisoformat(batch.extracted_at),
                quarantine_dir=settings.quarantine_dir,
            )
            validation.build_data_docs(outcome, docs_dir / f"{batch.batch_id}-{entities[0]}")
            for e in entities:
                counts[e] = {"source": batch.source, **outcome.counts[e]}
            failed_expectations += int((~outcome.results["success"].astype(bool)).sum())
    finally:
        con.close()
    report = {
        "batch_ids": sorted({b.batch_id for b in landed}),
        "counts": counts,
        "failed_expectations": failed_expectations,
        "data_docs": str(docs_dir),
    }
    log.info("loaded: %s", json.dumps(counts, sort_keys=True))
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
    from cxloop.reader import WarehouseReader
    from cxloop.summary import headline, load_counts, render

    with WarehouseReader(settings) as reader:
        counts = load_counts(reader, batch_ids)
        head = headline(reader, as_of)
    text = render(
        counts,
        head,
        {
            "warehouse": settings.warehouse_path if settings.target == "duckdb" else "postgres: " + settings.pg_dsn(),
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
