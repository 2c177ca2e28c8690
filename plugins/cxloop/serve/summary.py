"""The run summary: what was extracted, loaded and quarantined, and the headline metrics.

Every number and every target is read from the marts, never recomputed here: the headline is
the company row (``group_type = 'company'``) of ``marts.governance_kpis`` for the latest period
before as_of (value, interval, n, target, meets_target, is_reportable), with two counts the
KPI mart does not carry taken from the marts they come from: responses
(``marts.response_rate``, with its ``rate_basis`` when the mart has it) and met follow-ups, the
SLA clock and its first-contact target hours (``marts.follow_up_attainment``). The period is the
program's grain (a month under ``period_grain: month``), and the summary says which. The gate's
failed ``warn`` checks of the run's batches (``marts.data_quality``) are listed as lines.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from cxloop.config import redact
from cxloop.serve.reader import WarehouseReader

# the gate's name for "this source handed over nothing" (cxloop.gate.outcome; serve reads the
# store only, so the name is repeated here and tests/integration/test_mapping_drop.py checks it)
EMPTY_SOURCE_EXPECTATION = "cxloop_source_not_empty"

MARTS_READ = ("governance_kpis", "response_rate", "follow_up_attainment")
HEADLINE_KPIS = ("nps_respondent", "response_rate", "decision_maker_coverage", "sla_attainment")
MAX_WARNING_LINES = 20


def period_start(ts: datetime, grain: str = "quarter") -> date:
    """The first day of the period holding ``ts`` (calendar helper; the headline itself takes
    its period from the mart, never from this)."""
    if grain == "month":
        return date(ts.year, ts.month, 1)
    if grain == "quarter":
        return date(ts.year, 3 * ((ts.month - 1) // 3) + 1, 1)
    raise ValueError(f"period grain {grain!r} is not one of quarter, month")


def latest_period(as_of: datetime, grain: str = "quarter") -> date:
    """The period holding the last instant of the data window (as_of is exclusive)."""
    return period_start(as_of - timedelta(microseconds=1), grain)


def _value(x) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def _count(x) -> int:
    return 0 if x is None or pd.isna(x) else int(x)


def _flag(x) -> bool | None:
    return None if x is None or pd.isna(x) else bool(x)


def mart_rows(reader: WarehouseReader, marts: tuple[str, ...]) -> dict[str, int]:
    return {m: int(reader.df(f"select count(*) as n from marts.{m}")["n"].iloc[0]) for m in marts}


def headline(reader: WarehouseReader, as_of: datetime, grain: str | None = None) -> dict:
    """The four headline KPIs of the latest period before as_of, from marts.governance_kpis
    (docs/metric-decisions.md). A KPI without a row is None, with n 0. ``grain`` (the program's
    period_grain) only names the period in the text; the period itself is the mart's."""
    latest = reader.df("select max(period_start) as p from marts.governance_kpis where period_start < ?", [as_of])
    period = latest["p"].iloc[0] if len(latest) else None
    out: dict = {"period_start": None if period is None or pd.isna(period) else pd.Timestamp(period).date().isoformat()}
    out["grain"] = grain
    kpis = pd.DataFrame()
    if out["period_start"] is not None:
        period = pd.Timestamp(period).date()  # a plain date binds in DuckDB and psycopg2 alike
        kpis = reader.df(
            "select kpi, value, ci_low, ci_high, n, target, meets_target, is_reportable from marts.governance_kpis "
            "where period_start = ? and group_type = 'company'",
            [period],
        )
    rows = {r["kpi"]: r for r in kpis.to_dict("records")}
    for kpi in HEADLINE_KPIS:
        r = rows.get(kpi, {})
        out[kpi] = {
            "value": _value(r.get("value")),
            "ci_low": _value(r.get("ci_low")),
            "ci_high": _value(r.get("ci_high")),
            "n": _count(r.get("n")),
            "target": _value(r.get("target")),
            "meets_target": _flag(r.get("meets_target")),
            "is_reportable": _flag(r.get("is_reportable")),
        }
    out["responses"] = out["sla_met"] = None
    out["sla_clock"] = out["sla_target_hours"] = out["rate_basis"] = None
    if out["period_start"] is not None:
        rr = reader.df(
            "select * from marts.response_rate where period_start = ? and survey_type = 'relationship' "
            "and group_type = 'company'",
            [period],
        )
        out["responses"] = _count(rr["responses"].iloc[0]) if len(rr) else None
        if len(rr) and "rate_basis" in rr.columns and not pd.isna(rr["rate_basis"].iloc[0]):
            out["rate_basis"] = str(rr["rate_basis"].iloc[0])
        fa = reader.df(
            "select * from marts.follow_up_attainment where period_start = ? and group_type = 'company'",
            [period],
        )
        out["sla_met"] = _count(fa["sla_met"].iloc[0]) if len(fa) else None
        out["sla_clock"] = str(fa["sla_clock"].iloc[0]) if len(fa) else None
        if len(fa) and "first_contact_target_hours" in fa.columns:
            out["sla_target_hours"] = _value(fa["first_contact_target_hours"].iloc[0])
    from cxloop.serve.exports import MARTS

    every = tuple(dict.fromkeys((*MARTS, *MARTS_READ)))
    out["empty_marts"] = [m for m, n in mart_rows(reader, every).items() if n == 0]
    return out


def quality_warnings(reader: WarehouseReader, batch_ids: list[str]) -> list[dict]:
    """The failed ``warn`` checks of the given batches (marts.data_quality): entity, column,
    expectation and counts only, never a value. A source's freshness (rows ``source_freshness``)
    is not a check of a batch's rows and is not listed here."""
    dq = reader.df(
        "select batch_id, source, entity, expectation, column_name, rows_checked, unexpected_count, checked_at "
        "from marts.data_quality where severity = 'warn' and not success and expectation <> 'source_freshness'"
    )
    # A source that handed over nothing (an empty drop) loads no data window, so its batch is
    # not among batch_ids: its warning counts when it is the source's latest check.
    latest = reader.df("select source, max(checked_at) as checked_at from marts.data_quality group by source")
    newest = dict(zip(latest["source"], latest["checked_at"], strict=True))
    emptied = (dq["expectation"] == EMPTY_SOURCE_EXPECTATION) & (dq["checked_at"] == dq["source"].map(newest))
    dq = dq[dq["batch_id"].isin(batch_ids or []) | emptied]
    if dq.empty:
        return []
    dq = dq.astype(object).where(dq.notna(), None)
    grouped: dict[tuple, list[int]] = {}
    for r in dq.itertuples():
        key = (r.source or "", r.entity or "", r.column_name or "", r.expectation)
        acc = grouped.setdefault(key, [0, 0])
        acc[0] += _count(r.unexpected_count)
        acc[1] += _count(r.rows_checked)
    return [
        {"source": k[0], "entity": k[1], "column": k[2] or None, "expectation": k[3], "unexpected": v[0], "rows": v[1]}
        for k, v in sorted(grouped.items())
    ]


def load_counts(reader: WarehouseReader, batch_ids: list[str]) -> list[tuple]:
    """(source, entity, received, loaded, quarantined, released) of this run's batches, where
    released counts quarantined rows that a later batch loaded once their parent arrived."""
    batches = reader.df("select source, entity, batch_id, received, loaded, quarantined from raw.batches")
    batches = batches[batches["batch_id"].isin(batch_ids)]
    grouped = batches.groupby(["source", "entity"], as_index=False)[["received", "loaded", "quarantined"]].sum()
    releases = reader.df(
        "select batch_id, entity, count(*) as released from raw.quarantine_releases "
        "where resolution = 'released' group by batch_id, entity"
    )
    releases = releases[releases["batch_id"].isin(batch_ids)].groupby("entity")["released"].sum()
    return [
        (r.source, r.entity, int(r.received), int(r.loaded), int(r.quarantined), int(releases.get(r.entity, 0)))
        for r in grouped.sort_values(["source", "entity"]).itertuples()
    ]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _target(k: dict) -> str:
    if k["target"] is None:
        return "no target"
    verdict = "" if k["meets_target"] is None else (", met" if k["meets_target"] else ", not met")
    return f"target {_pct(k['target'])}{verdict}"


def _small(k: dict) -> str:
    return "  [n below the reporting minimum]" if k["is_reportable"] is False else ""


def render(counts: list[tuple], head: dict, locations: dict[str, Path | str]) -> str:
    lines = ["", "cxloop run summary", "=" * 18, "", "Rows per entity (extracted = loaded + quarantined):"]
    lines.append(f"  {'source':<12}{'entity':<14}{'extracted':>10}{'loaded':>10}{'quarantined':>13}{'released':>10}")
    for source, entity_name, received, loaded, quarantined, released in counts:
        lines.append(f"  {source:<12}{entity_name:<14}{received:>10}{loaded:>10}{quarantined:>13}{released:>10}")
    if any(c[5] for c in counts):
        lines.append("  (released: quarantined only because the parent row had not arrived yet, loaded once it did)")
    if head["period_start"] is None:
        lines += ["", "Headline: marts.governance_kpis has no period before as_of (no data to report)"]
    else:
        nps, rr = head["nps_respondent"], head["response_rate"]
        dm, sla = head["decision_maker_coverage"], head["sla_attainment"]
        grain = head.get("grain")
        period = f"the {grain} starting" if grain in ("month", "quarter") else "period starting"
        lines += ["", f"Headline for {period} {head['period_start']} (marts.governance_kpis, company):"]
        if nps["value"] is not None:
            interval = (
                f"95% CI [{nps['ci_low']:+.1f}, {nps['ci_high']:+.1f}]" if nps["ci_low"] is not None else "no interval"
            )
            lines.append(
                f"  Relationship NPS (respondent): {nps['value']:+.1f}  {interval}, n = {nps['n']}{_small(nps)}"
            )
        else:
            lines.append(f"  Relationship NPS (respondent): no scored responses in this {grain or 'period'}")
        responses = "n/a" if head["responses"] is None else head["responses"]
        if head.get("rate_basis") == "no_invitations":
            lines.append(
                f"  Relationship response rate:    not measured: no invitations ({responses} responses recorded)"
            )
        else:
            lines.append(
                f"  Relationship response rate:    {_pct(rr['value'])} "
                f"({responses} of {rr['n']} delivered; {_target(rr)}){_small(rr)}"
            )
        lines.append(
            f"  Decision-maker coverage:       {_pct(dm['value'])} of {dm['n']} active accounts ({_target(dm)})"
            f"{_small(dm)}"
        )
        met = "n/a" if head["sla_met"] is None else head["sla_met"]
        clock = f"{head['sla_clock']}-clock " if head["sla_clock"] else ""
        hours = head.get("sla_target_hours")
        if hours is not None:
            clock += f"{hours:g} h "
        lines.append(
            f"  Follow-up SLA attainment:      {_pct(sla['value'])} "
            f"({met} of {sla['n']} due follow-ups met the {clock}first-contact target; {_target(sla)}){_small(sla)}"
        )
    if head.get("empty_marts"):
        lines.append(f"  Empty marts: {', '.join(head['empty_marts'])}")
    warnings = head.get("quality_warnings") or []
    if warnings:
        lines += ["", "Data-quality warnings (failed warn checks of this run's batches, marts.data_quality):"]
        for w in warnings[:MAX_WARNING_LINES]:
            where = f"{w['entity']}.{w['column']}" if w["column"] else w["entity"]
            if w["expectation"] == EMPTY_SOURCE_EXPECTATION:
                what = "the drop held no data file: nothing was loaded" if where == "drop" else (
                    "0 rows received, where earlier batches had rows")
                lines.append(f"  {w['source']:<12}{where}: {what}")
                continue
            lines.append(f"  {w['source']:<12}{where}: {w['expectation']} - {w['unexpected']} of {w['rows']} rows")
        if len(warnings) > MAX_WARNING_LINES:
            lines.append(f"  ... and {len(warnings) - MAX_WARNING_LINES} more (marts.data_quality)")
    lines += ["", "Where things are:"]
    for label, path in locations.items():
        lines.append(f"  {label:<13}{redact(path)}")
    return "\n".join(lines) + "\n"
