"""Oracle of the renewal marts ``revenue_at_risk`` and ``nps_renewal_outcomes`` (contract 7.6,
7.7), in plain Python from the canonical tables; it shares nothing with the dbt SQL or its
macros (proportions.sql). ``tests/oracle.py`` calls :func:`renewal_marts` with its cleaned
inputs (``_Data``: accounts, periods, counted responses) and the raw ``renewals`` table.

CHOICE (as the oracle elsewhere): the account attributes (ARR, renewal_date, is_active) are the
current CRM row; a response's role is the contact's current role.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pandas as pd

Z = 1.96
ACCOUNT_CLASSES = ("promoter", "passive", "detractor", "unclassified")
OUTCOME_COLUMNS = [
    "account_class", "n_renewals", "n_won", "renewal_rate", "renewal_rate_ci_low", "renewal_rate_ci_high",
    "n_with_revenue", "previous_arr", "renewed_arr", "net_revenue_retention", "is_reportable",
]  # fmt: skip


def _null(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _true(v: Any) -> bool:
    return not _null(v) and bool(v)


def _date(v: Any) -> date | None:
    if _null(v):
        return None
    return pd.Timestamp(v).date()


def _quarter_start(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def class_of_mean(m: float | None) -> str:
    """The account class of a role-weighted mean raw score (contract 3.2, account_classified)."""
    if m is None:
        return "unclassified"
    if m >= 9:
        return "promoter"
    if m >= 7:
        return "passive"
    return "detractor"


def wilson(x: int, n: int) -> tuple[float | None, float | None]:
    """95% Wilson score interval of x / n (Wilson 1927)."""
    if n == 0:
        return None, None
    p = x / n
    z2 = Z * Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval for p1 - p2 (his method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1)
    l2, u2 = wilson(x2, n2)
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def _account_means(data: Any, counted: list[dict], weights: dict[str, float]) -> dict[tuple, float]:
    """(period_start, account_id) -> role-weighted mean score of the counted relationship responses."""
    import oracle  # the shared helpers of the main oracle (weights of roles)

    groups: dict[tuple, list[dict]] = {}
    for r in counted:
        if r["survey_type"] == "relationship":
            groups.setdefault((r["period_start"], r["account_id"]), []).append(r)
    return {k: oracle.role_weighted_mean_score(v, weights) for k, v in groups.items()}


def _renewal_rows(table: pd.DataFrame | None, as_of: pd.Timestamp) -> list[dict]:
    if table is None:
        return []
    out = []
    for raw in table.to_dict("records"):
        if _true(raw.get("is_deleted")):
            continue
        created = raw.get("created_at")
        if not _null(created) and pd.Timestamp(created) >= as_of:
            continue
        out.append(raw)
    return out


def _revenue_at_risk(data: Any, counted: list[dict], means: dict, window_days: int) -> pd.DataFrame:
    periods = data.periods()
    columns = [
        "period_start", "renewal_quarter", "account_class", "n_accounts", "arr", "n_accounts_in_window",
        "arr_in_window", "n_at_risk", "arr_at_risk", "arr_detractor_decision_maker", "arr_no_decision_maker_response",
    ]  # fmt: skip
    if not periods:
        return pd.DataFrame(columns=columns)
    latest = periods[-1]
    today = data.as_of.date()
    window_end = (data.as_of + timedelta(days=window_days)).date()
    detractor_dm = {
        r["account_id"]
        for r in counted
        if r["survey_type"] == "relationship" and r["period_start"] == latest
        and r["role"] == "decision_maker" and r["score_class"] == "detractor"
    }  # fmt: skip
    dm_responded = {
        r["account_id"]
        for r in data.responses
        if r["nps_score"] is not None and r["period_start"] == latest and r["role"] == "decision_maker"
    }
    cells: dict[tuple, dict] = {}
    for a in data.active_accounts():
        due = _date(a.get("renewal_date"))
        if due is None or due < today:
            continue
        arr = 0.0 if _null(a.get("arr")) else float(a["arr"])
        klass = class_of_mean(means.get((latest, a["account_id"])))
        in_window = due <= window_end
        det = in_window and a["account_id"] in detractor_dm
        no_dm = in_window and a["account_id"] not in dm_responded
        c = cells.setdefault((_quarter_start(due), klass), dict.fromkeys(columns[3:], 0))
        c["n_accounts"] += 1
        c["arr"] += arr
        if in_window:
            c["n_accounts_in_window"] += 1
            c["arr_in_window"] += arr
        if det or no_dm:
            c["n_at_risk"] += 1
            c["arr_at_risk"] += arr
        if det:
            c["arr_detractor_decision_maker"] += arr
        if no_dm:
            c["arr_no_decision_maker_response"] += arr
    rows = [
        {"period_start": latest, "renewal_quarter": q, "account_class": k, **v}
        for (q, k), v in sorted(cells.items())
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for c in columns[3:]:
        frame[c] = frame[c].astype("int64" if c.startswith("n_") else "float64")
    return frame


def _outcomes(data: Any, renewals: list[dict], means: dict, min_n: int) -> pd.DataFrame:
    today = data.as_of.date()
    decided: dict[str, list[dict]] = {k: [] for k in ACCOUNT_CLASSES}
    for r in renewals:
        close = _date(r.get("close_date"))
        if not _true(r.get("is_closed")) or close is None or close >= today:
            continue
        # the last reporting period that ended before the close date
        import oracle

        before = oracle.previous_period_start(oracle.period_start_of(pd.Timestamp(close), data.grain), data.grain)
        decided[class_of_mean(means.get((before, r["account_id"])))].append(r)
    decided["all"] = [r for k in ACCOUNT_CLASSES for r in decided[k]]

    def summary(klass: str, items: list[dict]) -> dict:
        n = len(items)
        won = sum(1 for r in items if _true(r.get("is_won")))
        base = [r for r in items if not _null(r.get("previous_amount")) and not _null(r.get("amount"))]
        previous = sum(float(r["previous_amount"]) for r in base) if base else None
        renewed = sum(float(r["amount"]) if _true(r.get("is_won")) else 0.0 for r in base) if base else None
        low, high = wilson(won, n)
        return {
            "account_class": klass,
            "n_renewals": n,
            "n_won": won,
            "renewal_rate": won / n,
            "renewal_rate_ci_low": low,
            "renewal_rate_ci_high": high,
            "n_with_revenue": len(base),
            "previous_arr": previous,
            "renewed_arr": renewed,
            "net_revenue_retention": renewed / previous if previous else None,
            "is_reportable": n >= min_n,
        }

    rows = {k: summary(k, v) for k, v in decided.items() if v}
    out = list(rows.values())
    if "promoter" in rows and "detractor" in rows:
        p, d = rows["promoter"], rows["detractor"]
        low, high = newcombe(p["n_won"], p["n_renewals"], d["n_won"], d["n_renewals"])
        nrr = (
            p["net_revenue_retention"] - d["net_revenue_retention"]
            if p["net_revenue_retention"] is not None and d["net_revenue_retention"] is not None
            else None
        )
        out.append(
            {
                "account_class": "promoter_minus_detractor",
                "n_renewals": p["n_renewals"] + d["n_renewals"],
                "n_won": p["n_won"] + d["n_won"],
                "renewal_rate": p["renewal_rate"] - d["renewal_rate"],
                "renewal_rate_ci_low": low,
                "renewal_rate_ci_high": high,
                "n_with_revenue": p["n_with_revenue"] + d["n_with_revenue"],
                "previous_arr": None,
                "renewed_arr": None,
                "net_revenue_retention": nrr,
                "is_reportable": min(p["n_renewals"], d["n_renewals"]) >= min_n,
            }
        )
    frame = pd.DataFrame(out, columns=OUTCOME_COLUMNS)
    for c in ("renewal_rate", "renewal_rate_ci_low", "renewal_rate_ci_high", "previous_arr", "renewed_arr",
              "net_revenue_retention"):  # fmt: skip
        frame[c] = pd.to_numeric(frame[c]).astype("float64")
    return frame.sort_values("account_class").reset_index(drop=True)


def renewal_marts(
    tables: dict[str, pd.DataFrame],
    data: Any,
    counted: list[dict],
    weights: dict[str, float],
    *,
    at_risk_renewal_days: int = 120,
    min_n_group: int = 5,
) -> dict[str, pd.DataFrame]:
    means = _account_means(data, counted, weights)
    renewals = _renewal_rows(tables.get("renewals"), data.as_of)
    return {
        "revenue_at_risk": _revenue_at_risk(data, counted, means, at_risk_renewal_days),
        "nps_renewal_outcomes": _outcomes(data, renewals, means, min_n_group),
    }
