"""Serving never breaks on empty or sparse marts, and the summary says what it could not measure.

Each test works on one private copy of the session's demo warehouse (tests/conftest.py
``demo_warehouse``, copied with ``warehouse_copy``) and calls the serving functions directly:
snapshot, exports, report and summary.

- every mart emptied in turn (cumulatively, on one copy: the marts emptied so far stay empty),
  up to all of them;
- a single account (every mart keeps only that account's rows);
- a response-only programme: ``response_rate.rate_basis = 'no_invitations'`` makes the summary
  say the response rate is not measured, and still shows NPS, coverage and follow-up figures;
  without the column the rate is shown as before;
- the failed ``warn`` checks of the run's batches are lines of the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _serve_support import sql
from _warehouse_fixture import warehouse_copy
from cxloop import pipeline
from cxloop.serve.exports import MARTS
from cxloop.serve.publish import manifest_path
from cxloop.serve.report import REPORT_MARTS

pytestmark = pytest.mark.e2e

ALL_MARTS = (*MARTS, "follow_up_attainment")




def _serve(settings, as_of, run_id: str, batch_ids=(), *, publish_and_report: bool = True) -> dict:
    exports = Path(pipeline.export(settings, as_of, run_id, "inv-test"))
    out = {
        "exports": exports,
        "manifest": json.loads((exports / "manifest.json").read_text()),
        "summary": pipeline.summarise(settings, as_of, list(batch_ids), str(exports))["text"],
    }
    if publish_and_report:
        out["snapshot"] = pipeline.publish(settings, as_of, run_id, "inv-test")
        out["report"] = Path(pipeline.report(settings, as_of, run_id, "inv-test")).read_text()
    return out


@pytest.fixture
def copy(demo_warehouse, tmp_path):
    return warehouse_copy(demo_warehouse, tmp_path / "var")


def test_serving_succeeds_as_each_mart_is_emptied_in_turn(demo_warehouse, copy):
    as_of = demo_warehouse.as_of
    emptied: list[str] = []
    for mart in ALL_MARTS:
        sql(copy, f"delete from marts.{mart}")
        emptied.append(mart)
        # the snapshot copies every mart whatever it holds, and the report reads only REPORT_MARTS:
        # those two run when a mart they read was emptied, and at the end
        full = mart in REPORT_MARTS or mart == ALL_MARTS[-1]
        out = _serve(copy, as_of, f"r-empty-{len(emptied)}", publish_and_report=full)
        exported = [m for m in emptied if m in MARTS]
        assert out["manifest"]["empty_marts"] == exported, mart
        for m in exported:
            assert len(pd.read_parquet(out["exports"] / f"{m}.parquet")) == 0
            assert len((out["exports"] / f"{m}.csv").read_text().splitlines()) == 1  # the header alone
        assert "Empty marts: " + ", ".join(emptied) in out["summary"], mart
        if full:
            if out["snapshot"]:
                assert json.loads(manifest_path(Path(out["snapshot"])).read_text())["empty_marts"] == exported
            shown = [m for m in emptied if m in REPORT_MARTS]
            assert "Empty marts: " + ", ".join(shown) in out["report"], mart
    # nothing left: the summary says there is nothing to report rather than failing
    assert "has no period before as_of (no data to report)" in out["summary"]


def test_serving_succeeds_with_a_single_account(demo_warehouse, copy):
    import duckdb

    con = duckdb.connect(str(copy.warehouse_path), read_only=True)
    try:
        account = con.execute(
            "select account_id from marts.account_nps where period_start < ? group by account_id "
            "order by count(*) desc, account_id limit 1", [demo_warehouse.as_of]
        ).fetchone()[0]
    finally:
        con.close()
    statements = []
    for mart in ("account_nps", "contact_coverage", "follow_up_sla", "at_risk_accounts"):
        statements.append(f"delete from marts.{mart} where account_id <> '{account}'")
    for mart in ("portfolio_nps", "response_rate", "governance_kpis", "follow_up_attainment"):
        # one account: the account group of that account and the company row are all there is
        statements.append(
            f"delete from marts.{mart} where not (group_type = 'company' or "
            f"(group_type = 'account' and group_value = '{account}'))"
        )
    sql(copy, *statements)
    out = _serve(copy, demo_warehouse.as_of, "r-one-account")
    nps = pd.read_parquet(out["exports"] / "account_nps.parquet")
    assert set(nps.account_id) == {account}
    # one account's respondents are a group below min_n in most periods: suppressed, not dropped
    assert nps.suppressed.any()
    assert "Relationship NPS (respondent):" in out["summary"] and "Decision-maker coverage:" in out["summary"]
    kpis = pd.read_parquet(out["exports"] / "governance_kpis.parquet")
    assert set(kpis.group_type) <= {"company", "account"} and len(kpis) > 0
    assert "<html" in out["report"].lower() and "Traceback" not in out["report"]


def test_summary_says_response_rate_not_measured_without_invitations(demo_warehouse, copy):
    as_of = demo_warehouse.as_of
    before = _serve(copy, as_of, "r-rate")
    assert "Relationship response rate:    " in before["summary"] and "not measured" not in before["summary"]
    assert "not measured: no invitations" not in before["report"]
    import duckdb

    con = duckdb.connect(str(copy.warehouse_path))
    try:
        has_basis = "rate_basis" in {r[0] for r in con.execute("describe marts.response_rate").fetchall()}
        if not has_basis:
            con.execute("alter table marts.response_rate add column rate_basis varchar default 'invitations'")
        con.execute("update marts.response_rate set rate_basis = 'no_invitations'")
        con.execute("checkpoint")
    finally:
        con.close()
    out = _serve(copy, as_of, "r-no-inv")
    text = out["summary"]
    assert "Relationship response rate:    not measured: no invitations" in text
    assert "response rate not measured: no invitations" in out["report"]
    # the other headline figures are still there, read from the marts
    assert "Relationship NPS (respondent): " in text and "no scored responses" not in text
    assert "Decision-maker coverage:       " in text and "Follow-up SLA attainment:      " in text
    # a mart without the column (an older build): the rate is shown the usual way
    sql(copy, "alter table marts.response_rate drop column rate_basis")
    text = _serve(copy, as_of, "r-no-col")["summary"]
    assert "not measured" not in text and " delivered; target " in text


def test_summary_lists_the_runs_failed_warn_checks(demo_warehouse, copy):
    import duckdb

    con = duckdb.connect(str(copy.warehouse_path))
    try:
        batch, source, checked = con.execute(
            "select batch_id, source, max(checked_at) from marts.data_quality group by all order by 1 limit 1"
        ).fetchone()
        con.execute(
            "insert into marts.data_quality (batch_id, source, entity, expectation, column_name, severity, success, "
            "rows_checked, unexpected_count, unexpected_fraction, checked_at) values "
            "(?, ?, 'contacts', 'expect_column_values_to_match_regex', 'email_hash', 'warn', false, 200, 7, 0.035, ?)",
            [batch, source, checked],
        )
        con.execute("checkpoint")
    finally:
        con.close()
    text = pipeline.summarise(copy, demo_warehouse.as_of, [batch], None)["text"]
    assert "Data-quality warnings (failed warn checks of this run's batches" in text
    assert "contacts.email_hash: expect_column_values_to_match_regex - 7 of 200 rows" in text
    # another run's batches: not this run's warnings
    assert "Data-quality warnings" not in pipeline.summarise(copy, demo_warehouse.as_of, ["other"], None)["text"]


def test_summary_says_when_a_source_handed_over_nothing(demo_warehouse, copy):
    """An empty drop loads no data window, so its batch is not among the run's batches: its
    warning is shown while it is the source's latest check, and no longer once a later batch of
    that source has been checked."""
    import datetime as dt

    import duckdb
    from cxloop.gate.outcome import EMPTY_SOURCE_EXPECTATION
    from cxloop.serve import summary

    assert summary.EMPTY_SOURCE_EXPECTATION == EMPTY_SOURCE_EXPECTATION
    con = duckdb.connect(str(copy.warehouse_path))
    try:
        source, newest = con.execute(
            "select source, max(checked_at) from marts.data_quality group by source order by 1 limit 1"
        ).fetchone()
        insert = (
            "insert into marts.data_quality (batch_id, source, entity, expectation, column_name, severity, success, "
            "rows_checked, unexpected_count, unexpected_fraction, checked_at) values "
            "(?, ?, ?, ?, null, 'warn', false, 0, 1, null, ?)"
        )
        con.execute(insert, ["empty-1", source, "drop", EMPTY_SOURCE_EXPECTATION, newest + dt.timedelta(hours=1)])
        con.execute(insert, ["older-1", source, "accounts", EMPTY_SOURCE_EXPECTATION, newest - dt.timedelta(days=9)])
        con.execute("checkpoint")
    finally:
        con.close()
    text = pipeline.summarise(copy, demo_warehouse.as_of, ["some-batch"], None)["text"]
    assert f"{source:<12}drop: the drop held no data file: nothing was loaded" in text
    assert "accounts: 0 rows received" not in text, "an older emptiness, since superseded, is not this run's"
