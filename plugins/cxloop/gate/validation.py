"""The validation gate: coerce, validate with Great Expectations, quarantine, reconcile.

This module runs the checks (:class:`Gate`, :func:`validate_batch`); its parts live beside it:
:mod:`cxloop.gate.outcome` (the outcome and the gate's errors), :mod:`cxloop.gate.suites`
(the expectation suites and the GX context), :mod:`cxloop.gate.coerce` (received values to the
contract's types), :mod:`cxloop.gate.messages` (bounded values in reasons and records),
:mod:`cxloop.gate.data_docs` (HTML data docs), :mod:`cxloop.gate.landed` (landed Parquet).

One call of :func:`validate_batch` handles one extraction batch: a dict of pandas DataFrames,
one per canonical entity of :mod:`cxloop.contract`, values as received from the source.

Steps, per entity in :data:`cxloop.contract.ENTITY_ORDER` (parents before children):

1. **Structure.** Every contract column must be present. A missing (or renamed) column rejects
   the whole batch: :class:`BatchRejected` names the landed file and the columns. Columns
   outside the contract are dropped and recorded as a ``warn`` result.
2. **Coercion** to the contract's logical types by the number grammar and the key rule of
   :mod:`cxloop.gate.coerce`. A value that does not fit (score ``"7.5"``, a malformed
   timestamp, a key with an inner space) becomes a quarantine row, e.g.
   ``responses.parquet row 17 field nps_score: '7.5' is not an integer 0-10``. In an
   *attribute* column (the suite's ``meta.attributes``: descriptive columns such as ``arr``,
   ``segment``, ``renewal_date``, ``title``) the value is loaded as null instead, with a
   ``warn`` result and a warning row naming file, row and field, so one bad ARR does not
   quarantine an account with all its contacts, invitations and responses. Keys, references,
   required columns, timestamps and ``nps_score`` are never attributes.
3. **Great Expectations** (GX Core, one ephemeral context per batch, a pandas data source with
   one dataframe asset per entity and a whole-dataframe batch definition) runs the suite of
   ``expectations/<entity>.json``. Every expectation carries ``meta.severity``: ``error`` ->
   the failing rows are quarantined; ``warn`` -> recorded in the results (and
   :attr:`ValidationOutcome.warnings`), rows kept. Run-time values (parent keys, the latest
   allowed timestamp) are GX expectation parameters (``$PARAMETER``). An expectation with
   ``meta.on_fail: null`` (every expectation on an attribute, e.g. ``0 <= arr < 1e12``) also
   loads the failing value as null.
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

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS, Entity
from cxloop.gate.coerce import (
    KEY_PHRASE,
    TYPE_PHRASE_OVERRIDES,
    TYPE_PHRASES,
    coerce_column,
    coerce_key,
    coerce_with_format,
    is_key_column,
    is_missing,
)
from cxloop.gate.messages import cut, naive_utc, record_json, show_value
from cxloop.gate.outcome import (
    CASCADE_EXPECTATION,
    EXTRA_COLUMNS_EXPECTATION,
    MAPPING_EXPECTATION,
    STRUCTURE_EXPECTATION,
    TYPE_EXPECTATION,
    UNIQUE_EXPECTATION,
    BatchRejected,
    GateError,
    ReconciliationError,
    ValidationOutcome,
    results_frame,
)
from cxloop.gate.suites import build_suite, gx_context, load_suite_config, memoised_configurations
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS, KnownKeys, SetKnownKeys

DEFAULT_FUTURE_SKEW = dt.timedelta(hours=1)
NULLED_TAIL = "; loaded as null (warning)"
ROW_COL = "_row"
SENT_AT_HELPER = "_invitation_sent_at"


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
                "record_json": record_json(ctx.raw, pos),
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
        if is_missing(v):
            raw_v = self.raw[self.entity.primary_key].iloc[pos]
            return None if is_missing(raw_v) else str(raw_v)
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


def _attributes(name: str, config: Mapping[str, Any]) -> frozenset[str]:
    """The suite's ``meta.attributes``: descriptive columns whose bad value is nulled with a
    warning instead of quarantining the row (and, by cascade, its children). Keys, references,
    required columns, timestamps and the score can never be attributes, and every expectation
    on an attribute must be ``warn`` with ``on_fail: null``."""
    e = ENTITIES[name]
    attributes = frozenset((config.get("meta") or {}).get("attributes") or [])
    for a in sorted(attributes):
        if a not in e.column_names:
            raise GateError(f"suite {name}: attribute {a!r} is not a column of {name}")
        c = e.column(a)
        if is_key_column(e, a) or c.required or c.type == "timestamp" or a == "nps_score":
            raise GateError(f"suite {name}: {a} is a key, required, timestamp or score column, not an attribute")
    for exp in config["expectations"]:
        meta = exp.get("meta") or {}
        column = meta.get("column") or exp["kwargs"].get("column")
        if column in attributes and (meta.get("severity") != "warn" or meta.get("on_fail") != "null"):
            raise GateError(f"suite {name}: {exp['type']} on attribute {column} must be warn with on_fail null")
    return attributes


def duplicate_keys(keys: pd.Series) -> dict[str, int]:
    """key -> 1-based row of its first occurrence, for the non-null keys occurring more than once
    (``keys``: the typed primary key column of the whole entity, in file order)."""
    mask = keys.duplicated(keep=False).to_numpy(dtype=bool) & keys.notna().to_numpy(dtype=bool)
    out: dict[str, int] = {}
    for pos in np.flatnonzero(mask):
        out.setdefault(str(keys.iloc[pos]), int(pos) + 1)
    return out


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
    attributes: frozenset[str] = frozenset()  # columns nulled (with a warning) when their value is bad
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
        mapping: Any = None,
    ):
        self.batch_id = batch_id
        self.mapping = mapping  # cxloop.extract.mapping.SourceMapping of this batch's source, or None
        self.source = source
        self.as_of = as_of
        self.known = known
        self.known_sent_at = (
            {str(k): naive_utc(v) for k, v in known_sent_at.items() if not is_missing(v)}
            if known_sent_at is not None
            else None
        )
        self.origin = dict(origin or {})
        self.suites_dir = suites_dir
        self.track_all_keys = track_all_keys
        self.checked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        self.col = _Collector(batch_id, source, self.checked_at)
        self.max_ts = naive_utc(as_of) + pd.Timedelta(future_skew)
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
        attributes = _attributes(name, config)
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
            attributes=attributes,
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
        mapped = _apply_mapping(self.mapping, st, col) if self.mapping is not None else {}

        # 1-2: extra columns, coercion
        t0 = time.perf_counter()
        col.result(
            name, EXTRA_COLUMNS_EXPECTATION, None, "warn", not run.extras, st.n, len(run.extras), table_level=True
        )
        typed = {}
        for c in e.columns:
            fmt = self.mapping.timestamp_formats.get((name, c.name)) if self.mapping is not None else None
            if is_key_column(e, c.name):
                series, failed = coerce_key(st.raw[c.name])
                phrase = KEY_PHRASE
            elif fmt is not None:
                series, failed = coerce_with_format(st.raw[c.name], c.type, fmt)
                phrase = (f"does not match the declared format {fmt} "
                          f"(mappings.{self.mapping.source}.timestamp_formats.{name}.{c.name})")
            elif c.name in mapped:
                series, failed = coerce_column(mapped[c.name], c.type)
                phrase = TYPE_PHRASES[c.type]
            else:
                series, failed = coerce_column(st.raw[c.name], c.type)
                phrase = TYPE_PHRASE_OVERRIDES.get((name, c.name), TYPE_PHRASES[c.type])
            typed[c.name] = series
            st.coercion_failed[c.name] = failed
            # an attribute that does not fit is loaded as null with a warning; anything else quarantines
            severity, tail = ("warn", NULLED_TAIL) if c.name in run.attributes else ("error", "")
            for pos in np.flatnonzero(failed):
                col.row(
                    st,
                    int(pos),
                    c.name,
                    TYPE_EXPECTATION,
                    severity,
                    f"{st.prefix(int(pos))} field {c.name}: {show_value(st.raw[c.name].iloc[pos])} {phrase}{tail}",
                )
            col.result(name, TYPE_EXPECTATION, c.name, severity, not failed.any(), st.n, int(failed.sum()))
        st.typed = pd.DataFrame(typed, index=st.raw.index)
        # duplicates the whole-entity scan could not see (key variants equal only after the key rule)
        for k, first in duplicate_keys(st.typed[e.primary_key]).items():
            run.duplicates.setdefault(k, offset + first)
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
        with memoised_configurations():
            result = batch.validate(
                run.suite, result_format=_GX_RESULT_FORMAT, expectation_parameters={"max_timestamp": self.max_ts}
            )
        key = name if run.chunks == 1 else f"{name}.{run.chunks}"
        self.gx_results[key] = result
        self._tick(f"gx_{name}", t0)
        t0 = time.perf_counter()
        _apply_gx_result(result, st, col, frame, run.duplicates, self.mapping)

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
                    reason = f"parent {parent} {cut(str(values.iloc[pos]))} quarantined"
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
            else:  # the warehouse (every KnownKeys answers as arrays)
                stored_ids, stored_values = self.known.sent_at_arrays(rest)
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
            results=results_frame(list(self.col.results.values())),
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
    mapping: Any = None,
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
        mapping=mapping,
    )
    gate.check_structure({name: (list(df.columns), len(df)) for name, df in frames.items()})
    valid = {}
    for name in [n for n in ENTITY_ORDER if n in frames]:
        raw = frames[name]
        pk = ENTITIES[name].primary_key
        gate.begin(name, duplicate_keys(coerce_key(raw[pk].reset_index(drop=True))[0]))
        valid[name] = gate.validate(name, raw)
    outcome = gate.outcome(valid)
    outcome.timings["total"] = time.perf_counter() - t_start
    return outcome


MAPPED_HINT_COLUMNS = ("buying_role", "tier", "segment", "survey_type", "delivery_status")


def _apply_mapping(mapping: Any, st: _EntityState, col: _Collector) -> dict[str, pd.Series]:
    """The source's value maps on this chunk (before coercion): column -> mapped values.

    buying_role: mapped, else (blank) the title rules decide, else ``unknown`` with a warning (a
    lost contact would lose its responses). segment / tier, once mapped for the source: a value
    neither mapped nor a target is quarantined naming the mapping to add. survey_type and
    delivery_status: mapped; what stays outside the contract fails the suite's allowed values,
    whose reason then names the mapping to add."""
    out: dict[str, pd.Series] = {}
    name = st.name
    for column in MAPPED_HINT_COLUMNS:
        if column not in st.raw.columns or not _column_of(name, column):
            continue
        values = st.raw[column].to_numpy(dtype=object)
        new = values.copy()
        unmapped = 0
        # distinct values are looked up once; only rows that need a message or a title are visited
        lookup = {}
        for v in pd.unique(st.raw[column].dropna()):
            lookup[v] = mapping.map_value(column, v) if str(v).strip() else (None, True)
        if all(known and target == v for v, (target, known) in lookup.items()) and not (
            column == "buying_role" and st.raw[column].isna().any()
        ):
            out[column] = pd.Series(new, index=st.raw.index, dtype=object)
            col.result(name, MAPPING_EXPECTATION, column, "warn" if column == "buying_role" else "error",
                       True, st.n, 0)
            continue
        for pos, v in enumerate(values):
            if is_missing(v) or not str(v).strip():
                if column == "buying_role" and "title" in st.raw.columns:
                    title = st.raw["title"].iloc[pos]
                    if is_missing(title) or not str(title).strip():
                        continue
                    role = mapping.role_from_title(title)
                    if role is None:
                        unmapped += 1
                        new[pos] = "unknown"
                        col.row(st, pos, column, MAPPING_EXPECTATION, "warn",
                                f"{st.prefix(pos)} field title: {show_value(title)} matches no title rule "
                                f"(mappings.{mapping.source}.title_rules); loaded as unknown (warning)")
                    else:
                        new[pos] = role
                continue
            target, known = lookup[v]
            if known:
                new[pos] = target
                continue
            if column == "buying_role":
                unmapped += 1
                new[pos] = "unknown"
                col.row(st, pos, column, MAPPING_EXPECTATION, "warn",
                        f"{st.prefix(pos)} field {column}: {show_value(v)} is not a buying role; loaded as "
                        f"unknown (warning); to map it: {mapping.hint(column, cut(str(v)))}")
            elif column in ("segment", "tier"):
                unmapped += 1
                new[pos] = None
                col.row(st, pos, column, MAPPING_EXPECTATION, "error",
                        f"{st.prefix(pos)} field {column}: {show_value(v)} is not mapped; "
                        f"to map it: {mapping.hint(column, cut(str(v)))}")
        severity = "warn" if column == "buying_role" else "error"
        col.result(name, MAPPING_EXPECTATION, column, severity, unmapped == 0, st.n, unmapped)
        out[column] = pd.Series(new, index=st.raw.index, dtype=object)
    return out


def _column_of(entity: str, column: str) -> bool:
    return column in ENTITIES[entity].column_names


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
    result: Any, st: _EntityState, col: _Collector, frame: pd.DataFrame, duplicates: Mapping[str, int],
    mapping: Any = None,
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
                    f"{st.prefix(int(pos))} field {column}: {show_value(st.raw[column].iloc[pos])} {reason}; "
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
        nulled = meta.get("on_fail") == "null"
        tail = NULLED_TAIL if nulled else ""
        if nulled and rows:
            st.typed.iloc[sorted(set(rows)), st.typed.columns.get_loc(column)] = pd.NA
        for pos in sorted(set(rows)):
            if failed_coercion is not None and failed_coercion[pos]:
                continue  # already quarantined with the coercion reason
            if check == "not_null":
                msg = f"{st.prefix(pos)} field {column} {reason}"
            elif check == "recorded_after_sent":
                msg = (
                    f"{st.prefix(pos)} field {column}: {show_value(st.raw[column].iloc[pos])} {reason} "
                    f"({show_value(frame[kwargs['column_B']].iloc[pos])})"
                )
            else:
                msg = f"{st.prefix(pos)} field {column}: {show_value(st.raw[column].iloc[pos])} {reason}"
                if check == "allowed_values" and mapping is not None and column in MAPPED_HINT_COLUMNS:
                    msg += f"; to map it: {mapping.hint(column, cut(str(st.raw[column].iloc[pos])))}"
            col.row(st, pos, column, cfg.type, severity, msg + tail)
