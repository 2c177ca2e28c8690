"""Hand-computed cases pinning the Python oracle (tests/oracle.py) to the metric contract
(docs/metric-contract.md) and docs/metric-decisions.md.

Every expected number below is worked out by hand in the comments; the assertions compare
against those literal numbers, never against a re-computation with the oracle's helpers.
"""

from __future__ import annotations

import math
import sys
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from oracle import adjusted_wald, compute_marts, headline  # noqa: E402

AS_OF = datetime(2025, 7, 1)  # exclusive end of the window: Q2 2025 is the latest period
Q1 = date(2025, 1, 1)
Q2 = date(2025, 4, 1)
APPROX = dict(abs=1e-3)


def T(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# --------------------------------------------------------------------------------------
# A tiny builder of canonical input tables
# --------------------------------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {
            t: []
            for t in ("owners", "accounts", "contacts", "surveys", "invitations", "responses", "follow_ups")
        }
        self.rows["surveys"] += [
            dict(survey_id="s_rel", survey_name="Relationship 2025", survey_type="relationship"),
            dict(survey_id="s_tx", survey_name="Onboarding", survey_type="transactional"),
        ]
        self._contact_account: dict[str, str] = {}
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:04d}"

    def account(
        self,
        account_id,
        tier="A",
        segment="ent",
        region="emea",
        arr=100.0,
        owner_id="o1",
        is_active=True,
        is_deleted=False,
    ):
        self.rows["accounts"].append(
            dict(
                account_id=account_id,
                account_name=account_id,
                segment=segment,
                region=region,
                tier=tier,
                arr=arr,
                owner_id=owner_id,
                is_active=is_active,
                is_deleted=is_deleted,
                updated_at=T("2024-12-01"),
            )
        )
        return account_id

    def contact(self, contact_id, account_id, role, is_active=True, opted_out=False, is_deleted=False):
        self._contact_account[contact_id] = account_id
        self.rows["contacts"].append(
            dict(
                contact_id=contact_id,
                account_id=account_id,
                buying_role=role,
                is_active=is_active,
                opted_out=opted_out,
                is_deleted=is_deleted,
                updated_at=T("2024-12-01"),
            )
        )
        return contact_id

    def invite(
        self, contact_id, sent_at, invitation_id=None, survey="s_rel", status="delivered", account_id=None
    ):
        invitation_id = invitation_id or self._id("i")
        self.rows["invitations"].append(
            dict(
                invitation_id=invitation_id,
                survey_id=survey,
                contact_id=contact_id,
                account_id=account_id or self._contact_account[contact_id],
                sent_at=T(sent_at),
                delivery_status=status,
            )
        )
        return invitation_id

    def respond(
        self,
        contact_id,
        recorded_at,
        score,
        response_id=None,
        invitation_id=None,
        survey="s_rel",
        account_id=None,
    ):
        response_id = response_id or self._id("r")
        self.rows["responses"].append(
            dict(
                response_id=response_id,
                invitation_id=invitation_id,
                survey_id=survey,
                contact_id=contact_id,
                account_id=account_id or self._contact_account[contact_id],
                recorded_at=T(recorded_at),
                nps_score=score,
                is_finished=True,
            )
        )
        return response_id

    def follow_up(
        self, response_id, created_at, first_contact_at=None, closed_at=None, follow_up_id=None, owner_id=None
    ):
        follow_up_id = follow_up_id or self._id("f")
        self.rows["follow_ups"].append(
            dict(
                follow_up_id=follow_up_id,
                response_id=response_id,
                account_id=None,
                contact_id=None,
                owner_id=owner_id,
                created_at=T(created_at),
                first_contact_at=T(first_contact_at) if first_contact_at else pd.NaT,
                closed_at=T(closed_at) if closed_at else pd.NaT,
                status="open",
            )
        )
        return follow_up_id

    def tables(self, score_dtype="Int64") -> dict[str, pd.DataFrame]:
        out = {}
        for name, rows in self.rows.items():
            df = pd.DataFrame(rows)
            out[name] = df
        if len(out["responses"]):
            out["responses"]["nps_score"] = out["responses"]["nps_score"].astype(score_dtype)
        return out

    def marts(self, as_of=AS_OF, **kwargs):
        return compute_marts(self.tables(), as_of, **kwargs)


def one(df: pd.DataFrame, **equal) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for col, val in equal.items():
        mask &= df[col] == val
    hit = df[mask]
    assert len(hit) == 1, f"expected one row for {equal}, got {len(hit)}"
    return hit.iloc[0]


def rows(df: pd.DataFrame, **equal) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for col, val in equal.items():
        mask &= df[col] == val
    return df[mask]


# --------------------------------------------------------------------------------------
# Adjusted Wald interval
# --------------------------------------------------------------------------------------


def test_adjusted_wald_without_fpc():
    # P=3, D=1, n=5 (one passive), N=0 (no population known -> no FPC).
    # n' = 8; p' = 3.75/8 = 0.46875; d' = 1.75/8 = 0.21875; p'-d' = 0.25; p'+d' = 0.6875
    # var = (0.6875 - 0.0625)/8 = 0.078125; sqrt = 0.2795085; 1.96 * sqrt = 0.5478367
    # ci = 100 * (0.25 -/+ 0.5478367) = (-29.78367, 79.78367); var_pts = 781.25
    var_pts, lo, hi = adjusted_wald(3, 1, 5, 0)
    assert var_pts == pytest.approx(781.25)
    assert lo == pytest.approx(-29.78367, **APPROX)
    assert hi == pytest.approx(79.78367, **APPROX)
    # N = 1 and N < n also mean no FPC
    assert adjusted_wald(3, 1, 5, 1) == pytest.approx((var_pts, lo, hi))
    assert adjusted_wald(3, 1, 5, 4) == pytest.approx((var_pts, lo, hi))


def test_adjusted_wald_with_fpc():
    # Same counts, N = 10: fpc = (10-5)/(10-1) = 5/9
    # var = 0.078125 * 5/9 = 0.390625/9 = (0.625/3)^2 -> sqrt = 0.2083333
    # 1.96 * 0.2083333 = 0.4083333; ci = 100 * (0.25 -/+ 0.4083333) = (-15.8333, 65.8333)
    var_pts, lo, hi = adjusted_wald(3, 1, 5, 10)
    assert var_pts == pytest.approx(781.25 * 5 / 9)
    assert lo == pytest.approx(-15.83333, **APPROX)
    assert hi == pytest.approx(65.83333, **APPROX)


def test_adjusted_wald_clipping_and_full_census():
    # P=5, D=0, n=5, no FPC: n'=8, p'=5.75/8=0.71875, d'=0.09375, p'-d'=0.625, p'+d'=0.8125
    # var = (0.8125 - 0.390625)/8 = 0.052734375; sqrt = 0.2296397; *1.96 = 0.4500938
    # hi = 100 * 1.0750938 = 107.5 -> clipped to 100; lo = 100 * 0.1749062 = 17.49062
    var_pts, lo, hi = adjusted_wald(5, 0, 5, 0)
    assert var_pts == pytest.approx(527.34375)
    assert hi == 100.0
    assert lo == pytest.approx(17.49062, **APPROX)
    # mirror image for all detractors: lo clipped at -100
    _, lo, hi = adjusted_wald(0, 5, 5, 0)
    assert lo == -100.0
    assert hi == pytest.approx(-17.49062, **APPROX)
    # n == N: fpc = 0, var = 0 -> both bounds at the adjusted centre, not at the point NPS.
    # P=2, D=0, n=2, N=2: n'=5, p'=2.75/5=0.55, d'=0.75/5=0.15 -> ci = (40, 40) while NPS = 100.
    var_pts, lo, hi = adjusted_wald(2, 0, 2, 2)
    assert var_pts == 0.0
    assert lo == pytest.approx(40.0) and hi == pytest.approx(40.0)


def test_account_interval_through_the_marts_with_and_without_fpc():
    w = World()
    w.account("a1")
    # 5 respondents: 3 promoters, 1 passive, 1 detractor. All active, none opted out,
    # plus 5 more eligible contacts -> N = 10 (FPC 5/9, numbers as in the test above).
    for i, score in enumerate([10, 9, 9, 8, 2]):
        w.contact(f"c{i}", "a1", "user")
        w.respond(f"c{i}", "2025-02-01", score)
    for i in range(5, 10):
        w.contact(f"c{i}", "a1", "user")
    w.contact("c_out", "a1", "user", opted_out=True)  # not eligible
    w.contact("c_old", "a1", "user", is_active=False)  # not eligible
    w.contact("c_del", "a1", "user", is_deleted=True)  # not there at all
    w.invite("c0", "2025-01-15")
    m = w.marts()
    r = one(m["account_nps"], period_start=Q1, account_id="a1", method="pooled")
    assert r["n_scored"] == 5 and r["n_eligible"] == 10
    assert (r["promoters"], r["passives"], r["detractors"]) == (3, 1, 1)
    assert r["nps"] == pytest.approx(40.0)  # 100 * (3 - 1)/5, unadjusted
    assert r["ci_low"] == pytest.approx(-15.83333, **APPROX)
    assert r["ci_high"] == pytest.approx(65.83333, **APPROX)
    assert bool(r["is_reportable"]) is True  # 5 >= 3

    # Same responses, but only one eligible contact (N = 1): no FPC.
    w2 = World()
    w2.account("a1")
    for i, score in enumerate([10, 9, 9, 8, 2]):
        w2.contact(f"c{i}", "a1", "user", opted_out=i > 0)
        w2.respond(f"c{i}", "2025-02-01", score)
    w2.invite("c0", "2025-01-15")
    r = one(w2.marts()["account_nps"], period_start=Q1, account_id="a1", method="pooled")
    assert r["n_eligible"] == 1
    assert r["ci_low"] == pytest.approx(-29.78367, **APPROX)
    assert r["ci_high"] == pytest.approx(79.78367, **APPROX)
    assert r["var_pts"] == pytest.approx(781.25)


# --------------------------------------------------------------------------------------
# Account methods: pooled, role_weighted, waterfall
# --------------------------------------------------------------------------------------


def five_response_account() -> World:
    w = World()
    w.account("a1")
    # contact   role            score class      w  s   w*s
    # dm1       decision_maker  10    promoter   3  +1  +3
    # dm2       decision_maker   8    passive    3   0   0
    # inf1      influencer       9    promoter   2  +1  +2
    # user1     user             6    detractor  1  -1  -1
    # unk1      unknown          3    detractor  1  -1  -1   (unknown weighs as other = 1)
    # sum w = 10; sum w*s = 3 -> role_weighted = 30
    # pooled: P=2, passive=1, D=2, n=5 -> 0
    # waterfall: decision_maker rank top: dm1 P, dm2 passive -> n=2, NPS = 100*(1-0)/2 = 50
    for cid, role, score in [
        ("dm1", "decision_maker", 10),
        ("dm2", "decision_maker", 8),
        ("inf1", "influencer", 9),
        ("user1", "user", 6),
        ("unk1", "unknown", 3),
    ]:
        w.contact(cid, "a1", role)
        w.respond(cid, "2025-02-10", score)
    w.contact("idle", "a1", "user")  # eligible, did not respond -> N = 6
    w.contact("gone", "a1", "user", is_active=False)
    w.invite("dm1", "2025-02-01")
    return w


def test_role_weighted_and_waterfall_on_five_responses():
    m = five_response_account().marts()
    acc = rows(m["account_nps"], period_start=Q1, survey_type="relationship", account_id="a1")
    assert sorted(acc["method"]) == ["bayes", "pooled", "role_weighted", "waterfall"]

    pooled = one(acc, method="pooled")
    assert pooled["nps"] == pytest.approx(0.0)
    assert (pooled["promoters"], pooled["passives"], pooled["detractors"], pooled["n_scored"]) == (2, 1, 2, 5)
    assert pooled["n_eligible"] == 6

    rw = one(acc, method="role_weighted")
    assert rw["nps"] == pytest.approx(30.0)
    # Interval of the unweighted counts P=2, D=2, n=5, N=6:
    # n'=8, p'=d'=2.75/8=0.34375, p'-d'=0, p'+d'=0.6875, var=0.6875/8=0.0859375
    # fpc=(6-5)/5=0.2 -> var=0.0171875, var_pts=171.875; sqrt=0.1311011, *1.96=0.2569582
    # ci = (-25.69582, 25.69582) - centred on 0, not on the weighted point estimate 30.
    assert (rw["promoters"], rw["passives"], rw["detractors"], rw["n_scored"]) == (2, 1, 2, 5)
    assert rw["var_pts"] == pytest.approx(171.875)
    assert rw["ci_low"] == pytest.approx(-25.69582, **APPROX)
    assert rw["ci_high"] == pytest.approx(25.69582, **APPROX)
    assert pooled["ci_low"] == pytest.approx(rw["ci_low"])

    wf = one(acc, method="waterfall")
    assert wf["waterfall_role"] == "decision_maker"
    assert wf["nps"] == pytest.approx(50.0)
    assert (wf["promoters"], wf["passives"], wf["detractors"], wf["n_scored"]) == (1, 1, 0, 2)
    assert wf["n_eligible"] == 6
    # P=1, D=0, n=2, N=6: n'=5, p'=1.75/5=0.35, d'=0.75/5=0.15, p'-d'=0.2, p'+d'=0.5
    # var=(0.5-0.04)/5=0.092; fpc=(6-2)/5=0.8 -> 0.0736 (var_pts 736); sqrt=0.2712932, *1.96=0.5317347
    # ci = 100*(0.2 -/+ 0.5317347) = (-33.17347, 73.17347)
    assert wf["var_pts"] == pytest.approx(736.0)
    assert wf["ci_low"] == pytest.approx(-33.17347, **APPROX)
    assert wf["ci_high"] == pytest.approx(73.17347, **APPROX)
    assert bool(wf["is_reportable"]) is False  # n_scored 2 < 3
    assert bool(pooled["is_reportable"]) is True
    assert pd.isna(pooled["waterfall_role"])


def test_role_weights_override():
    # decision_maker 1 and influencer 1 (so all weights are 1): role_weighted = pooled:
    # w*s = +1 + 0 + 1 - 1 - 1 = 0 over sum w = 5 -> 0
    m = five_response_account().marts(role_weights={"decision_maker": 1, "influencer": 1})
    assert one(m["account_nps"], account_id="a1", method="role_weighted")["nps"] == pytest.approx(0.0)
    # other = 5: unknown weighs as other -> w*s = 3 + 0 + 2 - 1 - 5 = -1 over 3+3+2+1+5=14
    m = five_response_account().marts(role_weights={"other": 5})
    assert one(m["account_nps"], account_id="a1", method="role_weighted")["nps"] == pytest.approx(-100 / 14)


def test_waterfall_below_the_top_role_and_unknown_pooled_with_other():
    w = World()
    w.account("a1")
    w.account("a2")
    # a1: no decision maker; influencer 6 and 10 -> pooled influencers = 100*(1-1)/2 = 0
    w.contact("i1", "a1", "influencer")
    w.contact("i2", "a1", "influencer")
    w.contact("u1", "a1", "user")
    w.respond("i1", "2025-02-01", 6)
    w.respond("i2", "2025-02-01", 10)
    w.respond("u1", "2025-02-01", 10)
    # a2: only other (9) and unknown (2) -> both rank as other, pooled: 100*(1-1)/2 = 0;
    # a contact with an unrecognised role spelling counts as unknown too (10): P=2, D=1 -> 33.33
    w.contact("o1", "a2", "other")
    w.contact("x1", "a2", "unknown")
    w.contact("x2", "a2", "Economic Buyer")
    w.respond("o1", "2025-02-01", 9)
    w.respond("x1", "2025-02-01", 2)
    w.respond("x2", "2025-02-01", 10)
    w.invite("i1", "2025-01-20")
    m = w.marts()
    wf1 = one(m["account_nps"], account_id="a1", method="waterfall")
    assert wf1["waterfall_role"] == "influencer"
    assert wf1["n_scored"] == 2 and wf1["nps"] == pytest.approx(0.0)
    wf2 = one(m["account_nps"], account_id="a2", method="waterfall")
    assert wf2["waterfall_role"] == "other"
    assert wf2["n_scored"] == 3 and wf2["nps"] == pytest.approx(100 / 3)


# --------------------------------------------------------------------------------------
# De-duplication
# --------------------------------------------------------------------------------------


def test_latest_scored_response_per_contact_period_and_survey_type():
    w = World()
    w.account("a1")
    w.contact("c1", "a1", "user")
    w.contact("c2", "a1", "user")
    w.invite("c1", "2025-01-05")
    # c1, Q1 relationship: 3 (Jan) then 9 (Feb) then an unscored response (Mar) -> 9 counts
    w.respond("c1", "2025-01-10", 3)
    w.respond("c1", "2025-02-10", 9)
    w.respond("c1", "2025-03-01", None)
    # c2, Q1 relationship: two at the same instant -> greatest response_id ("r6" > "r5") counts
    w.respond("c2", "2025-03-05 12:00", 10, response_id="r6")
    w.respond("c2", "2025-03-05 12:00", 2, response_id="r5")
    # c1, Q1 transactional: never pooled with relationship
    w.respond("c1", "2025-03-20", 0, survey="s_tx")
    # c1, Q2 relationship: a new period, counted separately
    w.respond("c1", "2025-04-10", 5)
    m = w.marts()
    an = m["account_nps"]
    q1_rel = one(an, period_start=Q1, survey_type="relationship", method="pooled")
    assert (q1_rel["n_scored"], q1_rel["promoters"], q1_rel["detractors"]) == (2, 2, 0)
    assert q1_rel["nps"] == pytest.approx(100.0)
    q1_tx = one(an, period_start=Q1, survey_type="transactional", method="pooled")
    assert (q1_tx["n_scored"], q1_tx["nps"]) == (1, -100.0)
    q2_rel = one(an, period_start=Q2, survey_type="relationship", method="pooled")
    assert (q2_rel["n_scored"], q2_rel["nps"]) == (1, -100.0)
    # portfolio respondent agrees
    p = one(
        m["portfolio_nps"],
        period_start=Q1,
        survey_type="relationship",
        group_type="company",
        method="respondent",
    )
    assert p["n_scored"] == 2 and p["nps"] == pytest.approx(100.0)
    # float scores with NaN behave like nullable ints
    m2 = compute_marts(w.tables(score_dtype="float64"), AS_OF)
    pd.testing.assert_frame_equal(m2["account_nps"], an)


# --------------------------------------------------------------------------------------
# Portfolio: account_classified cut-offs, account_equal, revenue_weighted, respondent
# --------------------------------------------------------------------------------------


def portfolio_world() -> World:
    w = World()
    # acct  responses (role score)     role_weighted x               mean score m            class
    # A1    dm 10, user 6   (ARR 100)  (3*1 + 1*-1)/4*100 = 50       (30+6)/4  = 9.00        promoter (m = 9)
    # A2    dm 7, inf 7     (ARR null) 0                             (21+14)/5 = 7.00        passive  (m = 7)
    # A3    dm 6, user 10   (ARR 100)  (-3 + 1)/4*100 = -50          (18+10)/4 = 7.00        passive
    # A4    dm 6, user 9    (ARR 200)  (-3 + 1)/4*100 = -50          (18+9)/4  = 6.75        detractor
    # A5    dm 9            (ARR 100)  100                           9                       promoter
    # A6    active, no responses, 3 eligible contacts (ARR 500)
    w.account("A1", segment="ent", arr=100.0)
    w.account("A2", segment="ent", arr=None)
    w.account("A3", segment="ent", arr=100.0)
    w.account("A4", segment="smb", arr=200.0)
    w.account("A5", segment="smb", arr=100.0)
    w.account("A6", segment=None, arr=500.0)
    w.account("A7", segment="ent", is_active=False)  # inactive: not in any population
    for acct, answers in {
        "A1": [("decision_maker", 10), ("user", 6)],
        "A2": [("decision_maker", 7), ("influencer", 7)],
        "A3": [("decision_maker", 6), ("user", 10)],
        "A4": [("decision_maker", 6), ("user", 9)],
        "A5": [("decision_maker", 9)],
    }.items():
        for k, (role, score) in enumerate(answers):
            cid = f"{acct}_{k}"
            w.contact(cid, acct, role)
            w.respond(cid, "2025-05-02", score)
    for k in range(3):
        w.contact(f"A6_{k}", "A6", "user")
    w.invite("A1_0", "2025-04-15")
    return w


def test_account_classified_cut_offs():
    m = portfolio_world().marts()
    c = one(
        m["portfolio_nps"],
        period_start=Q2,
        survey_type="relationship",
        group_type="company",
        group_value="all",
        method="account_classified",
    )
    # PA = 2 (A1 at exactly 9, A5), passive 2 (A2 and A3 at exactly 7), DA = 1 (A4 at 6.75)
    assert (c["promoters"], c["passives"], c["detractors"]) == (2, 2, 1)
    assert c["n_accounts"] == 5
    assert c["nps"] == pytest.approx(20.0)  # 100 * (2 - 1)/5
    assert c["n_scored"] == 9  # counted responses of the responding accounts
    # N = 6 active accounts (A7 inactive): fpc = (6-5)/5 = 0.2
    # n'=8, p'=2.75/8=0.34375, d'=1.75/8=0.21875, p'-d'=0.125, p'+d'=0.5625
    # var = (0.5625 - 0.015625)/8 = 0.068359375 * 0.2 = 0.013671875; sqrt = 0.1169268, *1.96 = 0.2291765
    # ci = 100 * (0.125 -/+ 0.2291765) = (-10.41765, 35.41765)
    assert c["n_eligible"] == 6
    assert c["ci_low"] == pytest.approx(-10.41765, **APPROX)
    assert c["ci_high"] == pytest.approx(35.41765, **APPROX)
    assert bool(c["is_reportable"]) is True  # n_accounts 5 >= 5


def test_account_equal_and_revenue_weighted():
    m = portfolio_world().marts()
    pn = rows(m["portfolio_nps"], period_start=Q2, survey_type="relationship", group_type="company")
    eq = one(pn, method="account_equal")
    # x = 50, 0, -50, -50, 100 -> mean 10
    # deviations 40, -10, -60, -60, 90 -> squares 1600+100+3600+3600+8100 = 17000
    # s^2 = 17000/4 = 4250; s^2/n = 850; fpc (6-5)/5 = 0.2 -> var_pts = 170
    # sqrt(170) = 13.03840, *1.96 = 25.55527 -> ci (-15.55527, 35.55527)
    assert eq["nps"] == pytest.approx(10.0)
    assert eq["var_pts"] == pytest.approx(170.0)
    assert eq["ci_low"] == pytest.approx(-15.55527, **APPROX)
    assert eq["ci_high"] == pytest.approx(35.55527, **APPROX)

    rw = one(pn, method="revenue_weighted")
    # a = 100, 0 (null ARR), 100, 200, 100; sum a = 500
    # sum a*x = 5000 + 0 - 5000 - 10000 + 10000 = 0 -> nps 0
    # sum a^2 (x-0)^2 = 1e4*2500 + 0 + 1e4*2500 + 4e4*2500 + 1e4*1e4 = 2.5e8
    # var = 5/4 * 2.5e8 / 500^2 = 1.25 * 1000 = 1250; * fpc 0.2 = 250
    # sqrt(250) = 15.81139, *1.96 = 30.99032 -> ci (-30.99032, 30.99032)
    assert rw["nps"] == pytest.approx(0.0, abs=1e-9)
    assert rw["var_pts"] == pytest.approx(250.0)
    assert rw["ci_low"] == pytest.approx(-30.99032, **APPROX)
    assert rw["ci_high"] == pytest.approx(30.99032, **APPROX)


def test_respondent_and_group_reportability():
    m = portfolio_world().marts()
    pn = m["portfolio_nps"]
    resp = one(pn, period_start=Q2, group_type="company", method="respondent")
    # 9 counted responses: P = 10,9,10,9 -> 4; D = 6,6,6 -> 3; passive 7,7 -> 2; NPS = 100/9
    # N = eligible contacts of active accounts = 9 respondents + 3 at A6 = 12; fpc = 3/11
    # n'=12, p'=4.75/12, d'=3.75/12, p'-d' = 1/12 = 0.0833333, p'+d' = 8.5/12 = 0.7083333
    # var = (0.7083333 - 0.0069444)/12 = 0.0584491; *3/11 = 0.0159407; sqrt = 0.1262568, *1.96 = 0.2474633
    # ci = 100 * (0.0833333 -/+ 0.2474633) = (-16.41300, 33.07966)
    assert (resp["promoters"], resp["passives"], resp["detractors"], resp["n_scored"]) == (4, 2, 3, 9)
    assert resp["nps"] == pytest.approx(100 / 9)
    assert resp["n_eligible"] == 12
    assert resp["ci_low"] == pytest.approx(-16.41300, **APPROX)
    assert resp["ci_high"] == pytest.approx(33.07966, **APPROX)
    assert bool(resp["is_reportable"]) is True

    # segment ent: A1, A2, A3 respond (n_scored 6, reportable for respondent; 3 accounts not)
    ent = rows(pn, period_start=Q2, group_type="segment", group_value="ent")
    assert bool(one(ent, method="respondent")["is_reportable"]) is True
    assert bool(one(ent, method="account_equal")["is_reportable"]) is False
    assert one(ent, method="account_equal")["n_eligible"] == 3  # A7 inactive
    # segment smb: 3 responses -> nothing reportable
    smb = rows(pn, period_start=Q2, group_type="segment", group_value="smb")
    assert not smb["is_reportable"].any()
    # A6 (null segment) has no responses -> no 'unknown' segment row (n = 0 rows not produced)
    assert len(rows(pn, group_type="segment", group_value="unknown")) == 0
    # one account with ARR null only: revenue_weighted nps is null
    w = World()
    w.account("Z", arr=None)
    w.contact("z1", "Z", "user")
    w.respond("z1", "2025-05-01", 10)
    w.invite("z1", "2025-05-01")
    z = one(w.marts()["portfolio_nps"], group_type="company", method="revenue_weighted")
    assert pd.isna(z["nps"])


# --------------------------------------------------------------------------------------
# Contact coverage
# --------------------------------------------------------------------------------------


def test_coverage_slots_use_min_per_role():
    w = World()
    w.account("A", tier="A")
    w.account("B", tier="B")
    w.account("X", tier=None)  # unknown tier -> C slots (1/1/1)
    w.account("D", tier="A", is_deleted=True)  # deleted: no rows
    w.account("I", tier="A", is_active=False)  # inactive: no rows
    # A: 4 decision makers (capped at 3), 1 influencer, 0 users, 1 opted-out user (still on
    #    file), 1 inactive user (not on file) -> on file 3 + 1 + 1 = 5 of 9
    for k in range(4):
        w.contact(f"A_dm{k}", "A", "decision_maker")
    w.contact("A_inf", "A", "influencer")
    w.contact("A_u_out", "A", "user", opted_out=True)
    w.contact("A_u_old", "A", "user", is_active=False)
    # invited in Q1: dm0, dm1 delivered (dm0 twice), influencer bounced -> 2 of 9
    w.invite("A_dm0", "2025-01-10")
    w.invite("A_dm0", "2025-02-10", survey="s_tx")
    w.invite("A_dm1", "2025-01-10")
    w.invite("A_inf", "2025-01-10", status="bounced")
    # responded in Q1: dm0 scored (twice), dm1 null score -> 1 of 9, single-threaded
    w.respond("A_dm0", "2025-01-11", 9)
    w.respond("A_dm0", "2025-02-11", 3, survey="s_tx")
    w.respond("A_dm1", "2025-01-12", None)
    # B (2/2/2): 1 user on file; two users respond in Q1 (one of them not even on file any more)
    w.contact("B_u1", "B", "user")
    w.contact("B_u2", "B", "user", is_active=False)
    w.respond("B_u1", "2025-03-01", 10)
    w.respond("B_u2", "2025-03-02", 10)
    # X: one unknown-role contact on file -> fills no slot
    w.contact("X_1", "X", "unknown")
    m = w.marts()
    cov = m["contact_coverage"]
    assert sorted(cov["account_id"].unique()) == ["A", "B", "X"]
    assert sorted(cov["period_start"].unique()) == [Q1, Q2]

    a = one(cov, period_start=Q1, account_id="A")
    assert (a["slots_required"], a["slots_on_file"], a["slots_invited"], a["slots_responded"]) == (9, 5, 2, 1)
    assert a["coverage_on_file"] == pytest.approx(5 / 9)
    assert a["coverage_invited"] == pytest.approx(2 / 9)
    assert a["coverage_responded"] == pytest.approx(1 / 9)
    assert bool(a["has_decision_maker_on_file"]) and bool(a["has_decision_maker_response"])
    assert bool(a["is_single_threaded"]) is True

    a2 = one(cov, period_start=Q2, account_id="A")  # nothing happened in Q2
    assert (a2["slots_on_file"], a2["slots_invited"], a2["slots_responded"]) == (5, 0, 0)
    assert not a2["has_decision_maker_response"] and not a2["is_single_threaded"]

    b = one(cov, period_start=Q1, account_id="B")
    # users responded: 2, required 2 -> 2 of 6; on file 1 of 6; two contacts -> not single-threaded
    assert (b["slots_required"], b["slots_on_file"], b["slots_responded"]) == (6, 1, 2)
    assert not b["has_decision_maker_on_file"] and not b["is_single_threaded"]

    x = one(cov, period_start=Q1, account_id="X")
    assert (x["slots_required"], x["slots_on_file"]) == (3, 0)
    assert pd.isna(x["tier"])

    # custom slots: tier A needs 5 decision makers and nothing else -> on file min(4, 5) = 4 of 5
    m = w.marts(
        coverage_slots={
            "A": {"decision_maker": 5, "influencer": 0, "user": 0},
            "C": {"decision_maker": 1, "influencer": 1, "user": 1},
        }
    )
    a = one(m["contact_coverage"], period_start=Q1, account_id="A")
    assert (a["slots_required"], a["slots_on_file"]) == (5, 4)


# --------------------------------------------------------------------------------------
# Response rate
# --------------------------------------------------------------------------------------


def test_response_rate_close_out_window_and_null_scores():
    w = World()
    w.account("a1", segment="ent", tier="A")
    w.account("a2", segment="smb", tier="B")
    w.account("a3", segment=None, tier="A")
    for c, a in [("c1", "a1"), ("c2", "a1"), ("c3", "a3"), ("c4", "a2"), ("c5", "a2"), ("c6", "a3")]:
        w.contact(c, a, "user")
    i1 = w.invite("c1", "2025-01-10 09:00")
    w.respond("c1", "2025-01-15", 9, invitation_id=i1)  # responded, scored
    w.respond("c1", "2025-01-16", 9, invitation_id=i1)  # second response: invitation counted once
    i2 = w.invite("c2", "2025-01-10 09:00")
    w.respond("c2", "2025-02-09 09:00:01", 9, invitation_id=i2)  # 30 days + 1 s: too late
    i3 = w.invite("c3", "2025-01-10 09:00")
    w.respond("c3", "2025-01-12", None, invitation_id=i3)  # responded, not scored
    w.invite("c4", "2025-01-10 09:00")  # no response
    i5 = w.invite("c5", "2025-01-10 09:00", status="bounced")
    w.respond("c5", "2025-01-11", 10, invitation_id=i5)  # not delivered: ignored
    i6 = w.invite("c6", "2025-03-31 10:00")
    w.respond("c6", "2025-04-30 10:00", 10, invitation_id=i6)  # exactly 30 days: counts (Q1 cohort)
    i7 = w.invite("c1", "2025-01-20", survey="s_tx")  # transactional: its own rows
    w.respond("c1", "2025-01-21", 2, invitation_id=i7)
    i8 = w.invite("c4", "2025-06-15")  # Q2 cohort, response recorded after as_of: ignored
    w.respond("c4", "2025-07-02", 8, invitation_id=i8)
    m = w.marts()
    rr = m["response_rate"]

    co = one(rr, period_start=Q1, survey_type="relationship", group_type="company", group_value="all")
    # delivered: i1, i2, i3, i4, i6 = 5; responded: i1, i3, i6 = 3; scored: i1, i6 = 2
    assert (co["delivered"], co["responses"], co["scored_responses"]) == (5, 3, 2)
    assert co["response_rate"] == pytest.approx(0.6)
    assert co["scored_response_rate"] == pytest.approx(0.4)
    # accounts delivered a1, a2, a3; responded a1 (i1), a3 (i3, i6) -> 2/3
    assert (co["accounts_delivered"], co["accounts_responded"]) == (3, 2)
    assert co["account_response_rate"] == pytest.approx(2 / 3)
    assert co["target"] == pytest.approx(0.70)
    assert bool(co["meets_target"]) is False
    assert bool(co["is_cohort_closed"]) is True  # 2025-04-01 + 30 d = 2025-05-01 <= as_of

    tx = one(rr, period_start=Q1, survey_type="transactional", group_type="company")
    assert (tx["delivered"], tx["responses"], tx["scored_responses"]) == (1, 1, 1)
    assert bool(tx["meets_target"]) is True

    q2 = one(rr, period_start=Q2, survey_type="relationship", group_type="company")
    assert (q2["delivered"], q2["responses"]) == (1, 0)
    assert bool(q2["is_cohort_closed"]) is False  # 2025-07-01 + 30 d > as_of

    seg = rows(rr, period_start=Q1, survey_type="relationship", group_type="segment")
    assert dict(zip(seg["group_value"], seg["delivered"], strict=True)) == {"ent": 2, "smb": 1, "unknown": 2}
    assert dict(zip(seg["group_value"], seg["responses"], strict=True)) == {"ent": 1, "smb": 0, "unknown": 2}
    tier = rows(rr, period_start=Q1, survey_type="relationship", group_type="tier")
    assert dict(zip(tier["group_value"], tier["delivered"], strict=True)) == {"A": 4, "B": 1}

    # a shorter close-out window drops i6 (30 days) and keeps i1 (5 days), i3 (2 days)
    co = one(
        w.marts(close_out_days=10)["response_rate"],
        period_start=Q1,
        survey_type="relationship",
        group_type="company",
    )
    assert (co["responses"], co["scored_responses"]) == (2, 1)
    co = one(
        w.marts(close_out_days=0)["response_rate"],
        period_start=Q1,
        survey_type="relationship",
        group_type="company",
    )
    assert co["responses"] == 0
    # the cohort counts as closed only once period end + window has passed
    assert (
        bool(
            one(
                w.marts(as_of=datetime(2025, 4, 30))["response_rate"],
                period_start=Q1,
                survey_type="relationship",
                group_type="company",
            )["is_cohort_closed"]
        )
        is False
    )


# --------------------------------------------------------------------------------------
# Follow-up SLA
# --------------------------------------------------------------------------------------


def sla_world() -> World:
    w = World()
    w.account("a1", owner_id="o_acc")
    for c in ("c_met", "c_edge", "c_late", "c_nofc", "c_miss", "c_act", "c_act2", "c_fut", "c_pas", "c_pro"):
        w.contact(c, "a1", "user")
    w.invite("c_met", "2025-05-01")
    # recorded 2025-06-01 00:00 -> target 2025-06-03 00:00; as_of 2025-07-01 00:00
    r = w.respond("c_met", "2025-06-01", 3, response_id="r_met")
    w.follow_up(
        r, "2025-06-01 01:00", "2025-06-02 23:00", "2025-06-10", owner_id="o_fu", follow_up_id="f_met"
    )
    w.follow_up(r, "2025-06-01 02:00", "2025-06-01 03:00", "2025-06-02", follow_up_id="f_later")  # not linked
    r = w.respond("c_edge", "2025-06-01", 0, response_id="r_edge")
    w.follow_up(r, "2025-06-01 01:00", "2025-06-03 00:00", "2025-06-15 00:00")  # exactly 48 h, exactly 14 d
    r = w.respond("c_late", "2025-06-01", 6, response_id="r_late")
    w.follow_up(r, "2025-06-01 01:00", "2025-06-03 02:00", "2025-06-16")  # 50 h; closed after 15 d
    r = w.respond("c_nofc", "2025-06-01", 4, response_id="r_nofc")
    w.follow_up(r, "2025-06-01 01:00")  # task, never contacted
    w.respond("c_miss", "2025-06-01", 5, response_id="r_miss")  # no task at all
    w.respond("c_act", "2025-06-30", 2, response_id="r_act")  # target 07-02 > as_of, no task
    r = w.respond("c_act2", "2025-06-30 12:00", 1, response_id="r_act2")
    w.follow_up(r, "2025-06-30 13:00")  # task exists, target not passed
    r = w.respond("c_fut", "2025-06-28", 3, response_id="r_fut")  # target 06-30 < as_of
    w.follow_up(r, "2025-06-28 01:00", "2025-07-01 05:00")  # first contact after as_of -> unseen
    w.respond("c_pas", "2025-06-01", 7, response_id="r_pas")
    w.respond("c_pro", "2025-06-01", 9, response_id="r_pro")
    w.respond("c_met", "2025-07-01", 0, response_id="r_after")  # at as_of: ignored
    return w


def test_sla_status_at_as_of():
    m = sla_world().marts()
    sla = m["follow_up_sla"].set_index("response_id")
    assert sorted(sla.index) == ["r_act", "r_act2", "r_edge", "r_fut", "r_late", "r_met", "r_miss", "r_nofc"]
    expected = {
        "r_met": ("met", False),
        "r_edge": ("met", False),  # first contact exactly at target counts as met
        "r_late": ("breached", True),
        "r_nofc": ("breached", True),
        "r_fut": ("breached", True),
        "r_miss": ("missing", True),
        "r_act": ("active", None),
        "r_act2": ("active", None),
    }
    for rid, (status, breach) in expected.items():
        assert sla.loc[rid, "sla_status"] == status, rid
        if breach is None:
            assert pd.isna(sla.loc[rid, "is_sla_breach"]), rid
        else:
            assert bool(sla.loc[rid, "is_sla_breach"]) is breach, rid
    assert sla.loc["r_met", "follow_up_id"] == "f_met"  # earliest created_at wins
    assert sla.loc["r_met", "calendar_hours_to_first_contact"] == pytest.approx(47.0)
    assert sla.loc["r_met", "calendar_hours_to_close"] == pytest.approx(9 * 24.0)
    assert sla.loc["r_met", "owner_id"] == "o_fu"  # follow-up owner first
    assert sla.loc["r_miss", "owner_id"] == "o_acc"  # else the account owner
    assert sla.loc["r_late", "calendar_hours_to_first_contact"] == pytest.approx(50.0)
    assert pd.isna(sla.loc["r_fut", "calendar_hours_to_first_contact"])
    assert pd.isna(sla.loc["r_miss", "follow_up_id"])
    assert (sla["period_start"] == Q2).all()

    # attainment over the decided ones: met 2 / (met 2 + breached 3 + missing 1) = 1/3
    h = headline(m, AS_OF)
    assert h["sla_attainment"] == pytest.approx(2 / 6)

    # follow_up_passives adds r_pas (no task, past target -> missing); promoters never
    sla = sla_world().marts(follow_up_passives=True)["follow_up_sla"].set_index("response_id")
    assert "r_pas" in sla.index and "r_pro" not in sla.index
    assert sla.loc["r_pas", "sla_status"] == "missing"

    # earlier as_of: r_met's first contact (06-02 23:00) not yet visible at 06-02 12:00 -> active
    sla = sla_world().marts(as_of=datetime(2025, 6, 2, 12))["follow_up_sla"].set_index("response_id")
    assert sla.loc["r_met", "sla_status"] == "active"
    assert sla.loc["r_miss", "sla_status"] == "active"
    assert sorted(sla.index) == ["r_edge", "r_late", "r_met", "r_miss", "r_nofc"]


def test_is_completed_and_completion_due():
    sla = sla_world().marts()["follow_up_sla"].set_index("response_id")
    assert bool(sla.loc["r_met", "is_completed"]) is True  # closed after 9 days
    assert bool(sla.loc["r_edge", "is_completed"]) is True  # closed at exactly 14 days
    assert bool(sla.loc["r_late", "is_completed"]) is False  # closed after 15 days
    assert bool(sla.loc["r_nofc", "is_completed"]) is False  # never closed
    assert bool(sla.loc["r_miss", "is_completed"]) is False  # no task
    # due when recorded_at + 14 d <= as_of: 06-01 + 14 d yes; 06-28 + 14 d, 06-30 + 14 d not yet
    assert bool(sla.loc["r_met", "is_completion_due"]) is True
    assert bool(sla.loc["r_fut", "is_completion_due"]) is False
    assert bool(sla.loc["r_act", "is_completion_due"]) is False
    # a closure after as_of is not seen
    sla = sla_world().marts(as_of=datetime(2025, 6, 12))["follow_up_sla"].set_index("response_id")
    assert bool(sla.loc["r_met", "is_completed"]) is True  # closed 06-10
    assert bool(sla.loc["r_edge", "is_completed"]) is False  # closes 06-15, after as_of
    assert pd.isna(sla.loc["r_edge", "calendar_hours_to_close"])


def test_next_score_and_is_recovered():
    w = World()
    w.account("a1")
    for c in ("cA", "cB", "cC", "cD"):
        w.contact(c, "a1", "user")
    w.invite("cA", "2025-03-01")
    # cA: detractor 3, follow-up closed 04-05; another detractor before the close; an unscored
    # response after; then an 8 (transactional) -> next_score 8, recovered (passive > detractor)
    r1 = w.respond("cA", "2025-04-01", 3, response_id="rA1")
    w.follow_up(r1, "2025-04-01 02:00", "2025-04-01 05:00", "2025-04-05")
    w.respond("cA", "2025-04-03", 2, response_id="rA2")
    w.respond("cA", "2025-04-10", None, response_id="rA3")
    w.respond("cA", "2025-04-20", 8, response_id="rA4", survey="s_tx")
    w.respond("cA", "2025-05-20", 1, response_id="rA5")  # a later one, not the next
    # cB: detractor 4 closed 04-03, next 5 -> still a detractor: not recovered
    r = w.respond("cB", "2025-04-01", 4, response_id="rB1")
    w.follow_up(r, "2025-04-01 02:00", "2025-04-01 03:00", "2025-04-03")
    w.respond("cB", "2025-05-01", 5, response_id="rB2")
    # cC: follow-up not closed -> next_score null even though a 10 follows
    r = w.respond("cC", "2025-04-01", 0, response_id="rC1")
    w.follow_up(r, "2025-04-01 02:00", "2025-04-01 03:00")
    w.respond("cC", "2025-05-01", 10, response_id="rC2")
    # cD: closed, but the next response is at/after as_of -> null
    r = w.respond("cD", "2025-04-01", 6, response_id="rD1")
    w.follow_up(r, "2025-04-01 02:00", "2025-04-01 03:00", "2025-04-02")
    w.respond("cD", "2025-07-01", 9, response_id="rD2")
    sla = w.marts()["follow_up_sla"].set_index("response_id")
    assert sla.loc["rA1", "next_score"] == 8
    assert bool(sla.loc["rA1", "is_recovered"]) is True
    assert pd.isna(sla.loc["rA2", "next_score"]) and pd.isna(sla.loc["rA2", "is_recovered"])  # no task
    assert sla.loc["rB1", "next_score"] == 5
    assert bool(sla.loc["rB1", "is_recovered"]) is False
    assert pd.isna(sla.loc["rC1", "next_score"]) and pd.isna(sla.loc["rC1", "is_recovered"])
    assert pd.isna(sla.loc["rD1", "next_score"]) and pd.isna(sla.loc["rD1", "is_recovered"])
    # every scored detractor is required, de-duplication does not apply
    assert sorted(sla.index) == ["rA1", "rA2", "rA5", "rB1", "rB2", "rC1", "rD1"]

    # with passives required: a passive followed by a promoter recovers
    w2 = World()
    w2.account("a1")
    w2.contact("cP", "a1", "user")
    w2.invite("cP", "2025-03-01")
    r = w2.respond("cP", "2025-04-01", 7, response_id="rP1")
    w2.follow_up(r, "2025-04-01 01:00", "2025-04-01 02:00", "2025-04-02")
    w2.respond("cP", "2025-04-10", 10, response_id="rP2")
    sla = w2.marts(follow_up_passives=True)["follow_up_sla"].set_index("response_id")
    assert sla.loc["rP1", "next_score"] == 10 and bool(sla.loc["rP1", "is_recovered"]) is True


# --------------------------------------------------------------------------------------
# Change between periods
# --------------------------------------------------------------------------------------


def test_significant_change_across_periods():
    w = World()
    w.account("a1")
    # 20 eligible contacts; 5 answer each quarter
    for k in range(20):
        w.contact(f"c{k}", "a1", "user")
    w.invite("c0", "2024-10-01")
    # Q4 2024: nothing. Q1 2025: five 0s. Q2 2025: five 10s. Q3 2025: 10,10,9,9,8.
    for k in range(5):
        w.respond(f"c{k}", "2025-02-01", 0)
        w.respond(f"c{k}", "2025-05-01", 10)
    for k, s in enumerate([10, 10, 9, 9, 8]):
        w.respond(f"c{k}", "2025-08-01", s)
    an = w.marts(as_of=datetime(2025, 10, 1))["account_nps"]
    q1 = one(an, period_start=Q1, method="pooled")
    q2 = one(an, period_start=Q2, method="pooled")
    q3 = one(an, period_start=date(2025, 7, 1), method="pooled")
    # Q1: P=0, D=5, n=5, N=20: n'=8, p'=0.09375, d'=0.71875, p'+d'=0.8125, (p'-d')^2=0.390625
    #     var = 0.421875/8 = 0.052734375, fpc = 15/19 -> 0.0416324, var_pts = 416.324
    # Q1 has no previous row (Q4 2024 is empty) -> nulls
    assert q1["var_pts"] == pytest.approx(416.324, abs=1e-2)
    assert pd.isna(q1["nps_prev"]) and pd.isna(q1["var_prev"]) and pd.isna(q1["is_significant_change"])
    # Q2: all promoters, same var 416.324; delta = 100 - (-100) = 200
    #     threshold = 1.96 * sqrt(832.648) = 56.557 -> significant
    assert q2["nps_prev"] == pytest.approx(-100.0)
    assert q2["var_prev"] == pytest.approx(416.324, abs=1e-2)
    assert bool(q2["is_significant_change"]) is True
    # Q3: P=4, D=0: p'=4.75/8=0.59375, d'=0.09375, p'+d'=0.6875, (p'-d')^2=0.25
    #     var = 0.4375/8 = 0.0546875 * 15/19 = 0.0431743, var_pts = 431.743
    #     NPS 80, delta = -20, threshold = 1.96 * sqrt(416.324 + 431.743) = 57.079 -> not significant
    assert q3["nps"] == pytest.approx(80.0)
    assert q3["var_pts"] == pytest.approx(431.743, abs=1e-2)
    assert bool(q3["is_significant_change"]) is False
    # role_weighted compares weighted NPS with the unweighted-count variance (all users: same)
    assert bool(one(an, period_start=Q2, method="role_weighted")["is_significant_change"]) is True

    # a gap: only Q1 and Q3 -> Q3 has no immediately previous row
    w2 = World()
    w2.account("a1")
    w2.contact("c0", "a1", "user")
    w2.invite("c0", "2025-01-02")
    w2.respond("c0", "2025-02-01", 0)
    w2.respond("c0", "2025-08-01", 10)
    an = w2.marts(as_of=datetime(2025, 10, 1))["account_nps"]
    assert pd.isna(one(an, period_start=date(2025, 7, 1), method="pooled")["nps_prev"])


# --------------------------------------------------------------------------------------
# Periods, deletion, as_of, month grain, headline
# --------------------------------------------------------------------------------------


def test_period_spine_deleted_rows_and_as_of():
    w = World()
    w.account("a1")
    w.account("a_del", is_deleted=True)
    w.contact("c1", "a1", "decision_maker")
    w.contact("c2", "a1", "user", is_deleted=True)
    w.invite("c1", "2024-11-15")  # earliest invitation: Q4 2024
    w.respond("c1", "2025-06-30 23:59:59", 10)
    w.respond("c1", "2025-07-01 00:00:00", 0)  # at as_of: ignored
    w.invite("c1", "2025-07-01 00:00:00")  # at as_of: ignored
    tables = w.tables()
    # a deleted response row is ignored too (the flag is honoured on any table)
    tables["responses"]["is_deleted"] = False
    extra = tables["responses"].iloc[[0]].copy()
    extra["response_id"] = "r_deleted"
    extra["nps_score"] = pd.array([0], dtype="Int64")
    extra["is_deleted"] = True
    tables["responses"] = pd.concat([tables["responses"], extra], ignore_index=True)
    m = compute_marts(tables, AS_OF)
    cov = m["contact_coverage"]
    assert list(cov["period_start"]) == [date(2024, 10, 1), Q1, Q2]
    assert set(cov["account_id"]) == {"a1"}
    pooled = one(m["account_nps"], method="pooled")
    assert pooled["period_start"] == Q2 and pooled["nps"] == 100.0
    assert pooled["n_eligible"] == 1  # deleted c2 not eligible
    assert len(m["follow_up_sla"]) == 0
    rr = m["response_rate"]
    measured = rr[rr["rate_basis"] == "invitations"]
    assert list(measured["period_start"].unique()) == [date(2024, 10, 1)]  # not the 07-01 one
    # the Q2 response came in a period that sent no invitation: the rate is not measured, and
    # the row says so instead of vanishing
    q2 = one(rr, period_start=Q2, survey_type="relationship", group_type="company")
    assert (q2["rate_basis"], q2["delivered"], q2["responses"], q2["scored_responses"]) == ("no_invitations", 0, 1, 1)
    assert pd.isna(q2["response_rate"]) and pd.isna(q2["meets_target"])

    # month grain
    m = compute_marts(tables, AS_OF, period_grain="month")
    cov = m["contact_coverage"]
    assert cov["period_start"].iloc[0] == date(2024, 11, 1)
    assert cov["period_start"].iloc[-1] == date(2025, 6, 1)
    assert len(cov) == 8  # Nov 2024 .. Jun 2025
    assert one(m["account_nps"], method="pooled")["period_start"] == date(2025, 6, 1)

    # as_of just after midnight -> the latest period is Q3 (holds as_of - 1 us)
    cov = compute_marts(tables, datetime(2025, 7, 1, 0, 0, 1))["contact_coverage"]
    assert cov["period_start"].iloc[-1] == date(2025, 7, 1)


def test_headline():
    w = portfolio_world()
    # relationship cohort Q2: 1 invitation (to A1_0) answered -> rate 1.0 ... add 3 unanswered
    for c in ("A2_0", "A3_0", "A6_0"):
        w.invite(c, "2025-04-15")
    w.rows["invitations"][0]["invitation_id"] = "inv_a1"
    for r in w.rows["responses"]:
        if r["contact_id"] == "A1_0":
            r["invitation_id"] = "inv_a1"
    # A4 decision maker's detractor response has a follow-up met in time; other detractors
    # (A1 user 6, A3 dm 6) have none -> missing. attainment = 1/3
    rid = next(r["response_id"] for r in w.rows["responses"] if r["contact_id"] == "A4_0")
    w.follow_up(rid, "2025-05-02 01:00", "2025-05-02 10:00")
    m = w.marts()
    h = headline(m, AS_OF)
    assert h["period_start"] == Q2
    assert h["nps"] == pytest.approx(100 / 9)
    assert h["nps_ci_low"] == pytest.approx(-16.41300, **APPROX)
    assert h["nps_ci_high"] == pytest.approx(33.07966, **APPROX)
    assert h["response_rate"] == pytest.approx(1 / 4)
    # active accounts A1..A6: decision makers responded at A1..A5 -> 5/6
    assert h["decision_maker_coverage"] == pytest.approx(5 / 6)
    assert h["sla_attainment"] == pytest.approx(1 / 3)
    assert math.isfinite(h["nps"])


# --------------------------------------------------------------------------------------
# Programs that record only responses (no invitations)
# --------------------------------------------------------------------------------------


def response_only_world() -> World:
    """In-app NPS: accounts, contacts, responses and a follow-up, no invitation at all."""
    w = World()
    w.account("A", tier="B", segment="ent")
    w.account("B", tier="C", segment="smb")
    w.contact("a1", "A", "decision_maker")
    w.contact("a2", "A", "influencer")
    w.contact("a3", "A", "user", opted_out=True)  # on file, not eligible
    w.contact("a4", "A", "user", is_active=False)  # neither
    w.contact("b1", "B", "user")
    w.respond("a1", "2025-02-01", 10)
    r = w.respond("a2", "2025-03-01", 6)
    w.follow_up(r, "2025-03-01 01:00", "2025-03-01 09:00")
    w.respond("a1", "2025-04-20", None)  # unscored
    w.respond("b1", "2025-05-01", 8, survey="s_tx")
    return w


def test_response_only_program_fills_every_mart():
    m = response_only_world().marts()
    # periods come from the responses: Q1 (first response) .. Q2 (holds as_of - 1 us)
    cov = m["contact_coverage"]
    cells = list(zip(cov["period_start"], cov["account_id"], strict=True))
    assert cells == [(Q1, "A"), (Q1, "B"), (Q2, "A"), (Q2, "B")]
    a = one(cov, period_start=Q1, account_id="A")
    # tier B needs 2/2/2 = 6; responded: decision maker a1 and influencer a2 -> 2 of 6; nobody invited
    assert (a["slots_required"], a["slots_invited"], a["slots_responded"]) == (6, 0, 2)
    assert bool(a["has_decision_maker_response"]) and not a["is_single_threaded"]
    b = one(cov, period_start=Q2, account_id="B")
    assert (b["slots_required"], b["slots_responded"]) == (3, 1) and bool(b["is_single_threaded"])

    # n_eligible from the contacts: A has a1, a2 (a3 opted out, a4 inactive), B has b1
    an = m["account_nps"]
    pooled = one(an, period_start=Q1, account_id="A", method="pooled")
    assert (pooled["n_scored"], pooled["n_eligible"], pooled["promoters"], pooled["detractors"]) == (2, 2, 1, 1)
    # n = N = 2: the finite-population correction (2 - 2) / (2 - 1) = 0 takes the variance to 0
    assert pooled["nps"] == 0.0 and pooled["var_pts"] == 0.0
    assert (pooled["ci_low"], pooled["ci_high"]) == (0.0, 0.0)
    assert one(an, period_start=Q2, account_id="B", method="pooled")["n_eligible"] == 1
    resp = one(
        m["portfolio_nps"], period_start=Q1, survey_type="relationship", group_type="company", method="respondent"
    )
    assert (resp["n_scored"], resp["n_eligible"]) == (2, 3)  # eligible contacts of both active accounts

    # response_rate: every row says the rate is not measured, none vanishes
    rr = m["response_rate"]
    assert len(rr) == 15  # (Q1 rel: A), (Q2 rel: A), (Q2 tx: B) x 5 group types
    assert set(rr["rate_basis"]) == {"no_invitations"}
    assert (rr["delivered"] == 0).all() and (rr["accounts_delivered"] == 0).all()
    assert rr["response_rate"].isna().all() and rr["meets_target"].isna().all()
    q1 = one(rr, period_start=Q1, survey_type="relationship", group_type="company")
    assert (q1["responses"], q1["scored_responses"], q1["accounts_responded"]) == (2, 2, 1)
    q2 = one(rr, period_start=Q2, survey_type="relationship", group_type="company")
    assert (q2["responses"], q2["scored_responses"]) == (1, 0)  # a1's unscored response
    assert bool(q1["is_cohort_closed"]) and not q2["is_cohort_closed"]
    assert one(rr, period_start=Q2, survey_type="transactional", group_type="segment")["group_value"] == "smb"

    sla = one(m["follow_up_sla"], contact_id="a2")
    assert sla["sla_status"] == "met"


def test_mixed_program_measures_only_the_survey_types_that_send_invitations():
    w = response_only_world()
    i = w.invite("a1", "2025-01-20")  # relationship sent invitations in Q1 only
    w.rows["responses"][0]["invitation_id"] = i
    rr = w.marts()["response_rate"]
    q1 = one(rr, period_start=Q1, survey_type="relationship", group_type="company")
    # measured: 1 delivered, answered within the window; a2's unlinked response is no invitation's
    assert (q1["rate_basis"], q1["delivered"], q1["responses"], q1["response_rate"]) == ("invitations", 1, 1, 1.0)
    # Q2 sent no relationship invitation, transactional never did: not measured
    assert one(rr, period_start=Q2, survey_type="relationship", group_type="company")["rate_basis"] == "no_invitations"
    assert one(rr, period_start=Q2, survey_type="transactional", group_type="company")["rate_basis"] == "no_invitations"
    assert set(rr[rr["period_start"] == Q1]["rate_basis"]) == {"invitations"}


def test_the_earliest_follow_up_opens_the_spine_too():
    w = response_only_world()
    w.rows["follow_ups"][0]["created_at"] = T("2024-12-30")  # before every response
    cov = w.marts()["contact_coverage"]
    assert sorted(cov["period_start"].unique()) == [date(2024, 10, 1), Q1, Q2]
