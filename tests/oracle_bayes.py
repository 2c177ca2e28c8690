"""Oracle of the ``bayes`` account NPS and its prior mart ``account_nps_prior`` (contract 3.7).

Written from the contract's formulas, in plain Python, sharing nothing with the dbt macros
(nps_bayes.sql) or the calibration bench (cxloop.bench_stats): the moment statistic X2 and its
denominator are summed account by account here, where the SQL uses expanded aggregates.
``tests/oracle.py`` calls :func:`bayes_rows` from its account_nps computation and
:func:`prior_rows` for the prior mart.

CHOICE (as the oracle elsewhere): the account's segment and the eligible contacts (active, not
opted out) are the current CRM values; a role outside the contract weighs as other.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

Z = 1.96
DEFAULT_ALPHA = 1.0
MIN_ACCOUNTS = 10
S_MIN, S_MAX = 1.0, 20.0
MEAN_PSEUDO = 0.5
CLASSES = ("promoter", "passive", "detractor")
VALUE = {"promoter": 1, "passive": 0, "detractor": -1}


def _clip(x: float) -> float:
    return max(-100.0, min(100.0, x))


def moment_fit(accounts: list[tuple[int, int, int]]) -> dict | None:
    """Method-of-moments Dirichlet-multinomial fit over accounts' (P, passive, D) counts;
    None when it is not usable (fewer than MIN_ACCOUNTS accounts, or no account with n >= 2)."""
    m = len(accounts)
    T = sum(sum(c) for c in accounts)
    pi = [(sum(c[k] for c in accounts) + MEAN_PSEUDO) / (T + 3 * MEAN_PSEUDO) for k in range(3)]
    x2 = 0.0
    den = 0.0
    for c in accounts:
        n = sum(c)
        for k in range(3):
            x2 += (c[k] - n * pi[k]) ** 2 / (n * pi[k])
        den += (n - 1) * (1 - n / T)
    if m < MIN_ACCOUNTS or den <= 1e-12:
        return None
    rho = (x2 / 2 - (m - 1)) / den
    s = S_MAX if rho <= 0 else min(S_MAX, max(S_MIN, (1 - rho) / rho))
    return {"m": m, "rho": rho, "alpha": [s * p for p in pi]}


def prior_rows(keyed_counts: dict[tuple, tuple[int, int, int]], segment_of) -> list[dict]:
    """account_nps_prior: ``keyed_counts`` maps (period, survey_type, account_id) to the
    account's unweighted class counts; ``segment_of(period, account_id)`` its segment label."""
    groups: dict[tuple, list] = defaultdict(list)
    pooled: dict[tuple, list] = defaultdict(list)
    for (period, survey_type, account_id), counts in keyed_counts.items():
        groups[(period, survey_type, segment_of(period, account_id))].append(counts)
        pooled[(period, survey_type)].append(counts)
    pooled_fit = {key: moment_fit(accounts) for key, accounts in pooled.items()}
    rows = []
    for (period, survey_type, segment), accounts in groups.items():
        fit, source = moment_fit(accounts), "segment"
        if fit is None:
            fit, source = pooled_fit[(period, survey_type)], "all_segments"
        if fit is None:
            source = "default"
        alpha = [DEFAULT_ALPHA] * 3 if fit is None else fit["alpha"]
        s = sum(alpha)
        rows.append(
            dict(
                period_start=period,
                survey_type=survey_type,
                segment=segment,
                n_accounts=len(accounts),
                n_scored=sum(sum(c) for c in accounts),
                prior_source=source,
                fit_n_accounts=0 if fit is None else fit["m"],
                rho_moment=None if fit is None else fit["rho"],
                concentration=s,
                alpha_promoter=alpha[0],
                alpha_passive=alpha[1],
                alpha_detractor=alpha[2],
                prior_nps=100.0 * (alpha[0] - alpha[2]) / s,
            )
        )
    return rows


def population_nps(alpha, counts, responder_weights_values, non_responder_weights):
    """Posterior-predictive mean, variance (points^2) and clipped 95% normal interval of the
    eligible population's weighted NPS: responders' (w, s) known, non-responders' classes
    from the Dirichlet-multinomial posterior predictive."""
    a = [alpha[k] + counts[k] for k in range(3)]
    A = sum(a)
    mu_p, mu_d = a[0] / A, a[2] / A
    e = mu_p - mu_d
    var_delta = (mu_p + mu_d - e * e) / (A + 1)  # Var(theta_p - theta_d) under the posterior
    mean_sigma2 = mu_p + mu_d - (var_delta + e * e)  # E[theta_p + theta_d - (theta_p - theta_d)^2]
    s_r = sum(w * v for w, v in responder_weights_values)
    w_r = sum(w for w, _ in responder_weights_values)
    w_m = sum(non_responder_weights)
    q_m = sum(w * w for w in non_responder_weights)
    total = w_r + w_m
    mean = 100.0 * (s_r + w_m * e) / total
    var = 10000.0 * (q_m * mean_sigma2 + w_m * w_m * var_delta) / (total * total)
    sd = math.sqrt(max(var, 0.0))
    return mean, var, _clip(mean - Z * sd), _clip(mean + Z * sd)


def bayes_rows(data: Any, by_account: dict, weight_of, min_n: int) -> tuple[list[dict], list[dict]]:
    """The bayes rows of account_nps and the rows of account_nps_prior.

    ``by_account``: (period, survey_type, account_id) -> counted responses (dicts with
    score_class, role, contact_id); ``weight_of(role)``: the role weight (unknown as other);
    ``data``: the oracle's cleaned inputs (contacts_of, account_attr, n_eligible)."""
    from oracle import group_label, normalise_role  # the oracle's own label rules

    counts = {
        key: tuple(sum(1 for r in responses if r["score_class"] == c) for c in CLASSES)
        for key, responses in by_account.items()
    }

    def segment_of(period, account_id):
        return group_label(data.account_attr(account_id, "segment"))

    priors = prior_rows(counts, segment_of)
    # account_nps reads the prior as stored: rounded to 9 decimals
    prior_of = {
        (p["period_start"], p["survey_type"], p["segment"]): [
            round(p["alpha_promoter"], 9),
            round(p["alpha_passive"], 9),
            round(p["alpha_detractor"], 9),
        ]
        for p in priors
    }
    rows = []
    for (period, survey_type, account_id), responses in by_account.items():
        answered = {r["contact_id"] for r in responses}
        eligible = [c for c in data.contacts_of(account_id) if _eligible(c)]
        non = [weight_of(normalise_role(c["buying_role"])) for c in eligible if c["contact_id"] not in answered]
        resp = [(weight_of(r["role"]), VALUE[r["score_class"]]) for r in responses]
        alpha = prior_of[(period, survey_type, segment_of(period, account_id))]
        mean, var, lo, hi = population_nps(alpha, counts[(period, survey_type, account_id)], resp, non)
        P, A, D = counts[(period, survey_type, account_id)]
        rows.append(
            dict(
                period_start=period,
                survey_type=survey_type,
                account_id=account_id,
                n_eligible=data.n_eligible(account_id),
                method="bayes",
                n_scored=len(responses),
                promoters=P,
                passives=A,
                detractors=D,
                nps=mean,
                var_pts=var,
                ci_low=lo,
                ci_high=hi,
                is_reportable=len(responses) >= min_n,
                waterfall_role=None,
            )
        )
    return rows, priors


PRIOR_COLUMNS = [
    "period_start",
    "survey_type",
    "segment",
    "n_accounts",
    "n_scored",
    "prior_source",
    "fit_n_accounts",
    "rho_moment",
    "concentration",
    "alpha_promoter",
    "alpha_passive",
    "alpha_detractor",
    "prior_nps",
]


def prior_frame(data: Any, counted: list[dict]):
    """The account_nps_prior mart from the oracle's counted responses."""
    import pandas as pd
    from oracle import group_label

    counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in counted:
        counts[(r["period_start"], r["survey_type"], r["account_id"])][CLASSES.index(r["score_class"])] += 1
    rows = prior_rows(
        {k: tuple(v) for k, v in counts.items()}, lambda period, a: group_label(data.account_attr(a, "segment"))
    )
    frame = pd.DataFrame(rows, columns=PRIOR_COLUMNS)
    frame["rho_moment"] = pd.to_numeric(frame["rho_moment"]).astype("float64")
    return frame.sort_values(["period_start", "survey_type", "segment"]).reset_index(drop=True)


def _eligible(contact: dict) -> bool:
    from oracle import is_true

    return is_true(contact["is_active"]) and not is_true(contact["opted_out"])
