"""The serving layer reads its numbers from the marts and survives what the marts can hold.

- the run summary's and the report's targets come from the marts and the group minimum from
  the program settings (a var or CXLOOP_PROGRAM_* override changes them; no literal in Python);
- publish, exports, report and summary succeed on an empty mart (each one in turn) and on
  single-period data, and say what is empty;
- CSV cells a spreadsheet would evaluate are neutralised (text only; numbers untouched,
  Parquet exact); every value in the report is HTML-escaped;
- a killed publish's temporaries are cleaned by the next publish, and nothing else.

Each test works on a private copy of the shared demo warehouse."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from _serve_support import copy_warehouse, sql
from cxloop import pipeline
from cxloop.serve.exports import MARTS, min_n_group
from cxloop.serve.publish import manifest_path, published_path
from cxloop.serve.report import REPORT_MARTS

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def shared(demo_warehouse):
    return demo_warehouse


@pytest.fixture
def private(shared, tmp_path):
    return copy_warehouse(shared.settings, tmp_path / "var")


def _serve_all(settings, as_of, run_id="r1") -> dict:
    out = {
        "snapshot": pipeline.publish(settings, as_of, run_id, "inv-test"),
        "exports": Path(pipeline.export(settings, as_of, run_id, "inv-test")),
        "report": Path(pipeline.report(settings, as_of, run_id, "inv-test")),
    }
    out["summary"] = pipeline.summarise(settings, as_of, [], str(out["exports"]))
    out["manifest"] = json.loads((out["exports"] / "manifest.json").read_text())
    return out


def _dbt_run(settings, as_of, select, extra_vars):
    from cxloop.transform.dbt import run_dbt

    before = os.environ.get("CXLOOP_WAREHOUSE")
    try:
        result = run_dbt("run", settings, as_of, select=select, extra_vars=extra_vars)
    finally:
        if before is None:
            os.environ.pop("CXLOOP_WAREHOUSE", None)
        else:
            os.environ["CXLOOP_WAREHOUSE"] = before
    assert result.success, result.to_dict()


# -- one source of metric truth ---------------------------------------------------------------


def test_summary_targets_follow_the_dbt_vars(shared, private):
    as_of = shared.as_of
    before = pipeline.summarise(private, as_of, [], None)["text"]
    assert "target 70.0%" in before and "target 80.0%" in before  # the project's defaults
    _dbt_run(
        private, as_of, ["portfolio_coverage", "governance_kpis"],
        {"sla_attainment_target": 0.61, "response_rate_target": 0.55, "coverage_target": 0.66},
    )
    text = pipeline.summarise(private, as_of, [], None)["text"]
    head = json.loads((private.logs_dir / "last_run_summary.json").read_text())["headline"]
    assert head["sla_attainment"]["target"] == 0.61 and head["response_rate"]["target"] == 0.55
    assert "target 61.0%" in text and "target 55.0%" in text and "target 66.0%" in text
    assert "70.0%" not in text and "80.0%" not in text, "a literal target crept back into the summary"
    # the numbers are the mart's, not recomputed
    import duckdb

    con = duckdb.connect(str(private.warehouse_path))
    try:
        value = con.execute(
            "select value from marts.governance_kpis where kpi = 'sla_attainment' and group_type = 'company' "
            "and period_start = ?", [head["period_start"]]
        ).fetchone()[0]
    finally:
        con.close()
    assert head["sla_attainment"]["value"] == value


def test_min_n_comes_from_the_program_settings_and_drives_suppression(shared, private, monkeypatch):
    assert min_n_group(private) == 5
    monkeypatch.setenv("CXLOOP_PROGRAM_MIN_N_GROUP", "40")
    settings = private
    assert min_n_group(settings) == 40
    folder = Path(pipeline.export(settings, shared.as_of, "r-min-n", "inv"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["suppression"]["min_n"] == 40
    kpis = pd.read_parquet(folder / "governance_kpis.parquet")
    assert (kpis.suppressed == (kpis.n < 40)).all() and kpis.suppressed.any() and (~kpis.suppressed).any()
    report = Path(pipeline.report(settings, shared.as_of, "r-min-n", "inv")).read_text()
    assert "Groups with fewer than 40" in report
    assert re.search(r"groups with n (&lt;|\\u0026lt;) 40 not shown", report), "the SLA chart's title"
    monkeypatch.setenv("CXLOOP_PROGRAM_MIN_N_GROUP", "five")
    with pytest.raises(ValueError, match="CXLOOP_PROGRAM_MIN_N_GROUP: 'five' is not allowed for min_n_group"):
        min_n_group(settings)


# -- empty and sparse marts -------------------------------------------------------------------


@pytest.mark.parametrize("mart", [*MARTS, "every mart"])
def test_serving_succeeds_on_an_empty_mart_and_says_so(shared, private, mart):
    emptied = list(MARTS) if mart == "every mart" else [mart]
    sql(private, *[f"delete from marts.{m}" for m in emptied])
    out = _serve_all(private, shared.as_of)
    assert out["manifest"]["empty_marts"] == emptied
    for m in emptied:
        lines = (out["exports"] / f"{m}.csv").read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith(("period_start", "batch", "source", "account_class")), lines
        assert len(pd.read_parquet(out["exports"] / f"{m}.parquet")) == 0
    snapshot = json.loads(manifest_path(Path(out["snapshot"])).read_text())
    assert snapshot["empty_marts"] == emptied
    assert "Empty marts: " + ", ".join(emptied) in out["summary"]["text"]
    report = out["report"].read_text()
    shown = [m for m in emptied if m in REPORT_MARTS]
    if shown:
        assert "Empty marts: " + ", ".join(shown) in report
    else:
        assert "Empty marts" not in report


def test_serving_succeeds_on_single_period_data(shared, private):
    import duckdb

    con = duckdb.connect(str(private.warehouse_path))
    try:
        with_period = [
            t for (t,) in con.execute(
                "select table_name from duckdb_columns() where schema_name = 'marts' and column_name = 'period_start' "
                "and database_name = current_database()"
            ).fetchall()
        ]
    finally:
        con.close()
    assert "account_nps" in with_period
    sql(private, *[
        f"delete from marts.{t} where period_start <> (select max(period_start) from marts.{t} "
        f"where period_start < '{shared.as_of:%Y-%m-%d}')" for t in with_period
    ])
    out = _serve_all(private, shared.as_of)
    nps = pd.read_parquet(out["exports"] / "account_nps.parquet")
    assert nps.period_start.nunique() == 1 and len(nps) > 0
    assert out["manifest"]["empty_marts"] == []
    assert "Relationship NPS (respondent): +" in out["summary"]["text"] or "NPS (respondent): -" in out["summary"][
        "text"]


# -- CSV formula injection and HTML -----------------------------------------------------------

DANGEROUS = ['=HYPERLINK("http://x","y")', "+1", "@SUM(A1)", "-2+3", "\t=1", "\r=1"]


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_neutralised_text_only(shared, private):
    import duckdb

    con = duckdb.connect(str(private.warehouse_path))
    try:
        accounts = [a for (a,) in con.execute(
            "select distinct account_id from marts.account_nps order by account_id limit ?", [len(DANGEROUS)]
        ).fetchall()]
    finally:
        con.close()
    sql(private, *[
        "update marts.account_nps set account_id = '" + bad.replace("'", "''") + f"' where account_id = '{acc}'"
        for bad, acc in zip(DANGEROUS, accounts, strict=True)
    ])
    folder = Path(pipeline.export(private, shared.as_of, "r-csv", "inv"))
    raw = (folder / "account_nps.csv").read_bytes().decode("utf-8")  # no newline translation: \r is data
    assert '"\'=HYPERLINK(""http://x"",""y"")"' in raw and "\"'+1\"" in raw and "\"'@SUM(A1)\"" in raw
    rows = list(csv.DictReader(io.StringIO(raw, newline="")))
    cells = {r["account_id"] for r in rows}
    assert {"'" + bad for bad in DANGEROUS} <= cells
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    # numbers are numbers: negative NPS stays a plain, unquoted -x.xxxxxxxxx
    negative = [r["nps"] for r in rows if r["nps"].startswith("-")]
    assert negative and all(float(v) < 0 and not v.startswith("'") for v in negative)
    assert ",-" in raw
    # Parquet keeps the exact value
    parquet = set(pd.read_parquet(folder / "account_nps.parquet").account_id)
    assert set(DANGEROUS) <= parquet


def test_every_value_in_the_report_is_html_escaped(shared, private):
    clean = Path(pipeline.report(private, shared.as_of, "r-clean", "inv")).read_text()
    evil = '<script>alert("x")</script>'
    sql(
        private,
        "update marts.at_risk_accounts set account_id = '" + evil + "', segment = '<img src=x onerror=alert(1)>', "
        "owner_id = '<b>owner</b>' where risk_rank = (select min(risk_rank) from marts.at_risk_accounts)",
        "update marts.portfolio_nps set group_value = '" + evil + "' where group_type = 'segment' and group_value = "
        "(select min(group_value) from marts.portfolio_nps where group_type = 'segment')",
        "update marts.governance_kpis set group_value = '<script>owner()</script>' where group_type = 'owner' and "
        "group_value = (select min(group_value) from marts.governance_kpis where group_type = 'owner')",
    )
    text = Path(pipeline.report(private, shared.as_of, "r-evil", "inv")).read_text()
    assert text.count("<script") == clean.count("<script"), "a value opened a script element"
    assert "<img" not in text and "<b>owner" not in text and "alert(\"x\")</script>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text  # the at-risk table
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # plotly labels: escaped for plotly's pseudo-HTML, inside JSON that writes "/" as \u002f
    assert "&lt;script&gt;owner()&lt;\\u002fscript&gt;" in text  # an owner on the SLA chart's axis
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;\\u002fscript&gt; interval" in text  # a segment's NPS band


# -- stale publish temporaries ----------------------------------------------------------------


def test_publish_cleans_temporaries_of_killed_publishes_and_nothing_else(shared, private):
    target = published_path(private)
    target.parent.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        stale = [f".cx.duckdb.{dead.pid}.tmp", f".cx.duckdb.{dead.pid}.tmp.wal", f".cx.json.{dead.pid}.tmp"]
        kept = [
            f".cx.duckdb.{alive.pid}.tmp",  # a publish still running
            f".cx.duckdb.{alive.pid}.tmp.wal",
            f".other.duckdb.{dead.pid}.tmp",  # another file's temporaries
            f".cx.json.{dead.pid}.tmp.wal",  # not a pattern publish writes
            f"cx.duckdb.{dead.pid}.tmp",
            ".cx.duckdb.notapid.tmp",
            "notes.txt",
        ]
        for name in stale + kept:
            (target.parent / name).write_text("x")
        marts_dir = target.parent / "marts"  # the Parquet copies' temporaries
        marts_dir.mkdir(exist_ok=True)
        stale_parquet = [f".account_nps.parquet.{dead.pid}.tmp"]
        kept_parquet = [f".account_nps.parquet.{alive.pid}.tmp", "mine.txt"]
        for name in stale_parquet + kept_parquet:
            (marts_dir / name).write_text("x")
        assert pipeline.publish(private, shared.as_of, "r-clean", "inv") == str(target)
        left = {p.name for p in target.parent.iterdir()}
        assert not left & set(stale), left
        assert set(kept) <= left
        assert left == set(kept) | {"cx.duckdb", "cx.json", "marts"}
        left_parquet = {p.name for p in marts_dir.iterdir() if not p.name.endswith(".parquet")}
        assert left_parquet == set(kept_parquet), left_parquet
    finally:
        alive.kill()
        alive.wait()
