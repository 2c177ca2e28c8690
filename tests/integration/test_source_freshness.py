"""`dbt source freshness` before each build, judged against the run's as_of (macros/freshness.sql),
kept in raw.source_freshness and shown in marts.data_quality; a source in error is posted to the
alert webhook (a real HTTP server on the loopback).

The shared demo warehouse was built by pipeline.build, freshness included: at its own as_of every
source table is fresh. A private copy judged as of ten days later (the data stopped arriving) has
every table in error, and the webhook receives them."""

from __future__ import annotations

import shutil
from datetime import timedelta

import duckdb
from _serve_support import copy_warehouse
from cxloop.alerts import WEBHOOK_ENV
from cxloop.contract import ENTITIES
from cxloop.program import SETTINGS
from cxloop.transform.dbt import target_dir

WARN, ERROR = SETTINGS["freshness_warn_hours"].default, SETTINGS["freshness_error_hours"].default
COLUMNS = "source, entity, batch_id, severity, success, freshness_status, loaded_up_to, reference_at, age_hours"


def freshness_rows(settings) -> list[dict]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        cur = con.execute(
            f"select {COLUMNS}, warn_after_hours, error_after_hours, checked_at from marts.data_quality "
            "where check_kind = 'freshness' order by entity"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


def windows(settings) -> dict[str, tuple]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {
            e: (s, b)
            for s, e, b in con.execute("select source, entity, batch_id from raw.extraction_windows").fetchall()
        }
    finally:
        con.close()


def test_the_demo_build_judged_every_source_table_fresh_at_its_as_of(demo_warehouse):
    rows = freshness_rows(demo_warehouse.settings)
    landed = windows(demo_warehouse.settings)
    assert [r["entity"] for r in rows] == sorted(ENTITIES), rows
    for r in rows:
        assert (r["freshness_status"], r["success"], r["severity"]) == ("pass", True, "warn"), r
        assert r["loaded_up_to"] == r["reference_at"] == demo_warehouse.as_of and r["age_hours"] == 0, r
        assert (r["warn_after_hours"], r["error_after_hours"]) == (WARN, ERROR)
        assert (r["source"], r["batch_id"]) == landed[r["entity"]], r  # the batch that loaded the window
        assert r["checked_at"] is None  # no wall-clock time in a freshness row
    assert demo_warehouse.build_report["freshness"]["counts"] == {"pass": len(ENTITIES)}


def test_a_stale_source_is_an_error_row_and_an_alert(demo_warehouse, tmp_path, webhook, monkeypatch):
    from cxloop import pipeline
    from cxloop.transform.dbt import run_dbt

    url, received = webhook
    for name in ("CXLOOP_WAREHOUSE", "CXLOOP_DBT_EXPORTS_DIR"):  # run_dbt sets them: restored after
        monkeypatch.setenv(name, "unset")
    monkeypatch.setenv(WEBHOOK_ENV, url)
    settings = copy_warehouse(demo_warehouse.settings, tmp_path / "var")
    parse = target_dir(demo_warehouse.settings) / "partial_parse.msgpack"  # same project and vars
    target_dir(settings).mkdir(parents=True)
    shutil.copy2(parse, target_dir(settings) / parse.name)
    late = demo_warehouse.as_of + timedelta(days=10)  # no data for ten days: 240 h > the error threshold

    checked = pipeline.check_freshness(settings, late)
    assert checked["counts"] == {"error": len(ENTITIES)}, checked
    run_dbt("build", settings, late, select=["+data_quality"])

    rows = freshness_rows(settings)
    assert [r["entity"] for r in rows] == sorted(ENTITIES)
    for r in rows:
        assert (r["freshness_status"], r["success"], r["severity"]) == ("error", False, "error"), r
        assert r["loaded_up_to"] == demo_warehouse.as_of and r["reference_at"] == late and r["age_hours"] == 240, r
    assert len(received) == 1, received
    alert = received[0]
    assert alert["kind"] == "source_freshness" and alert["as_of"] == late.isoformat()
    assert sorted(t["table"] for t in alert["tables"]) == sorted(f"{ENTITIES[e].domain}.{e}" for e in ENTITIES), alert
    assert {(t["status"], t["age_hours"]) for t in alert["tables"]} == {("error", 240.0)}
    assert "crm.accounts (240.0 h behind)" in alert["text"]

    # judged again for the same as_of: the same rows (the wall clock plays no part), replaced not added
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    query = "select * exclude (invocation_id, recorded_at) from raw.source_freshness where as_of = ? order by all"
    first = con.execute(query, [late]).fetchall()
    con.close()
    pipeline.check_freshness(settings, late)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    assert con.execute(query, [late]).fetchall() == first and len(first) == len(ENTITIES)
    con.close()
    assert len(received) == 2
