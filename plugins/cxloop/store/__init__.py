"""The warehouse: the raw layer (``raw.<entity>`` tables with lineage, quarantine, validation results,
batches), the pipeline's state (watermarks, extraction windows, quarantine releases) and the
read-only BI role, on DuckDB (:mod:`duckdb_store`, the embedded default) or Postgres
(:mod:`postgres_store`).

May import: ``cxloop.config``, ``cxloop.contract``. Nothing here imports extract, gate, transform,
serve or the pipeline; they call the store through :func:`open_store`.
"""

from __future__ import annotations

from cxloop.config import Settings


def open_store(settings: Settings):
    """The raw layer's module and an open connection for the configured target. Both modules
    offer the same functions: ensure_raw_schema, known_keys, known_invitation_sent_at,
    load_outcome."""
    if settings.target == "postgres":
        from cxloop.store import postgres_store as store

        return store, store.connect(settings.pg_dsn())
    from cxloop.store import duckdb_store as store

    return store, store.connect(settings.warehouse_path)
