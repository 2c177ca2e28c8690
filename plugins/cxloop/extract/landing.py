"""The landed batch: each extracted entity written once, immutable, as Parquet, through
:class:`BatchWriter` (every connector streams its chunks into it; there is no other way to land).

Values are landed as text exactly as the connector received them (``None`` stays null), so
that a malformed value (a score of "7.5", an ARR of "n/a") is kept for the quarantine
instead of being lost in a type conversion. The validation gate reads these files back and
names them, with the row number, in every message.

Landed batches hold personal data: folders are created ``0700`` and files ``0600``
(:mod:`cxloop.extract.private`), whatever the umask.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxloop.extract.frames import text_array, text_schema
from cxloop.extract.private import create_private, private_dir, write_private


@dataclass
class LandedBatch:
    batch_id: str
    source: str
    extracted_at: str  # ISO, UTC
    as_of: str
    files: dict[str, str] = field(default_factory=dict)  # entity -> parquet path
    rows: dict[str, int] = field(default_factory=dict)
    windows: dict[str, list[str | None]] = field(default_factory=dict)  # entity -> [since, until)
    cursors: dict[str, str] = field(default_factory=dict)  # entity -> greatest change timestamp

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LandedBatch:
        return cls(**data)


def frame_as_text(frame: pd.DataFrame) -> pa.Table:
    """Every column as text (:func:`cxloop.extract.frames.as_text` per value, vectorised).

    A frame naming one column twice is refused (ValueError naming the columns): a landed file
    holds each column once, and which of the two would count is undefined."""
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise ValueError(f"cannot land a frame that names column(s) {', '.join(repeated)} more than once")
    arrays = {str(col): text_array(frame[col]) for col in frame.columns}
    return pa.table(arrays) if arrays else pa.table({})


def batch_dir(landing_dir: Path, source: str, load_date: str, batch_id: str) -> Path:
    return landing_dir / f"source={source}" / f"load_date={load_date}" / f"batch={batch_id}"


ROW_GROUP_ROWS = 100_000


class BatchWriter:
    """Lands a batch incrementally: each entity's text chunks (:class:`cxloop.extract.frames.ChunkBuffer`)
    are appended to its Parquet file as row groups, so an entity never has to fit in memory.

    Files are written in a hidden staging folder next to the batch folder and moved into place
    by :meth:`finish` (with ``_batch.json``); :meth:`abort` (or an exception inside ``with``)
    removes them: a failed extraction lands nothing. ``entities`` are the entities the batch
    may hold; chunks of other entities are dropped. With ``every_entity`` (the API connectors)
    an entity without any chunk still lands an empty file with the contract's columns; without
    it (a file drop) only the entities written land. A file's columns are its first chunk's
    (the contract's for the API connectors; a drop file's own, for the gate to judge).
    ``cursor_columns`` names each entity's change timestamp: its greatest value becomes the
    batch's cursor."""

    def __init__(
        self,
        *,
        landing_dir: Path,
        source: str,
        batch_id: str,
        extracted_at: datetime,
        as_of: datetime,
        entities: Iterable[str],
        cursor_columns: dict[str, str] | None = None,
        every_entity: bool = True,
    ):
        self.every_entity = every_entity
        self.folder = batch_dir(landing_dir, source, extracted_at.strftime("%Y-%m-%d"), batch_id)
        self.staging = self.folder.parent / f".partial-{batch_id}"
        self.batch = LandedBatch(batch_id, source, extracted_at.isoformat(), as_of.isoformat())
        self.entities = list(dict.fromkeys(entities))
        self.cursor_columns = cursor_columns or {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._maxima: dict[str, object] = {}
        self._lock = threading.Lock()
        self._done = False
        for entity_name in self.entities:
            if (self.folder / f"{entity_name}.parquet").exists():
                raise FileExistsError(f"{self.folder / entity_name}.parquet exists: landed batches are immutable")
        private_dir(self.staging)

    def write(self, entity_name: str, table: pa.Table, maxima: dict | None = None) -> None:
        """Append one chunk (a text table with the entity's contract columns) to its file."""
        if entity_name not in self.entities:
            return
        with self._lock:
            writer = self._writers.get(entity_name)
            if writer is None:
                writer = self._open(entity_name, table.schema)
            if table.num_rows:
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self.batch.rows[entity_name] = self.batch.rows.get(entity_name, 0) + table.num_rows
            col = self.cursor_columns.get(entity_name)
            m = (maxima or {}).get(col) if col else None
            if m is not None and (self._maxima.get(entity_name) is None or m > self._maxima[entity_name]):
                self._maxima[entity_name] = m

    def _open(self, entity_name: str, schema: pa.Schema) -> pq.ParquetWriter:
        path = create_private(self.staging / f"{entity_name}.parquet")
        writer = self._writers[entity_name] = pq.ParquetWriter(path, schema)
        return writer

    @property
    def landed_entities(self) -> list[str]:
        """The entities the batch lands, in the order given."""
        return [e for e in self.entities if self.every_entity or e in self._writers]

    def finish(self, windows: dict[str, list[str | None]] | None = None) -> LandedBatch:
        """Close every file, move them into the batch folder, write ``_batch.json``."""
        with self._lock:
            landed = self.landed_entities
            for entity_name in landed:
                if entity_name not in self._writers:  # no rows: an empty file all the same
                    self._open(entity_name, text_schema(entity_name))
                    self.batch.rows[entity_name] = 0
            for writer in self._writers.values():
                writer.close()
            private_dir(self.folder)
            for entity_name in landed:
                path = self.folder / f"{entity_name}.parquet"
                if path.exists():
                    raise FileExistsError(f"{path} exists: landed batches are immutable")
                (self.staging / f"{entity_name}.parquet").replace(path)
                self.batch.files[entity_name] = str(path)
            shutil.rmtree(self.staging, ignore_errors=True)
            self.batch.windows = {e: w for e, w in (windows or {}).items() if e in landed}
            self.batch.cursors = {
                e: pd.Timestamp(m).isoformat() for e, m in self._maxima.items() if m is not None
            }
            self.batch.rows = {e: self.batch.rows.get(e, 0) for e in landed}
            summary = json.dumps(self.batch.to_dict(), indent=2, sort_keys=True)
            write_private(self.folder / "_batch.json", summary.encode())
            self._done = True
            return self.batch

    def abort(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - cleaning up after a failure already raised
                    pass
            self._writers.clear()
            shutil.rmtree(self.staging, ignore_errors=True)
            try:  # the load date folder, when this batch made it and it is empty
                self.staging.parent.rmdir()
            except OSError:
                pass
            self._done = True

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if not self._done:
            self.abort()
