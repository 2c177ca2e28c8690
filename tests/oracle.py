"""Independent Python oracle for the CX marts.

Computes the marts of ``docs/metric-contract.md`` section 8 (account_nps, portfolio_nps,
contact_coverage, response_rate, follow_up_sla) from the canonical input tables of
``cxloop.contract`` with plain pandas / Python, following ``docs/metric-decisions.md``.

Written to be obviously correct, not fast: most of it is row loops over lists of dicts.
It shares no code with the dbt project and must not: its value is that it is independent.

Choices made where metric-decisions.md is silent are marked ``CHOICE:`` below; the
cross-cutting ones:

- ``is_deleted`` drops a row from its own table only (any table carrying the flag). Facts
  that point at a deleted or unknown account/contact are kept: the role is then ``unknown``
  and the account attributes null (group value ``'unknown'``, tier counted as C).
- Null ``opted_out`` / ``is_deleted`` mean false; null ``is_active`` means not active.
- ``unknown`` role (and any value outside the contract's roles) uses the weight of
  ``other``, whatever ``role_weights['unknown']`` says; its waterfall_role is ``'other'``.
- account_nps / portfolio_nps include responses of inactive accounts (in n) while N counts
  active accounts / eligible contacts of active accounts only.
- contact_coverage attributes invitations and responses to their own ``account_id``; the
  contacts' roles come from the contacts table regardless of the contact being active.
- The period spine runs from the period of the earliest dated fact (invitation sent_at,
  response recorded_at, follow-up created_at) to the one holding as_of - 1 us, so a program
  that records only responses (no invitations) has periods, coverage and populations too.
- response_rate: a period x survey_type that sent no invitation (any delivery status) has no
  measurable rate; its groups with responses get rows with rate_basis 'no_invitations'
  (delivered 0, rates null, the responses recorded counted) instead of no row.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import oracle_bayes  # the bayes account NPS and its prior (contract 3.7)
import oracle_renewal  # revenue_at_risk and nps_renewal_outcomes (contract 7.6, 7.7)
import oracle_worklist  # account_team_worklist
import pandas as pd

# --------------------------------------------------------------------------------------
# Constants and defaults
# --------------------------------------------------------------------------------------

Z = 1.96

BUYING_ROLES = ("decision_maker", "influencer", "user", "other", "unknown")
# Waterfall ranking; `unknown` ranks as `other` (metric-decisions: score classes).
ROLE_RANK = {"decision_maker": 0, "influencer": 1, "user": 2, "other": 3}
SLOT_ROLES = ("decision_maker", "influencer", "user")

DEFAULT_ROLE_WEIGHTS = {"decision_maker": 3.0, "influencer": 2.0, "user": 1.0, "other": 1.0, "unknown": 1.0}
DEFAULT_COVERAGE_SLOTS = {
    "A": {"decision_maker": 3, "influencer": 3, "user": 3},
    "B": {"decision_maker": 2, "influencer": 2, "user": 2},
    "C": {"decision_maker": 1, "influencer": 1, "user": 1},
}

# Column lists used when a table is missing from the input (mirrors cxloop.contract).
TABLE_COLUMNS = {
    "owners": ["owner_id", "owner_name", "team", "is_active", "updated_at"],
    "accounts": [
        "account_id",
        "account_name",
        "segment",
        "region",
        "tier",
        "arr",
        "owner_id",
        "renewal_date",
        "is_active",
        "is_deleted",
        "created_at",
        "updated_at",
    ],
    "contacts": [
        "contact_id",
        "account_id",
        "email_hash",
        "title",
        "buying_role",
        "is_active",
        "opted_out",
        "is_deleted",
        "updated_at",
    ],
    "surveys": ["survey_id", "survey_name", "survey_type", "is_active", "updated_at"],
    "invitations": [
        "invitation_id",
        "survey_id",
        "contact_id",
        "account_id",
        "sent_at",
        "delivery_status",
    ],
    "responses": [
        "response_id",
        "invitation_id",
        "survey_id",
        "contact_id",
        "account_id",
        "recorded_at",
        "nps_score",
        "is_finished",
    ],
    "follow_ups": [
        "follow_up_id",
        "response_id",
        "account_id",
        "contact_id",
        "owner_id",
        "created_at",
        "first_contact_at",
        "closed_at",
        "status",
    ],
}
TIMESTAMP_COLUMNS = {
    "invitations": ["sent_at"],
    "responses": ["recorded_at"],
    "follow_ups": ["created_at", "first_contact_at", "closed_at"],
}

OUTPUT_COLUMNS = {
    "account_nps": [
        "period_start",
        "survey_type",
        "account_id",
        "method",
        "n_scored",
        "n_eligible",
        "promoters",
        "passives",
        "detractors",
        "nps",
        "var_pts",
        "ci_low",
        "ci_high",
        "is_reportable",
        "nps_prev",
        "var_prev",
        "is_significant_change",
        "waterfall_role",
    ],
    "portfolio_nps": [
        "period_start",
        "survey_type",
        "group_type",
        "group_value",
        "method",
        "n_accounts",
        "n_scored",
        "n_eligible",
        "promoters",
        "passives",
        "detractors",
        "nps",
        "var_pts",
        "ci_low",
        "ci_high",
        "is_reportable",
    ],
    "contact_coverage": [
        "period_start",
        "account_id",
        "tier",
        "slots_required",
        "slots_on_file",
        "slots_invited",
        "slots_responded",
        "coverage_on_file",
        "coverage_invited",
        "coverage_responded",
        "has_decision_maker_on_file",
        "has_decision_maker_response",
        "is_single_threaded",
        "n_contacts_responded",
    ],
    "response_rate": [
        "period_start",
        "survey_type",
        "group_type",
        "group_value",
        "delivered",
        "responses",
        "scored_responses",
        "response_rate",
        "scored_response_rate",
        "accounts_delivered",
        "accounts_responded",
        "account_response_rate",
        "target",
        "meets_target",
        "is_cohort_closed",
        "rate_basis",
    ],
    "follow_up_sla": [
        "response_id",
        "period_start",
        "survey_type",
        "account_id",
        "contact_id",
        "owner_id",
        "follow_up_id",
        "recorded_at",
        "nps_score",
        "target_at",
        "first_contact_at",
        "closed_at",
        "calendar_hours_to_first_contact",
        "calendar_hours_to_close",
        "sla_status",
        "is_sla_breach",
        "is_completed",
        "is_completion_due",
        "next_score",
        "is_recovered",
    ],
}
NULLABLE_BOOL_COLUMNS = {
    "account_nps": ["is_reportable", "is_significant_change"],
    "portfolio_nps": ["is_reportable"],
    "contact_coverage": ["has_decision_maker_on_file", "has_decision_maker_response", "is_single_threaded"],
    "response_rate": ["meets_target", "is_cohort_closed"],
    "follow_up_sla": ["is_sla_breach", "is_completed", "is_completion_due", "is_recovered"],
}
FLOAT_COLUMNS = {
    "account_nps": ["nps", "var_pts", "ci_low", "ci_high", "nps_prev", "var_prev"],
    "portfolio_nps": ["nps", "var_pts", "ci_low", "ci_high"],
    "contact_coverage": ["coverage_on_file", "coverage_invited", "coverage_responded"],
    "response_rate": ["response_rate", "scored_response_rate", "account_response_rate", "target"],
    "follow_up_sla": ["nps_score", "calendar_hours_to_first_contact", "calendar_hours_to_close", "next_score"],
}
NULLABLE_INT_COLUMNS = {"portfolio_nps": ["promoters", "passives", "detractors"]}
TIMESTAMP_OUTPUT_COLUMNS = {"follow_up_sla": ["recorded_at", "target_at", "first_contact_at", "closed_at"]}
SORT_KEYS = {
    "account_nps": ["period_start", "survey_type", "account_id", "method"],
    "portfolio_nps": ["period_start", "survey_type", "group_type", "group_value", "method"],
    "contact_coverage": ["period_start", "account_id"],
    "response_rate": ["period_start", "survey_type", "group_type", "group_value"],
    "follow_up_sla": ["response_id"],
}


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def is_null(value: Any) -> bool:
    """True for None, NaN, NaT and pd.NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def is_true(value: Any) -> bool:
    """A boolean column value; null counts as false."""
    return (not is_null(value)) and bool(value)


def to_timestamp(value: Any) -> pd.Timestamp | None:
    """Naive UTC pd.Timestamp, or None."""
    if is_null(value):
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def period_start_of(ts: Any, grain: str) -> date:
    ts = pd.Timestamp(ts)
    if grain == "month":
        return date(ts.year, ts.month, 1)
    if grain == "quarter":
        return date(ts.year, 3 * ((ts.month - 1) // 3) + 1, 1)
    raise ValueError(f"unknown period grain {grain!r}")


def _months(grain: str) -> int:
    return {"month": 1, "quarter": 3}[grain]


def add_periods(start: date, k: int, grain: str) -> date:
    index = start.year * 12 + (start.month - 1) + k * _months(grain)
    return date(index // 12, index % 12 + 1, 1)


def next_period_start(start: date, grain: str) -> date:
    return add_periods(start, 1, grain)


def previous_period_start(start: date, grain: str) -> date:
    return add_periods(start, -1, grain)


def score_class(score: Any) -> str | None:
    if is_null(score):
        return None
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


CLASS_VALUE = {"promoter": 1, "passive": 0, "detractor": -1}


def normalise_role(raw: Any) -> str:
    """A contract buying role; anything else (null, misspelt, missing contact) is unknown."""
    if is_null(raw) or raw not in BUYING_ROLES:
        return "unknown"
    return raw


def ranked_role(role: str) -> str:
    """The role used for waterfall ranking and weighting: unknown counts as other."""
    return "other" if role == "unknown" else role


def fpc(n: int, N: int | None) -> float:
    """Finite-population correction (N - n)/(N - 1) when N > 1 and n <= N, else 1."""
    if N is not None and N > 1 and n <= N:
        return (N - n) / (N - 1)
    return 1.0


def clip(x: float) -> float:
    return max(-100.0, min(100.0, x))


def adjusted_wald(P: int, D: int, n: int, N: int | None) -> tuple[float, float, float]:
    """Adjusted Wald interval for NPS (contract 3). Returns (var_pts, ci_low, ci_high).

    var_pts is the variance in NPS points squared (10000 * var); bounds clipped to [-100, 100].
    """
    n_adj = n + 3
    p_adj = (P + 0.75) / n_adj
    d_adj = (D + 0.75) / n_adj
    var = (p_adj + d_adj - (p_adj - d_adj) ** 2) / n_adj
    var = var * fpc(n, N)
    half = Z * math.sqrt(var)
    centre = p_adj - d_adj
    return 10000.0 * var, clip(100.0 * (centre - half)), clip(100.0 * (centre + half))


def normal_interval(estimate: float, var_pts: float) -> tuple[float, float]:
    half = Z * math.sqrt(var_pts)
    return clip(estimate - half), clip(estimate + half)


def nps_of_counts(P: int, D: int, n: int) -> float:
    return 100.0 * (P - D) / n


def group_label(value: Any) -> str:
    return "unknown" if is_null(value) else str(value)


# --------------------------------------------------------------------------------------
# Input preparation
# --------------------------------------------------------------------------------------


def _records(df: pd.DataFrame | None, table: str) -> list[dict]:
    """Rows of a table as dicts with None for nulls, is_deleted rows dropped."""
    if df is None:
        df = pd.DataFrame(columns=TABLE_COLUMNS[table])
    rows = []
    for raw in df.to_dict("records"):
        row = {k: (None if is_null(v) else v) for k, v in raw.items()}
        for col in TABLE_COLUMNS[table]:
            row.setdefault(col, None)
        if is_true(row.get("is_deleted")):
            continue
        for col in TIMESTAMP_COLUMNS.get(table, []):
            row[col] = to_timestamp(row[col])
        rows.append(row)
    return rows


class _Data:
    """The cleaned inputs: deleted rows dropped, events at/after as_of dropped."""

    def __init__(self, tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, grain: str):
        self.as_of = as_of
        self.grain = grain
        self.accounts = {r["account_id"]: r for r in _records(tables.get("accounts"), "accounts")}
        self.contacts = {r["contact_id"]: r for r in _records(tables.get("contacts"), "contacts")}
        self._contacts_by_account: dict[Any, list[dict]] | None = None
        self.survey_type = {
            r["survey_id"]: r["survey_type"] for r in _records(tables.get("surveys"), "surveys")
        }
        # CHOICE: the as_of cut applies to the event timestamp of each fact table
        # (sent_at, recorded_at, follow-up created_at); first_contact_at / closed_at at or
        # after as_of are treated as null. Dimension tables are not cut by updated_at.
        self.invitations = [
            r
            for r in _records(tables.get("invitations"), "invitations")
            if r["sent_at"] is not None and r["sent_at"] < as_of
        ]
        self.responses = [
            r
            for r in _records(tables.get("responses"), "responses")
            if r["recorded_at"] is not None and r["recorded_at"] < as_of
        ]
        self.follow_ups = []
        for r in _records(tables.get("follow_ups"), "follow_ups"):
            if r["created_at"] is None or r["created_at"] >= as_of:
                continue
            for col in ("first_contact_at", "closed_at"):
                if r[col] is not None and r[col] >= as_of:
                    r[col] = None
            self.follow_ups.append(r)
        for r in self.responses:
            r["survey_type"] = self.survey_type.get(r["survey_id"])
            r["period_start"] = period_start_of(r["recorded_at"], grain)
            r["role"] = self.role_of(r["contact_id"])
            r["score_class"] = score_class(r["nps_score"])
        for r in self.invitations:
            r["survey_type"] = self.survey_type.get(r["survey_id"])
            r["period_start"] = period_start_of(r["sent_at"], grain)

    # --- lookups -------------------------------------------------------------------

    def role_of(self, contact_id: Any) -> str:
        contact = self.contacts.get(contact_id)
        return normalise_role(contact["buying_role"]) if contact else "unknown"

    def account_attr(self, account_id: Any, attr: str) -> Any:
        account = self.accounts.get(account_id)
        return account.get(attr) if account else None

    def active_accounts(self) -> list[dict]:
        return [a for a in self.accounts.values() if is_true(a["is_active"])]

    def n_eligible(self, account_id: Any) -> int:
        """Contacts of the account that are active and not opted out (null opted_out = no)."""
        return sum(
            1 for c in self.contacts_of(account_id) if is_true(c["is_active"]) and not is_true(c["opted_out"])
        )

    def contacts_of(self, account_id: Any) -> list[dict]:
        """The (not deleted) contacts whose contacts.account_id is the account."""
        if self._contacts_by_account is None:
            self._contacts_by_account = defaultdict(list)
            for c in self.contacts.values():
                self._contacts_by_account[c["account_id"]].append(c)
        return self._contacts_by_account.get(account_id, [])

    def periods(self) -> list[date]:
        """Every period from the earliest dated fact's (sent_at, recorded_at, follow-up
        created_at; all before as_of) to the one holding as_of - 1 us."""
        dated = (
            [r["sent_at"] for r in self.invitations]
            + [r["recorded_at"] for r in self.responses]
            + [r["created_at"] for r in self.follow_ups]
        )
        if not dated:
            return []
        first = period_start_of(min(dated), self.grain)
        last = period_start_of(self.as_of - pd.Timedelta(microseconds=1), self.grain)
        out = []
        p = first
        while p <= last:
            out.append(p)
            p = next_period_start(p, self.grain)
        return out

    def counted_responses(self) -> list[dict]:
        """Latest scored response per period x survey_type x contact.

        Latest = greatest recorded_at, ties broken by the greatest response_id.
        CHOICE: responses whose survey is unknown (no survey_type) are left out of every
        survey_type-grained mart.
        """
        best: dict[tuple, dict] = {}
        for r in self.responses:
            if r["nps_score"] is None or r["survey_type"] is None:
                continue
            key = (r["period_start"], r["survey_type"], r["contact_id"])
            cur = best.get(key)
            if cur is None or (r["recorded_at"], str(r["response_id"])) > (
                cur["recorded_at"],
                str(cur["response_id"]),
            ):
                best[key] = r
        return list(best.values())


# --------------------------------------------------------------------------------------
# account_nps
# --------------------------------------------------------------------------------------


def _class_counts(responses: list[dict]) -> tuple[int, int, int, int]:
    P = sum(1 for r in responses if r["score_class"] == "promoter")
    A = sum(1 for r in responses if r["score_class"] == "passive")
    D = sum(1 for r in responses if r["score_class"] == "detractor")
    return P, A, D, len(responses)


def _weight(role: str, weights: dict[str, float]) -> float:
    # unknown weighs as other (metric-decisions: score classes).
    return float(weights[ranked_role(role)])


def role_weighted_nps(responses: list[dict], weights: dict[str, float]) -> float:
    num = sum(_weight(r["role"], weights) * CLASS_VALUE[r["score_class"]] for r in responses)
    den = sum(_weight(r["role"], weights) for r in responses)
    return 100.0 * num / den


def role_weighted_mean_score(responses: list[dict], weights: dict[str, float]) -> float:
    num = sum(_weight(r["role"], weights) * r["nps_score"] for r in responses)
    den = sum(_weight(r["role"], weights) for r in responses)
    return num / den


def _account_rows(period, survey_type, account_id, responses, N, weights, min_n) -> list[dict]:
    rows = []
    P, A, D, n = _class_counts(responses)
    var_pts, lo, hi = adjusted_wald(P, D, n, N)
    base = dict(period_start=period, survey_type=survey_type, account_id=account_id, n_eligible=N)

    rows.append(
        dict(
            base,
            method="pooled",
            n_scored=n,
            promoters=P,
            passives=A,
            detractors=D,
            nps=nps_of_counts(P, D, n),
            var_pts=var_pts,
            ci_low=lo,
            ci_high=hi,
            is_reportable=n >= min_n,
            waterfall_role=None,
        )
    )
    rows.append(
        dict(
            base,
            method="role_weighted",
            n_scored=n,
            promoters=P,
            passives=A,
            detractors=D,
            nps=role_weighted_nps(responses, weights),
            var_pts=var_pts,
            ci_low=lo,
            ci_high=hi,
            is_reportable=n >= min_n,
            waterfall_role=None,
        )
    )

    top = min(ROLE_RANK[ranked_role(r["role"])] for r in responses)
    top_role = next(role for role, rank in ROLE_RANK.items() if rank == top)
    top_responses = [r for r in responses if ranked_role(r["role"]) == top_role]
    wP, wA, wD, wn = _class_counts(top_responses)
    wvar, wlo, whi = adjusted_wald(wP, wD, wn, N)
    rows.append(
        dict(
            base,
            method="waterfall",
            n_scored=wn,
            promoters=wP,
            passives=wA,
            detractors=wD,
            nps=nps_of_counts(wP, wD, wn),
            var_pts=wvar,
            ci_low=wlo,
            ci_high=whi,
            is_reportable=wn >= min_n,
            waterfall_role=top_role,
        )
    )
    return rows


def _account_nps(data: _Data, counted: list[dict], weights, min_n) -> list[dict]:
    by_account: dict[tuple, list[dict]] = defaultdict(list)
    for r in counted:
        by_account[(r["period_start"], r["survey_type"], r["account_id"])].append(r)

    rows = []
    for (period, survey_type, account_id), responses in by_account.items():
        N = data.n_eligible(account_id)
        rows.extend(_account_rows(period, survey_type, account_id, responses, N, weights, min_n))
    rows.extend(oracle_bayes.bayes_rows(data, by_account, lambda role: _weight(role, weights), min_n)[0])

    # Previous period's value of the same account / survey type / method.
    index = {(r["period_start"], r["survey_type"], r["account_id"], r["method"]): r for r in rows}
    for r in rows:
        prev_key = (
            previous_period_start(r["period_start"], data.grain),
            r["survey_type"],
            r["account_id"],
            r["method"],
        )
        prev = index.get(prev_key)
        if prev is None:
            r["nps_prev"] = None
            r["var_prev"] = None
            r["is_significant_change"] = None
        else:
            r["nps_prev"] = prev["nps"]
            r["var_prev"] = prev["var_pts"]
            r["is_significant_change"] = abs(r["nps"] - prev["nps"]) > Z * math.sqrt(
                r["var_pts"] + prev["var_pts"]
            )
    return rows


# --------------------------------------------------------------------------------------
# portfolio_nps
# --------------------------------------------------------------------------------------

GROUP_ATTRS = {"company": None, "segment": "segment", "region": "region", "owner": "owner_id"}


def _group_value(data: _Data, account_id: Any, group_type: str) -> str:
    attr = GROUP_ATTRS.get(group_type, group_type)
    if attr is None:
        return "all"
    return group_label(data.account_attr(account_id, attr))


def _portfolio_nps(data: _Data, counted: list[dict], weights, min_n) -> list[dict]:
    # Active accounts per group (the populations).
    active_by_group: dict[tuple, list] = defaultdict(list)
    for a in data.active_accounts():
        for group_type in GROUP_ATTRS:
            active_by_group[(group_type, _group_value(data, a["account_id"], group_type))].append(
                a["account_id"]
            )

    by_slice: dict[tuple, dict[Any, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in counted:
        for group_type in GROUP_ATTRS:
            gv = _group_value(data, r["account_id"], group_type)
            by_slice[(r["period_start"], r["survey_type"], group_type, gv)][r["account_id"]].append(r)

    rows = []
    for (period, survey_type, group_type, gv), accounts in by_slice.items():
        population = active_by_group.get((group_type, gv), [])
        all_responses = [r for rs in accounts.values() for r in rs]
        n_scored = len(all_responses)
        n_accounts = len(accounts)
        base = dict(
            period_start=period,
            survey_type=survey_type,
            group_type=group_type,
            group_value=gv,
            n_accounts=n_accounts,
            n_scored=n_scored,
        )

        # respondent
        P, A, D, n = _class_counts(all_responses)
        N_resp = sum(data.n_eligible(a) for a in population)
        var_pts, lo, hi = adjusted_wald(P, D, n, N_resp)
        rows.append(
            dict(
                base,
                method="respondent",
                n_eligible=N_resp,
                promoters=P,
                passives=A,
                detractors=D,
                nps=nps_of_counts(P, D, n),
                var_pts=var_pts,
                ci_low=lo,
                ci_high=hi,
                is_reportable=n_scored >= min_n,
            )
        )

        # account-level methods
        N_acc = len(population)
        k = n_accounts
        f = fpc(k, N_acc)
        account_ids = sorted(accounts, key=str)
        x = [role_weighted_nps(accounts[a], weights) for a in account_ids]
        reportable = n_accounts >= min_n

        mean_x = sum(x) / k
        if k > 1:
            s2 = sum((xi - mean_x) ** 2 for xi in x) / (k - 1)
            var_eq = s2 / k
        else:
            var_eq = 0.0
        var_eq *= f
        lo, hi = normal_interval(mean_x, var_eq)
        rows.append(
            dict(
                base,
                method="account_equal",
                n_eligible=N_acc,
                promoters=None,
                passives=None,
                detractors=None,
                nps=mean_x,
                var_pts=var_eq,
                ci_low=lo,
                ci_high=hi,
                is_reportable=reportable,
            )
        )

        arr = [data.account_attr(a, "arr") for a in account_ids]
        a_w = [0.0 if v is None else float(v) for v in arr]
        sum_a = sum(a_w)
        if sum_a == 0:
            nps_rw = var_rw = lo = hi = None
        else:
            nps_rw = sum(ai * xi for ai, xi in zip(a_w, x, strict=True)) / sum_a
            if k > 1:
                spread = sum(ai**2 * (xi - nps_rw) ** 2 for ai, xi in zip(a_w, x, strict=True))
                var_rw = k / (k - 1) * spread / sum_a**2
            else:
                var_rw = 0.0
            var_rw *= f
            lo, hi = normal_interval(nps_rw, var_rw)
        rows.append(
            dict(
                base,
                method="revenue_weighted",
                n_eligible=N_acc,
                promoters=None,
                passives=None,
                detractors=None,
                nps=nps_rw,
                var_pts=var_rw,
                ci_low=lo,
                ci_high=hi,
                is_reportable=reportable,
            )
        )

        m = [role_weighted_mean_score(accounts[a], weights) for a in account_ids]
        PA = sum(1 for mi in m if mi >= 9)
        AA = sum(1 for mi in m if 7 <= mi < 9)
        DA = sum(1 for mi in m if mi < 7)
        var_c, lo, hi = adjusted_wald(PA, DA, k, N_acc)
        rows.append(
            dict(
                base,
                method="account_classified",
                n_eligible=N_acc,
                promoters=PA,
                passives=AA,
                detractors=DA,
                nps=nps_of_counts(PA, DA, k),
                var_pts=var_c,
                ci_low=lo,
                ci_high=hi,
                is_reportable=reportable,
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# contact_coverage
# --------------------------------------------------------------------------------------


def _slots_filled(data: _Data, contact_ids, slots: dict[str, int]) -> int:
    """Sum over the slot roles of min(contacts with that role, slots required for it)."""
    total = 0
    for role in SLOT_ROLES:
        have = sum(1 for cid in set(contact_ids) if data.role_of(cid) == role)
        total += min(have, int(slots.get(role, 0)))
    return total


def _contact_coverage(data: _Data, coverage_slots) -> list[dict]:
    invited: dict[tuple, set] = defaultdict(set)  # (period, account) -> contacts
    for inv in data.invitations:
        if inv["delivery_status"] == "delivered":
            invited[(inv["period_start"], inv["account_id"])].add(inv["contact_id"])
    responded: dict[tuple, set] = defaultdict(set)
    for r in data.responses:  # any survey type, scored, not de-duplicated (distinct contacts)
        if r["nps_score"] is not None:
            responded[(r["period_start"], r["account_id"])].add(r["contact_id"])

    rows = []
    for period in data.periods():
        for account in data.active_accounts():
            account_id = account["account_id"]
            tier = account["tier"]
            slots = coverage_slots.get(tier) if tier is not None else None
            if slots is None:
                slots = coverage_slots["C"]  # unknown tier counts as C
            required = sum(int(slots.get(role, 0)) for role in SLOT_ROLES)

            on_file = [c["contact_id"] for c in data.contacts_of(account_id) if is_true(c["is_active"])]
            inv = invited.get((period, account_id), set())
            resp = responded.get((period, account_id), set())

            s_file = _slots_filled(data, on_file, slots)
            s_inv = _slots_filled(data, inv, slots)
            s_resp = _slots_filled(data, resp, slots)

            def share(x, required=required):
                return x / required if required else None

            rows.append(
                dict(
                    period_start=period,
                    account_id=account_id,
                    tier=tier,
                    slots_required=required,
                    slots_on_file=s_file,
                    slots_invited=s_inv,
                    slots_responded=s_resp,
                    coverage_on_file=share(s_file),
                    coverage_invited=share(s_inv),
                    coverage_responded=share(s_resp),
                    has_decision_maker_on_file=any(data.role_of(c) == "decision_maker" for c in on_file),
                    has_decision_maker_response=any(data.role_of(c) == "decision_maker" for c in resp),
                    is_single_threaded=len(resp) == 1,
                    n_contacts_responded=len(resp),
                )
            )
    return rows


# --------------------------------------------------------------------------------------
# response_rate
# --------------------------------------------------------------------------------------

RR_GROUP_ATTRS = {
    "company": None,
    "segment": "segment",
    "region": "region",
    "owner": "owner_id",
    "tier": "tier",
}


def _response_rate(data: _Data, close_out_days, target) -> list[dict]:
    window = pd.Timedelta(days=close_out_days)
    responses_by_invitation: dict[Any, list[dict]] = defaultdict(list)
    for r in data.responses:
        if r["invitation_id"] is not None:
            responses_by_invitation[r["invitation_id"]].append(r)

    # key -> list of (account_id, responded, scored)
    cells: dict[tuple, list[tuple]] = defaultdict(list)
    for inv in data.invitations:
        if inv["delivery_status"] != "delivered" or inv["survey_type"] is None:
            continue
        # CHOICE: the close-out window is inclusive: sent_at <= recorded_at <= sent_at + 30 days.
        in_window = [
            r
            for r in responses_by_invitation.get(inv["invitation_id"], [])
            if inv["sent_at"] <= r["recorded_at"] <= inv["sent_at"] + window
        ]
        responded = len(in_window) > 0
        scored = any(r["nps_score"] is not None for r in in_window)
        for group_type, attr in RR_GROUP_ATTRS.items():
            gv = "all" if attr is None else group_label(data.account_attr(inv["account_id"], attr))
            cells[(inv["period_start"], inv["survey_type"], group_type, gv)].append(
                (inv["account_id"], responded, scored)
            )

    rows = []
    for (period, survey_type, group_type, gv), items in cells.items():
        delivered = len(items)
        responses = sum(1 for _, resp, _ in items if resp)
        scored = sum(1 for _, _, sc in items if sc)
        acc_delivered = {a for a, _, _ in items}
        acc_responded = {a for a, resp, _ in items if resp}
        period_end = pd.Timestamp(next_period_start(period, data.grain))
        rows.append(
            dict(
                period_start=period,
                survey_type=survey_type,
                group_type=group_type,
                group_value=gv,
                delivered=delivered,
                responses=responses,
                scored_responses=scored,
                response_rate=responses / delivered,
                scored_response_rate=scored / delivered,
                accounts_delivered=len(acc_delivered),
                accounts_responded=len(acc_responded),
                account_response_rate=len(acc_responded) / len(acc_delivered),
                target=target,
                meets_target=responses / delivered >= target,
                # CHOICE: period end = start of the next period (exclusive end).
                is_cohort_closed=period_end + window <= data.as_of,
                rate_basis="invitations",
            )
        )

    # Periods x survey types that sent no invitation at all (any delivery status): the rate
    # cannot be measured; the groups with responses recorded then get a row that says so.
    invited_cells = {(inv["period_start"], inv["survey_type"]) for inv in data.invitations}
    uninvited: dict[tuple, list[dict]] = defaultdict(list)
    for r in data.responses:
        if r["survey_type"] is None or (r["period_start"], r["survey_type"]) in invited_cells:
            continue
        for group_type, attr in RR_GROUP_ATTRS.items():
            gv = "all" if attr is None else group_label(data.account_attr(r["account_id"], attr))
            uninvited[(r["period_start"], r["survey_type"], group_type, gv)].append(r)
    for (period, survey_type, group_type, gv), responses in uninvited.items():
        period_end = pd.Timestamp(next_period_start(period, data.grain))
        rows.append(
            dict(
                period_start=period,
                survey_type=survey_type,
                group_type=group_type,
                group_value=gv,
                delivered=0,
                responses=len(responses),
                scored_responses=sum(1 for r in responses if r["nps_score"] is not None),
                response_rate=None,
                scored_response_rate=None,
                accounts_delivered=0,
                accounts_responded=len({r["account_id"] for r in responses}),
                account_response_rate=None,
                target=target,
                meets_target=None,
                is_cohort_closed=period_end + window <= data.as_of,
                rate_basis="no_invitations",
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# follow_up_sla
# --------------------------------------------------------------------------------------

CLASS_RANK = {"detractor": 0, "passive": 1, "promoter": 2}


def _hours(ts, start) -> float | None:
    if ts is None:
        return None
    return (ts - start).total_seconds() / 3600.0


def _follow_up_sla(data: _Data, first_contact_hours, close_days, follow_up_passives) -> list[dict]:
    follow_up_of: dict[Any, dict] = {}
    for f in data.follow_ups:
        cur = follow_up_of.get(f["response_id"])
        if cur is None or (f["created_at"], str(f["follow_up_id"])) < (
            cur["created_at"],
            str(cur["follow_up_id"]),
        ):
            follow_up_of[f["response_id"]] = f

    scored_by_contact: dict[Any, list[dict]] = defaultdict(list)
    for r in data.responses:
        if r["nps_score"] is not None:
            scored_by_contact[r["contact_id"]].append(r)

    required_classes = {"detractor", "passive"} if follow_up_passives else {"detractor"}
    rows = []
    for r in data.responses:
        if r["score_class"] not in required_classes:
            continue
        rec = r["recorded_at"]
        f = follow_up_of.get(r["response_id"])
        first = f["first_contact_at"] if f else None
        closed = f["closed_at"] if f else None
        target = rec + pd.Timedelta(hours=first_contact_hours)

        if first is not None:
            status = "met" if first <= target else "breached"
        elif data.as_of <= target:
            status = "active"
        elif f is not None:
            status = "breached"
        else:
            status = "missing"
        breach = None if status == "active" else status in ("breached", "missing")

        next_score = None
        if closed is not None:
            later = [x for x in scored_by_contact[r["contact_id"]] if x["recorded_at"] > closed]
            if later:
                # CHOICE: first = earliest recorded_at, ties by the smallest response_id.
                nxt = min(later, key=lambda x: (x["recorded_at"], str(x["response_id"])))
                next_score = nxt["nps_score"]
        recovered = None
        if next_score is not None:
            recovered = CLASS_RANK[score_class(next_score)] > CLASS_RANK[r["score_class"]]

        if f is not None and f["owner_id"] is not None:
            owner = f["owner_id"]
        else:
            owner = data.account_attr(r["account_id"], "owner_id")
        rows.append(
            dict(
                response_id=r["response_id"],
                period_start=r["period_start"],
                survey_type=r["survey_type"],
                account_id=r["account_id"],
                contact_id=r["contact_id"],
                owner_id=owner,
                follow_up_id=f["follow_up_id"] if f else None,
                recorded_at=rec,
                nps_score=r["nps_score"],
                target_at=target,
                first_contact_at=first,
                closed_at=closed,
                calendar_hours_to_first_contact=_hours(first, rec),
                calendar_hours_to_close=_hours(closed, rec),
                sla_status=status,
                is_sla_breach=breach,
                is_completed=closed is not None and closed <= rec + pd.Timedelta(days=close_days),
                is_completion_due=rec + pd.Timedelta(days=close_days) <= data.as_of,
                next_score=next_score,
                is_recovered=recovered,
            )
        )
    return rows


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    cols = OUTPUT_COLUMNS[name]
    df = pd.DataFrame([{c: row.get(c) for c in cols} for row in rows], columns=cols)
    for c in NULLABLE_BOOL_COLUMNS[name]:
        df[c] = df[c].astype("boolean")
    for c in FLOAT_COLUMNS.get(name, []):
        df[c] = pd.to_numeric(df[c]).astype("float64")
    for c in NULLABLE_INT_COLUMNS.get(name, []):
        df[c] = df[c].astype("Int64")
    for c in TIMESTAMP_OUTPUT_COLUMNS.get(name, []):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    if len(df):
        keys = SORT_KEYS[name]
        df = df.sort_values(keys, key=lambda s: s.astype(str) if s.dtype == object else s)
    return df.reset_index(drop=True)


def _as_timestamp(as_of: Any) -> pd.Timestamp:
    ts = to_timestamp(as_of)
    if ts is None:
        raise ValueError("as_of is required")
    return ts


def compute_marts(
    tables: dict[str, pd.DataFrame],
    as_of: datetime,
    *,
    period_grain: str = "quarter",
    role_weights: dict[str, float] | None = None,
    coverage_slots: dict[str, dict[str, int]] | None = None,
    min_n_account: int = 3,
    min_n_group: int = 5,
    close_out_days: int = 30,
    response_rate_target: float = 0.70,
    first_contact_hours: float = 48,
    close_days: float = 14,
    follow_up_passives: bool = False,
) -> dict[str, pd.DataFrame]:
    """The marts account_nps, portfolio_nps, contact_coverage, response_rate, follow_up_sla.

    ``tables`` maps entity names of cxloop.contract to DataFrames (missing ones = empty).
    ``as_of`` is the exclusive end of the data window (naive UTC or tz-aware).
    ``period_start`` columns hold ``datetime.date`` values.
    """
    as_of_ts = _as_timestamp(as_of)
    weights = dict(DEFAULT_ROLE_WEIGHTS)
    weights.update(role_weights or {})
    slots = coverage_slots if coverage_slots is not None else DEFAULT_COVERAGE_SLOTS

    data = _Data(tables, as_of_ts, period_grain)
    counted = data.counted_responses()
    follow_ups = _follow_up_sla(data, first_contact_hours, close_days, follow_up_passives)
    return {
        "account_nps": _frame("account_nps", _account_nps(data, counted, weights, min_n_account)),
        "account_nps_prior": oracle_bayes.prior_frame(data, counted),
        "portfolio_nps": _frame("portfolio_nps", _portfolio_nps(data, counted, weights, min_n_group)),
        "contact_coverage": _frame("contact_coverage", _contact_coverage(data, slots)),
        "response_rate": _frame("response_rate", _response_rate(data, close_out_days, response_rate_target)),
        "follow_up_sla": _frame("follow_up_sla", follow_ups),
        "account_team_worklist": oracle_worklist.worklist(data, follow_ups, slots, counted),
        **oracle_renewal.renewal_marts(tables, data, counted, weights, min_n_group=min_n_group),
    }


def headline(marts: dict[str, pd.DataFrame], as_of: datetime, *, period_grain: str = "quarter") -> dict:
    """The four headline numbers of metric-decisions.md for the latest period.

    Latest period = the period containing as_of - 1 microsecond. A number is None when its
    mart has no row for it (or its denominator is 0).
    """
    as_of_ts = _as_timestamp(as_of)
    latest = period_start_of(as_of_ts - pd.Timedelta(microseconds=1), period_grain)

    def pick(df: pd.DataFrame, **equal) -> pd.DataFrame:
        mask = pd.Series(True, index=df.index)
        for col, val in equal.items():
            mask &= df[col] == val
        return df[mask]

    out: dict[str, Any] = {"period_start": latest}
    nps = pick(
        marts["portfolio_nps"],
        period_start=latest,
        survey_type="relationship",
        group_type="company",
        group_value="all",
        method="respondent",
    )
    if len(nps):
        row = nps.iloc[0]
        out.update(
            nps=float(row["nps"]),
            nps_ci_low=float(row["ci_low"]),
            nps_ci_high=float(row["ci_high"]),
            nps_n_scored=int(row["n_scored"]),
        )
    else:
        out.update(nps=None, nps_ci_low=None, nps_ci_high=None, nps_n_scored=0)

    rr = pick(
        marts["response_rate"],
        period_start=latest,
        survey_type="relationship",
        group_type="company",
        group_value="all",
    )
    out["response_rate"] = float(rr.iloc[0]["response_rate"]) if len(rr) else None

    cov = pick(marts["contact_coverage"], period_start=latest)
    out["decision_maker_coverage"] = (
        float(cov["has_decision_maker_response"].astype(bool).mean()) if len(cov) else None
    )

    sla = pick(marts["follow_up_sla"], period_start=latest)
    met = int((sla["sla_status"] == "met").sum())
    decided = int(sla["sla_status"].isin(["met", "breached", "missing"]).sum())
    out["sla_attainment"] = met / decided if decided else None
    return out
