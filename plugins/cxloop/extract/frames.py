"""Source connectors: each extracts one source system over HTTP and maps it onto the canonical
entities of :mod:`cxloop.contract`.

- :mod:`cxloop.extract.http_client` — the one shared HTTP layer (timeouts, retries, auth, redaction).
- :mod:`cxloop.extract.salesforce` — ``extract_salesforce`` (owners, accounts, contacts, follow_ups).
- :mod:`cxloop.extract.qualtrics` — ``extract_qualtrics`` (surveys, invitations, responses).
- :mod:`cxloop.extract.roles` — CRM buying-role picklist / job-title mapping.

Connectors return plain pandas frames with exactly the contract's columns; values are passed
through as received (datetimes normalised to UTC) and the validation gate coerces and
quarantines. Everything received is also written raw to a landing directory when one is given.

The pipeline's extraction streams instead: a connector hands page-sized column chunks to a
:class:`ChunkBuffer`, which turns every ~100k rows into a text table (:func:`text_table`, the
landed form: see :mod:`cxloop.extract.landing`) for a sink (the landing's
:class:`cxloop.extract.landing.BatchWriter`), so no whole-entity frame is ever held in memory.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.contract import ENTITIES
from cxloop.extract.private import private_dir, write_private


def parse_utc(value: Any) -> datetime | None:
    """An ISO-8601 datetime (``Z``, ``+0000`` or ``+00:00`` offsets; naive = UTC) as naive UTC.

    Raises ValueError when the text is not a datetime."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and "T" in text:
            text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _iso_texts(values: list[Any]) -> pd.Series | None:
    """Naive UTC ``datetime64[us]`` when every value is ISO-8601 text, null or blank (blank ->
    null), parsed in one vectorised pass; None when some value is not."""
    if not all(v is None or isinstance(v, str) for v in values):
        return None
    texts = [None if v is None or not v.strip() else v for v in values]
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        return None
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def timestamp_series(values: list[Any]) -> pd.Series:
    """Source datetimes -> naive UTC ``datetime64[us]``.

    When some value is not a datetime it is kept as received: the column is then ``object`` and
    holds ISO-8601 UTC strings for the good values and the raw text for the bad ones, so the gate
    can quarantine exactly those rows."""
    fast = _iso_texts(values)  # the fast path: every value is ISO-8601 text (or null)
    if fast is not None:
        return fast
    parsed: list[datetime | None] = []
    bad = False
    for v in values:
        if _is_null(v) or (isinstance(v, str) and not v.strip()):
            parsed.append(None)
            continue
        try:
            parsed.append(parse_utc(v))
        except (ValueError, TypeError, OverflowError):
            parsed.append(v)
            bad = True
    if not bad:
        return pd.Series(pd.to_datetime(parsed), dtype="datetime64[us]")
    out = [p.isoformat() + "Z" if isinstance(p, datetime) else p for p in parsed]
    return pd.Series(out, dtype=object)


def value_series(values: list[Any]) -> pd.Series:
    """Values as received, in the narrowest nullable dtype that holds all of them unchanged."""
    nonnull = [v for v in values if not _is_null(v)]
    clean = [None if _is_null(v) else v for v in values]
    if not nonnull:
        return pd.Series(clean, dtype=object)
    if all(isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="boolean"))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="Int64"))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="Float64"))
    if all(isinstance(v, str) for v in nonnull):
        return pd.Series(clean, dtype="str")
    return pd.Series(clean, dtype=object)


def build_frame(
    entity: str, rows: list[Mapping[str, Any]], timestamp_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """A frame with exactly the contract's columns of ``entity`` (missing ones all null)."""
    ts = set(timestamp_columns)
    columns = ENTITIES[entity].column_names
    data = {}
    for c in columns:
        vals = [r.get(c) for r in rows]
        data[c] = timestamp_series(vals) if c in ts else value_series(vals)
    return pd.DataFrame(data, columns=columns)


def build_frame_from_columns(
    entity: str, columns: Mapping[str, list[Any]], timestamp_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """:func:`build_frame` from column lists (the streaming connectors' chunks) instead of rows."""
    ts = set(timestamp_columns)
    names = ENTITIES[entity].column_names
    n = max((len(v) for v in columns.values()), default=0)
    data = {}
    for c in names:
        vals = list(columns.get(c) or [None] * n)
        data[c] = timestamp_series(vals) if c in ts else value_series(vals)
    return pd.DataFrame(data, columns=names)


# --------------------------------------------------------------------------- the landed text form


def as_text(value: object) -> str | None:
    """One value in its landed text form: None/NaN/NA stay null, bools ``true``/``false``,
    datetimes ISO-8601, dicts and lists JSON (sorted keys), anything else ``str()``."""
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


def _string_nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def naive_timestamp_text(ts: pa.Array) -> pa.Array:
    """A naive ``timestamp[us]`` array as ``datetime.isoformat()`` text (``YYYY-MM-DDTHH:MM:SS``,
    ``.ffffff`` only when the microseconds are not zero), nulls kept: vectorised."""
    text = ts.cast(pa.timestamp("us")).cast(pa.string())  # "YYYY-MM-DD HH:MM:SS.ffffff"
    text = pc.replace_substring_regex(text, r"\.000000$", "")
    return pc.replace_substring(text, " ", "T", max_replacements=1)


def text_array(values: list[Any] | pd.Series) -> pa.Array:
    """Values in their landed text form (exactly :func:`as_text` per value), vectorised for the
    common homogeneous cases: text, integers, booleans, nulls. Anything else (floats, mixed
    types, dicts, datetimes) goes value by value."""
    n = len(values)
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        arr = None
    if arr is not None:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        t = arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return arr.cast(pa.string())
        if pa.types.is_null(t):
            return _string_nulls(n)
        if pa.types.is_boolean(t) or pa.types.is_integer(t):
            return arr.cast(pa.string())  # booleans cast to "true"/"false"
        if pa.types.is_timestamp(t) and t.tz is None:
            try:
                return naive_timestamp_text(arr)
            except pa.ArrowInvalid:  # nanoseconds: isoformat shows them, value by value below
                pass
    items = values.tolist() if isinstance(values, pd.Series) else values
    return pa.array([as_text(v) for v in items], type=pa.string())


def timestamp_text(values: list[Any]) -> tuple[pa.Array, Any]:
    """Source datetimes in their landed text form: naive UTC ISO-8601 (as
    :func:`naive_timestamp_text`); a value that is not a datetime is kept as received (its
    :func:`as_text`) for the gate to quarantine; blank text is null.

    Returns (text, the greatest datetime as a ``numpy.datetime64`` or None) - the cursor."""
    n = len(values)
    arr = None
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    if arr is not None and pa.types.is_null(arr.type):
        return _string_nulls(n), None
    if arr is not None and pa.types.is_string(arr.type):
        try:  # the fast path: ISO-8601 text with a zone offset ("Z", "+0000", "+00:00")
            ts = arr.cast(pa.timestamp("us", tz="UTC"))
            return naive_timestamp_text(ts), _max(ts)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    parsed = _iso_texts(values)  # ISO-8601 text without offsets, dates, blanks
    if parsed is not None:
        try:
            ts = pa.array(parsed, from_pandas=True)
            return naive_timestamp_text(ts), _max(ts)
        except pa.ArrowInvalid:
            pass
    out: list[str | None] = []
    best = None
    for v in values:
        if _is_null(v) or (isinstance(v, str) and not v.strip()):
            out.append(None)
            continue
        try:
            dt = parse_utc(v)
        except (ValueError, TypeError, OverflowError):
            out.append(as_text(v))
            continue
        out.append(dt.isoformat())
        if best is None or dt > best:
            best = dt
    return pa.array(out, type=pa.string()), (np.datetime64(best, "us") if best is not None else None)


def _max(ts: pa.Array) -> Any:
    m = pc.max(ts).as_py()
    if m is None:
        return None
    if m.tzinfo is not None:
        m = m.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(m, "us")


def text_table(
    entity: str, columns: Mapping[str, list[Any]], timestamp_columns: Iterable[str] = ()
) -> tuple[pa.Table, dict[str, Any]]:
    """Column lists -> (the landed text table with exactly the contract's columns, the greatest
    datetime per timestamp column)."""
    ts = set(timestamp_columns)
    names = ENTITIES[entity].column_names
    n = max((len(v) for v in columns.values()), default=0)
    arrays = []
    maxima: dict[str, Any] = {}
    for c in names:
        vals = columns.get(c)
        if vals is None:
            arrays.append(_string_nulls(n))
        elif c in ts:
            arr, maxima[c] = timestamp_text(vals)
            arrays.append(arr)
        else:
            arrays.append(text_array(vals))
    return pa.Table.from_arrays(arrays, schema=text_schema(entity)), maxima


def text_schema(entity: str) -> pa.Schema:
    return pa.schema([(c, pa.string()) for c in ENTITIES[entity].column_names])


ChunkSink = Callable[[str, pa.Table, dict[str, Any]], None]


class ChunkBuffer:
    """Collects one entity's column chunks (page by page, from any thread) and hands every
    ``rows`` rows to ``sink(entity, text table, maxima)``; :meth:`flush` sends the rest."""

    def __init__(self, entity: str, sink: ChunkSink, timestamp_columns: Iterable[str] = (), rows: int = 100_000):
        self.entity = entity
        self.sink = sink
        self.ts = tuple(timestamp_columns)
        self.rows = rows
        self.names = ENTITIES[entity].column_names
        self._cols: dict[str, list[Any]] = {c: [] for c in self.names}
        self._n = 0
        self._lock = threading.Lock()

    def add(self, columns: Mapping[str, list[Any]]) -> None:
        n = max((len(v) for v in columns.values()), default=0)
        if not n:
            return
        with self._lock:
            for c in self.names:
                vals = columns.get(c)
                self._cols[c].extend(vals if vals is not None else [None] * n)
            self._n += n
            if self._n >= self.rows:
                self._flush_locked()

    def add_rows(self, rows: list[Mapping[str, Any]]) -> None:
        self.add({c: [r.get(c) for r in rows] for c in self.names})

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._n:
            return
        cols, self._cols, self._n = self._cols, {c: [] for c in self.names}, 0
        table, maxima = text_table(self.entity, cols, self.ts)
        del cols
        self.sink(self.entity, table, maxima)


class FrameCollector:
    """A sink-like collector for the frame-returning connector functions: keeps every chunk's
    columns and builds the typed frame (:func:`build_frame`) at the end."""

    def __init__(self, entity: str, timestamp_columns: Iterable[str] = ()):
        self.entity = entity
        self.ts = tuple(timestamp_columns)
        self.names = ENTITIES[entity].column_names
        self._cols: dict[str, list[Any]] = {c: [] for c in self.names}
        self._lock = threading.Lock()

    def add(self, columns: Mapping[str, list[Any]]) -> None:
        n = max((len(v) for v in columns.values()), default=0)
        with self._lock:
            for c in self.names:
                vals = columns.get(c)
                self._cols[c].extend(vals if vals is not None else [None] * n)

    def add_rows(self, rows: list[Mapping[str, Any]]) -> None:
        self.add({c: [r.get(c) for r in rows] for c in self.names})

    def flush(self) -> None:
        pass

    def frame(self) -> pd.DataFrame:
        return build_frame_from_columns(self.entity, self._cols, self.ts)


class Landing:
    """Writes every page or file received, raw, under ``root/<source>/...``; a no-op without root.

    Raw pages hold personal data (e-mail addresses, names): folders are made ``0700`` and
    files ``0600`` whatever the umask (:mod:`cxloop.extract.private`)."""

    def __init__(self, root: Path | None, source: str):
        self.dir = Path(root) / source if root is not None else None
        self.files: list[Path] = []
        self._made: set[Path] = set()
        self._lock = threading.Lock()

    def write(self, relative: str, content: bytes) -> Path | None:
        """Written in place, not through a temporary file and a rename: the folder belongs to
        one extraction batch and each page is written once (the rename made landing 15,000
        pages three times slower). A page cut short by a crash lies in the folder of a batch
        that never landed."""
        if self.dir is None:
            return None
        path = self.dir / relative
        folder = path.parent
        if folder not in self._made:
            private_dir(folder)
            self._made.add(folder)
        write_private(path, content)
        with self._lock:
            self.files.append(path)
        return path


def safe_name(text: str) -> str:
    """A path component from a source id (ids are alphanumeric; anything else is replaced)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)) or "_"
