"""The landed batch: each extracted entity frame written once, immutable, as Parquet.

Values are landed as text exactly as the connector received them (``None`` stays null), so
that a malformed value (a score of "7.5", an ARR of "n/a") is kept for the quarantine
instead of being lost in a type conversion. The validation gate reads these files back and
names them, with the row number, in every message.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


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


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return str(value)


def frame_as_text(frame: pd.DataFrame) -> pa.Table:
    arrays = {
        str(col): pa.array([_as_text(v) for v in frame[col].tolist()], type=pa.string()) for col in frame.columns
    }
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


def read_landed(path: str | Path) -> pd.DataFrame:
    """A landed entity file as a frame of Python objects (str or None)."""
    table = pq.read_table(path)
    return pd.DataFrame({name: table.column(name).to_pylist() for name in table.column_names}, dtype=object)


def find_landed(landing_dir: Path, batch_id: str, entity: str) -> Path | None:
    """The landed file of one entity of an earlier batch (landed files are never moved)."""
    return next(iter(landing_dir.glob(f"source=*/load_date=*/batch={batch_id}/{entity}.parquet")), None)
