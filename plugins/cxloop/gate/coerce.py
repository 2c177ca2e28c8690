"""Coercion of received values to the contract's logical types.

:func:`coerce_column` turns one received column into (typed series, failure mask);
:func:`coerce_key` does the same for key and reference columns (:func:`is_key_column`).
Empty or blank strings count as null; other strings are kept verbatim. A value outside the
grammar below is a coercion failure (quarantined, or nulled with a warning for an attribute
column), never an exception.

Number grammar (text values; surrounding whitespace is ignored)
---------------------------------------------------------------
* **Integers** (``int`` columns, e.g. ``nps_score``): ASCII digits ``0-9`` with an optional
  leading ``+`` or ``-`` and optionally a fraction of zeros only: ``7``, ``+7``, ``-3``,
  ``7.0``, ``7.00``; ``-0`` and ``+0`` are 0. Nothing else: no ``_`` (``1_0``), no thousands
  separator, no exponent (``7e0``), no other fraction (``7.5``, ``6.9999999999999999``), no
  non-ASCII digits (``٧``, ``７``), no ``NaN``/``Infinity``, and the value must fit a signed
  64-bit integer (19+ digit values beyond that fail instead of overflowing). Range rules (a
  score is 0-10) are the suite's. A non-text value must be an integer, or a finite float or
  Decimal with no fractional part (floats only up to 2**53, where they are exact).
* **Floats** (``float`` columns, e.g. ``arr``): ASCII plain decimal or exponent notation,
  ``[+-]digits[.digits][(e|E)[+-]digits]`` (``1200.50``, ``.5``, ``1.2e6``), and finite.
  Thousands separators (``1,200.50``), ``_``, non-ASCII digits, ``NaN`` and ``Infinity``
  (or a value overflowing to infinity, ``1e400``) are invalid. Range rules (0 <= arr < 1e12)
  are the suite's.
* A ``NaN`` *text* is invalid, not null. Only a missing value (None, or pandas' own float
  NaN / NA / NaT in an in-memory frame, which is how pandas spells null) is null; landed
  files carry every value as text, so a NaN from a source arrives as the text ``NaN``.
* Dates: ``YYYY-MM-DD`` (or an ISO-8601 timestamp, its date taken), ASCII only.

Key rule (every ``*_id`` column: primary keys and references)
-------------------------------------------------------------
Leading and trailing whitespace (any Unicode whitespace: space, tab, NBSP U+00A0, ...) and
invisible format characters (zero-width space U+200B, ZWNJ/ZWJ, word joiner U+2060, BOM
U+FEFF, ... - Unicode category Cf) are removed; so ``001001``, ``001001 ``, ``\u00a0001001``,
``001001\u200b`` and ``\ufeff001001`` are one key and references to any of them resolve. A key
that still contains whitespace, a control character (Cc) or a format character (Cf) inside
(``001 001``, ``001\u200b001``) is invalid: the row is quarantined with reason ``is not a valid
key (inner whitespace or control characters)``. A key that is empty after the stripping is
null. Numeric keys become their text (``1001`` -> ``'1001'``). Keys are otherwise kept
verbatim (case and Unicode normalisation are not changed).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from cxloop.contract import ENTITIES, Entity

PANDAS_DTYPES = {
    "string": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "date": "datetime64[s]",
    "timestamp": "datetime64[us]",
}
TYPE_PHRASES = {
    "string": "is not a text value",
    "int": "is not an integer",
    "float": "is not a number",
    "bool": "is not a boolean",
    "date": "is not a valid date (YYYY-MM-DD)",
    "timestamp": "is not a valid ISO-8601 timestamp",
}
KEY_PHRASE = "is not a valid key (inner whitespace or control characters)"
# column-specific wording of a coercion failure (what the value must be)
TYPE_PHRASE_OVERRIDES = {("responses", "nps_score"): "is not an integer 0-10"}


def is_missing(v: Any) -> bool:
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


_INT_RE = re.compile(r"([+-]?)([0-9]+)(?:\.0+)?")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INT64_MAX = 2**63 - 1
_EXACT_FLOAT_INT = 2**53


def _int64(i: int) -> Any:
    return i if -INT64_MAX - 1 <= i <= INT64_MAX else _FAIL


def _to_int(v: Any) -> Any:
    """An integer by the module's number grammar, else _FAIL (never raises for a str)."""
    if isinstance(v, bool | np.bool_):
        return _FAIL
    if isinstance(v, int | np.integer):
        return _int64(int(v))
    if isinstance(v, Decimal):
        if not v.is_finite() or v != v.to_integral_value():
            return _FAIL
        return _int64(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if not math.isfinite(f) or not f.is_integer() or abs(f) > _EXACT_FLOAT_INT:
            return _FAIL
        return int(f)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return _NULL
        m = _INT_RE.fullmatch(s)
        if m is None or len(m.group(2).lstrip("0")) > 19:  # keeps int() cheap on huge digit runs
            return _FAIL
        return _int64(int(m.group(1) + m.group(2)))
    return _FAIL


def _to_float(v: Any) -> Any:
    """A finite float by the module's number grammar, else _FAIL."""
    if isinstance(v, bool | np.bool_):
        return _FAIL
    if isinstance(v, int | np.integer | float | np.floating | Decimal):
        f = float(v)
        return f if math.isfinite(f) else _FAIL
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return _NULL
        if len(s) > 400 or _FLOAT_RE.fullmatch(s) is None:
            return _FAIL
        f = float(s)
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
        if not s.isascii() or len(s) > 64:
            return _FAIL
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
    return np.fromiter((is_missing(v) for v in values), dtype=bool, count=len(values))


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
    dtype = PANDAS_DTYPES[logical_type]
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
    dtype = PANDAS_DTYPES[logical_type]
    if logical_type == "date":
        typed = pd.Series(pd.to_datetime(pd.Series(out, dtype=object)), index=raw.index)
        typed = typed.astype("datetime64[s]")
    else:
        typed = pd.Series(out, index=raw.index, dtype=object).astype(dtype)
    return typed, failed


def is_key_column(entity: Entity, column: str) -> bool:
    """Key and reference columns, to which the key rule applies: the primary key, every
    reference, and every other ``*_id`` text column."""
    c = entity.column(column)
    return c.type == "string" and (
        column == entity.primary_key or column in entity.references or column.endswith("_id")
    )


def _edge(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Cf"


@lru_cache(maxsize=1)
def _inner_bad_re() -> re.Pattern[str]:
    """Any whitespace, control (Cc) or format (Cf) character; built once, on first use."""
    bad = [
        chr(i)
        for i in range(sys.maxunicode + 1)
        if (0xD800 > i or i > 0xDFFF)
        and (chr(i).isspace() or unicodedata.category(chr(i)) in ("Cc", "Cf", "Zs", "Zl", "Zp"))
    ]
    ranges: list[list[int]] = []
    for c in bad:
        if ranges and ranges[-1][1] == ord(c) - 1:
            ranges[-1][1] = ord(c)
        else:
            ranges.append([ord(c), ord(c)])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


_ASCII_BAD = re.compile(r"[\x00-\x20\x7f]")


def _to_key(v: Any) -> Any:
    """A key by the module's key rule, else _FAIL (or _NULL)."""
    s = _to_string(v)
    if s is _FAIL or s is _NULL:
        return s
    start, end = 0, len(s)
    while start < end and _edge(s[start]):
        start += 1
    while end > start and _edge(s[end - 1]):
        end -= 1
    s = s[start:end]
    if not s:
        return _NULL
    if (_ASCII_BAD if s.isascii() else _inner_bad_re()).search(s):
        return _FAIL
    return s


_PLAIN_KEY = r"^[!-~]+$"  # printable ASCII without space: a key the rule leaves as it is


def coerce_key(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Coerce a key or reference column by the key rule: (string series, failure mask)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = raw.to_numpy(dtype=object)
    if _all_text(values):
        arr = pa.array(values, type=pa.string(), from_pandas=True)
        plain = pc.fill_null(pc.match_substring_regex(arr, _PLAIN_KEY), True).to_numpy(zero_copy_only=False)
        if plain.all():
            return pd.Series(values, index=raw.index, dtype="string"), np.zeros(len(values), dtype=bool)
        out = pd.Series(values, index=raw.index, dtype="string")
        failed = np.zeros(len(values), dtype=bool)
        odd = np.flatnonzero(~plain)
        fixed, odd_failed = _coerce_text_by_value(values[odd], _to_key, "string", raw.index[odd])
        out.iloc[odd] = fixed.to_numpy(dtype=object, na_value=pd.NA)
        failed[odd] = odd_failed
        return out, failed
    out, failed = _map_values(values, _to_key)
    return pd.Series(out, index=raw.index, dtype=object).astype("string"), failed


def empty_typed_frame(entity_name: str) -> pd.DataFrame:
    e = ENTITIES[entity_name]
    return pd.DataFrame({c.name: pd.Series([], dtype=PANDAS_DTYPES[c.type]) for c in e.columns})


def coerce_with_format(raw: pd.Series, logical_type: str, fmt: str) -> tuple[pd.Series, np.ndarray]:
    """A date or timestamp column in a declared strptime format (``mappings.<source>.timestamp_formats``):
    each value (trimmed) must match ``fmt`` exactly; nothing is guessed. A format with ``%z`` is
    converted to UTC, one without is taken as UTC. Returns (typed, failed) like :func:`coerce_column`."""
    values = raw.to_numpy(dtype=object)
    out: list[Any] = []
    failed = np.zeros(len(values), dtype=bool)
    cache: dict[str, Any] = {}
    for i, v in enumerate(values):
        if is_missing(v) or (isinstance(v, str) and not v.strip()):
            out.append(None)
            continue
        text = str(v).strip()
        if text not in cache:
            try:
                parsed = dt.datetime.strptime(text, fmt)
                if parsed.tzinfo is not None:
                    parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
                cache[text] = parsed
            except ValueError:
                cache[text] = _FAIL
        parsed = cache[text]
        if parsed is _FAIL:
            failed[i] = True
            out.append(None)
        else:
            out.append(parsed)
    typed = pd.Series(pd.to_datetime(pd.Series(out, dtype=object)), index=raw.index)
    typed = typed.astype("datetime64[s]" if logical_type == "date" else "datetime64[us]")
    if logical_type == "date":
        typed = typed.dt.normalize()
    return typed, failed
