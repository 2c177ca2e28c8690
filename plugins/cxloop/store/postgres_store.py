"""Postgres raw layer: the same tables and merge semantics as :mod:`cxloop.store.duckdb_store` (DuckDB).

Selected with ``CXLOOP_TARGET=postgres``; the connection comes from ``Settings.pg_dsn()``
(``CXLOOP_PG_HOST/PORT/USER/PASSWORD/DBNAME``). :class:`PostgresStore` is the
:class:`cxloop.store.base.Store` on one connection; its :class:`BatchLoader` loads one batch
group as one transaction, chunk by chunk, exactly like DuckDB's. Module functions mirror the
DuckDB module: :func:`connect`, :func:`ensure_raw_schema`, :func:`known_keys`,
:func:`known_invitation_sent_at`, :func:`load_outcome` (a convenience wrapper around the
loader; plus :func:`entity_ddl` and :func:`write_quarantine_parquet`); Postgres adds
:func:`ensure_database`, :func:`ensure_bi_role` and :func:`grant_bi_access`.

A missing database is created on first use when the user may (CREATEDB); otherwise
:func:`connect` fails with one line naming the database and the server (never the password).

Tables (schema ``raw``):

- ``raw.<entity>``: the contract's columns in Postgres types + the lineage columns, with a
  PRIMARY KEY on the entity's key (Postgres checks uniqueness per statement, so
  delete-then-insert of the same key in one transaction is fine).
- ``raw.quarantine``, ``raw.validation_results``, ``raw.batches``: as in DuckDB.

Loading: every chunk is serialised to CSV in memory (column-wise, vectorised) and streamed
with ``COPY ... FROM STDIN`` (psycopg2 ``copy_expert``); there is no row-by-row INSERT of
data in this module. Each chunk's valid rows are copied into a temporary staging table and
merged from there into ``raw.<entity>`` inside the batch's transaction: stored rows of the
same key from an older or the same extraction are deleted, then staged rows whose key is not
(any longer) stored are inserted, so a late batch with an older ``_extracted_at`` never
overwrites newer data and a reload of the same batch is idempotent (its first ``loaded_at``
is reused). The batch's quarantine/results/batches rows replace earlier ones of the same
(batch_id, entity). The gate's stored-key lookups (:class:`StoredKeys`) run per chunk in the
same transaction: the chunk's values are copied into a temporary table and semi-joined
against ``raw.<entity>``, so a run never reads every stored key.

CSV conventions (Arrow's CSV writer): an unquoted empty field is NULL, every non-null value is
quoted (so an empty string stays an empty string), floats are written in their shortest
round-trip form (so the stored double is bit-identical to the pandas value), timestamps as
naive UTC with microseconds.

BI access (:func:`ensure_bi_role`, :func:`grant_bi_access`): one read-only role (default
``cx_bi_reader``) gets USAGE on schema ``marts`` and SELECT on its tables, now and - through
``ALTER DEFAULT PRIVILEGES FOR ROLE <table creator>`` - for every table the pipeline/dbt user
creates there later (dbt rebuilds each mart as a new table and swaps it in). It gets nothing
on ``raw``, ``staging``, ``intermediate``, ``seeds``, ``snapshots`` (privileges there are
revoked explicitly, should anyone have granted them). The marts hold no direct PII: no
names, e-mails or e-mail hashes reach them; ``contact_id`` (follow_up_sla) and ``owner_id``
are pseudonymous CRM record ids that can only be resolved to a person with CRM access or
the ``raw`` schema, which the BI role does not have.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import make_dsn, parse_dsn

from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.store import base
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS, KnownKeys
from cxloop.store.duckdb_store import with_lineage, write_quarantine_parquet  # engine-neutral, shared
from cxloop.store.state import Db, ensure_state_tables

__all__ = [
    "BI_ROLE",
    "BatchLoader",
    "DatabaseMissing",
    "PostgresStore",
    "StoredKeys",
    "BI_PASSWORD_ENV",
    "BI_ROLE_ENV",
    "COPY_CHUNK_ROWS",
    "HIDDEN_SCHEMAS",
    "connect",
    "ensure_bi_role",
    "ensure_database",
    "ensure_raw_schema",
    "entity_ddl",
    "grant_bi_access",
    "known_invitation_sent_at",
    "known_keys",
    "load_outcome",
    "write_quarantine_parquet",
]

log = logging.getLogger(__name__)

SCHEMA = "raw"
SQL_TYPES = {
    "string": "TEXT",
    "int": "BIGINT",
    "float": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
COPY_CHUNK_ROWS = 100_000  # rows serialised per COPY statement (bounds the CSV buffer)

BI_ROLE = "cx_bi_reader"
BI_ROLE_ENV = "CXLOOP_PG_BI_ROLE"  # overrides the role name
BI_PASSWORD_ENV = "CXLOOP_PG_BI_PASSWORD"  # when set, the role can log in with it
MARTS_SCHEMA = "marts"
HIDDEN_SCHEMAS = ("raw", "staging", "intermediate", "seeds", "snapshots")

# logical types of the bookkeeping tables (column order = table order)
QUARANTINE_TYPES = {
    "batch_id": "string",
    "source": "string",
    "entity": "string",
    "primary_key": "string",
    "row_number": "int",
    "field": "string",
    "expectation": "string",
    "severity": "string",
    "reason": "string",
    "record_json": "string",
}
RESULT_TYPES = {
    "batch_id": "string",
    "source": "string",
    "entity": "string",
    "expectation": "string",
    "column": "string",
    "severity": "string",
    "success": "bool",
    "rows_checked": "int",
    "unexpected_count": "int",
    "checked_at": "timestamp",
}
BATCH_TYPES = {
    "batch_id": "string",
    "source": "string",
    "entity": "string",
    "received": "int",
    "loaded": "int",
    "quarantined": "int",
    "extracted_at": "timestamp",
    "loaded_at": "timestamp",
}
_NOT_NULL = {
    "quarantine": {"batch_id", "source", "entity", "row_number", "expectation", "severity", "reason"},
    "validation_results": {
        "batch_id",
        "source",
        "entity",
        "expectation",
        "severity",
        "success",
        "rows_checked",
        "unexpected_count",
        "checked_at",
    },
    "batches": set(BATCH_TYPES),
}
_BOOKKEEPING = {"quarantine": QUARANTINE_TYPES, "validation_results": RESULT_TYPES, "batches": BATCH_TYPES}
assert list(QUARANTINE_TYPES) == QUARANTINE_COLUMNS and list(RESULT_TYPES) == RESULT_COLUMNS


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------
# Connections and database
# --------------------------------------------------------------------------------------------


class DatabaseMissing(RuntimeError):
    """The configured database does not exist and this user may not create it."""


def _where(dsn: str) -> tuple[str, str, str]:
    params = parse_dsn(dsn)
    dbname = params.get("dbname") or params.get("user") or "postgres"
    host = f"{params.get('host', 'localhost')}:{params.get('port', '5432')}"
    return dbname, host, params.get("user", "")


def connect(dsn: str, *, create_database: bool = True) -> PgConnection:
    """Open a connection to the Postgres warehouse (libpq DSN, e.g. ``Settings.pg_dsn()``).

    Like DuckDB's file, the database is created on first use (``create_database``) when the
    user has the CREATEDB privilege; without it :class:`DatabaseMissing` says, in one line,
    which database to create on which server. The connection is in autocommit mode; a
    :class:`BatchLoader` wraps its work in one explicit transaction. The session time zone is
    UTC (timestamps are naive UTC)."""
    try:
        con = psycopg2.connect(dsn, options="-c TimeZone=UTC")
    except psycopg2.OperationalError as exc:
        if not create_database or not re.search(r'database ".*" does not exist', str(exc)):
            raise
        dbname, host, user = _where(dsn)
        try:
            ensure_database(dsn)
        except (psycopg2.errors.InsufficientPrivilege, psycopg2.OperationalError) as denied:
            reason = "may not create it (no CREATEDB privilege)"
            if not isinstance(denied, psycopg2.errors.InsufficientPrivilege):
                reason = "could not reach the server's maintenance database to create it"
            raise DatabaseMissing(
                f"Postgres database {dbname!r} does not exist on {host} and user {user!r} {reason}: "
                f"create it first (CREATE DATABASE {dbname} OWNER {user}) or grant the user CREATEDB"
            ) from None
        con = psycopg2.connect(dsn, options="-c TimeZone=UTC")
    con.autocommit = True
    return con


def ensure_database(dsn: str, maintenance_db: str = "postgres") -> bool:
    """Create the DSN's database if it does not exist (connecting to ``maintenance_db`` on the
    same server with the same credentials). Returns True when it was created."""
    params = parse_dsn(dsn)
    dbname = params.get("dbname") or params.get("user") or "postgres"
    admin = psycopg2.connect(make_dsn(dsn, dbname=maintenance_db))
    admin.autocommit = True  # CREATE DATABASE cannot run inside a transaction
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if cur.fetchone():
                return False
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except psycopg2.errors.DuplicateDatabase:  # created concurrently
                return False
            log.info("created Postgres database %s", dbname)
            return True
    finally:
        admin.close()


@contextlib.contextmanager
def _transaction(con: PgConnection) -> Iterator[Any]:
    """One transaction on ``con`` whether or not it is in autocommit mode; yields a cursor."""
    autocommit = con.autocommit
    cur = con.cursor()
    try:
        if autocommit:
            cur.execute("BEGIN")
        yield cur
        if autocommit:
            cur.execute("COMMIT")
        else:
            con.commit()
    except BaseException:
        if autocommit:
            with contextlib.suppress(psycopg2.Error):
                cur.execute("ROLLBACK")
        else:
            con.rollback()
        raise
    finally:
        cur.close()


def _query(con: PgConnection, query: str | sql.Composable, params: Any = None) -> list[tuple]:
    """Run a read query and end its transaction (no idle-in-transaction sessions)."""
    with _transaction(con) as cur:
        cur.execute(query, params)
        return cur.fetchall()


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def entity_ddl(entity_name: str) -> str:
    e = ENTITIES[entity_name]
    cols = [f"    {_q(c.name)} {SQL_TYPES[c.type]}" for c in e.columns]
    cols += [f"    {_q(c.name)} {SQL_TYPES[c.type]} NOT NULL" for c in LINEAGE_COLUMNS]
    cols += [f"    PRIMARY KEY ({_q(e.primary_key)})"]
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{_q(e.name)} (\n" + ",\n".join(cols) + "\n)"


def _bookkeeping_ddl(table: str) -> str:
    types = _BOOKKEEPING[table]
    cols = [
        f"    {_q(c)} {SQL_TYPES[t]}" + (" NOT NULL" if c in _NOT_NULL[table] else "")
        for c, t in types.items()
    ]
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} (\n" + ",\n".join(cols) + "\n)"


def ensure_raw_schema(con: PgConnection) -> None:
    """Create schema ``raw`` and its tables where missing (idempotent)."""
    with _transaction(con) as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
            (SCHEMA, [*ENTITY_ORDER, *_BOOKKEEPING]),
        )
        if cur.fetchone()[0] == len(ENTITY_ORDER) + len(_BOOKKEEPING):
            return
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name in ENTITY_ORDER:
            cur.execute(entity_ddl(name))
        for table in _BOOKKEEPING:
            cur.execute(_bookkeeping_ddl(table))
            cur.execute(
                f"CREATE INDEX IF NOT EXISTS {table}_batch_entity_idx ON {SCHEMA}.{table} (batch_id, entity)"
            )


# --------------------------------------------------------------------------------------------
# CSV serialisation for COPY
# --------------------------------------------------------------------------------------------


def _naive_utc(t: dt.datetime | pd.Timestamp | str) -> dt.datetime:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _datetimes(s: pd.Series) -> pd.Series:
    out = pd.to_datetime(s, utc=False)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _arrow_column(s: pd.Series, logical: str) -> pa.Array:
    """One column as an Arrow array of the type Postgres parses it as (nulls stay null)."""
    s = s.reset_index(drop=True)
    if logical == "string":
        out = pa.array(s.astype("string"), type=pa.string(), from_pandas=True)
        if pc.any(pc.match_substring(out, "\x00")).as_py():
            raise ValueError("text values must not contain NUL characters (Postgres text cannot hold them)")
        return out
    if logical == "int":
        return pa.array(pd.to_numeric(s).astype("Int64"), type=pa.int64(), from_pandas=True)
    if logical == "float":
        return pa.array(pd.to_numeric(s).astype("Float64"), type=pa.float64(), from_pandas=True)
    if logical == "bool":
        return pa.array(s.astype("boolean"), type=pa.bool_(), from_pandas=True)
    if logical in ("date", "timestamp"):
        stamps = pc.cast(pa.array(_datetimes(s), from_pandas=True), pa.timestamp("us"), safe=False)
        return pc.cast(stamps, pa.date32(), safe=False) if logical == "date" else stamps
    raise ValueError(f"unknown logical type {logical!r}")


def _csv_chunks(frame: pd.DataFrame, types: Mapping[str, str], chunk_rows: int = COPY_CHUNK_ROWS) -> Iterator[bytes]:
    """The frame's rows (columns in ``types`` order) as UTF-8 CSV, ``chunk_rows`` rows at a time,
    written by Arrow's CSV writer: every non-null value quoted (so an empty string stays one),
    nulls as unquoted empty fields, floats in shortest round-trip form, timestamps with
    microseconds."""
    options = pa_csv.WriteOptions(include_header=False, quoting_style="all_valid")
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        table = pa.table({c: _arrow_column(part[c], t) for c, t in types.items()})
        buf = io.BytesIO()
        pa_csv.write_csv(table, buf, options)
        yield buf.getvalue()


def _copy_in(cur: Any, table: str, frame: pd.DataFrame, types: Mapping[str, str]) -> int:
    """COPY ``frame`` into ``table`` (qualified, quoted) through STDIN; returns rows copied."""
    if frame.empty:
        return 0
    cols = ", ".join(_q(c) for c in types)
    statement = f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, ENCODING 'UTF8')"
    for chunk in _csv_chunks(frame, types):
        cur.copy_expert(statement, io.BytesIO(chunk))
    return len(frame)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _previous_loaded_at(cur: Any, batch_id: str) -> dt.datetime | None:
    cur.execute(f"SELECT min(loaded_at) FROM {SCHEMA}.batches WHERE batch_id = %s", (batch_id,))
    row = cur.fetchone()
    return row[0] if row and row[0] is not None else None


def load_outcome(
    con: PgConnection,
    outcome: Any,
    *,
    extracted_at: dt.datetime,
    quarantine_dir: str | Path | None = None,
    loaded_at: dt.datetime | None = None,
) -> dict[str, dict[str, int]]:
    """Load a validated batch held in memory in one transaction; returns the outcome's counts.

    A convenience wrapper around :class:`BatchLoader` (one ``merge`` per entity, then
    ``finish``); same contract as :func:`cxloop.store.duckdb_store.load_outcome`.
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
    """One batch's load as one Postgres transaction (see :class:`cxloop.store.base.BatchLoader`).

    Each ``merge`` COPYs the chunk into a temporary staging table of its entity (created once
    per transaction, emptied per chunk) and merges it from there; :attr:`db` and :meth:`keys`
    run on the same connection, inside the transaction. A transaction-scoped advisory lock on
    the batch id keeps two loads of the same batch from racing on ``loaded_at`` and the
    bookkeeping rows."""

    def __init__(
        self,
        con: PgConnection,
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
        self.cur: Any = None
        self.db = Db(con, commit=False)
        self._staged: set[str] = set()
        self._lookup = False

    def __enter__(self) -> BatchLoader:
        ensure_raw_schema(self.con)  # its own short transaction, before ours
        self.cur = self.con.cursor()
        try:
            if self.con.autocommit:
                self.cur.execute("BEGIN")
            # hash joins of a chunk against its table fit in memory instead of spilling in batches
            self.cur.execute("SET LOCAL work_mem = '64MB'")
            self.cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cxloop.load:" + self.batch_id,))
            loaded = self._loaded_at and _naive_utc(self._loaded_at)
            self.loaded = (
                _previous_loaded_at(self.cur, self.batch_id) or loaded or dt.datetime.now(dt.UTC).replace(tzinfo=None)
            )
        except BaseException:
            self._rollback()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.done:
            self._rollback()

    def _rollback(self) -> None:
        try:
            if self.con.autocommit:
                with contextlib.suppress(psycopg2.Error):
                    self.cur.execute("ROLLBACK")
            else:
                self.con.rollback()
        finally:
            self.cur.close()

    def _commit(self) -> None:
        if self.con.autocommit:
            self.cur.execute("COMMIT")
        else:
            self.con.commit()
        self.done = True
        self.cur.close()

    def keys(self) -> StoredKeys:
        return StoredKeys(self)

    def merge(self, name: str, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        e = ENTITIES[name]
        cur = self.cur
        incoming = with_lineage(name, frame, self.batch_id, self.source, self.extracted, self.loaded)
        types = {c.name: c.type for c in e.columns} | {c.name: c.type for c in LINEAGE_COLUMNS}
        stage = _q(f"_cx_stage_{name}")
        table = f"{SCHEMA}.{_q(name)}"
        pk = _q(e.primary_key)
        if name in self._staged:
            cur.execute(f"TRUNCATE {stage}")
        else:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{stage}")
            cur.execute(f"CREATE TEMPORARY TABLE {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
            self._staged.add(name)
        _copy_in(cur, stage, incoming, types)
        del incoming
        cur.execute(f"ANALYZE {stage}")
        # stored rows of the same key from an older or the same extraction are replaced
        cur.execute(
            f"DELETE FROM {table} AS t USING {stage} AS i "
            f"WHERE t.{pk} = i.{pk} AND t._extracted_at <= i._extracted_at"
        )
        cols = ", ".join(_q(c) for c in types)
        cur.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} AS i "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{pk} = i.{pk})"
        )

    def lookup(self, query: str, values: list[str]) -> list[tuple]:
        """Run ``query`` (which reads ``_cx_lookup(k)``) with ``values`` copied into that
        temporary table, inside this transaction."""
        cur = self.cur
        if self._lookup:
            cur.execute("TRUNCATE _cx_lookup")
        else:
            cur.execute("DROP TABLE IF EXISTS pg_temp._cx_lookup")
            cur.execute("CREATE TEMPORARY TABLE _cx_lookup (k TEXT) ON COMMIT DROP")
            self._lookup = True
        _copy_in(cur, "_cx_lookup", pd.DataFrame({"k": pd.array(values, dtype="string")}), {"k": "string"})
        cur.execute("ANALYZE _cx_lookup")
        cur.execute(query)
        return cur.fetchall()

    def finish(self, outcome: Any | None, quarantine_dir: str | Path | None = None) -> None:
        if outcome is None:
            self._commit()
            return
        cur, batch_id, source = self.cur, self.batch_id, self.source
        entities = list(outcome.counts)
        # a batch may be validated in parts, so a reload replaces only the entities it carries
        for table in _BOOKKEEPING:
            cur.execute(
                f"DELETE FROM {SCHEMA}.{table} WHERE batch_id = %s AND entity = ANY(%s)",
                (batch_id, entities),
            )
        _copy_in(
            cur,
            f"{SCHEMA}.quarantine",
            outcome.quarantine.reindex(columns=QUARANTINE_COLUMNS),
            QUARANTINE_TYPES,
        )
        _copy_in(
            cur, f"{SCHEMA}.validation_results", outcome.results.reindex(columns=RESULT_COLUMNS), RESULT_TYPES
        )
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
            columns=list(BATCH_TYPES),
        )
        _copy_in(cur, f"{SCHEMA}.batches", b, BATCH_TYPES)
        self._commit()
        if quarantine_dir is not None:
            write_quarantine_parquet(outcome, quarantine_dir)


class StoredKeys(KnownKeys):
    """The gate's view of the stored keys inside a :class:`BatchLoader`'s transaction: each
    lookup copies the chunk's values into a temporary table and semi-joins it against
    ``raw.<entity>`` (never reads every stored key), seeing the rows merged so far."""

    def __init__(self, loader: BatchLoader):
        self.loader = loader

    def contains(self, entity: str, values: list[str]) -> set[str]:
        if not values:
            return set()
        pk = _q(ENTITIES[entity].primary_key)
        rows = self.loader.lookup(
            f"SELECT {pk} FROM {SCHEMA}.{_q(entity)} WHERE {pk} IN (SELECT k FROM _cx_lookup)", values
        )
        return {r[0] for r in rows}

    def sent_at_arrays(self, invitation_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """:meth:`sent_at` as (ids, datetime64[us]), read as epoch microseconds: no Python
        datetime per row."""
        if not invitation_ids:
            return [], np.array([], dtype="datetime64[us]")
        rows = self.loader.lookup(
            "SELECT invitation_id, (EXTRACT(EPOCH FROM sent_at) * 1000000)::bigint "
            f"FROM {SCHEMA}.invitations WHERE sent_at IS NOT NULL AND invitation_id IN (SELECT k FROM _cx_lookup)",
            invitation_ids,
        )
        ids = [r[0] for r in rows]
        return ids, np.array([r[1] for r in rows], dtype="int64").astype("datetime64[us]")

    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:
        if not invitation_ids:
            return {}
        rows = self.loader.lookup(
            f"SELECT invitation_id, sent_at FROM {SCHEMA}.invitations "
            "WHERE sent_at IS NOT NULL AND invitation_id IN (SELECT k FROM _cx_lookup)",
            invitation_ids,
        )
        return {str(k): v for k, v in rows}


class PostgresStore(base.Store):
    """The warehouse in a Postgres database (``CXLOOP_TARGET=postgres``)."""

    target = "postgres"

    def __init__(self, con: PgConnection):
        self.con = con
        self._db = Db(con)

    @classmethod
    def open(cls, dsn: str) -> PostgresStore:
        return cls(connect(dsn))

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
        grant_bi_access(self.con)

    def close(self) -> None:
        self.con.close()


# --------------------------------------------------------------------------------------------
# Reads for the gate
# --------------------------------------------------------------------------------------------


def known_keys(con: PgConnection) -> dict[str, set[str]]:
    """Primary keys already in the warehouse, for every entity (an empty set when none)."""
    ensure_raw_schema(con)
    out: dict[str, set[str]] = {}
    for name in ENTITY_ORDER:
        pk = _q(ENTITIES[name].primary_key)
        out[name] = {r[0] for r in _query(con, f"SELECT {pk} FROM {SCHEMA}.{_q(name)}")}
    return out


def known_invitation_sent_at(con: PgConnection) -> dict[str, Any]:
    """invitation_id -> sent_at (naive UTC datetime) of the invitations already stored."""
    ensure_raw_schema(con)
    rows = _query(con, f"SELECT invitation_id, sent_at FROM {SCHEMA}.invitations WHERE sent_at IS NOT NULL")
    return {str(k): v for k, v in rows}


# --------------------------------------------------------------------------------------------
# BI role
# --------------------------------------------------------------------------------------------


def _role_name(role: str | None) -> str:
    return role or os.environ.get(BI_ROLE_ENV) or BI_ROLE


def _role_exists(cur: Any, role: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


def ensure_bi_role(
    con: PgConnection,
    role: str | None = None,
    *,
    password: str | None = None,
    login: bool | None = None,
) -> str:
    """Create (or update) the read-only BI role and grant it the marts; returns its name.

    ``role`` defaults to ``$CXLOOP_PG_BI_ROLE`` or ``cx_bi_reader``. The password comes from
    ``password`` or ``$CXLOOP_PG_BI_PASSWORD`` only (never a default); with one the role is
    ``LOGIN``, without one it is ``NOLOGIN`` (grant it to real users: ``GRANT cx_bi_reader TO
    alice``) unless ``login=True``. Needs CREATEROLE (or superuser) on first creation."""
    role = _role_name(role)
    password = password if password is not None else os.environ.get(BI_PASSWORD_ENV) or None
    can_login = bool(password) if login is None else login
    ident = sql.Identifier(role)
    with _transaction(con) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('cxloop.bi_role'))")
        options = sql.SQL("LOGIN" if can_login else "NOLOGIN") + sql.SQL(
            " NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS"
        )
        if not _role_exists(cur, role):
            cur.execute(sql.SQL("CREATE ROLE {} WITH ").format(ident) + options)
            log.info("created Postgres role %s (%s)", role, "LOGIN" if can_login else "NOLOGIN")
        else:
            cur.execute(sql.SQL("ALTER ROLE {} WITH ").format(ident) + options)
        if password:
            cur.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD %s").format(ident), (password,))
    grant_bi_access(con, role)
    return role


def grant_bi_access(con: PgConnection, role: str | None = None, *, table_owner: str | None = None) -> str:
    """(Re-)apply the BI role's privileges; idempotent, call it after every dbt build.

    USAGE on schema ``marts`` and SELECT on all its tables; default privileges so that tables
    ``table_owner`` (default: this connection's user, i.e. the pipeline/dbt user) creates in
    ``marts`` later are readable too; every privilege on the hidden schemas
    (:data:`HIDDEN_SCHEMAS`) and their tables revoked. Creates the role first if it does not
    exist (see :func:`ensure_bi_role`). Returns the role name."""
    role = _role_name(role)
    with _transaction(con) as cur:
        exists = _role_exists(cur, role)
    if not exists:
        return ensure_bi_role(con, role)
    ident = sql.Identifier(role)
    marts = sql.Identifier(MARTS_SCHEMA)
    with _transaction(con) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('cxloop.bi_role'))")
        owner = sql.Identifier(table_owner) if table_owner else sql.SQL("CURRENT_USER")
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(marts))
        # CONNECT is PUBLIC's by default; grant it explicitly where we may (database owner)
        cur.execute("SELECT pg_has_role(datdba, 'USAGE') FROM pg_database WHERE datname = current_database()")
        if cur.fetchone()[0]:
            cur.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(con.get_dsn_parameters()["dbname"]), ident
                )
            )
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(marts, ident))
        cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(marts, ident))
        cur.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                owner, marts, ident
            )
        )
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(HIDDEN_SCHEMAS),))
        for (schema,) in cur.fetchall():
            s = sql.Identifier(schema)
            # a schema someone else owns may refuse our REVOKE: keep the rest of the grants
            cur.execute("SAVEPOINT cx_revoke")
            try:
                cur.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(s, ident))
                cur.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(s, ident))
                cur.execute(
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE ALL ON TABLES FROM {}"
                    ).format(owner, s, ident)
                )
            except psycopg2.errors.InsufficientPrivilege as exc:
                cur.execute("ROLLBACK TO SAVEPOINT cx_revoke")
                log.warning("could not revoke %s's privileges on schema %s: %s", role, schema, exc)
            else:
                cur.execute("RELEASE SAVEPOINT cx_revoke")
    return role
