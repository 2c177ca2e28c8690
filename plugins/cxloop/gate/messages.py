"""Received values as they may appear in the gate's messages and quarantine records: bounded
(:data:`SHOW_VALUE_MAX_CHARS` in reasons, :data:`RECORD_VALUE_MAX_CHARS` per value in
``record_json``)."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from cxloop.gate.coerce import is_missing

RECORD_VALUE_MAX_CHARS = 2000  # longer strings are truncated in quarantine.record_json
SHOW_VALUE_MAX_CHARS = 80  # ... and in reason messages


def cut(text: str) -> str:
    """text as it may appear in a message: at most SHOW_VALUE_MAX_CHARS characters, then '...'."""
    return text if len(text) <= SHOW_VALUE_MAX_CHARS else text[:SHOW_VALUE_MAX_CHARS] + "..."


def show_value(v: Any) -> str:
    if is_missing(v):
        return "null"
    if isinstance(v, str):
        text = v if len(v) <= SHOW_VALUE_MAX_CHARS else v[:SHOW_VALUE_MAX_CHARS] + "..."
        return repr(text)
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date):
        return repr(v.isoformat())
    return str(v)


def _jsonable(v: Any) -> Any:
    if is_missing(v):
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


def record_json(raw: pd.DataFrame, pos: int) -> str:
    row = raw.iloc[pos]
    return json.dumps({str(k): _jsonable(v) for k, v in row.items()}, ensure_ascii=False, sort_keys=False)


def naive_utc(t: dt.datetime | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts
