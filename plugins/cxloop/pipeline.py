"""The pipeline's steps as plain functions: extract, validate and load, build, export, summarise.

The Airflow DAG calls these from its tasks; the tests call them directly too. They pass
small JSON-able dicts between them (paths and counts, never data frames), so every step can
run in its own process.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cxloop.config import Settings, SourceSettings
from cxloop.contract import ENTITY_ORDER
from cxloop.landing import LandedBatch, find_landed, land_frames, read_landed
from cxloop.source_config import SourceConfig, load_source_config

log = logging.getLogger(__name__)

SOURCES = ("salesforce", "hubspot", "qualtrics", "files")


def new_batch_id(source: str, extracted_at: datetime) -> str:
    return f"{source}-{extracted_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# The change timestamp that drives each entity's incremental window and watermark.
CURSOR_COLUMNS = {
    "owners": "updated_at",
    "accounts": "updated_at",
    "contacts": "updated_at",
    "follow_ups": "updated_at",
    "invitations": "sent_at",
    "responses": "recorded_at",
}


def lookbacks(config: SourceConfig | None = None) -> dict[str, timedelta]:
    """How far before its watermark each entity's next window starts. Late edits inside the
    overlap are re-read and merge idempotently. Invitations look back much further: a
    distribution's delivery statuses keep changing for weeks after it is sent."""
    config = config or load_source_config()
    out = {e: timedelta(hours=config.lookback_hours) for e in CURSOR_COLUMNS}
    out["invitations"] = timedelta(days=config.invitation_lookback_days)
    return out


def read_watermarks(settings: Settings, source: str) -> dict[str, datetime]:
    """The source's watermarks, read without taking the warehouse's write lock."""
    from cxloop.state import Db, get_watermarks

    if settings.target == "duckdb":
        import duckdb

        if not settings.warehouse_path.exists():
            return {}
        try:
            con = duckdb.connect(str(settings.warehouse_path), read_only=True)
        except duckdb.ConnectionException:
            # this process already holds the file open (dbt, under `airflow dags test`)
            con = duckdb.connect(str(settings.warehouse_path))
    else:
        import psycopg2

        con = psycopg2.connect(settings.pg_dsn())
    try:
        db = Db(con)
        exists = db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = 'watermarks'"
        )[0][0]
        return get_watermarks(db, source) if exists else {}
    finally:
        con.close()


def _cursors(frames: dict) -> dict[str, str]:
    import pandas as pd

    out = {}
    for entity_name, frame in frames.items():
        col = CURSOR_COLUMNS.get(entity_name)
        if col is None or col not in frame or frame.empty:
            continue
        values = pd.to_datetime(frame[col], utc=True, errors="coerce", format="mixed")
        if values.notna().any():
            out[entity_name] = values.max().tz_convert("UTC").tz_localize(None).isoformat()
    return out


def extract(
    source: SourceSettings,
    settings: Settings,
    as_of: datetime,
    *,
    entities: tuple[str, ...] | None = None,
    full_refresh: bool = False,
    config: SourceConfig | None = None,
    watermarks: dict[str, datetime] | None = None,
) -> dict:
    """Pull one source's changes since its watermarks (minus a lookback) up to ``as_of``, and
    land them as an immutable batch. ``entities`` limits the source to one domain's entities
    (a file drop can feed both domains); ``full_refresh`` ignores the watermarks;
    ``watermarks`` passes them in when a step that may hold the warehouse read them."""
    config = config or load_source_config()
    settings.ensure_dirs()
    extracted_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = new_batch_id(source.name, extracted_at)
    raw_dir = settings.landing_dir / f"source={source.name}" / "raw" / batch_id
    if full_refresh:
        watermarks = {}
    elif watermarks is None:
        watermarks = read_watermarks(settings, source.name)
    windows_back = lookbacks(config)
    since = {e: wm - windows_back[e] for e, wm in watermarks.items() if e in CURSOR_COLUMNS}
    opts = {**config.options_for(source.name), **source.options}
    # Salesforce and Qualtrics stream: page-sized chunks are landed as Parquet row groups as they
    # arrive, so no entity is ever held in memory whole (the entities each lands).
    from cxloop.sources import qualtrics, salesforce

    streamed = {"salesforce": salesforce.ENTITIES, "qualtrics": qualtrics.ENTITIES}

    def windows_of(names) -> dict[str, list[str | None]]:  # entity -> [since, until) of this batch
        return {
            e: [since[e].isoformat() if e in since else None, as_of.isoformat()] for e in names if e in CURSOR_COLUMNS
        }

    if source.name in streamed:
        from cxloop.landing import BatchWriter

        wanted = [e for e in streamed[source.name] if entities is None or e in entities]
        with BatchWriter(
            landing_dir=settings.landing_dir,
            source=source.name,
            batch_id=batch_id,
            extracted_at=extracted_at,
            as_of=as_of,
            entities=wanted,
            cursor_columns=CURSOR_COLUMNS,
        ) as writer:
            _extract_frames(source, opts, settings, raw_dir, since, as_of, sink=writer.write)
            batch = writer.finish(windows_of(wanted))
        log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
        return batch.to_dict()
    frames = _extract_frames(source, opts, settings, raw_dir, since, as_of)
    if entities is not None:
        frames = {e: f for e, f in frames.items() if e in entities}
    batch = land_frames(
        frames,
        landing_dir=settings.landing_dir,
        source=source.name,
        batch_id=batch_id,
        extracted_at=extracted_at,
        as_of=as_of,
        windows=windows_of(frames),
        cursors=_cursors(frames),
    )
    log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
    return batch.to_dict()


def _extract_frames(
    source: SourceSettings, opts: dict, settings: Settings, raw_dir: Path, since: dict, as_of, sink=None
):
    """The source's entities: Salesforce and Qualtrics stream into ``sink`` (``sink(entity, text
    table, maxima)``, see :class:`cxloop.landing.BatchWriter`) and return row counts; HubSpot
    and file drops return whole frames."""
    if source.name == "salesforce":
        from cxloop.sources.salesforce import land_salesforce

        return land_salesforce(
            source.base_url,
            source.token,
            sink,
            landing_dir=raw_dir,
            api_version=opts.get("api_version", "v60.0"),
            role_field=opts.get("buying_role_field", "Buying_Role__c"),
            since=since,
            until=as_of,
        )
    if source.name == "qualtrics":
        from cxloop.sources.qualtrics import land_qualtrics

        directory_id = opts.get("directory_id")
        if not directory_id:
            raise ValueError("source qualtrics: option directory_id is not configured")
        return land_qualtrics(
            source.base_url,
            source.token,
            directory_id,
            sink,
            landing_dir=raw_dir,
            nps_question_id=opts.get("nps_question_id", "QID1"),
            comment_question_id=opts.get("comment_question_id", "QID2_TEXT"),
            relationship_pattern=opts.get("relationship_pattern", "(?i)relationship"),
            start=since.get("responses"),
            end=as_of,
            invitations_since=since.get("invitations"),
        )
    if source.name == "hubspot":
        from cxloop.sources.hubspot import extract_hubspot

        crm_since = [since[e] for e in ("owners", "accounts", "contacts", "follow_ups") if e in since]
        start = min(crm_since) if len(crm_since) == 4 else None  # one window for every object
        return extract_hubspot(source.base_url, source.token, landing_dir=raw_dir, start=start, end=as_of)
    if source.name == "files":
        from cxloop.sources.files import extract_files

        drop = opts.get("drop_dir")
        if not drop:
            raise ValueError("source files: option drop_dir is not configured")
        drop_dir = Path(drop) if Path(drop).is_absolute() else settings.home / drop
        result = extract_files(drop_dir, landing_dir=raw_dir)
        result.raise_for_problems()  # a broken file rejects the drop: nothing lands
        return result.frames
    raise ValueError(f"unknown source {source.name!r}; known: {', '.join(SOURCES)}")


def _file_drop_labels(settings: Settings, batch: LandedBatch):
    """For a file drop: the manifest that maps each landed row back to its file and line."""
    from cxloop.sources.files import load_manifest

    path = settings.landing_dir / "source=files" / "raw" / batch.batch_id / "_files.json"
    return load_manifest(path) if path.exists() else None


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


@dataclass
class _Pending:
    """Quarantined rows of one entity retried with this batch, appended after its own rows."""

    offset: int  # rows of the batch itself; retried rows are at row_number offset+1 ...
    rows: list[tuple[str, int, str | None]]  # (batch_id, row_number, primary key) in frame order
    frame: object = None  # the retried rows, when the batch itself is a landed file (validated in chunks)


def _add_pending(db, frames: dict, entities: list[str], stored, settings: Settings, batch_id: str):
    """Append the still-pending quarantined rows of ``entities`` (waiting for a parent) to the
    frames, so they are validated again now that more parents may be loaded. Pending rows whose
    key arrives again in this batch, or is already stored, are superseded instead.

    ``frames``: entity -> DataFrame, or the landed file's path (then the retried rows are kept in
    ``_Pending.frame``, to be validated after the file's own rows); ``stored``: the stored keys
    (``validation.KnownKeys``, or a dict of sets)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cxloop.contract import ENTITIES
    from cxloop.state import pending_rows, record_releases
    from cxloop.validation import KnownKeys, SetKnownKeys

    known = stored if isinstance(stored, KnownKeys) else SetKnownKeys(stored)
    pending: dict[str, _Pending] = {}
    for entity_name in entities:
        ent = ENTITIES[entity_name]
        source = frames[entity_name]
        is_file = not isinstance(source, pd.DataFrame)
        columns = pq.ParquetFile(source).schema_arrow.names if is_file else list(source.columns)
        if ent.primary_key not in columns:
            continue  # structurally broken: the gate rejects the batch before anything loads
        found = pending_rows(db, entity_name, ent.references)
        if not found:
            continue
        keys = sorted({k for _, _, k in found if k is not None})
        if is_file:
            column = pq.read_table(source, columns=[ent.primary_key]).column(0)
            hits = pc.is_in(column, value_set=pa.array(keys, type=pa.string()))
            fresh = set(pc.unique(pc.filter(column, hits)).to_pylist())
        else:
            fresh = set(source[ent.primary_key].dropna())
        in_store = known.contains(entity_name, [k for k in keys if k not in fresh]) if known.has(entity_name) else set()
        superseded, retry, seen = [], [], set()
        for b, n, key in sorted(found, key=lambda r: (r[0], r[1]), reverse=True):  # newest batch first
            if key is None or key in fresh or key in in_store or key in seen:
                superseded.append((b, n, key, "superseded"))
            else:
                seen.add(key)
                retry.append((b, n, key))
        record_releases(db, entity_name, superseded, batch_id)
        if not retry:
            continue
        parts = []
        for b in sorted({r[0] for r in retry}):
            path = find_landed(settings.landing_dir, b, entity_name)
            if path is None:
                log.warning("quarantined %s rows of batch %s: landed file not found; left pending", entity_name, b)
                continue
            landed = read_landed(path)
            positions = [n - 1 for bb, n, _ in retry if bb == b and 0 < n <= len(landed)]
            part = landed.iloc[positions]
            parts.append((b, positions, part))
        if not parts:
            continue
        offset = pq.ParquetFile(source).metadata.num_rows if is_file else len(source)
        rows = [(b, p + 1, None) for b, positions, _ in parts for p in positions]
        keys = [k for _, _, part in parts for k in part[ent.primary_key].tolist()]
        retried = pd.concat([part for _, _, part in parts], ignore_index=True)
        pending[entity_name] = _Pending(offset, [(b, n, k) for (b, n, _), k in zip(rows, keys, strict=True)])
        if is_file:
            pending[entity_name].frame = retried
        else:
            frames[entity_name] = pd.concat([source, retried], ignore_index=True)
    return pending


def _split_pending(
    outcome, pending: dict[str, _Pending], valid_keys_of: dict[str, set] | None = None
) -> dict[str, list[tuple[str, int, str | None, str]]]:
    """Take the retried rows out of the batch's own bookkeeping: released ones are loaded (and
    recorded as releases), the rest stay pending under their original batch. ``valid_keys_of``:
    entity -> keys of the retried rows that passed (default: from ``outcome.valid``)."""
    from cxloop.contract import ENTITIES

    releases: dict[str, list] = {}
    q = outcome.quarantine
    for entity_name, p in pending.items():
        pk = ENTITIES[entity_name].primary_key
        if valid_keys_of is not None:
            valid_keys = valid_keys_of.get(entity_name, set())
        else:
            valid_keys = set(outcome.valid[entity_name][pk].dropna()) if entity_name in outcome.valid else set()
        released = [(b, n, k, "released") for b, n, k in p.rows if k in valid_keys]
        releases[entity_name] = released
        retried = (q["entity"] == entity_name) & (q["row_number"].astype(int) > p.offset)
        q = q[~retried]
        c = outcome.counts[entity_name]
        c["received"] -= len(p.rows)
        c["loaded"] -= len(released)
        c["quarantined"] -= len(p.rows) - len(released)
        c["released"] = len(released)
    outcome.quarantine = q.reset_index(drop=True)
    return releases


def _release_pass(
    db, con, warehouse, settings: Settings, as_of: datetime, skip: set[str], context=None
) -> dict[str, int]:
    """Retry the pending quarantined rows of entities this run did not carry (a follow-up
    waiting for a response that the survey ingestion has just loaded), so they do not
    wait for their own source's next run. Each pass is a small batch of its own."""
    import pandas as pd

    from cxloop import validation
    from cxloop.contract import ENTITIES
    from cxloop.state import pending_entities, record_releases

    released: dict[str, int] = {}
    for entity_name, source in sorted(pending_entities(db), key=lambda p: ENTITY_ORDER.index(p[0])):
        if entity_name in skip:
            continue
        batch_id = f"release-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        frames = {entity_name: pd.DataFrame(columns=ENTITIES[entity_name].column_names, dtype=object)}
        lookup = hasattr(warehouse, "StoredKeys")
        stored = warehouse.StoredKeys(con) if lookup else warehouse.known_keys(con)
        pending = _add_pending(db, frames, [entity_name], stored, settings, batch_id)
        if entity_name not in pending:
            continue
        outcome = validation.validate_batch(
            frames,
            batch_id=batch_id,
            source=source,
            as_of=as_of,
            known_keys=stored,
            known_sent_at=None if lookup else warehouse.known_invitation_sent_at(con),
            suites_dir=settings.expectations_dir,
            context=context,
        )
        releases = _split_pending(outcome, pending)
        if not releases.get(entity_name):
            continue
        warehouse.load_outcome(con, outcome, extracted_at=datetime.now(UTC).replace(tzinfo=None))
        record_releases(db, entity_name, releases[entity_name], batch_id)
        released[entity_name] = len(releases[entity_name])
    return released


def data_as_of(settings: Settings) -> datetime | None:
    """The end of the data window the warehouse is complete up to (see state.data_as_of)."""
    from cxloop.state import Db, ensure_state_tables
    from cxloop.state import data_as_of as state_as_of

    store, con = raw_store(settings)
    try:
        store.ensure_raw_schema(con)
        db = Db(con)
        ensure_state_tables(db)
        return state_as_of(db)
    finally:
        con.close()


def validate_and_load(batches: list[dict], settings: Settings, as_of: datetime) -> dict:
    """Gate every landed batch of this run through the expectations, then load it.

    Each group is checked against the keys the warehouse already holds (including the groups
    loaded just before it), so references across sources (a Qualtrics response to a
    Salesforce contact) are enforced. Rows quarantined earlier only because their parent was
    missing are retried with each batch and released once the parent has arrived. A
    structurally broken batch is rejected whole and fails the task: nothing of it is loaded
    and its source's watermarks stay where they were. Watermarks advance only after the
    batch's rows are committed.

    On DuckDB each landed file is read, validated and merged in chunks of
    ``validation.CHUNK_ROWS`` rows inside the group's one transaction (memory stays bounded by
    the chunk, not the batch); the stored keys are looked up per chunk, never read whole. One
    GX context serves the whole run.
    """
    from cxloop import validation
    from cxloop.contract import ENTITIES
    from cxloop.state import Db, advance_watermarks, ensure_state_tables, record_releases, record_window

    landed = [LandedBatch.from_dict(b) for b in batches]
    settings.ensure_dirs()
    warehouse, con = raw_store(settings)
    docs_dir = settings.logs_dir / "data_docs" / f"{as_of:%Y%m%dT%H%M%S}"
    counts: dict[str, dict] = {}
    failed_expectations = 0
    timings = {"validate_s": 0.0, "load_s": 0.0, "data_docs_s": 0.0}
    context = None
    try:
        warehouse.ensure_raw_schema(con)
        db = Db(con)
        ensure_state_tables(db)
        for batch, entities in _validation_groups(landed):
            drop = _file_drop_labels(settings, batch) if batch.source == "files" else None
            origin = drop.origin if drop else {e: batch.files[e] for e in entities}
            extracted_at = datetime.fromisoformat(batch.extracted_at)
            if hasattr(warehouse, "BatchLoader"):
                started = time.perf_counter()
                if context is None:
                    context = validation.gx_context()
                timings["validate_s"] += time.perf_counter() - started
                with warehouse.BatchLoader(
                    con, batch_id=batch.batch_id, source=batch.source, extracted_at=extracted_at
                ) as loader:
                    known = loader.keys()
                    pending = _add_pending(
                        db, {e: batch.files[e] for e in entities}, entities, known, settings, batch.batch_id
                    )
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
                    )
                    gate.check_structure({e: validation.landed_shape(batch.files[e]) for e in entities})
                    load_s = 0.0
                    released_keys: dict[str, set] = {}
                    for e in entities:
                        pk = ENTITIES[e].primary_key
                        gate.begin(e, validation.landed_duplicates(batch.files[e], pk))
                        offset = 0
                        parts = list(validation.landed_chunks(batch.files[e]))
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
                    releases = _split_pending(outcome, pending, released_keys)
                    if drop is not None:
                        from cxloop.sources.files import relabel_outcome

                        relabel_outcome(outcome, drop)  # messages name the dropped file and its line
                    started = time.perf_counter()
                    loader.finish(outcome, settings.quarantine_dir)
                    timings["load_s"] += time.perf_counter() - started
            else:
                frames = {e: read_landed(batch.files[e]) for e in entities}
                stored = warehouse.known_keys(con)
                pending = _add_pending(db, frames, entities, stored, settings, batch.batch_id)
                started = time.perf_counter()
                outcome = validation.validate_batch(
                    frames,
                    batch_id=batch.batch_id,
                    source=batch.source,
                    as_of=as_of,
                    known_keys=stored,
                    known_sent_at=warehouse.known_invitation_sent_at(con),
                    origin=origin,
                    suites_dir=settings.expectations_dir,
                    context=context,
                )
                timings["validate_s"] += time.perf_counter() - started
                releases = _split_pending(outcome, pending)
                if drop is not None:
                    from cxloop.sources.files import relabel_outcome

                    relabel_outcome(outcome, drop)  # messages name the dropped file and its line
                started = time.perf_counter()
                warehouse.load_outcome(
                    con, outcome, extracted_at=extracted_at, quarantine_dir=settings.quarantine_dir
                )
                timings["load_s"] += time.perf_counter() - started
            for entity_name, rows in releases.items():
                record_releases(db, entity_name, rows, batch.batch_id)
            advance_watermarks(
                db,
                batch.source,
                {e: datetime.fromisoformat(batch.cursors[e]) for e in entities if e in batch.cursors},
                batch.batch_id,
            )
            record_window(db, batch.source, entities, datetime.fromisoformat(batch.as_of), batch.batch_id)
            started = time.perf_counter()
            validation.build_data_docs(outcome, docs_dir / f"{batch.batch_id}-{entities[0]}")
            timings["data_docs_s"] += time.perf_counter() - started
            for e in entities:
                counts[e] = {"source": batch.source, **outcome.counts[e]}
            failed_expectations += int((~outcome.results["success"].astype(bool)).sum())
        done = {e for _, entities in _validation_groups(landed) for e in entities}
        released = _release_pass(db, con, warehouse, settings, as_of, done, context)
    finally:
        con.close()
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


def build(settings: Settings, as_of: datetime) -> dict:
    """dbt build; every node's result is logged and kept in ``raw.dbt_results``."""
    from cxloop.transform import record_results, run_dbt

    result = run_dbt("build", settings, as_of)
    record_results(settings, result, as_of)
    if settings.target == "postgres":
        from cxloop import warehouse_pg

        con = warehouse_pg.connect(settings.pg_dsn())
        try:
            warehouse_pg.grant_bi_access(con)  # the BI role reads marts, and nothing else
        finally:
            con.close()
    return result.to_dict()


def last_invocation_id(settings: Settings) -> str | None:
    """The dbt invocation that built the marts now in the warehouse (raw.dbt_results)."""
    from cxloop.state import Db

    store, con = raw_store(settings)
    try:
        rows = (
            Db(con).execute("SELECT invocation_id FROM raw.dbt_results ORDER BY recorded_at DESC LIMIT 1")
            if _has_table(con, "dbt_results")
            else []
        )
        return rows[0][0] if rows else None
    finally:
        con.close()


def _has_table(con, name: str) -> bool:
    from cxloop.state import Db

    return bool(
        Db(con).execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = ?", [name]
        )[0][0]
    )


def publish(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str | None:
    """The read-only BI snapshot (DuckDB only; on Postgres the BI role reads the marts)."""
    from cxloop.publish import publish_snapshot

    dbt_invocation_id = dbt_invocation_id or last_invocation_id(settings)
    path = publish_snapshot(settings, as_of, run_id, dbt_invocation_id)
    return str(path) if path else None


def export(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    from cxloop.exports import export_marts

    dbt_invocation_id = dbt_invocation_id or last_invocation_id(settings)
    watermarks = {
        source: {e: t.isoformat() for e, t in read_watermarks(settings, source).items()} for source in SOURCES
    }
    return str(
        export_marts(
            settings,
            settings.exports_dir,
            as_of=as_of,
            run_id=run_id,
            dbt_invocation_id=dbt_invocation_id,
            watermarks={s: w for s, w in watermarks.items() if w},
        )
    )


def report(settings: Settings, as_of: datetime, run_id: str, dbt_invocation_id: str | None) -> str:
    from cxloop.report import build_report

    dbt_invocation_id = dbt_invocation_id or last_invocation_id(settings)
    return str(build_report(settings, as_of, run_id, dbt_invocation_id=dbt_invocation_id))


def latest_batch_ids(settings: Settings) -> list[str]:
    """The batches that loaded each entity's latest data window."""
    from cxloop.state import Db, ensure_state_tables

    store, con = raw_store(settings)
    try:
        db = Db(con)
        ensure_state_tables(db)
        return sorted({row[0] for row in db.execute("SELECT DISTINCT batch_id FROM raw.extraction_windows")})
    finally:
        con.close()


def summarise(
    settings: Settings,
    as_of: datetime,
    batch_ids: list[str] | None,
    export_dir: str | None,
    extra: dict[str, str] | None = None,
) -> dict:
    """The run summary, printed by `make run` and kept in logs/last_run_summary.{txt,json}.
    ``batch_ids`` None means the batches behind the warehouse's latest data windows."""
    from cxloop.reader import WarehouseReader
    from cxloop.summary import headline, load_counts, render

    if batch_ids is None:
        batch_ids = latest_batch_ids(settings)
    with WarehouseReader(settings) as reader:
        counts = load_counts(reader, batch_ids)
        head = headline(reader, as_of)
    locations = {
        "warehouse": settings.warehouse_path if settings.target == "duckdb" else "postgres: " + settings.pg_dsn(),
        **(extra or {}),
        "exports": export_dir or "(not exported)",
        "quarantine": settings.quarantine_dir,
        "landing": settings.landing_dir,
        "logs": settings.logs_dir,
    }
    text = render(counts, head, locations)
    summary_path = settings.logs_dir / "last_run_summary.txt"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(text)
    (settings.logs_dir / "last_run_summary.json").write_text(
        json.dumps(
            {"headline": head, "counts": counts, "locations": {k: str(v) for k, v in locations.items()}},
            indent=2,
            default=str,
        )
    )
    return {"text": text, "headline": head, "path": str(summary_path)}


def read_summary(settings: Settings) -> str:
    path = Path(settings.logs_dir) / "last_run_summary.txt"
    return path.read_text() if path.exists() else ""
