"""What every warehouse store offers the other stages: the :class:`Store` interface (implemented by
:class:`cxloop.store.duckdb_store.DuckDBStore` and :class:`cxloop.store.postgres_store.PostgresStore`),
its :class:`BatchLoader`, the layout of the gate's bookkeeping tables and the stored-key lookup
(:class:`KnownKeys`) the gate's reference checks ask.

The store knows nothing of the gate or the connectors: they import from here, never the other way.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxloop.store.state import Db, get_watermarks

# raw.quarantine: one row per (quarantined or warned row, failed check)
QUARANTINE_COLUMNS = [
    "batch_id",
    "source",
    "entity",
    "primary_key",
    "row_number",
    "field",
    "expectation",
    "severity",
    "reason",
    "record_json",
]
RESULT_COLUMNS = [
    "batch_id",
    "source",
    "entity",
    "expectation",
    "column",
    "severity",
    "success",
    "rows_checked",
    "unexpected_count",
    "checked_at",
]


class KnownKeys(abc.ABC):
    """Keys already in the warehouse, asked for only the values a chunk references (so a run
    never reads every stored key). Each store implements it on its loader's connection (inside the
    batch's transaction, so it sees the rows merged so far); :class:`SetKnownKeys` on plain sets."""

    def has(self, entity: str) -> bool:  # the entity's keys can be asked for
        return True

    @abc.abstractmethod
    def contains(self, entity: str, values: list[str]) -> set[str]:  # the stored ones among values
        ...

    @abc.abstractmethod
    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:  # invitation_id -> stored sent_at
        ...

    def sent_at_arrays(self, invitation_ids: list[str]) -> tuple[list[str], Any]:
        """:meth:`sent_at` as (ids, numpy datetime64[us] values as naive UTC); stores override it to
        read the values without a Python datetime per row."""
        import numpy as np
        import pandas as pd

        found = {k: v for k, v in self.sent_at(invitation_ids).items() if v is not None and not pd.isna(v)}
        values = []
        for v in found.values():
            ts = pd.Timestamp(v)
            values.append(ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts)
        return list(found), np.array([t.to_datetime64() for t in values], dtype="datetime64[us]")


class SetKnownKeys(KnownKeys):
    def __init__(self, keys: Mapping[str, Any] | None, sent_at: Mapping[str, Any] | None = None):
        self.keys = {k: {str(x) for x in v} for k, v in (keys or {}).items()}
        self.sent = {str(k): v for k, v in (sent_at or {}).items()}

    def has(self, entity: str) -> bool:
        return entity in self.keys

    def contains(self, entity: str, values: list[str]) -> set[str]:
        keys = self.keys.get(entity, set())
        return {v for v in values if v in keys}

    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:
        return {i: self.sent[i] for i in invitation_ids if i in self.sent}


class BatchLoader(abc.ABC):
    """One batch group's load as one transaction, fed chunk by chunk: ``merge`` the valid rows of each
    chunk as the gate passes them, write the pipeline's state through :attr:`db` (watermarks,
    windows, releases: they commit with the rows), then ``finish`` with the outcome (bookkeeping
    rows, commit). Leaving the ``with`` block without ``finish`` rolls everything back, state
    included. Inside the transaction, :meth:`keys` sees the rows merged so far.

    Merge rule (both engines): valid rows replace stored rows of the same primary key only when
    the stored row's ``_extracted_at`` is not later than this batch's (an old batch loaded late
    never overwrites newer data); a reload of the same batch reuses its first ``loaded_at`` and
    replaces its quarantine/validation_results/batches rows of the entities it carries."""

    db: Db  # the state tables, inside this load's transaction

    @abc.abstractmethod
    def __enter__(self) -> BatchLoader: ...

    @abc.abstractmethod
    def __exit__(self, exc_type, exc, tb) -> None: ...

    @abc.abstractmethod
    def keys(self) -> KnownKeys:
        """The stored keys, looked up per chunk inside this transaction."""

    @abc.abstractmethod
    def merge(self, entity: str, frame: Any) -> None:
        """Merge one chunk of an entity's valid rows (contract columns) on the primary key."""

    @abc.abstractmethod
    def finish(self, outcome: Any | None, quarantine_dir: str | Path | None = None) -> None:
        """Write the outcome's bookkeeping rows (quarantine, validation results, batch counts) and
        commit; with ``quarantine_dir`` also the batch's quarantine as Parquet. ``outcome`` None
        commits what was merged and written through :attr:`db` without bookkeeping rows."""


class Store(abc.ABC):
    """The warehouse as the pipeline sees it, one implementation per engine; from
    :func:`cxloop.store.open_store`. Use it as a context manager (closes the connection)."""

    target: str  # "duckdb" | "postgres"

    @property
    @abc.abstractmethod
    def db(self) -> Db:
        """The state tables outside any load (each statement commits on its own)."""

    @abc.abstractmethod
    def ensure_raw_schema(self) -> None:
        """Create the raw and state tables where missing (idempotent)."""

    @abc.abstractmethod
    def batch_loader(
        self, batch_id: str, source: str, extracted_at: dt.datetime, loaded_at: dt.datetime | None = None
    ) -> BatchLoader:
        """A :class:`BatchLoader` for one batch (group) on this store's connection."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def grant_bi_access(self) -> None:
        """Re-apply the BI readers' privileges after a build (Postgres; DuckDB publishes a snapshot)."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # ---------------------------------------------------------------- small queries

    def has_table(self, name: str) -> bool:
        rows = self.db.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = ?", [name]
        )
        return bool(rows[0][0])

    def watermarks(self, source: str) -> dict[str, dt.datetime]:
        """The source's watermarks ({} before the first load)."""
        return get_watermarks(self.db, source) if self.has_table("watermarks") else {}

    def data_as_of(self) -> dt.datetime | None:
        """How far the warehouse's data is complete (see :func:`cxloop.store.state.data_as_of`)."""
        from cxloop.store.state import data_as_of

        if not self.has_table("extraction_windows"):
            return None
        return data_as_of(self.db)

    def last_dbt_invocation(self) -> str | None:
        """The dbt invocation that built the marts now in the warehouse (``raw.dbt_results``)."""
        if not self.has_table("dbt_results"):
            return None
        rows = self.db.execute("SELECT invocation_id FROM raw.dbt_results ORDER BY recorded_at DESC LIMIT 1")
        return rows[0][0] if rows else None

    def latest_batch_ids(self) -> list[str]:
        """The batches that loaded each entity's latest data window."""
        if not self.has_table("extraction_windows"):
            return []
        return sorted({r[0] for r in self.db.execute("SELECT DISTINCT batch_id FROM raw.extraction_windows")})
