"""A program that records only responses (in-app or web NPS, no invitations) fills every mart.

A small generated demo world is turned into a response-only file drop
(cxloop.demo.response_only: no invitations file, no response linked to an invitation), then
extracted, gated, loaded and built with dbt on DuckDB in a scratch folder - the pipeline
functions called directly, no Airflow. The marts are checked against the independent pandas
oracle (tests/oracle.py) computed from the generator's truth with the invitations taken out, and
against the contract: periods, populations (n_eligible from the contacts), coverage and
governance fill; response_rate says the rate is not measured instead of vanishing.
"""

from __future__ import annotations

from datetime import datetime

import _background
import duckdb
import pandas as pd
import pytest
from _mart_compare import MART_KEYS, compare_with_oracle
from _warehouse_fixture import build_marts
from cxloop import pipeline
from cxloop.config import Settings, SourceSettings
from cxloop.contract import ENTITY_ORDER
from cxloop.demo.generator import generate
from cxloop.demo.response_only import write_response_only_drop

AS_OF = datetime(2026, 10, 1)
SEED = 11
SCALE = 0.1

MARTS = (*MART_KEYS, "governance_kpis", "at_risk_accounts")


@pytest.fixture(scope="module")
def response_only():
    return _background.result("response_only")


@_background.prestart("response_only")
def _response_only(_param=None) -> dict:
    """The drop written, extracted, gated, loaded and built (in a background process while other
    tests run: tests/_background.py); small values only, the tests read the warehouse."""
    var = _background.workdir("response-only")
    generate(var / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    written = write_response_only_drop(var / "demo", var / "drop")
    settings = Settings.from_env({"CXLOOP_VAR": str(var / "var")})
    batch = pipeline.extract(SourceSettings("files", "", "", {"drop_dir": str(var / "drop")}), settings, AS_OF)
    pipeline.validate_and_load([batch], settings, AS_OF)
    build_marts(settings, AS_OF)
    return {"written": written, "var": var, "warehouse": settings.warehouse_path}


@pytest.fixture(scope="module")
def built(response_only):
    var = response_only["var"]
    con = duckdb.connect(str(response_only["warehouse"]), read_only=True)  # the pipeline's warehouse
    try:
        marts = {m: con.execute(f"select * from marts.{m}").df() for m in MARTS}
        raw = {e: con.execute(f"select count(*) from raw.{e}").fetchone()[0] for e in ENTITY_ORDER}
        linked = con.execute("select count(invitation_id) from raw.responses").fetchone()[0]
    finally:
        con.close()
    truth = {e: pd.read_parquet(var / "demo" / "truth" / f"{e}.parquet") for e in ENTITY_ORDER}
    # the response-only program's truth: the demo's, without invitations or links to them
    truth["invitations"] = truth["invitations"].iloc[0:0]
    truth["responses"] = truth["responses"].assign(invitation_id=None)
    return {
        "written": response_only["written"],
        "marts": marts,
        "raw": raw,
        "linked": linked,
        "truth": truth,
        "drop": var / "drop",
    }


@pytest.fixture(scope="module")
def oracle_marts(built):
    import oracle

    return oracle.compute_marts(built["truth"], AS_OF)


def test_the_warehouse_is_free_for_another_process_once_the_build_returned(response_only):
    """dbt ran in the background process, which is still alive: its DuckDB lock was released
    when dbt returned (transform.dbt), so this process can open the warehouse for writing."""
    con = duckdb.connect(str(response_only["warehouse"]))
    try:
        assert con.execute("select count(*) from marts.account_nps").fetchone()[0] > 0
    finally:
        con.close()


def test_the_drop_has_no_invitations_and_nothing_is_lost(built):
    assert "invitations" not in built["written"]
    assert not list(built["drop"].glob("invitations*"))
    assert built["raw"]["invitations"] == 0
    assert built["raw"]["responses"] > 500 and built["linked"] == 0


@pytest.mark.parametrize("mart", ["portfolio_nps", "contact_coverage", "governance_kpis", "at_risk_accounts"])
def test_marts_that_were_empty_without_invitations_fill(built, mart):
    assert len(built["marts"][mart]) > 0, f"marts.{mart} is empty for a response-only program"


def test_every_period_with_responses_is_in_the_coverage_and_population_marts(built):
    m = built["marts"]
    response_periods = set(pd.to_datetime(m["account_nps"]["period_start"]).dt.date)
    for mart in ("contact_coverage", "portfolio_nps"):
        got = set(pd.to_datetime(m[mart]["period_start"]).dt.date)
        assert response_periods <= got, f"{mart} misses periods {sorted(response_periods - got)}"


def test_n_eligible_is_the_eligible_contacts_of_the_account(built):
    contacts = built["truth"]["contacts"]
    live = contacts[~contacts["is_deleted"].fillna(False).astype(bool)]
    eligible = live[live["is_active"].fillna(False).astype(bool) & ~live["opted_out"].fillna(False).astype(bool)]
    wanted = eligible.groupby("account_id").size()
    an = built["marts"]["account_nps"]
    got = an.groupby("account_id")["n_eligible"].agg(["min", "max"])
    assert (got["min"] == got["max"]).all()  # one CRM state: the same N in every period
    expected = wanted.reindex(got.index).fillna(0).astype(int)
    assert (got["max"] == expected).all(), got[got["max"] != expected].head()
    assert (an["n_eligible"] > 0).mean() > 0.95  # the finite-population correction applies


def test_response_rate_says_not_measured(built):
    rr = built["marts"]["response_rate"]
    assert len(rr) > 0
    assert set(rr["rate_basis"]) == {"no_invitations"}
    assert (rr["delivered"] == 0).all() and rr["response_rate"].isna().all() and rr["meets_target"].isna().all()
    assert (rr["responses"] >= rr["scored_responses"]).all() and rr["responses"].sum() > 0
    kpi = built["marts"]["governance_kpis"]
    rate = kpi[kpi["kpi"] == "response_rate"]
    assert len(rate) > 0 and rate["value"].isna().all() and (rate["n"] == 0).all()
    assert rate["meets_target"].isna().all() and not rate["is_reportable"].any()
    # the other KPIs are measured
    coverage = kpi[(kpi["kpi"] == "account_coverage") & (kpi["group_type"] == "company")]
    assert len(coverage) >= 7 and coverage["value"].notna().all()


@pytest.mark.parametrize("mart", sorted(MART_KEYS))
def test_mart_equals_independent_computation(built, oracle_marts, mart):
    actual, wanted = built["marts"][mart], oracle_marts[mart]
    assert len(actual) > 0 and len(actual) == len(wanted), (len(actual), len(wanted))
    compare_with_oracle(mart, actual, wanted)


def test_mixed_drop_keeps_the_invitations_of_the_invited_survey_types_only(tmp_path):
    """The writer's mixed program: relationship surveys sent by e-mail (invitations and links
    kept), transactional ones answered in the app (no invitations, no links); read back
    through the file-drop reader, every file of every format agrees."""
    from cxloop.extract.files import extract_files

    generate(tmp_path / "demo", seed=SEED, scale=0.05, as_of=AS_OF)
    written = write_response_only_drop(tmp_path / "demo", tmp_path / "drop", invited_survey_types=["relationship"])
    assert written["invitations"] and len(written["responses"]) == 3  # csv, jsonl, parquet parts
    frames = extract_files(tmp_path / "drop", pii_key="test-only-key-not-a-secret").frames
    surveys = frames["surveys"].set_index("survey_id")["survey_type"]
    invitations, responses = frames["invitations"], frames["responses"]
    assert set(invitations["survey_id"].map(surveys)) == {"relationship"}
    truth = pd.read_parquet(tmp_path / "demo" / "truth" / "invitations.parquet")
    assert len(invitations) == int(truth["survey_id"].map(surveys).eq("relationship").sum())
    kind = responses["survey_id"].map(surveys)
    linked = responses["invitation_id"].notna() & responses["invitation_id"].astype(str).str.len().gt(0)
    assert not linked[kind == "transactional"].any()
    assert linked[kind == "relationship"].all() and (kind == "transactional").any()
    with pytest.raises(ValueError, match="unknown survey type"):
        write_response_only_drop(tmp_path / "demo", tmp_path / "drop2", invited_survey_types=["in_app"])
    assert not (tmp_path / "drop2").exists()  # refused before writing anything
