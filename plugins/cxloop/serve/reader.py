"""Read queries against the warehouse, whichever engine holds it (DuckDB file or Postgres).

Used by the pipeline's own late steps (summary, exports): SQL written with ``?`` placeholders
and in the common subset of both dialects.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cxloop.config import Settings


class WarehouseReader:
    def __init__(self, settings: Settings):
        self.settings = settings
        if settings.target == "duckdb":
            import duckdb

            # The pipeline's connection config (not read_only): under `airflow dags test` all
            # tasks share one process, and DuckDB refuses a second connection with another
            # configuration to a file the process already holds open.
            self._con = duckdb.connect(str(settings.warehouse_path))
        else:
            import psycopg2

            self._con = psycopg2.connect(settings.pg_dsn())

    def df(self, sql: str, params: Sequence | None = None) -> pd.DataFrame:
        if self.settings.target == "duckdb":
            return self._con.execute(sql, list(params or [])).df()
        with self._con.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), tuple(params or ()))
            columns = [d[0] for d in cur.description]
            return pd.DataFrame(cur.fetchall(), columns=columns)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> WarehouseReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
