"""The landed batch: each extracted entity frame written once, immutable, as Parquet.

Values are landed as text exactly as the connector received them (``None`` stays null), so
that a malformed value (a score of "7.5", an ARR of "n/a") is kept for the quarantine
instead of being lost in a type conversion. The validation gate reads these files back and
names them, with the row number, in every message.
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


def land_frames(
    frames: dict[str, pd.DataFrame],
    *,
    landing_dir: Path,
    source: str,
    batch_id: str,
    extracted_at: datetime,
    as_of: datetime,
    windows: dict[str, list[str | None]] | None = None,
    cursors: dict[str, str] | None = None,
) -> LandedBatch:
    folder = batch_dir(landing_dir, source, extracted_at.strftime("%Y-%m-%d"), batch_id)
    folder.mkdir(parents=True, exist_ok=True)
    batch = LandedBatch(
        batch_id, source, extracted_at.isoformat(), as_of.isoformat(), windows=windows or {}, cursors=cursors or {}
    )
    for entity_name, frame in frames.items():
        path = folder / f"{entity_name}.parquet"
        if path.exists():
            raise FileExistsError(f"{path} exists: landed batches are immutable")
        pq.write_table(frame_as_text(frame), path)
        batch.files[entity_name] = str(path)
        batch.rows[entity_name] = len(frame)
    (folder / "_batch.json").write_text(json.dumps(batch.to_dict(), indent=2, sort_keys=True))
    return batch


ROW_GROUP_ROWS = 100_000


class BatchWriter:
    """Lands a batch incrementally: each entity's text chunks (:class:`cxloop.extract.frames.ChunkBuffer`)
    are appended to its Parquet file as row groups, so an entity never has to fit in memory.

    Files are written in a hidden staging folder next to the batch folder and moved into place
    by :meth:`finish` (with ``_batch.json``); :meth:`abort` (or an exception inside ``with``)
    removes them: a failed extraction lands nothing. ``entities`` are the entities the batch
    holds (an entity without rows still lands an empty file); chunks of other entities are
    dropped. ``cursor_columns`` names each entity's change timestamp: its greatest value
    becomes the batch's cursor."""

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
    ):
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
        self.staging.mkdir(parents=True, exist_ok=True)

    def write(self, entity_name: str, table: pa.Table, maxima: dict | None = None) -> None:
        """Append one chunk (a text table with the entity's contract columns) to its file."""
        if entity_name not in self.entities:
            return
        with self._lock:
            writer = self._writers.get(entity_name)
            if writer is None:
                writer = pq.ParquetWriter(self.staging / f"{entity_name}.parquet", text_schema(entity_name))
                self._writers[entity_name] = writer
            if table.num_rows:
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            self.batch.rows[entity_name] = self.batch.rows.get(entity_name, 0) + table.num_rows
            col = self.cursor_columns.get(entity_name)
            m = (maxima or {}).get(col) if col else None
            if m is not None and (self._maxima.get(entity_name) is None or m > self._maxima[entity_name]):
                self._maxima[entity_name] = m

    def finish(self, windows: dict[str, list[str | None]] | None = None) -> LandedBatch:
        """Close every file, move them into the batch folder, write ``_batch.json``."""
        with self._lock:
            for entity_name in self.entities:
                if entity_name not in self._writers:  # no rows: an empty file all the same
                    self._writers[entity_name] = pq.ParquetWriter(
                        self.staging / f"{entity_name}.parquet", text_schema(entity_name)
                    )
                    self.batch.rows[entity_name] = 0
            for writer in self._writers.values():
                writer.close()
            self.folder.mkdir(parents=True, exist_ok=True)
            for entity_name in self.entities:
                path = self.folder / f"{entity_name}.parquet"
                if path.exists():
                    raise FileExistsError(f"{path} exists: landed batches are immutable")
                (self.staging / f"{entity_name}.parquet").replace(path)
                self.batch.files[entity_name] = str(path)
            shutil.rmtree(self.staging, ignore_errors=True)
            self.batch.windows = dict(windows or {})
            self.batch.cursors = {
                e: pd.Timestamp(m).isoformat() for e, m in self._maxima.items() if m is not None
            }
            self.batch.rows = {e: self.batch.rows.get(e, 0) for e in self.entities}
            (self.folder / "_batch.json").write_text(json.dumps(self.batch.to_dict(), indent=2, sort_keys=True))
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
