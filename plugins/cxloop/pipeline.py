"""The pipeline's steps as plain functions: extract, validate and load, build, export, summarise.

The Airflow DAG calls these from its tasks; the tests call them directly too. They pass
small JSON-able dicts between them (paths and counts, never data frames), so every step can
run in its own process.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from cxloop.config import Settings
from cxloop.contract import ENTITY_ORDER
from cxloop.extract.run import SOURCES, extract, read_watermarks
from cxloop.store import open_store

# The data stack (pandas, pyarrow, GX, dbt) is imported inside the steps that use it: importing
# this module (the DAGs' light tasks, e.g. read_watermarks) stays cheap
# (tests/unit/test_light_imports.py).
if TYPE_CHECKING:
    from cxloop.extract.landing import LandedBatch

log = logging.getLogger(__name__)

__all__ = ["SOURCES", "extract", "read_watermarks"]  # re-exported for the DAGs and the tests

def _file_drop_labels(settings: Settings, batch: LandedBatch):
    """For a file drop: the manifest that maps each landed row back to its file and line."""
    from cxloop.extract.files import load_manifest

    path = settings.landing_dir / "source=files" / "raw" / batch.batch_id / "_files.json"
    return load_manifest(path) if path.exists() else None


def _landed_manifest(settings: Settings, batch: LandedBatch):
    """For a landed-tables batch: which landed table and column each entity's columns came from."""
    from cxloop.extract.landed_tables import MANIFEST, load_manifest

    return load_manifest(settings.landing_dir / "source=landed" / "raw" / batch.batch_id / MANIFEST)


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


def data_as_of(settings: Settings) -> datetime | None:
    """The end of the data window the warehouse is complete up to (see state.data_as_of)."""
    with open_store(settings) as store:
        return store.data_as_of()


def validate_and_load(batches: list[dict], settings: Settings, as_of: datetime) -> dict:
    """Gate every landed batch of this run through the expectations, then load it.

    Each group is checked against the keys the warehouse already holds (including the groups
    loaded just before it), so references across sources (a Qualtrics response to a
    Salesforce contact) are enforced. Rows quarantined earlier only because their parent was
    missing are retried with each batch and released once the parent has arrived. A
    structurally broken batch is rejected whole and fails the task: nothing of it is loaded
    and its source's watermarks stay where they were. Watermarks advance only after the
    batch's rows are committed.

    On either engine each landed file is read, validated and merged in chunks of
    ``cxloop.gate.landed.CHUNK_ROWS`` rows inside the group's one transaction (memory stays bounded by
    the chunk, not the batch); the stored keys are looked up per chunk, never read whole; the
    group's state (releases, watermarks, window) commits with its rows. One GX context serves
    the whole run.
    """
    from cxloop.contract import ENTITIES
    from cxloop.extract.landing import LandedBatch
    from cxloop.extract.mapping import load_mappings
    from cxloop.gate import data_docs, guards, release, suites, validation
    from cxloop.gate.landed import landed_chunks, landed_duplicates, landed_shape
    from cxloop.store.state import advance_watermarks, record_releases, record_window

    mappings = load_mappings()
    landed = [LandedBatch.from_dict(b) for b in batches]
    settings.ensure_dirs()
    docs_dir = settings.logs_dir / "data_docs" / f"{as_of:%Y%m%dT%H%M%S}"
    counts: dict[str, dict] = {}
    failed_expectations = 0
    timings = {"validate_s": 0.0, "load_s": 0.0, "data_docs_s": 0.0}
    context = None
    with open_store(settings) as store:
        store.ensure_raw_schema()
        for batch, entities in _validation_groups(landed):
            drop = _file_drop_labels(settings, batch) if batch.source == "files" else None
            landed_from = _landed_manifest(settings, batch) if batch.source == "landed" else None
            origin = drop.origin if drop else {e: batch.files[e] for e in entities}
            started = time.perf_counter()
            if context is None:
                context = suites.gx_context()
            timings["validate_s"] += time.perf_counter() - started
            extracted_at = datetime.fromisoformat(batch.extracted_at)
            with store.batch_loader(batch.batch_id, batch.source, extracted_at) as loader:
                known = loader.keys()
                files = {e: batch.files[e] for e in entities}
                pending = release.add_pending(loader.db, files, entities, known, settings, batch.batch_id)
                started = time.perf_counter()
                gate = validation.Gate(
                    batch_id=batch.batch_id,
                    source=batch.source,
                    as_of=as_of,
                    known=known,
                    origin=origin,
                    suites_dir=settings.expectations_dir,
                    context=context,
                    track_all_keys=False,
                    mapping=mappings.for_source(batch.source),  # config mappings: the team's values
                )
                gate.check_structure({e: landed_shape(batch.files[e]) for e in entities})
                load_s = 0.0
                released_keys: dict[str, set] = {}
                for e in entities:
                    pk = ENTITIES[e].primary_key
                    gate.begin(e, landed_duplicates(batch.files[e], pk))
                    offset = 0
                    parts = list(landed_chunks(batch.files[e]))
                    if e in pending:
                        parts.append(pending[e].frame)
                    while parts:
                        chunk = parts.pop(0)
                        valid = gate.validate(e, chunk, offset)
                        if e in pending and offset >= pending[e].offset:
                            released_keys[e] = set(valid[pk].dropna())
                        offset += len(chunk)
                        t0 = time.perf_counter()
                        loader.merge(e, valid)
                        load_s += time.perf_counter() - t0
                        del chunk, valid
                outcome = gate.outcome({})
                timings["validate_s"] += time.perf_counter() - started - load_s
                timings["load_s"] += load_s
                releases = release.split_pending(outcome, pending, released_keys)
                if drop is not None:
                    from cxloop.extract.files import relabel_outcome

                    relabel_outcome(outcome, drop)  # messages name the dropped file and its line
                if landed_from is not None:
                    from cxloop.extract.landed_tables import relabel_outcome as relabel_landed

                    relabel_landed(outcome, landed_from, origin)  # ... the landed table, row key, column
                started = time.perf_counter()
                for entity_name, rows in releases.items():
                    record_releases(loader.db, entity_name, rows, batch.batch_id)
                cursors = {e: datetime.fromisoformat(batch.cursors[e]) for e in entities if e in batch.cursors}
                advance_watermarks(loader.db, batch.source, cursors, batch.batch_id)
                record_window(loader.db, batch.source, entities, datetime.fromisoformat(batch.as_of), batch.batch_id)
                empty = guards.emptied_entities(loader.db, batch.batch_id, batch.source,
                                                {e: outcome.counts[e]["received"] for e in entities}, gate.checked_at)
                if empty:  # a whole-read source with 0 rows where it had rows: warn results
                    outcome.results = validation.results_frame([*outcome.results.to_dict("records"), *empty])
                loader.finish(outcome, settings.quarantine_dir)  # rows, bookkeeping and state commit together
                timings["load_s"] += time.perf_counter() - started
            started = time.perf_counter()
            data_docs.build_data_docs(outcome, docs_dir / f"{batch.batch_id}-{entities[0]}")
            timings["data_docs_s"] += time.perf_counter() - started
            for e in entities:
                counts[e] = {"source": batch.source, **outcome.counts[e]}
            failed_expectations += int((~outcome.results["success"].astype(bool)).sum())
        for batch in landed:  # a drop folder without any data file
            if batch.source in guards.WHOLE_READ_SOURCES and not batch.files:
                with store.batch_loader(batch.batch_id, batch.source, datetime.fromisoformat(batch.extracted_at)) as ld:
                    guards.record_empty_drop(ld.db, batch.batch_id, batch.source, datetime.fromisoformat(batch.as_of))
                    ld.finish(None)
        done = {e for _, entities in _validation_groups(landed) for e in entities}
        released = release.release_pass(store, settings, as_of, done, context, mappings)
    report = {
        "batch_ids": sorted({b.batch_id for b in landed}),
        "counts": counts,
        "failed_expectations": failed_expectations,
        "released_by_other_entities": released,
        "data_docs": str(docs_dir),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    log.info("loaded: %s", json.dumps(counts, sort_keys=True))
    return report


def check_freshness(settings: Settings, as_of: datetime, program=None) -> dict:
    """``dbt source freshness`` of the landed sources for this as_of (judged against it, never the
    wall clock), kept in raw.source_freshness (marts.data_quality shows it after the build); a
    source in error (its data window lags the as_of by freshness_error_hours or more, or was never
    loaded) is posted to the alert webhook. A stale source does not fail the run: the marts are
    still built, as of the data there is."""
    from cxloop.alerts import freshness_alert
    from cxloop.program import load_program
    from cxloop.transform.dbt import record_freshness, run_freshness

    program = program or load_program()
    report = run_freshness(settings, as_of, program=program)
    record_freshness(settings, report)
    errors = report.errors()
    if errors:
        freshness_alert(as_of.isoformat(), [(t.name, t.status, t.age_hours) for t in errors])
    return report.to_dict()


def build(settings: Settings, as_of: datetime, *, freshness: bool = True) -> dict:
    """dbt build with the program settings as vars (config ``program:`` section and
    CXLOOP_PROGRAM_* overrides); every node's result is logged and kept in ``raw.dbt_results``.
    First (unless ``freshness=False``: cx_transform runs it as a task of its own) the sources'
    freshness, :func:`check_freshness`, so marts.data_quality carries it."""
    from cxloop.program import load_program
    from cxloop.transform.dbt import record_results, run_dbt

    program = load_program()
    log.info("program settings: %s", "; ".join(program.describe()))
    checked = check_freshness(settings, as_of, program) if freshness else None
    result = run_dbt("build", settings, as_of, program=program)
    record_results(settings, result, as_of)
    with open_store(settings) as store:
        store.grant_bi_access()  # Postgres: the BI role reads marts, and nothing else
    out = {**result.to_dict(), "program": program.dbt_vars()}
    if checked is not None:
        out["freshness"] = checked
    return out


def last_invocation_id(settings: Settings) -> str | None:
    """The dbt invocation that built the marts now in the warehouse (raw.dbt_results)."""
    with open_store(settings) as store:
        return store.last_dbt_invocation()


def publish(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str | None:
    """The read-only BI snapshot (DuckDB only; on Postgres the BI role reads the marts)."""
    from cxloop.serve import steps

    return steps.publish(settings, as_of, run_id, dbt_invocation_id or last_invocation_id(settings))


def export(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    """The governance pack: every mart as Parquet and CSV with a checksummed manifest."""
    from cxloop.serve import steps

    return steps.export(settings, as_of, run_id, dbt_invocation_id or last_invocation_id(settings))


def report(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    """The offline HTML governance report."""
    from cxloop.serve import steps

    return steps.report(settings, as_of, run_id, dbt_invocation_id or last_invocation_id(settings))


def pack(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None, export_dir: str) -> str:
    """The governance pack's HTML pages in the run's export folder (``<export_dir>/pack/``)."""
    from cxloop.serve import steps

    return steps.pack(settings, as_of, run_id, dbt_invocation_id or last_invocation_id(settings), export_dir)


def latest_batch_ids(settings: Settings) -> list[str]:
    """The batches that loaded each entity's latest data window."""
    with open_store(settings) as store:
        return store.latest_batch_ids()


def summarise(
    settings: Settings,
    as_of: datetime,
    batch_ids: list[str] | None,
    export_dir: str | None,
    extra: dict[str, str] | None = None,
) -> dict:
    """The run summary, printed by `make run` and kept in logs/last_run_summary.{txt,json}.
    ``batch_ids`` None means the batches behind the warehouse's latest data windows."""
    from cxloop.serve import steps

    batch_ids = latest_batch_ids(settings) if batch_ids is None else batch_ids
    return steps.summarise(settings, as_of, batch_ids, export_dir, extra)


def read_summary(settings: Settings) -> str:
    from cxloop.serve import steps

    return steps.read_summary(settings)
