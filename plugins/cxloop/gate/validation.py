"""The validation gate: coerce, validate with Great Expectations, quarantine, reconcile.

One call of :func:`validate_batch` handles one extraction batch: a dict of pandas DataFrames,
one per canonical entity of :mod:`cxloop.contract`, values as received from the source.

Steps, per entity in :data:`cxloop.contract.ENTITY_ORDER` (parents before children):

1. **Structure.** Every contract column must be present. A missing (or renamed) column rejects
   the whole batch: :class:`BatchRejected` names the landed file and the columns. Columns
   outside the contract are dropped and recorded as a ``warn`` result.
2. **Coercion** to the contract's logical types. A value that does not fit (score ``"7.5"``,
   ARR ``"abc"``, a malformed timestamp) becomes a quarantine row, e.g.
   ``responses.parquet row 17 field nps_score: '7.5' is not an integer 0-10``.
3. **Great Expectations** (GX Core, one ephemeral context per batch, a pandas data source with
   one dataframe asset per entity and a whole-dataframe batch definition) runs the suite of
   ``expectations/<entity>.json``. Every expectation carries ``meta.severity``: ``error`` ->
   the failing rows are quarantined; ``warn`` -> recorded in the results (and
   :attr:`ValidationOutcome.warnings`), rows kept. Run-time values (parent keys, the latest
   allowed timestamp) are GX expectation parameters (``$PARAMETER``).
4. **Duplicate primary keys:** the first occurrence (file order) is kept, later ones are
   quarantined.
5. **Cascade:** a row whose parent (an ``error``-severity reference) was quarantined in this
   batch and is not already in the warehouse is quarantined with reason
   ``parent <entity> <key> quarantined``.
6. **Reconciliation:** per entity, received == loaded + quarantined (distinct rows), else
   :class:`ReconciliationError`.

Row numbers are 1-based positions in the landed file (the DataFrame as handed over).
Timestamps come out as naive UTC (``datetime64[us]``), dates as ``datetime64[s]`` at midnight
(loaded as SQL ``DATE``), ints ``Int64``, floats ``Float64``, bools ``boolean``, strings
``string``. Empty or blank strings count as null; other strings are kept verbatim.
"""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS, Entity
from cxloop.gate.landed import CHUNK_ROWS, landed_chunks, landed_duplicates, landed_shape  # noqa: F401
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS, KnownKeys, SetKnownKeys

EXPECTATIONS_DIR_ENV = "CXLOOP_EXPECTATIONS_DIR"
DEFAULT_FUTURE_SKEW = dt.timedelta(hours=1)
ROW_COL = "_row"
SENT_AT_HELPER = "_invitation_sent_at"
RECORD_VALUE_MAX_CHARS = 2000  # longer strings are truncated in quarantine.record_json
SHOW_VALUE_MAX_CHARS = 80  # ... and in reason messages

TYPE_EXPECTATION = "cxloop_column_values_match_logical_type"
EXTRA_COLUMNS_EXPECTATION = "cxloop_no_unexpected_columns"
CASCADE_EXPECTATION = "cxloop_parent_not_quarantined"
STRUCTURE_EXPECTATION = "expect_table_columns_to_match_set"
UNIQUE_EXPECTATION = "expect_column_values_to_be_unique"

_PANDAS_DTYPES = {
    "string": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "date": "datetime64[s]",
    "timestamp": "datetime64[us]",
}
_TYPE_PHRASES = {
    "string": "is not a text value",
    "int": "is not an integer",
    "float": "is not a number",
    "bool": "is not a boolean",
    "date": "is not a valid date (YYYY-MM-DD)",
    "timestamp": "is not a valid ISO-8601 timestamp",
}
# column-specific wording of a coercion failure (what the value must be)
_TYPE_PHRASE_OVERRIDES = {("responses", "nps_score"): "is not an integer 0-10"}


class GateError(RuntimeError):
    """The gate itself could not do its job (suite missing, GX could not evaluate a check)."""


class ReconciliationError(GateError):
    """received != loaded + quarantined for an entity."""


class BatchRejected(Exception):
    """A structural failure: the whole batch is rejected, nothing of it may be loaded.

    ``problems`` lists ``{entity, file, missing, unexpected}`` per offending file; ``results``
    holds the failed structural expectation rows (same columns as the outcome's results) so
    the caller can still record them in ``raw.validation_results``.
    """

    def __init__(self, batch_id: str, problems: list[dict[str, Any]], results: pd.DataFrame):
        self.batch_id = batch_id
        self.problems = problems
        self.results = results
        parts = []
        for p in problems:
            text = f"{p['file']}: "
            bits = []
            if p.get("unknown_entity"):
                bits.append(f"unknown entity {p['entity']!r}")
            if p["missing"]:
                bits.append("missing contract column(s) " + ", ".join(p["missing"]))
            if p.get("duplicated"):
                bits.append("duplicated column(s) " + ", ".join(p["duplicated"]))
            if p["unexpected"] and (p["missing"] or p.get("duplicated")):
                hint = " (renamed?)" if p["missing"] else ""
                bits.append("unexpected column(s) " + ", ".join(p["unexpected"]) + hint)
            parts.append(text + "; ".join(bits))
        super().__init__(f"batch {batch_id} rejected: " + " | ".join(parts))


@dataclass
class ValidationOutcome:
    batch_id: str
    source: str
    as_of: dt.datetime
    checked_at: dt.datetime
    valid: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    results: pd.DataFrame
    counts: dict[str, dict[str, int]]
    warnings: pd.DataFrame  # rows failing warn-severity checks (kept and loaded); quarantine columns
    gx_results: dict[str, Any] = field(default_factory=dict)  # entity -> ExpectationSuiteValidationResult
    skipped: list[str] = field(default_factory=list)  # reference checks without any parent keys to use
    timings: dict[str, float] = field(default_factory=dict)  # seconds, per step/entity


# --------------------------------------------------------------------------- suites


def expectations_dir() -> Path:
    env = os.environ.get(EXPECTATIONS_DIR_ENV)
    if env:
        return Path(env)
    from cxloop.config import project_home

    return project_home() / "expectations"


@lru_cache(maxsize=32)
def _load_suite_config_cached(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_suite_config(entity_name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON suite of an entity (a fresh deep copy: callers may modify it)."""
    path = (directory or expectations_dir()) / f"{entity_name}.json"
    if not path.exists():
        raise GateError(f"no expectation suite for entity {entity_name!r} at {path}")
    return copy.deepcopy(_load_suite_config_cached(str(path), path.stat().st_mtime))


def build_suite(config: Mapping[str, Any]):
    """A GX ExpectationSuite from a suite config (as stored in expectations/<entity>.json)."""
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=config["name"],
        expectations=[dict(e) for e in config["expectations"]],
        meta=dict(config.get("meta") or {}),
        notes=config.get("notes"),
    )


# --------------------------------------------------------------------------- coercion


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    if isinstance(v, np.floating) and np.isnan(v):
        return True
    if isinstance(v, np.datetime64) and np.isnat(v):
        return True
    return False


_FAIL = object()
_NULL = object()


def _blank(v: Any) -> bool:
    return isinstance(v, str) and not v.strip()


def _to_string(v: Any) -> Any:
    if isinstance(v, str):
        return v if v.strip() else _NULL
    if isinstance(v, bool | np.bool_):
        return _FAIL
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating | Decimal):
        f = float(v)
        if not math.isfinite(f):
            return _FAIL
        return str(int(f)) if f.is_integer() else repr(f)
    return _FAIL


def _to_int(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return _FAIL
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating | Decimal):
        f = float(v)
        return int(f) if math.isfinite(f) and f.is_integer() else _FAIL
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return _NULL
        try:
            return int(s)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            return _FAIL
        return int(f) if math.isfinite(f) and f.is_integer() else _FAIL
    return _FAIL


def _to_float(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return _FAIL
    if isinstance(v, int | np.integer | float | np.floating | Decimal):
        f = float(v)
        return f if math.isfinite(f) else _FAIL
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return _NULL
        try:
            f = float(s)
        except ValueError:
            return _FAIL
        return f if math.isfinite(f) else _FAIL
    return _FAIL


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _to_bool(v: Any) -> Any:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer) and int(v) in (0, 1):
        return bool(int(v))
    if isinstance(v, float | np.floating) and float(v) in (0.0, 1.0):
        return bool(float(v))
    if isinstance(v, str):
        s = v.strip().lower()
        if not s:
            return _NULL
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return _FAIL


def _to_date(v: Any) -> Any:
    if isinstance(v, pd.Timestamp | dt.datetime):
        return dt.date(v.year, v.month, v.day)
    if isinstance(v, dt.date):
        return v
    if isinstance(v, np.datetime64):
        t = pd.Timestamp(v)
        return dt.date(t.year, t.month, t.day)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return _NULL
        try:
            return dt.date.fromisoformat(s)
        except ValueError:
            pass
        try:
            return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).date()
        except ValueError:
            return _FAIL
    return _FAIL


def _map_values(values: np.ndarray, fn: Callable[[Any], Any]) -> tuple[list[Any], np.ndarray]:
    """Apply fn to every non-missing value (cached per (type, value)); returns converted values
    (None for null) and the failure mask."""
    out: list[Any] = [None] * len(values)
    failed = np.zeros(len(values), dtype=bool)
    cache: dict[tuple[type, Any], Any] = {}
    present = np.flatnonzero(~_missing_mask(values))
    for i in present:
        v = values[i]
        try:
            key = (type(v), v)
            r = cache.get(key, _NULL_KEY)
        except TypeError:
            key, r = None, _NULL_KEY
        if r is _NULL_KEY:
            try:
                r = fn(v)
            except Exception:  # noqa: BLE001 - any surprise in a source value is a coercion failure
                r = _FAIL
            if key is not None:
                cache[key] = r
        if r is _FAIL:
            failed[i] = True
        elif r is not _NULL:
            out[i] = r
    return out, failed


_NULL_KEY = object()


def _missing_mask(values: np.ndarray) -> np.ndarray:
    try:
        mask = np.asarray(pd.isna(values), dtype=bool)
        if mask.shape == (len(values),):
            return mask
    except (TypeError, ValueError):
        pass
    return np.fromiter((_is_missing(v) for v in values), dtype=bool, count=len(values))


def _all_text(values: np.ndarray) -> bool:
    """Only str (or missing) values: the landed files' case, where every fast path applies."""
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _coerce_text_by_value(values: np.ndarray, fn: Callable[[Any], Any], logical_type: str, index) -> tuple[
    pd.Series, np.ndarray
]:
    """A column of str/None: convert each distinct value once (``fn`` as for any value) and
    spread the results over the rows by their factorize codes. Same results as
    :func:`_map_values`, without a Python step per row."""
    n = len(values)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    converted: list[Any] = [None] * len(uniques)
    failed_u = np.zeros(len(uniques), dtype=bool)
    for i, v in enumerate(uniques):
        try:
            r = fn(v)
        except Exception:  # noqa: BLE001 - any surprise in a source value is a coercion failure
            r = _FAIL
        if r is _FAIL:
            failed_u[i] = True
        elif r is not _NULL:
            converted[i] = r
    present = codes >= 0
    failed = np.zeros(n, dtype=bool)
    failed[present] = failed_u[codes[present]]
    dtype = _PANDAS_DTYPES[logical_type]
    if logical_type == "date":
        u_typed = pd.Series(pd.to_datetime(pd.Series(converted, dtype=object))).astype("datetime64[s]").array
    else:
        u_typed = pd.Series(converted, dtype=object).astype(dtype).array
    if len(uniques) == 0:
        return pd.Series([None] * n, index=index, dtype=object).astype(dtype), failed
    typed = pd.api.extensions.take(u_typed, codes, allow_fill=True)
    return pd.Series(typed, index=index).astype(dtype), failed


def _coerce_strings(raw: pd.Series) -> tuple[pd.Series, np.ndarray] | None:
    """Fast path: a column of str/None only."""
    values = raw.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        return None
    s = pd.Series(values, index=raw.index, dtype="string")
    s = s.mask(s.str.strip() == "")
    return s, np.zeros(len(values), dtype=bool)


def _coerce_timestamp(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        s = raw
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        return s.astype("datetime64[us]"), np.zeros(len(raw), dtype=bool)
    values = raw.to_numpy(dtype=object)
    n = len(values)
    if _all_text(values):  # vectorised: strip, blank -> null, parse
        stripped = pd.Series(values, dtype=object).str.strip()
        missing = stripped.isna().to_numpy(dtype=bool) | (stripped == "").to_numpy(dtype=bool)
        candidates = stripped.where(~missing, None)
        parsed = pd.to_datetime(candidates, utc=True, errors="coerce", format="ISO8601")
        parsed = parsed.dt.tz_localize(None).astype("datetime64[us]")
        failed = ~missing & parsed.isna().to_numpy(dtype=bool)
        parsed = parsed.where(~failed)
        parsed.index = raw.index
        return parsed, failed
    missing = _missing_mask(values) | np.fromiter((_blank(v) for v in values), dtype=bool, count=n)
    parseable = np.fromiter(
        (isinstance(v, str | dt.datetime | np.datetime64) for v in values), dtype=bool, count=n
    )
    candidates = np.where(parseable & ~missing, values, None)
    with_tz = [v.strip() if isinstance(v, str) else v for v in candidates]
    parsed = pd.to_datetime(pd.Series(with_tz, dtype=object), utc=True, errors="coerce", format="ISO8601")
    parsed = parsed.dt.tz_localize(None).astype("datetime64[us]")
    failed = ~missing & (~parseable | parsed.isna().to_numpy())
    parsed = parsed.where(~failed)
    parsed.index = raw.index
    return parsed, failed


def coerce_column(raw: pd.Series, logical_type: str) -> tuple[pd.Series, np.ndarray]:
    """Coerce one received column to its logical type: (typed series, failure mask)."""
    if logical_type == "timestamp":
        return _coerce_timestamp(raw)
    if logical_type == "string":
        fast = _coerce_strings(raw)
        if fast is not None:
            return fast
    values = raw.to_numpy(dtype=object)
    fn = {
        "string": _to_string,
        "int": _to_int,
        "float": _to_float,
        "bool": _to_bool,
        "date": _to_date,
    }[logical_type]
    if _all_text(values):
        return _coerce_text_by_value(values, fn, logical_type, raw.index)
    out, failed = _map_values(values, fn)
    dtype = _PANDAS_DTYPES[logical_type]
    if logical_type == "date":
        typed = pd.Series(pd.to_datetime(pd.Series(out, dtype=object)), index=raw.index)
        typed = typed.astype("datetime64[s]")
    else:
        typed = pd.Series(out, index=raw.index, dtype=object).astype(dtype)
    return typed, failed


def empty_typed_frame(entity_name: str) -> pd.DataFrame:
    e = ENTITIES[entity_name]
    return pd.DataFrame({c.name: pd.Series([], dtype=_PANDAS_DTYPES[c.type]) for c in e.columns})


# --------------------------------------------------------------------------- messages


def _show(v: Any) -> str:
    if _is_missing(v):
        return "null"
    if isinstance(v, str):
        text = v if len(v) <= SHOW_VALUE_MAX_CHARS else v[:SHOW_VALUE_MAX_CHARS] + "..."
        return repr(text)
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date):
        return repr(v.isoformat())
    return str(v)


def _jsonable(v: Any) -> Any:
    if _is_missing(v):
        return None
    if isinstance(v, str):
        if len(v) > RECORD_VALUE_MAX_CHARS:
            return v[:RECORD_VALUE_MAX_CHARS] + f"...[truncated, {len(v)} chars]"
        return v
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(float(v)) else str(v)
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return str(v)


def _record_json(raw: pd.DataFrame, pos: int) -> str:
    row = raw.iloc[pos]
    return json.dumps({str(k): _jsonable(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=False)


def _naive_utc(t: dt.datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


# --------------------------------------------------------------------------- the gate


class _Collector:
    """Quarantine / warning / result rows of one batch. Results are aggregated per (entity,
    slot) over the chunks an entity is validated in."""

    def __init__(self, batch_id: str, source: str, checked_at: dt.datetime):
        self.batch_id = batch_id
        self.source = source
        self.checked_at = checked_at
        self.quarantine: list[dict[str, Any]] = []
        self.warnings: list[dict[str, Any]] = []
        self.results: dict[tuple[str, str], dict[str, Any]] = {}
        self.quarantined_rows: dict[str, set[int]] = {}

    def result(self, entity, expectation, column, severity, success, rows_checked, unexpected_count, slot=None,
               table_level=False):
        key = (entity, slot or f"{expectation}:{column}")
        prev = self.results.get(key)
        if prev is not None:
            prev["success"] = prev["success"] and bool(success)
            prev["rows_checked"] += int(rows_checked)
            if table_level:
                prev["unexpected_count"] = max(prev["unexpected_count"], int(unexpected_count))
            else:
                prev["unexpected_count"] += int(unexpected_count)
            return
        self.results[key] = {
            "batch_id": self.batch_id,
            "source": self.source,
            "entity": entity,
            "expectation": expectation,
            "column": column,
            "severity": severity,
            "success": bool(success),
            "rows_checked": int(rows_checked),
            "unexpected_count": int(unexpected_count),
            "checked_at": self.checked_at,
        }

    def row(self, ctx: _EntityState, pos: int, field_, expectation, severity, reason):
        target = self.quarantine if severity == "error" else self.warnings
        target.append(
            {
                "batch_id": self.batch_id,
                "source": self.source,
                "entity": ctx.name,
                "primary_key": ctx.key_text(pos),
                "row_number": ctx.offset + pos + 1,
                "field": field_,
                "expectation": expectation,
                "severity": severity,
                "reason": reason,
                "record_json": _record_json(ctx.raw, pos),
            }
        )
        if severity == "error":
            ctx.bad[pos] = True
            self.quarantined_rows.setdefault(ctx.name, set()).add(ctx.offset + pos + 1)


class _EntityState:
    """One chunk of one entity: rows ``offset + 1 .. offset + n`` of its landed file."""

    def __init__(self, entity: Entity, raw: pd.DataFrame, file: str, offset: int = 0):
        self.entity = entity
        self.name = entity.name
        self.raw = raw.reset_index(drop=True)
        self.file = file
        self.offset = offset
        self.n = len(self.raw)
        self.bad = np.zeros(self.n, dtype=bool)
        self.typed: pd.DataFrame | None = None
        self.coercion_failed: dict[str, np.ndarray] = {}

    def key_text(self, pos: int) -> str | None:
        v = self.typed[self.entity.primary_key].iloc[pos] if self.typed is not None else None
        if _is_missing(v):
            raw_v = self.raw[self.entity.primary_key].iloc[pos]
            return None if _is_missing(raw_v) else str(raw_v)
        return str(v)

    def prefix(self, pos: int) -> str:
        return f"{self.file} row {self.offset + pos + 1}"


def _structure(
    shapes: Mapping[str, tuple[list[Any], int]], origin: Mapping[str, str], collector: _Collector
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """shapes: entity -> (column names, rows)."""
    problems: list[dict[str, Any]] = []
    extras: dict[str, list[str]] = {}
    lineage = {c.name for c in LINEAGE_COLUMNS}
    for name, (columns, n_rows) in shapes.items():
        file = origin.get(name, name)
        if name not in ENTITIES:
            problems.append(
                {"entity": name, "file": file, "missing": [], "unexpected": [], "unknown_entity": True}
            )
            continue
        e = ENTITIES[name]
        cols = [str(c) for c in columns]
        dup = sorted({c for c in cols if cols.count(c) > 1})
        missing = [c for c in e.column_names if c not in cols]
        unexpected = [c for c in cols if c not in e.column_names and c not in lineage]
        extras[name] = unexpected
        if missing or dup:
            problems.append(
                {
                    "entity": name,
                    "file": file,
                    "missing": missing,
                    "unexpected": unexpected,
                    "duplicated": dup,
                }
            )
            collector.result(
                name, STRUCTURE_EXPECTATION, None, "error", False, n_rows, len(missing) + len(dup)
            )
    return problems, extras


def duplicate_keys(keys: pd.Series) -> dict[str, int]:
    """key -> 1-based row of its first occurrence, for the non-null keys occurring more than once
    (``keys``: the typed primary key column of the whole entity, in file order)."""
    mask = keys.duplicated(keep=False).to_numpy(dtype=bool) & keys.notna().to_numpy(dtype=bool)
    out: dict[str, int] = {}
    for pos in np.flatnonzero(mask):
        out.setdefault(str(keys.iloc[pos]), int(pos) + 1)
    return out


def gx_context():
    """One ephemeral GX context (progress bars off); a run creates one and passes it to each Gate."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    _skip_pandas_fingerprint()
    return context


def _skip_pandas_fingerprint() -> None:
    """GX marks every pandas batch with an md5 over a hash of every value of the frame (its
    ``pandas_data_fingerprint`` batch marker; it skips frames over ``HASH_THRESHOLD`` bytes).
    The gate never reads that marker, and on the large bench computing it took 7 s of the
    validation: set the threshold to 0 so GX skips it, as it does for big frames. Validation
    itself is untouched."""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0


_GX_RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_COL],
    "return_unexpected_index_query": False,
}


@dataclass
class _EntityRun:
    name: str
    file: str
    config: dict[str, Any]
    suite: Any
    batch_definition: Any
    extras: list[str]
    duplicates: dict[str, int]
    gone: dict[str, set[str]]  # parent -> its keys quarantined in this batch and not in the warehouse
    received: int = 0
    loaded: int = 0
    chunks: int = 0


class Gate:
    """The gate of one batch, fed entity by entity (parents first), each in one or more chunks.

    :func:`validate_batch` feeds whole frames; the pipeline feeds the landed Parquet files in
    chunks and loads each chunk's valid rows before the next (``track_all_keys=False``: keys of
    valid rows are then found through ``known``, which must see the rows already loaded; the
    gate remembers only the keys it quarantined). Results are the same either way: duplicates
    across chunks are found through ``duplicates`` (key -> first row, for the whole entity),
    cascades through the parents' quarantined keys."""

    def __init__(
        self,
        *,
        batch_id: str,
        source: str,
        as_of: dt.datetime,
        known: KnownKeys,
        known_sent_at: Mapping[str, Any] | None = None,
        origin: Mapping[str, str] | None = None,
        future_skew: dt.timedelta = DEFAULT_FUTURE_SKEW,
        suites_dir: Path | None = None,
        context: Any = None,
        track_all_keys: bool = True,
    ):
        self.batch_id = batch_id
        self.source = source
        self.as_of = as_of
        self.known = known
        self.known_sent_at = (
            {str(k): _naive_utc(v) for k, v in known_sent_at.items() if not _is_missing(v)}
            if known_sent_at is not None
            else None
        )
        self.origin = dict(origin or {})
        self.suites_dir = suites_dir
        self.track_all_keys = track_all_keys
        self.checked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.col = _Collector(batch_id, source, self.checked_at)
        self.max_ts = _naive_utc(as_of) + pd.Timedelta(future_skew)
        self.timings: dict[str, float] = {}
        self.extras: dict[str, list[str]] = {}
        self.runs: dict[str, _EntityRun] = {}
        self.batch_keys: dict[str, set[str]] = {}  # received keys (all, or the quarantined ones)
        self.quarantined_keys: dict[str, set[str]] = {}  # keys whose every occurrence is quarantined
        self.batch_sent_at: dict[str, pd.Timestamp] = {}
        self.gx_results: dict[str, Any] = {}
        self.skipped: list[str] = []
        self._context = context
        self._datasource = None

    def _tick(self, key: str, started: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - started

    def check_structure(self, shapes: Mapping[str, tuple[list[Any], int]]) -> None:
        """shapes: entity -> (columns, rows) of every entity of the batch; raises BatchRejected."""
        problems, extras = _structure(shapes, self.origin, self.col)
        if problems:
            raise BatchRejected(
                self.batch_id, problems, pd.DataFrame(list(self.col.results.values()), columns=RESULT_COLUMNS)
            )
        self.extras.update(extras)

    def _gx(self):
        if self._datasource is None:
            t0 = time.perf_counter()
            if self._context is None:
                self._context = gx_context()
            self._tick("gx_import", t0)
            import uuid

            self._datasource = self._context.data_sources.add_pandas(name=f"cxloop_{uuid.uuid4().hex[:12]}")
        return self._datasource

    def begin(self, name: str, duplicates: Mapping[str, int] | None = None) -> None:
        """Start an entity; ``duplicates``: see :func:`duplicate_keys` (over the whole entity)."""
        config = load_suite_config(name, self.suites_dir)
        kept = []
        for exp in config["expectations"]:
            meta = exp.get("meta") or {}
            if meta.get("check") == "reference":
                parent = meta["parent"]
                if parent not in self.runs and not self.known.has(parent):
                    self.skipped.append(f"{name}.{meta['column']} -> {parent}")
                    continue
            kept.append(exp)
        config["expectations"] = kept
        gone: dict[str, set[str]] = {}
        for exp in kept:
            meta = exp["meta"]
            if meta.get("check") == "reference" and meta["severity"] == "error" and meta["parent"] in self.runs:
                q = self.quarantined_keys.get(meta["parent"], set())
                gone[meta["parent"]] = q - self.known.contains(meta["parent"], sorted(q)) if q else set()
        asset = self._gx().add_dataframe_asset(name=name)
        self.runs[name] = _EntityRun(
            name=name,
            file=self.origin.get(name, name),
            config=config,
            suite=build_suite(config),
            batch_definition=asset.add_batch_definition_whole_dataframe(f"{name}_whole"),
            extras=self.extras.get(name, []),
            duplicates=dict(duplicates or {}),
            gone=gone,
        )
        self.batch_keys.setdefault(name, set())
        self.quarantined_keys.setdefault(name, set())

    def validate(self, name: str, raw: pd.DataFrame, offset: int = 0) -> pd.DataFrame:
        """Validate rows ``offset + 1 ..`` of entity ``name``; returns the chunk's valid rows (typed)."""
        run = self.runs[name]
        e = ENTITIES[name]
        col = self.col
        st = _EntityState(e, raw, run.file, offset)
        run.chunks += 1
        run.received += st.n

        # 1-2: extra columns, coercion
        t0 = time.perf_counter()
        col.result(
            name, EXTRA_COLUMNS_EXPECTATION, None, "warn", not run.extras, st.n, len(run.extras), table_level=True
        )
        typed = {}
        for c in e.columns:
            series, failed = coerce_column(st.raw[c.name], c.type)
            typed[c.name] = series
            st.coercion_failed[c.name] = failed
            phrase = _TYPE_PHRASE_OVERRIDES.get((name, c.name), _TYPE_PHRASES[c.type])
            for pos in np.flatnonzero(failed):
                col.row(
                    st,
                    int(pos),
                    c.name,
                    TYPE_EXPECTATION,
                    "error",
                    f"{st.prefix(int(pos))} field {c.name}: {_show(st.raw[c.name].iloc[pos])} {phrase}",
                )
            col.result(name, TYPE_EXPECTATION, c.name, "error", not failed.any(), st.n, int(failed.sum()))
        st.typed = pd.DataFrame(typed, index=st.raw.index)
        self._tick("coerce", t0)

        # 3-4: GX (helper columns on a shallow copy of the typed rows)
        t0 = time.perf_counter()
        frame = st.typed.copy(deep=False)
        frame[ROW_COL] = np.arange(offset + 1, offset + st.n + 1)
        for exp in run.config["expectations"]:
            meta = exp.get("meta") or {}
            if meta.get("check") == "reference":
                frame[meta["helper_column"]] = self._known_flags(meta["parent"], frame[meta["column"]])
        if name == "responses":
            frame[SENT_AT_HELPER] = self._sent_at_of(frame["invitation_id"])
        self._tick("references", t0)
        t0 = time.perf_counter()
        batch = run.batch_definition.get_batch(batch_parameters={"dataframe": _gx_vectorisable(frame)})
        result = batch.validate(
            run.suite, result_format=_GX_RESULT_FORMAT, expectation_parameters={"max_timestamp": self.max_ts}
        )
        key = name if run.chunks == 1 else f"{name}.{run.chunks}"
        self.gx_results[key] = result
        self._tick(f"gx_{name}", t0)
        t0 = time.perf_counter()
        _apply_gx_result(result, st, col, frame, run.duplicates)

        # 5: cascade along error-severity references (parents are complete: they came first)
        own_bad = st.bad.copy()  # every quarantined parent is named, unless the row failed its own checks
        for exp in run.config["expectations"]:
            meta = exp["meta"]
            if meta.get("check") != "reference" or meta["severity"] != "error":
                continue
            parent, column = meta["parent"], meta["column"]
            if parent not in self.runs or parent == name:
                continue
            gone = run.gone.get(parent, set())
            hits = 0
            if gone:
                values = st.typed[column]
                mask = values.isin(list(gone)).fillna(False).to_numpy(dtype=bool) & ~own_bad
                for pos in np.flatnonzero(mask):
                    reason = f"parent {parent} {values.iloc[pos]} quarantined"
                    col.row(st, int(pos), column, CASCADE_EXPECTATION, "error", reason)
                    hits += 1
            col.result(name, CASCADE_EXPECTATION, column, "error", hits == 0, st.n, hits)

        # what children of this batch need to know about these rows
        pk = st.typed[e.primary_key]
        pk_obj = pk.to_numpy(dtype=object, na_value=None)
        rows = np.arange(offset + 1, offset + st.n + 1)
        keys = self.batch_keys[name]
        if self.track_all_keys:
            keys.update(k for k in pk_obj if k is not None)
        for pos in np.flatnonzero(st.bad):
            k = pk_obj[pos]
            if k is None:
                continue
            keys.add(k)
            first = run.duplicates.get(k, int(rows[pos]))
            if first == rows[pos]:
                self.quarantined_keys[name].add(k)  # the first occurrence is the one loaded, if any
        if name == "invitations":
            self._remember_sent_at(st, pk_obj, rows, run)
        valid = st.typed[~st.bad].reset_index(drop=True)
        run.loaded += len(valid)
        self._tick("apply", t0)
        return valid

    def _known_flags(self, parent: str, values: pd.Series) -> pd.Series:
        """true where the key is a received key of the batch or stored, null where values is null.

        Vectorised with Arrow (a chunk references up to 250k keys, most of them distinct): the
        distinct values not received in this batch are asked of the warehouse in one query."""
        import pyarrow as pa
        import pyarrow.compute as pc

        obj = values.to_numpy(dtype=object, na_value=None)
        try:
            arr = pa.array(obj, type=pa.string())
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text: compare the text form, as before
            arr = pa.array([None if v is None else str(v) for v in obj], type=pa.string())
        distinct = pc.unique(arr.drop_null())
        batch = self.batch_keys.get(parent) or set()
        batch_arr = pa.array(list(batch), type=pa.string())
        rest = pc.filter(distinct, pc.invert(pc.is_in(distinct, value_set=batch_arr))) if batch else distinct
        found: set[str] = set()
        if len(rest) and self.known.has(parent):
            found = self.known.contains(parent, rest.to_pylist())
        known_arr = pa.concat_arrays([batch_arr, pa.array(list(found), type=pa.string())])
        hit = pc.is_in(arr, value_set=known_arr, skip_nulls=True).to_numpy(zero_copy_only=False)
        flag = pd.array(hit.astype(bool), dtype="boolean")
        flag[values.isna().to_numpy(dtype=bool)] = pd.NA
        return pd.Series(flag, index=values.index)

    def _remember_sent_at(self, st: _EntityState, pk_obj: np.ndarray, rows: np.ndarray, run: _EntityRun) -> None:
        """sent_at of the batch's invitations, first occurrence with a sent_at first (as if the batch
        were looked up before the warehouse). Without track_all_keys only those whose first
        occurrence is quarantined: the others are loaded, so the warehouse has them."""
        sent = st.typed["sent_at"]
        ok = sent.notna().to_numpy(dtype=bool) & (pk_obj != None)  # noqa: E711 - elementwise
        if not self.track_all_keys:
            keep = np.zeros(st.n, dtype=bool)
            for pos in np.flatnonzero(ok & st.bad):
                k = pk_obj[pos]
                first = run.duplicates.get(k, int(rows[pos]))
                first_bad = k in self.quarantined_keys["invitations"] or (
                    first > st.offset and st.bad[first - st.offset - 1]
                )
                keep[pos] = first_bad
            ok &= keep
        values = sent.to_numpy()
        for pos in np.flatnonzero(ok):
            self.batch_sent_at.setdefault(pk_obj[pos], values[pos])

    def _sent_at_of(self, invitation_ids: pd.Series) -> pd.Series:
        ids = [str(v) for v in pd.unique(invitation_ids.dropna())]
        lookup: dict[str, Any] = {}
        rest = []
        for i in ids:
            v = self.batch_sent_at.get(i)
            if v is not None:
                lookup[i] = v
            else:
                rest.append(i)
        stored_ids: list[str] = []
        stored_values = np.array([], dtype="datetime64[us]")
        if rest:
            stored = self.known_sent_at if self.known_sent_at is not None else None
            if stored is not None:
                lookup.update({i: stored[i] for i in rest if i in stored})
            elif hasattr(self.known, "sent_at_arrays"):  # the warehouse, read as arrays
                stored_ids, stored_values = self.known.sent_at_arrays(rest)
            else:
                found = self.known.sent_at(rest)
                lookup.update({str(k): _naive_utc(v) for k, v in found.items() if not _is_missing(v)})
        obj = invitation_ids.to_numpy(dtype=object, na_value=None)
        out = np.full(len(obj), np.datetime64("NaT"), dtype="datetime64[us]")
        keys = list(lookup) + stored_ids
        if keys:
            mine = pd.DatetimeIndex([pd.Timestamp(lookup[k]) for k in lookup]).as_unit("us").to_numpy()
            values = np.concatenate([mine.astype("datetime64[us]"), stored_values])
            pos = pd.Index(keys, dtype=object).get_indexer(obj)
            hit = pos >= 0
            out[hit] = values[pos[hit]]
        return pd.Series(out, index=invitation_ids.index, dtype="datetime64[us]")

    def end(self, name: str) -> dict[str, int]:
        """Close an entity: reconciliation (received == loaded + quarantined) and its counts."""
        run = self.runs[name]
        q_rows = len(self.col.quarantined_rows.get(name, set()))
        counts = {"received": run.received, "loaded": run.loaded, "quarantined": q_rows}
        if run.received != run.loaded + q_rows:
            raise ReconciliationError(
                f"batch {self.batch_id} entity {name}: received {run.received} != loaded {run.loaded} "
                f"+ quarantined {q_rows}"
            )
        return counts

    def outcome(self, valid: Mapping[str, pd.DataFrame]) -> ValidationOutcome:
        counts = {name: self.end(name) for name in self.runs}
        quarantine = pd.DataFrame(self.col.quarantine, columns=QUARANTINE_COLUMNS)
        quarantine = quarantine.astype({"row_number": "int64"}) if len(quarantine) else quarantine
        return ValidationOutcome(
            batch_id=self.batch_id,
            source=self.source,
            as_of=self.as_of,
            checked_at=self.checked_at,
            valid=dict(valid),
            quarantine=quarantine,
            results=_results_frame(list(self.col.results.values())),
            counts=counts,
            warnings=pd.DataFrame(self.col.warnings, columns=QUARANTINE_COLUMNS),
            gx_results=self.gx_results,
            skipped=self.skipped,
            timings=self.timings,
        )


def validate_batch(
    frames: Mapping[str, pd.DataFrame],
    *,
    batch_id: str,
    source: str,
    as_of: dt.datetime,
    known_keys: Mapping[str, set[str]] | KnownKeys | None = None,
    origin: Mapping[str, str] | None = None,
    known_sent_at: Mapping[str, Any] | None = None,
    future_skew: dt.timedelta = DEFAULT_FUTURE_SKEW,
    suites_dir: Path | None = None,
    context: Any = None,
) -> ValidationOutcome:
    """Validate one extraction batch held in memory; see the module docstring for the steps.

    ``known_keys``: primary keys already in the warehouse per entity (``warehouse.known_keys``),
    or a :class:`KnownKeys` that looks them up (``warehouse.StoredKeys``).
    A reference check whose parent entity is neither in the batch nor in ``known_keys`` is
    skipped (listed in ``outcome.skipped``); pass ``known_keys`` from the warehouse (it has an
    entry, maybe empty, for every entity) to make every reference check strict.
    ``known_sent_at``: invitation_id -> sent_at of invitations already in the warehouse, for the
    "recorded_at not before sent_at" check (invitations of the batch are used anyway); a
    :class:`KnownKeys` answers it itself when this is None.
    ``origin``: entity -> landed file name, used in messages (default: the entity name).
    """
    t_start = time.perf_counter()
    known = known_keys if isinstance(known_keys, KnownKeys) else SetKnownKeys(known_keys)
    if known_sent_at is None and not isinstance(known_keys, KnownKeys):
        known_sent_at = {}
    gate = Gate(
        batch_id=batch_id,
        source=source,
        as_of=as_of,
        known=known,
        known_sent_at=known_sent_at,
        origin=origin,
        future_skew=future_skew,
        suites_dir=suites_dir,
        context=context,
    )
    gate.check_structure({name: (list(df.columns), len(df)) for name, df in frames.items()})
    valid = {}
    for name in [n for n in ENTITY_ORDER if n in frames]:
        raw = frames[name]
        pk = ENTITIES[name].primary_key
        gate.begin(name, duplicate_keys(coerce_column(raw[pk].reset_index(drop=True), "string")[0]))
        valid[name] = gate.validate(name, raw)
    outcome = gate.outcome(valid)
    outcome.timings["total"] = time.perf_counter() - t_start
    return outcome


def _results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return df.astype(
        {
            "success": "boolean",
            "rows_checked": "int64",
            "unexpected_count": "int64",
            "checked_at": "datetime64[us]",
        }
    )


def _exception_messages(info: Any) -> list[str]:
    if not info:
        return []
    if isinstance(info, Mapping) and "raised_exception" in info:
        return [str(info.get("exception_message"))] if info.get("raised_exception") else []
    out = []
    if isinstance(info, Mapping):
        for v in info.values():
            out.extend(_exception_messages(v))
    return out


_NS_RANGE = (pd.Timestamp.min.as_unit("us"), pd.Timestamp.max.as_unit("us"))


def _gx_vectorisable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame GX evaluates, with the dtypes its pandas metrics compute vectorised.

    GX's ``column_values.between`` compares whole columns only for numpy int/float and
    datetime64[ns] columns; for the gate's nullable Int64/Float64 and datetime64[us] columns
    it calls a Python function per value (at 1.2M invitations that was most of the GX time).
    Same values, so the same rows pass or fail: numbers become float64 (null -> NaN, which GX
    leaves out like null), timestamps datetime64[ns] when every value fits its range (years
    1677-2262; a column with a wilder value keeps its type and the per-value path)."""
    out = frame.copy(deep=False)
    for name, series in frame.items():
        dtype = series.dtype
        if isinstance(dtype, pd.Int64Dtype | pd.Float64Dtype):
            out[name] = series.to_numpy(dtype="float64", na_value=np.nan)
        elif pd.api.types.is_datetime64_dtype(dtype) and dtype != np.dtype("datetime64[ns]"):
            lo, hi = series.min(), series.max()
            if pd.isna(lo) or (_NS_RANGE[0] <= lo and hi <= _NS_RANGE[1]):
                out[name] = series.astype("datetime64[ns]")
    return out


def _apply_gx_result(
    result: Any, st: _EntityState, col: _Collector, frame: pd.DataFrame, duplicates: Mapping[str, int]
) -> None:
    """Turn one chunk's GX suite result into result rows and quarantine/warning rows.

    ``success`` is checked per expectation; an expectation GX could not evaluate raises.
    Primary-key uniqueness is judged over the whole entity (``duplicates``: key -> first row):
    GX sees one chunk at a time, so a duplicate of a row in an earlier chunk is found there."""
    for i, r in enumerate(result.results):
        cfg = r.expectation_config
        meta = dict(cfg.meta or {})
        severity = meta.get("severity")
        if severity not in ("error", "warn"):
            raise GateError(f"suite {st.name}: expectation {cfg.type} has no meta.severity error|warn")
        errors = _exception_messages(r.exception_info)
        if errors:
            raise GateError(f"GX could not evaluate {cfg.type} on {st.name}: {'; '.join(errors)}")
        kwargs = cfg.kwargs
        column = meta.get("column") or kwargs.get("column") or kwargs.get("column_A")
        res = r.result or {}
        rows = [int(d[ROW_COL]) - 1 - st.offset for d in (res.get("unexpected_index_list") or [])]
        if cfg.type == UNIQUE_EXPECTATION:
            pk = frame[column].to_numpy(dtype=object, na_value=None)
            first = np.array([duplicates.get(k, 0) if k is not None else 0 for k in pk], dtype=np.int64)
            if duplicates:
                dup_rows = np.flatnonzero(first > 0)
            else:
                dup_rows = np.array([], dtype=np.int64)
            if set(rows) - set(dup_rows.tolist()):
                raise GateError(f"{st.file}: GX found duplicates of {column} the gate did not")
            col.result(st.name, cfg.type, column, severity, len(dup_rows) == 0, st.n, len(dup_rows), slot=f"gx{i}")
            reason = meta.get("reason", cfg.type)
            for pos in dup_rows:
                row_number = st.offset + int(pos) + 1
                if first[pos] >= row_number:
                    continue  # the first occurrence is kept
                col.row(
                    st,
                    int(pos),
                    column,
                    cfg.type,
                    severity,
                    f"{st.prefix(int(pos))} field {column}: {_show(st.raw[column].iloc[pos])} {reason}; "
                    f"first seen at row {first[pos]}",
                )
            continue
        unexpected = res.get("unexpected_count")
        table_level = unexpected is None
        if table_level:  # table-level expectation
            unexpected = 0 if r.success else 1
        col.result(st.name, cfg.type, column, severity, r.success, st.n, unexpected, slot=f"gx{i}",
                   table_level=table_level)
        if r.success:
            continue
        if not rows and cfg.type == STRUCTURE_EXPECTATION:
            raise GateError(f"{st.file}: structural expectation failed after the structure check")
        reason = meta.get("reason", cfg.type)
        check = meta.get("check")
        if column not in st.typed.columns:
            raise GateError(f"suite {st.name}: {cfg.type} names unknown column {column!r} (set meta.column)")
        failed_coercion = st.coercion_failed.get(column)
        for pos in sorted(set(rows)):
            if failed_coercion is not None and failed_coercion[pos]:
                continue  # already quarantined with the coercion reason
            if check == "not_null":
                msg = f"{st.prefix(pos)} field {column} {reason}"
            elif check == "recorded_after_sent":
                msg = (
                    f"{st.prefix(pos)} field {column}: {_show(st.raw[column].iloc[pos])} {reason} "
                    f"({_show(frame[kwargs['column_B']].iloc[pos])})"
                )
            else:
                msg = f"{st.prefix(pos)} field {column}: {_show(st.raw[column].iloc[pos])} {reason}"
            col.row(st, pos, column, cfg.type, severity, msg)


# --------------------------------------------------------------------------- docs


def build_data_docs(outcome: ValidationOutcome, folder: str | Path) -> Path:
    """Write GX Data Docs pages (one validation-results page per entity, rendered by GX's own
    ValidationResultsPageRenderer + DefaultJinjaPageView) and an index page with the gate's
    result table, reconciliation counts and quarantine sample, into ``folder``.

    Long value sets (the parent keys of reference checks) are shortened in the rendered pages.
    Returns the index page's path."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pages = {}
    renderer = ValidationResultsPageRenderer()
    view = DefaultJinjaPageView()
    for name, result in outcome.gx_results.items():
        shown = copy.deepcopy(result)
        for r in shown.results:
            vs = r.expectation_config.kwargs.get("value_set")
            if isinstance(vs, list) and len(vs) > 20:
                r.expectation_config.kwargs["value_set"] = sorted(map(str, vs))[:20] + [
                    f"... ({len(vs)} keys)"
                ]
            if isinstance(r.result, dict):
                for k in ("unexpected_list", "unexpected_index_list", "partial_unexpected_index_list"):
                    if isinstance(r.result.get(k), list) and len(r.result[k]) > 50:
                        r.result[k] = r.result[k][:50]
        page = folder / f"{name}.html"
        try:
            page.write_text(view.render(renderer.render(shown)), encoding="utf-8")
            pages[name] = page.name
        except Exception as exc:  # noqa: BLE001 - docs are a convenience; the index still lists results
            pages[name] = None
            page.write_text(f"<p>GX rendering failed: {html.escape(str(exc))}</p>", encoding="utf-8")
    index = folder / "index.html"
    index.write_text(_summary_html(outcome, pages), encoding="utf-8")
    return index


def _summary_html(outcome: ValidationOutcome, pages: Mapping[str, str | None]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>cxloop validation {esc(outcome.batch_id)}</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.fail{background:#fdd}.warn{background:#ffd}</style>",
        "</head><body>",
        f"<h1>Batch {esc(outcome.batch_id)} ({esc(outcome.source)})</h1>",
        f"<p>as_of {esc(str(outcome.as_of))}, checked at {esc(str(outcome.checked_at))}</p>",
        "<h2>Reconciliation</h2><table><tr><th>entity</th><th>received</th><th>loaded</th>"
        "<th>quarantined</th><th>GX Data Docs</th></tr>",
    ]
    for name, c in outcome.counts.items():
        link = pages.get(name)
        cell = f"<a href='{esc(link)}'>{esc(link)}</a>" if link else ""
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{c['received']}</td><td>{c['loaded']}</td>"
            f"<td>{c['quarantined']}</td><td>{cell}</td></tr>"
        )
    parts.append("</table><h2>Expectations</h2><table><tr>")
    parts.extend(f"<th>{esc(c)}</th>" for c in RESULT_COLUMNS[2:9])
    parts.append("</tr>")
    for r in outcome.results.itertuples(index=False):
        cls = "" if r.success else (" class='fail'" if r.severity == "error" else " class='warn'")
        cells = [r.entity, r.expectation, r.column, r.severity, r.success, r.rows_checked, r.unexpected_count]
        parts.append(f"<tr{cls}>" + "".join(f"<td>{esc(str(x))}</td>" for x in cells) + "</tr>")
    parts.append("</table><h2>Quarantine (first 200 rows)</h2><table><tr>")
    qcols = ["entity", "primary_key", "row_number", "field", "expectation", "reason"]
    parts.extend(f"<th>{c}</th>" for c in qcols)
    parts.append("</tr>")
    for r in outcome.quarantine.head(200).itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td>{esc(str(getattr(r, c)))}</td>" for c in qcols) + "</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)
