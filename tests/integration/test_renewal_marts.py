"""Revenue at risk and "does NPS predict renewal" on the session's demo warehouse (seed 11,
scale 0.2; tests/_warehouse_fixture.py): the renewals went demo generator -> Salesforce demo
server -> connector -> gate -> dbt. Read from a private copy of the shared warehouse."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest
from _mart_compare import compare_with_oracle
from _warehouse_fixture import warehouse_copy
from cxloop.contract import ENTITY_ORDER


@pytest.fixture(scope="module")
def marts(demo_warehouse, tmp_path_factory):
    settings = warehouse_copy(demo_warehouse, tmp_path_factory.mktemp("renewal-marts"))
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        names = ("nps_renewal_outcomes", "revenue_at_risk", "governance_kpis", "at_risk_accounts")
        out = {m: con.execute(f"select * from marts.{m}").df() for m in names}
        out["raw_renewals"] = con.execute("select count(*) from raw.renewals").fetchone()[0]
    finally:
        con.close()
    return demo_warehouse, out


def test_renewals_landed_as_the_generator_served_them(marts):
    wh, got = marts
    assert got["raw_renewals"] == wh.truth["entities"]["renewals"]["expected_loaded"] > 0


def test_promoter_accounts_renew_more_often_than_detractor_accounts(marts):
    """The demo's renewal outcomes depend on account health, as its scores do: the mart finds
    the relationship, and the Newcombe interval of the difference excludes 0."""
    rows = marts[1]["nps_renewal_outcomes"].set_index("account_class")
    assert rows.loc["promoter", "n_renewals"] >= 5 and rows.loc["detractor", "n_renewals"] >= 5, rows
    assert rows.loc["promoter", "renewal_rate"] > rows.loc["detractor", "renewal_rate"], rows
    assert rows.loc["promoter", "net_revenue_retention"] > rows.loc["detractor", "net_revenue_retention"], rows
    difference = rows.loc["promoter_minus_detractor"]
    assert 0 < difference.renewal_rate_ci_low < difference.renewal_rate < difference.renewal_rate_ci_high, rows


@pytest.mark.parametrize("mart", ["nps_renewal_outcomes", "revenue_at_risk"])
def test_renewal_marts_equal_independent_computation(marts, mart):
    import oracle

    wh, got = marts
    truth = wh.source_dir.parent / "truth"  # the generator's truth, never through the pipeline
    tables = {e: pd.read_parquet(truth / f"{e}.parquet") for e in ENTITY_ORDER}
    compare_with_oracle(mart, got[mart], oracle.compute_marts(tables, wh.as_of)[mart])


def test_revenue_at_risk_adds_up_to_at_risk_accounts_and_the_governance_kpis(marts):
    _, got = marts
    rar, kpis, risky = got["revenue_at_risk"], got["governance_kpis"], got["at_risk_accounts"]
    flagged = risky[risky.has_detractor_decision_maker | risky.has_no_decision_maker_response]
    assert rar.n_at_risk.sum() == len(flagged) > 0
    assert rar.arr_at_risk.sum() == pytest.approx(flagged.arr.fillna(0).sum(), rel=1e-12)
    kpi = kpis[kpis.kpi == "arr_at_risk"].set_index("group_value")
    assert kpi.loc["all", "value"] == pytest.approx(rar.arr_at_risk.sum(), rel=1e-12)
    assert kpi.loc["all", "n"] == len(flagged) and kpi.loc["all", "period_start"] == rar.period_start.max()
