"""DuckDB raw layer: ``raw.<entity>`` tables plus the gate's bookkeeping tables.

- ``raw.<entity>``: the contract's columns in SQL types + :data:`cxloop.contract.LINEAGE_COLUMNS`.
  No PRIMARY KEY constraint is declared (DuckDB checks unique constraints eagerly inside a
  transaction, which breaks delete-then-insert of the same key); :func:`load_outcome` keeps
  the primary key unique itself.
- ``raw.quarantine``: one row per (quarantined row, failed check), see
  :data:`cxloop.store.base.QUARANTINE_COLUMNS`.
- ``raw.validation_results``: one row per expectation per entity per batch (the
  ``data_quality`` mart reads it).
- ``raw.batches``: one row per batch x entity with the reconciliation counts.

:func:`load_outcome` is idempotent: loading the same batch again leaves every table as it was
(rows merged on primary key, the batch's bookkeeping rows replaced, the first ``loaded_at``
of the batch reused). A row only replaces a stored row of the same key when its batch was
extracted at the same time or later, so an old batch loaded late never overwrites newer data.
Data moves from pandas through DuckDB's DataFrame scan, never row by row.

:class:`DuckDBStore` is the :class:`cxloop.store.base.Store` on one DuckDB connection; its
:class:`BatchLoader` runs one batch group as one transaction, chunk by chunk.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.store import base
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS, KnownKeys
from cxloop.store.state import Db, ensure_state_tables

SCHEMA = "raw"
SQL_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS raw.quarantine (
    batch_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    primary_key VARCHAR,
    row_number BIGINT NOT NULL,
    field VARCHAR,
    expectation VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    record_json VARCHAR
)"""
RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS raw.validation_results (
    batch_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    expectation VARCHAR NOT NULL,
    "column" VARCHAR,
    severity VARCHAR NOT NULL,
    success BOOLEAN NOT NULL,
    rows_checked BIGINT NOT NULL,
    unexpected_count BIGINT NOT NULL,
    checked_at TIMESTAMP NOT NULL
)"""
BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS raw.batches (
    batch_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    entity VARCHAR NOT NULL,
    received BIGINT NOT NULL,
    loaded BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    extracted_at TIMESTAMP NOT NULL,
    loaded_at TIMESTAMP NOT NULL
)"""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(path: str | Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the DuckDB warehouse file; ``":memory:"`` works too.

    ``read_only`` opens an existing file without taking its write lock; when this process already
    holds the file open (dbt, under ``airflow dags test``) DuckDB refuses a second, read-only
    configuration, and the file is opened normally instead."""
    if read_only:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.ConnectionException:
            return duckdb.connect(str(path))
    if str(path) != ":memory:":
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        Path(path).chmod(0o600)  # the warehouse holds personal data: private whatever the umask
        return con
    return duckdb.connect(str(path))


class DuckDBStore(base.Store):
    """The warehouse in one DuckDB file (the embedded default)."""

    target = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self._db = Db(con)

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = False) -> DuckDBStore:
        return cls(connect(path, read_only=read_only))

    @property
    def db(self) -> Db:
        return self._db

    def ensure_raw_schema(self) -> None:
        ensure_raw_schema(self.con)
        ensure_state_tables(self._db)

    def batch_loader(
        self, batch_id: str, source: str, extracted_at: dt.datetime, loaded_at: dt.datetime | None = None
    ) -> BatchLoader:
        return BatchLoader(self.con, batch_id=batch_id, source=source, extracted_at=extracted_at, loaded_at=loaded_at)

    def grant_bi_access(self) -> None:
        """Nothing to grant: BI reads the published snapshot (``cxloop.serve.publish``)."""

    def close(self) -> None:
        self.con.close()


def entity_ddl(entity_name: str) -> str:
    e = ENTITIES[entity_name]
    cols = [f"    {_q(c.name)} {SQL_TYPES[c.type]}" for c in e.columns]
    cols += [f"    {_q(c.name)} {SQL_TYPES[c.type]} NOT NULL" for c in LINEAGE_COLUMNS]
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{_q(e.name)} (\n" + ",\n".join(cols) + "\n)"


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name in ENTITY_ORDER:
        con.execute(entity_ddl(name))
    con.execute(QUARANTINE_DDL)
    con.execute(RESULTS_DDL)
    con.execute(BATCHES_DDL)


def _naive_utc(t: dt.datetime | pd.Timestamp | str) -> dt.datetime:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _previous_loaded_at(con: duckdb.DuckDBPyConnection, batch_id: str) -> dt.datetime | None:
    rows = con.execute("SELECT min(loaded_at) FROM raw.batches WHERE batch_id = ?", [batch_id]).fetchall()
    row = rows[0] if rows else None
    return row[0] if row and row[0] is not None else None


def load_outcome(
    con: duckdb.DuckDBPyConnection,
    outcome: Any,
    *,
    extracted_at: dt.datetime,
    quarantine_dir: str | Path | None = None,
    loaded_at: dt.datetime | None = None,
) -> dict[str, dict[str, int]]:
    """Load a validated batch in one transaction; returns the outcome's counts.

    Valid rows are merged into ``raw.<entity>`` on the primary key (delete then insert, only
    where the stored row's ``_extracted_at`` is not later than this batch's); quarantine and
    validation results of the batch replace any earlier load of the same batch; ``raw.batches``
    records received/loaded/quarantined per entity. With ``quarantine_dir`` the batch's
    quarantine is also written to ``<quarantine_dir>/quarantine_<batch_id>.parquet``.
    """
    with BatchLoader(
        con, batch_id=outcome.batch_id, source=outcome.source, extracted_at=extracted_at, loaded_at=loaded_at
    ) as loader:
        for name in ENTITY_ORDER:
            if name in outcome.valid:
                loader.merge(name, outcome.valid[name])
        loader.finish(outcome, quarantine_dir)
    return outcome.counts


class BatchLoader(base.BatchLoader):
    """One batch's load as one DuckDB transaction (see :class:`cxloop.store.base.BatchLoader`):
    chunks are merged through DuckDB's DataFrame scan; :attr:`db` writes state on the same
    connection, inside the transaction."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        batch_id: str,
        source: str,
        extracted_at: dt.datetime,
        loaded_at: dt.datetime | None = None,
    ):
        self.con = con
        self.batch_id = batch_id
        self.source = source
        self.extracted = _naive_utc(extracted_at)
        self._loaded_at = loaded_at
        self.loaded: dt.datetime | None = None
        self.done = False
        self.db = Db(con)

    def __enter__(self) -> BatchLoader:
        ensure_raw_schema(self.con)
        self.con.execute("BEGIN TRANSACTION")
        try:
            loaded = self._loaded_at and _naive_utc(self._loaded_at)
            self.loaded = (
                _previous_loaded_at(self.con, self.batch_id) or loaded or dt.datetime.now(dt.UTC).replace(tzinfo=None)
            )
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.done:
            self.con.execute("ROLLBACK")

    def keys(self) -> StoredKeys:
        return StoredKeys(self.con)

    def merge(self, name: str, frame: pd.DataFrame) -> None:
        _merge_entity(self.con, name, frame, self.batch_id, self.source, self.extracted, self.loaded)

    def finish(self, outcome: Any | None, quarantine_dir: str | Path | None = None) -> None:
        if outcome is None:
            self.con.execute("COMMIT")
            self.done = True
            return
        con, batch_id, source = self.con, self.batch_id, self.source
        entities = list(outcome.counts)
        # A batch may be validated in parts (entities that reference another source's
        # entities wait for them), so a reload replaces only the entities it carries.
        for table in ("quarantine", "validation_results", "batches"):
            con.execute(
                f"DELETE FROM raw.{table} WHERE batch_id = ? AND entity IN (SELECT unnest(?))",
                [batch_id, entities],
            )
        q = outcome.quarantine.reindex(columns=QUARANTINE_COLUMNS)
        if len(q):
            con.register("_cx_quarantine", q)
            cols = ", ".join(_q(c) for c in QUARANTINE_COLUMNS)
            con.execute(f"INSERT INTO raw.quarantine ({cols}) SELECT {cols} FROM _cx_quarantine")
            con.unregister("_cx_quarantine")
        r = outcome.results.reindex(columns=RESULT_COLUMNS)
        if len(r):
            con.register("_cx_results", r)
            cols = ", ".join(_q(c) for c in RESULT_COLUMNS)
            con.execute(f"INSERT INTO raw.validation_results ({cols}) SELECT {cols} FROM _cx_results")
            con.unregister("_cx_results")
        b = pd.DataFrame(
            [
                {
                    "batch_id": batch_id,
                    "source": source,
                    "entity": name,
                    **{k: int(outcome.counts[name][k]) for k in ("received", "loaded", "quarantined")},
                    "extracted_at": self.extracted,
                    "loaded_at": self.loaded,
                }
                for name in entities
            ],
            columns=[
                "batch_id",
                "source",
                "entity",
                "received",
                "loaded",
                "quarantined",
                "extracted_at",
                "loaded_at",
            ],
        )
        if len(b):
            con.register("_cx_batches", b)
            con.execute("INSERT INTO raw.batches SELECT * FROM _cx_batches")
            con.unregister("_cx_batches")
        con.execute("COMMIT")
        self.done = True
        if quarantine_dir is not None:
            write_quarantine_parquet(outcome, quarantine_dir)


def with_lineage(
    name: str, frame: pd.DataFrame, batch_id: str, source: str, extracted: dt.datetime, loaded: dt.datetime
) -> pd.DataFrame:
    """The valid rows of one entity in contract column order, plus the lineage columns.
    Shared by the DuckDB and the Postgres stores."""
    e = ENTITIES[name]
    if frame[e.primary_key].isna().any() or frame[e.primary_key].duplicated().any():
        raise ValueError(f"valid rows of {name} must have unique, non-null {e.primary_key}")
    incoming = frame.reindex(columns=e.column_names).copy()
    incoming["_batch_id"] = batch_id
    incoming["_source"] = source
    incoming["_extracted_at"] = pd.Timestamp(extracted)
    incoming["_loaded_at"] = pd.Timestamp(loaded)
    return incoming


def _merge_entity(
    con: duckdb.DuckDBPyConnection,
    name: str,
    frame: pd.DataFrame,
    batch_id: str,
    source: str,
    extracted: dt.datetime,
    loaded: dt.datetime,
) -> None:
    e = ENTITIES[name]
    if frame.empty:
        return
    incoming = with_lineage(name, frame, batch_id, source, extracted, loaded)
    view = f"_cx_incoming_{name}"
    con.register(view, incoming)
    try:
        table = f"{SCHEMA}.{_q(name)}"
        pk = _q(e.primary_key)
        # stored rows of the same key from an older or the same extraction are replaced
        con.execute(
            f"DELETE FROM {table} AS t USING {view} AS i "
            f"WHERE t.{pk} = i.{pk} AND t._extracted_at <= i._extracted_at"
        )
        cols = [c.name for c in e.columns] + [c.name for c in LINEAGE_COLUMNS]
        select = ", ".join(f"CAST(i.{_q(c)} AS {SQL_TYPES[_logical_type(name, c)]})" for c in cols)
        con.execute(
            f"INSERT INTO {table} ({', '.join(_q(c) for c in cols)}) "
            f"SELECT {select} FROM {view} AS i "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{pk} = i.{pk})"
        )
    finally:
        con.unregister(view)


def _logical_type(entity_name: str, column: str) -> str:
    for c in LINEAGE_COLUMNS:
        if c.name == column:
            return c.type
    return ENTITIES[entity_name].column(column).type


def write_quarantine_parquet(outcome: Any, folder: str | Path) -> Path:
    """The batch's quarantine rows as Parquet (written even when empty, so a run leaves a trace)."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # quarantined rows hold personal data: private whatever the umask
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in outcome.batch_id)
    path = folder / f"quarantine_{safe}.parquet"
    q = outcome.quarantine.reindex(columns=QUARANTINE_COLUMNS).copy()
    for c in QUARANTINE_COLUMNS:
        if c != "row_number":
            q[c] = q[c].astype("string")
    q["row_number"] = q["row_number"].astype("int64")
    q.to_parquet(path, index=False)
    path.chmod(0o600)
    return path


def known_keys(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Primary keys already in the warehouse, for every entity (an empty set when none)."""
    ensure_raw_schema(con)
    out: dict[str, set[str]] = {}
    for name in ENTITY_ORDER:
        pk = _q(ENTITIES[name].primary_key)
        rows = con.execute(f"SELECT {pk} FROM {SCHEMA}.{_q(name)}").fetchnumpy()
        out[name] = set(rows[ENTITIES[name].primary_key].tolist()) if rows else set()
    return out


def known_invitation_sent_at(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """invitation_id -> sent_at of the invitations already in the warehouse (for the
    "recorded_at not before sent_at" check of responses whose invitation came earlier)."""
    ensure_raw_schema(con)
    df = con.execute("SELECT invitation_id, sent_at FROM raw.invitations WHERE sent_at IS NOT NULL").df()
    return dict(zip(df["invitation_id"].astype(str), df["sent_at"], strict=True))


class StoredKeys(KnownKeys):
    """The gate's view of the stored keys: asks DuckDB about just the values a chunk references
    (a semi-join against ``raw.<entity>``), instead of reading every stored key."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def _lookup(self, sql: str, values: list[str]) -> list[tuple]:
        self.con.register("_cx_lookup", pa.table({"k": pa.array(values, type=pa.string())}))
        try:
            return self.con.execute(sql).fetchall()
        finally:
            self.con.unregister("_cx_lookup")

    def contains(self, entity: str, values: list[str]) -> set[str]:
        if not values:
            return set()
        pk = _q(ENTITIES[entity].primary_key)
        rows = self._lookup(f"SELECT {pk} FROM {SCHEMA}.{_q(entity)} WHERE {pk} IN (SELECT k FROM _cx_lookup)", values)
        return {r[0] for r in rows}

    def sent_at_arrays(self, invitation_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """:meth:`sent_at` as (ids, datetime64[us] values), read as Arrow: no Python datetime per row."""
        if not invitation_ids:
            return [], np.array([], dtype="datetime64[us]")
        self.con.register("_cx_lookup", pa.table({"k": pa.array(invitation_ids, type=pa.string())}))
        try:
            table = self.con.execute(
                f"SELECT invitation_id, sent_at FROM {SCHEMA}.invitations "
                "WHERE sent_at IS NOT NULL AND invitation_id IN (SELECT k FROM _cx_lookup)"
            ).to_arrow_table()
        finally:
            self.con.unregister("_cx_lookup")
        ids = table.column("invitation_id").to_pylist()
        values = table.column("sent_at").cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)
        return ids, values.astype("datetime64[us]")

    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:
        if not invitation_ids:
            return {}
        rows = self._lookup(
            f"SELECT invitation_id, sent_at FROM {SCHEMA}.invitations "
            "WHERE sent_at IS NOT NULL AND invitation_id IN (SELECT k FROM _cx_lookup)",
            invitation_ids,
        )
        return {str(k): v for k, v in rows}
