"""The warehouse: the raw layer (``raw.<entity>`` tables with lineage, quarantine, validation results,
batches), the pipeline's state (watermarks, extraction windows, quarantine releases) and the
read-only BI role, on DuckDB (:mod:`duckdb_store`, the embedded default) or Postgres
(:mod:`postgres_store`).

May import: ``cxloop.config``, ``cxloop.contract``. Nothing here imports extract, gate, transform,
serve or the pipeline; they call the store through :func:`open_store` (one
:class:`cxloop.store.base.Store` interface for both engines) and :func:`read_watermarks`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cxloop.config import Settings

if TYPE_CHECKING:
    from cxloop.store.base import Store


def open_store(settings: Settings, *, read_only: bool = False) -> Store:
    """The configured warehouse as a :class:`~cxloop.store.base.Store` (close it, or use it as a
    context manager). ``read_only`` (DuckDB) opens the file without taking its write lock."""
    if settings.target == "postgres":
        from cxloop.store.postgres_store import PostgresStore

        return PostgresStore.open(settings.pg_dsn())
    from cxloop.store.duckdb_store import DuckDBStore

    return DuckDBStore.open(settings.warehouse_path, read_only=read_only)


def read_watermarks(settings: Settings, source: str) -> dict[str, datetime]:
    """The source's watermarks, read without taking the warehouse's write lock ({} before the
    first load; on Postgres a brand-new database is created, see ``postgres_store.connect``)."""
    if settings.target != "postgres" and not settings.warehouse_path.exists():
        return {}
    with open_store(settings, read_only=True) as store:
        return store.watermarks(source)
