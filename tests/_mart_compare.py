"""Comparing a mart with the oracle's independent computation (tests/oracle.py), row by row on
the mart's grain: used by the end-to-end runs and the response-only program alike."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pandas as pd

# the grain of the marts the oracle computes (rows are matched on it)
MART_KEYS = {
    "account_nps": ["period_start", "survey_type", "account_id", "method"],
    "account_nps_prior": ["period_start", "survey_type", "segment"],
    "portfolio_nps": ["period_start", "survey_type", "group_type", "group_value", "method"],
    "contact_coverage": ["period_start", "account_id"],
    "response_rate": ["period_start", "survey_type", "group_type", "group_value"],
    "follow_up_sla": ["response_id"],
    "revenue_at_risk": ["renewal_quarter", "account_class"],
    "nps_renewal_outcomes": ["account_class"],
    "account_team_worklist": ["item_kind", "account_id", "role", "response_id"],
}


# the grain of every mart (its unique key, as its dbt tests declare): two builds of a mart are
# compared row by row after sorting on it (test_parity, test_dbt_project, test_dbt_package)
MART_GRAIN = {
    **MART_KEYS,
    "follow_up_attainment": ["period_start", "group_type", "group_value"],
    "portfolio_coverage": ["period_start", "group_type", "group_value"],
    "governance_kpis": ["period_start", "group_type", "group_value", "kpi"],
    "at_risk_accounts": ["period_start", "account_id"],
    "data_quality": ["batch_id", "entity", "expectation", "column_name"],
    "account_directory": ["account_id"],
    "owner_directory": ["owner_id"],
}


def comparable(v):
    """A comparable Python value: None for every kind of null, ISO text for dates and times,
    float for decimals, plain Python for numpy scalars."""
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(v, (pd.Timestamp, dt.datetime, dt.date)):  # DuckDB DATE arrives as a Timestamp
        return pd.Timestamp(v).isoformat()
    if hasattr(v, "item"):  # numpy scalar
        v = v.item()
    if isinstance(v, Decimal):
        return float(v)
    return v


def sorted_rows(frame: pd.DataFrame, keys: list[str]) -> list[dict]:
    """The frame's rows as dicts of comparable values, sorted on ``keys`` (nulls last)."""
    records = [{c: comparable(v) for c, v in r.items()} for r in frame.to_dict("records")]
    return sorted(records, key=lambda r: tuple((r[k] is None, "" if r[k] is None else str(r[k])) for k in keys))


def normalise(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    out = frame[keys + columns].copy()
    for col in out.columns:
        if col in ("period_start", "renewal_quarter") or col.endswith("_date"):
            out[col] = pd.to_datetime(out[col]).dt.date
        elif out[col].dtype == object or str(out[col].dtype).startswith("str"):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out.sort_values(keys).reset_index(drop=True)


def compare_with_oracle(mart: str, actual: pd.DataFrame, wanted: pd.DataFrame) -> None:
    keys = MART_KEYS[mart]
    columns = [c for c in wanted.columns if c in actual.columns and c not in keys]
    a = normalise(actual, keys, columns)
    w = normalise(wanted, keys, columns)
    assert len(a) == len(w), f"{mart}: {len(a)} rows in the mart, {len(w)} computed independently"
    merged = a.merge(w, on=keys, how="outer", suffixes=("_mart", "_oracle"), indicator=True)
    only = merged[merged["_merge"] != "both"]
    assert only.empty, f"{mart}: keys on one side only:\n{only[keys + ['_merge']].head(10)}"
    problems = []
    for col in columns:
        x, y = merged[f"{col}_mart"], merged[f"{col}_oracle"]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y):
            xv, yv = x.astype(float).to_numpy(), y.astype(float).to_numpy()
            bad = ~((np.isnan(xv) & np.isnan(yv)) | np.isclose(xv, yv, rtol=1e-9, atol=1e-9))
        else:
            xs = x.astype(object).where(x.notna(), None)
            ys = y.astype(object).where(y.notna(), None)
            bad = np.array(
                [(p is None) != (q is None) or (p is not None and p != q) for p, q in zip(xs, ys, strict=True)]
            )
        if bad.any():
            sample = merged.loc[bad, keys + [f"{col}_mart", f"{col}_oracle"]].head(5)
            problems.append(f"{col}: {int(bad.sum())} rows differ\n{sample.to_string()}")
    assert not problems, f"{mart}:\n" + "\n".join(problems)
