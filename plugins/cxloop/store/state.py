"""Durable pipeline state in the warehouse: extraction watermarks and quarantine releases.

- ``raw.watermarks``: per source and entity, the greatest change timestamp of the rows
  loaded so far. It is advanced only after the batch that carried those rows is committed;
  the next extraction starts at the watermark minus a lookback, so nothing on the boundary
  is lost and re-extracted rows merge idempotently.
- ``raw.quarantine_releases``: quarantined rows that were waiting for a parent (an orphan
  reference, or a parent that was itself quarantined) and were loaded by a later batch once
  the parent arrived, or were superseded by a newer version of the same row. A quarantined
  row with no release is still pending.

The SQL is the common subset of DuckDB and Postgres; :class:`Db` adapts the placeholders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

WATERMARKS_DDL = """
CREATE TABLE IF NOT EXISTS raw.watermarks (
    source VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    watermark TIMESTAMP NOT NULL,
    batch_id VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL
)"""

RELEASES_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine_releases (
    batch_id VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    primary_key VARCHAR,
    resolution VARCHAR NOT NULL,
    resolved_by_batch VARCHAR NOT NULL,
    resolved_at TIMESTAMP NOT NULL
)"""

WINDOWS_DDL = """
CREATE TABLE IF NOT EXISTS raw.extraction_windows (
    source VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    batch_id VARCHAR NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)"""

# Quarantine reasons that a later batch can cure: the referenced parent was unknown, or was
# itself quarantined. Everything else (a bad score, a malformed date) stays quarantined.
RETRYABLE_EXPECTATIONS = ("expect_column_values_to_be_in_set", "cxloop_parent_not_quarantined")


class Db:
    """A DuckDB or psycopg2 connection behind one ``execute(sql, params)`` with ``?`` marks.

    Statements join the transaction open on the connection, if any: a store's
    :class:`~cxloop.store.base.BatchLoader` hands out a ``Db`` on its connection, so state written
    through it commits (or rolls back) with the batch's rows. Outside a transaction each statement
    commits on its own (the stores' Postgres connections are in autocommit mode; a psycopg2
    connection that is not is committed after each statement unless ``commit=False``)."""

    def __init__(self, con: Any, *, commit: bool = True):
        self.con = con
        self.commit = commit
        self.is_duckdb = type(con).__module__.split(".")[0] in {"duckdb", "_duckdb"}

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        if self.is_duckdb:
            cur = self.con.execute(sql, list(params))
            return cur.fetchall() if cur.description else []
        with self.con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params))
            rows = cur.fetchall() if cur.description else []
        if self.commit and not self.con.autocommit:
            self.con.commit()
        return rows


def ensure_state_tables(db: Db) -> None:
    db.execute("CREATE SCHEMA IF NOT EXISTS raw")
    db.execute(WATERMARKS_DDL)
    db.execute(RELEASES_DDL)
    db.execute(WINDOWS_DDL)


def get_watermarks(db: Db, source: str) -> dict[str, dt.datetime]:
    rows = db.execute("SELECT entity, max(watermark) FROM raw.watermarks WHERE source = ? GROUP BY entity", [source])
    return {entity: value for entity, value in rows}


def advance_watermarks(db: Db, source: str, cursors: dict[str, dt.datetime], batch_id: str) -> None:
    """Record the batch's greatest change timestamps; a watermark never moves backwards."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    current = get_watermarks(db, source)
    for entity, value in cursors.items():
        if value is None or (entity in current and current[entity] >= value):
            continue
        db.execute("DELETE FROM raw.watermarks WHERE source = ? AND entity = ?", [source, entity])
        db.execute(
            "INSERT INTO raw.watermarks (source, entity, watermark, batch_id, updated_at) VALUES (?, ?, ?, ?, ?)",
            [source, entity, value, batch_id, now],
        )


def pending_rows(
    db: Db, entity: str, reference_fields: Iterable[str], exclude_batch: str | None = None
) -> list[tuple[str, int, str | None]]:
    """(batch_id, row_number, primary_key) of quarantined rows of ``entity`` whose every failed
    check is a missing or quarantined parent, and that no later batch has released.
    ``exclude_batch``: the batch being loaded (a rerun validates its own rows again; they are not
    pending for it)."""
    fields = list(reference_fields)
    if not fields:
        return []
    marks = ", ".join("?" for _ in fields)
    exp_marks = ", ".join("?" for _ in RETRYABLE_EXPECTATIONS)
    sql = f"""
        SELECT q.batch_id, q.row_number, min(q.primary_key)
        FROM raw.quarantine AS q
        WHERE q.entity = ? AND q.batch_id <> ?
          AND NOT EXISTS (
              SELECT 1 FROM raw.quarantine_releases AS r
              WHERE r.batch_id = q.batch_id AND r.entity = q.entity AND r.row_number = q.row_number)
        GROUP BY q.batch_id, q.row_number
        HAVING sum(CASE WHEN q.expectation IN ({exp_marks}) AND q.field IN ({marks}) THEN 0 ELSE 1 END) = 0
        ORDER BY q.batch_id, q.row_number
    """
    params = [entity, exclude_batch or "", *RETRYABLE_EXPECTATIONS, *fields]
    return [(b, int(n), k) for b, n, k in db.execute(sql, params)]


def record_releases(
    db: Db, entity: str, rows: Iterable[tuple[str, int, str | None, str]], resolved_by_batch: str
) -> int:
    """rows: (batch_id, row_number, primary_key, resolution) with resolution released|superseded.

    Written in statements of :data:`RELEASE_ROWS_PER_STATEMENT` rows (a delete of the rows'
    earlier resolutions, then one multi-row insert): a statement per row cost about 1 ms each,
    3 s of a small demo load."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    # one resolution per quarantined row, the last given (as a statement per row would leave)
    latest = {(batch_id, int(row_number)): (key, resolution) for batch_id, row_number, key, resolution in rows}
    rows = [(batch_id, row_number, key, resolution) for (batch_id, row_number), (key, resolution) in latest.items()]
    for i in range(0, len(rows), RELEASE_ROWS_PER_STATEMENT):
        part = rows[i : i + RELEASE_ROWS_PER_STATEMENT]
        pairs = ", ".join(["(?, ?)"] * len(part))
        db.execute(
            "DELETE FROM raw.quarantine_releases AS q "
            f"USING (VALUES {pairs}) AS v(batch_id, row_number) "
            "WHERE q.entity = ? AND q.batch_id = v.batch_id AND q.row_number = v.row_number",
            [*(x for batch_id, row_number, _, _ in part for x in (batch_id, int(row_number))), entity],
        )
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(part))
        db.execute(
            "INSERT INTO raw.quarantine_releases "
            "(batch_id, entity, row_number, primary_key, resolution, resolved_by_batch, resolved_at) "
            f"VALUES {values}",
            [
                x
                for batch_id, row_number, key, resolution in part
                for x in (batch_id, entity, int(row_number), key, resolution, resolved_by_batch, now)
            ],
        )
    return len(rows)


RELEASE_ROWS_PER_STATEMENT = 500


def record_window(db: Db, source: str, entities: Iterable[str], as_of: dt.datetime, batch_id: str) -> None:
    """The end of the data window each entity has been loaded up to (by a committed batch)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for entity in entities:
        same = db.execute(
            "SELECT count(*) FROM raw.extraction_windows "
            "WHERE source = ? AND entity = ? AND as_of = ? AND batch_id = ?",
            [source, entity, as_of, batch_id],
        )
        if same[0][0]:
            continue  # a rerun of the same batch: the window is recorded already (rerun changes nothing)
        db.execute("DELETE FROM raw.extraction_windows WHERE source = ? AND entity = ?", [source, entity])
        db.execute(
            "INSERT INTO raw.extraction_windows (source, entity, as_of, batch_id, loaded_at) VALUES (?, ?, ?, ?, ?)",
            [source, entity, as_of, batch_id, now],
        )


def data_as_of(db: Db) -> dt.datetime | None:
    """How far the warehouse's data is complete: the earliest window end over the entities
    (an asset-triggered transform has no data interval of its own; this is its as_of)."""
    rows = db.execute(
        "SELECT min(latest) FROM (SELECT entity, max(as_of) AS latest FROM raw.extraction_windows GROUP BY entity) w"
    )
    return rows[0][0] if rows and rows[0][0] is not None else None


def pending_entities(db: Db) -> list[tuple[str, str]]:
    """(entity, source) pairs that have quarantined rows no release has resolved yet."""
    return [
        (e, src)
        for e, src in db.execute(
            """SELECT DISTINCT q.entity, q.source FROM raw.quarantine AS q WHERE NOT EXISTS (
                   SELECT 1 FROM raw.quarantine_releases AS r
                   WHERE r.batch_id = q.batch_id AND r.entity = q.entity AND r.row_number = q.row_number)"""
        )
    ]


# -- light reads: the state a task that does no data work needs (issue 16: such a task takes under
# 1.5 s, so it reads DuckDB's state tables through duckdb alone, without the store's pandas/pyarrow)


def _read_duckdb(path, read):
    """``read(db)`` on the DuckDB file at ``path`` opened read-only (no write lock), through a plain
    connection: the same fallback as ``duckdb_store.connect`` when this process already holds the
    file open in another configuration (dbt under ``airflow dags test``)."""
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException:
        con = duckdb.connect(str(path))
    try:
        return read(Db(con))
    finally:
        con.close()


def _has_state_table(db: Db, name: str) -> bool:
    rows = db.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = ?", [name]
    )
    return bool(rows[0][0])


def read_watermarks_light(settings, source: str) -> dict[str, dt.datetime]:
    """``cxloop.store.read_watermarks`` ({} before the first load) without importing the store's
    data stack on DuckDB; Postgres goes through the store (psycopg is light)."""
    if settings.target != "duckdb":
        from cxloop.store import read_watermarks

        return read_watermarks(settings, source)
    if not settings.warehouse_path.exists():
        return {}
    return _read_duckdb(
        settings.warehouse_path,
        lambda db: get_watermarks(db, source) if _has_state_table(db, "watermarks") else {},
    )


def data_as_of_light(settings) -> dt.datetime | None:
    """The store's ``data_as_of`` (None before the first load), read the same light way."""
    if settings.target != "duckdb":
        from cxloop.store import open_store

        with open_store(settings) as store:
            return store.data_as_of()
    if not settings.warehouse_path.exists():
        return None
    return _read_duckdb(
        settings.warehouse_path,
        lambda db: data_as_of(db) if _has_state_table(db, "extraction_windows") else None,
    )
