"""The program settings reach dbt: with CXLOOP_PROGRAM_PERIOD_GRAIN=month and
CXLOOP_PROGRAM_SLA_CLOCK=business set in the environment (no var passed by hand), a dbt run
through the pipeline's runner (cxloop.transform.dbt, the code pipeline.build calls) builds monthly
periods and the business clock - proven by the marts' rows, not by the command line - and the
summary names the month and the business clock's target hours.

It works on a copy of the session's demo warehouse and rebuilds only the follow-up marts and what
they need (not the whole project)."""

from __future__ import annotations

import os
from datetime import date

import pandas as pd
import pytest
from _warehouse_fixture import warehouse_copy
from cxloop import pipeline

pytestmark = pytest.mark.e2e


def test_period_grain_and_sla_clock_from_the_environment_reach_the_marts(demo_warehouse, tmp_path, monkeypatch):
    from cxloop.serve.reader import WarehouseReader
    from cxloop.transform.dbt import run_dbt

    copy = warehouse_copy(demo_warehouse, tmp_path / "var")
    as_of = demo_warehouse.as_of
    monkeypatch.setenv("CXLOOP_PROGRAM_PERIOD_GRAIN", "month")
    monkeypatch.setenv("CXLOOP_PROGRAM_SLA_CLOCK", "business")
    monkeypatch.setenv("CXLOOP_PROGRAM_SLA_FIRST_CONTACT_BUSINESS_HOURS", "24")
    before = os.environ.get("CXLOOP_WAREHOUSE")
    try:
        result = run_dbt("run", copy, as_of, select=["+follow_up_attainment"])
    finally:
        if before is None:
            os.environ.pop("CXLOOP_WAREHOUSE", None)
        else:
            os.environ["CXLOOP_WAREHOUSE"] = before
    assert result.success
    with WarehouseReader(copy) as reader:  # the pipeline's connection settings: dbt still holds the file
        months = set(pd.to_datetime(reader.df("select distinct period_start from marts.follow_up_attainment")
                                    ["period_start"]).dt.date)
        periods = set(pd.to_datetime(reader.df("select distinct period_start from intermediate.int_periods")
                                     ["period_start"]).dt.date)
        clocks = reader.df("select distinct sla_clock, first_contact_target_hours from marts.follow_up_attainment")
        sla = reader.df(
            "select count(*) as n, count(*) filter (where sla_status = sla_status_business) as business, "
            "count(*) filter (where sla_status <> sla_status_calendar) as differ from marts.follow_up_sla"
        ).iloc[0]
    # monthly periods: months that do not start a quarter, and consecutive months
    assert any(p.month not in (1, 4, 7, 10) for p in months), sorted(months)
    assert {date(2026, 8, 1), date(2026, 9, 1)} <= periods
    assert list(clocks.itertuples(index=False, name=None)) == [("business", 24.0)]
    assert sla["n"] > 0 and sla["business"] == sla["n"] and sla["differ"] > 0  # the business clock decides, and differs
    # the summary (marts governance_kpis were left quarterly: it names the grain it was told and
    # the follow-up mart's clock and hours)
    text = pipeline.summarise(copy, as_of, [], None)["text"]
    assert "Headline for the month starting" in text
    assert "met the business-clock 24 h first-contact target" in text
