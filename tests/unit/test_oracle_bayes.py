"""Hand-computed cases pinning the oracle's bayes account NPS and account_nps_prior
(tests/oracle_bayes.py) to contract 3.7: one respondent, every eligible contact answered, the
prior alone (too few accounts: the default Dirichlet(1, 1, 1)), and a moment fit whose literal
numbers are the same as the dbt unit test account_nps_prior_moment_fit_and_fallbacks.
Expected numbers come from an exact enumeration of the Polya-urn draws of the non-responders
(Fractions), written here literally."""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from oracle import compute_marts  # noqa: E402

AS_OF = datetime(2025, 7, 1)
Q1 = date(2025, 1, 1)
T0 = pd.Timestamp("2024-12-01")


def _tables(accounts, contacts, responses):
    return {
        "accounts": pd.DataFrame(
            [
                dict(
                    account_id=a,
                    account_name=a,
                    segment=seg,
                    region="emea",
                    tier="A",
                    arr=1.0,
                    owner_id="o1",
                    is_active=True,
                    is_deleted=False,
                    updated_at=T0,
                )
                for a, seg in accounts
            ]
        ),
        "contacts": pd.DataFrame(
            [
                dict(
                    contact_id=c,
                    account_id=a,
                    buying_role=role,
                    is_active=active,
                    opted_out=opted,
                    is_deleted=False,
                    updated_at=T0,
                )
                for c, a, role, active, opted in contacts
            ]
        ),
        "surveys": pd.DataFrame([dict(survey_id="s", survey_name="Rel", survey_type="relationship")]),
        "responses": pd.DataFrame(
            [
                dict(
                    response_id=f"r{k:03d}",
                    invitation_id=None,
                    survey_id="s",
                    contact_id=c,
                    account_id=a,
                    recorded_at=pd.Timestamp("2025-02-01"),
                    nps_score=score,
                    is_finished=True,
                    comment=None,
                )
                for k, (c, a, score) in enumerate(responses)
            ]
        ),
    }


def _one(frame, **equal):
    mask = pd.Series(True, index=frame.index)
    for col, val in equal.items():
        mask &= frame[col] == val
    assert mask.sum() == 1, frame[mask]
    return frame[mask].iloc[0]


def test_one_respondent_census_and_the_prior_alone():
    marts = compute_marts(
        _tables(
            [("X", "smb"), ("Y", None)],
            [
                ("x1", "X", "decision_maker", True, False),
                ("x2", "X", "user", True, False),
                ("x3", "X", "user", True, False),
                ("x4", "X", "decision_maker", False, False),  # inactive: not eligible
                ("x5", "X", "decision_maker", True, True),  # opted out: not eligible
                ("y1", "Y", "user", True, False),
                ("y2", "Y", "influencer", True, False),
            ],
            [("x1", "X", 10), ("y1", "Y", 9), ("y2", "Y", 3)],
        ),
        AS_OF,
    )
    an, prior = marts["account_nps"], marts["account_nps_prior"]
    assert sorted(an.loc[an.account_id == "X", "method"]) == ["bayes", "pooled", "role_weighted", "waterfall"]

    # the prior alone: two accounts, too few for a moment fit, so Dirichlet(1, 1, 1) per segment
    for segment, n_scored in (("smb", 1), ("unknown", 2)):
        p = _one(prior, segment=segment)
        assert (p.prior_source, p.n_accounts, p.n_scored, p.fit_n_accounts) == ("default", 1, n_scored, 0)
        assert (p.alpha_promoter, p.alpha_passive, p.alpha_detractor, p.concentration) == (1.0, 1.0, 1.0, 3.0)
        assert p.prior_nps == 0.0 and pd.isna(p.rho_moment)

    # one respondent (decision maker, promoter, weight 3) and two eligible users unanswered:
    # posterior (2, 1, 1): e = 0.25, g = 0.75 - 0.0625 = 0.6875;
    # nps = 100 (3 + 2 * 0.25) / 5 = 70, var = 10000 * 0.6875 * (2 * 4 + 2^2) / (5 * 5^2) = 660
    x = _one(an, account_id="X", method="bayes")
    assert (x.n_scored, x.n_eligible, x.promoters) == (1, 3, 1)
    assert x.nps == pytest.approx(70.0, abs=1e-9) and x.var_pts == pytest.approx(660.0, abs=1e-9)
    assert x.ci_low == pytest.approx(19.646688292, abs=1e-8) and x.ci_high == 100.0

    # every eligible contact answered: the interval has zero width at the role-weighted NPS
    y = _one(an, account_id="Y", method="bayes")
    assert y.nps == pytest.approx(-100 / 3, abs=1e-9) and y.var_pts == 0.0
    assert y.ci_low == y.ci_high == pytest.approx(-100 / 3, abs=1e-9)


def test_moment_fit_and_the_all_segment_fallback_match_the_dbt_unit_test():
    # the accounts of the dbt unit test account_nps_prior_moment_fit_and_fallbacks (Q2 there)
    ent = [(3, 0, 0), (0, 0, 2), (2, 1, 0), (0, 1, 3), (1, 1, 1), (4, 0, 0), (0, 0, 1), (1, 0, 0), (0, 2, 2), (5, 1, 0)]
    smb = [(1, 0, 1), (0, 1, 0)]
    accounts, contacts, responses = [], [], []
    for segment, rows in (("ent", ent), ("smb", smb)):
        for i, (p, a, d) in enumerate(rows):
            acc = f"{segment}{i:02d}"
            accounts.append((acc, segment))
            for j, score in enumerate([10] * p + [7] * a + [0] * d):
                contacts.append((f"{acc}c{j}", acc, "user", True, False))
                responses.append((f"{acc}c{j}", acc, score))
    prior = compute_marts(_tables(accounts, contacts, responses), AS_OF)["account_nps_prior"]
    e = _one(prior, segment="ent")
    assert (e.prior_source, e.n_accounts, e.n_scored, e.fit_n_accounts) == ("segment", 10, 31, 10)
    assert e.rho_moment == pytest.approx(0.306874521, abs=1e-9)
    assert e.concentration == pytest.approx(2.258660894, abs=1e-9)
    assert (e.alpha_promoter, e.alpha_passive, e.alpha_detractor) == pytest.approx(
        (1.146704762, 0.451732179, 0.660223954), abs=1e-9
    )
    s = _one(prior, segment="smb")
    # smb alone has 2 accounts: the fit over all 12 (the dbt test has a 13th account, so its numbers differ)
    assert (s.prior_source, s.fit_n_accounts) == ("all_segments", 12)
    assert s.period_start == Q1
