"""Reading the landed batches the connectors wrote (immutable Parquet, every value as text):
whole, in bounded chunks, or just their shape and repeated keys.

The landing folder is the hand-over from extract to the gate: the gate reads it, it never
asks the connectors anything.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq


def read_landed(path: str | Path) -> pd.DataFrame:
    """A landed entity file as a frame of Python objects (str or None)."""
    table = pq.read_table(path)
    return pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names}, dtype=object)


def find_landed(landing_dir: Path, batch_id: str, entity: str) -> Path | None:
    """The landed file of one entity of an earlier batch (landed files are never moved)."""
    return next(iter(landing_dir.glob(f"source=*/load_date=*/batch={batch_id}/{entity}.parquet")), None)


CHUNK_ROWS = 250_000  # rows validated (and loaded) at a time


def landed_shape(path: str | Path) -> tuple[list[str], int]:
    """(column names, rows) of a landed Parquet file, from its footer."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    return list(f.schema_arrow.names), f.metadata.num_rows


def landed_chunks(path: str | Path, rows: int | None = None):
    """The landed file as frames of at most ``rows`` rows (values str or None, as read_landed
    gives them), in file order; one empty frame for an empty file."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(path)
    names = list(f.schema_arrow.names)
    seen = False
    for b in f.iter_batches(batch_size=rows or CHUNK_ROWS):
        seen = True
        yield pd.DataFrame(
            {n: b.column(i).to_numpy(zero_copy_only=False) for i, n in enumerate(names)}, dtype=object
        )
    if not seen:
        yield pd.DataFrame({n: pd.Series([], dtype=object) for n in names})


def landed_duplicates(path: str | Path, column: str) -> dict[str, int]:
    """:func:`duplicate_keys` of a landed file's key column, computed by DuckDB over the file
    (so no chunk needs the whole column): key, after the key rule's edge stripping -> 1-based row
    of its first occurrence. Variants of one key in different chunks are found here."""
    import duckdb

    quoted = '"' + column.replace('"', '""') + '"'
    # the key rule of cxloop.gate.coerce: edge whitespace (Python's str.isspace set) and format
    # characters (Cf: zero-width space, BOM, ...) are not part of a key, so "001 " repeats "001"
    edge = r"[\p{Z}\p{Cf}\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f}\x{85}]+"
    key = f"regexp_replace({quoted}, '^{edge}|{edge}$', '', 'g')"
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT k, min(n) FROM (SELECT {key} AS k, file_row_number + 1 AS n "
            f"FROM read_parquet(?, file_row_number = true) WHERE {quoted} IS NOT NULL) "
            "WHERE k <> '' GROUP BY k HAVING count(*) > 1",
            [str(path)],
        ).fetchall()
    finally:
        con.close()
    return {str(k): int(first) for k, first in rows if str(k).strip()}  # blank keys are null
