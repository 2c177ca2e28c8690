"""The run summary: what was extracted, loaded and quarantined, and the headline metrics."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from cxloop.serve.reader import WarehouseReader


def period_start(ts: datetime, grain: str = "quarter") -> date:
    if grain == "month":
        return date(ts.year, ts.month, 1)
    if grain == "quarter":
        return date(ts.year, 3 * ((ts.month - 1) // 3) + 1, 1)
    raise ValueError(f"period grain {grain!r} is not one of quarter, month")


def latest_period(as_of: datetime, grain: str = "quarter") -> date:
    """The period holding the last instant of the data window (as_of is exclusive)."""
    return period_start(as_of - timedelta(microseconds=1), grain)


def _rows(reader: WarehouseReader, mart: str, period: date, where: str = "") -> pd.DataFrame:
    return reader.df(f"select * from marts.{mart} where period_start = ? {where}", [period])


def headline(reader: WarehouseReader, as_of: datetime, grain: str = "quarter") -> dict:
    """The four headline numbers of the latest period (docs/metric-decisions.md)."""
    period = latest_period(as_of, grain)
    out: dict = {"period_start": period.isoformat()}
    nps = _rows(
        reader,
        "portfolio_nps",
        period,
        "and survey_type = 'relationship' and group_type = 'company' and method = 'respondent'",
    )
    first = nps.iloc[0] if len(nps) else None
    out["nps"] = None if first is None else float(first["nps"])
    out["nps_ci_low"] = None if first is None else float(first["ci_low"])
    out["nps_ci_high"] = None if first is None else float(first["ci_high"])
    out["nps_n"] = 0 if first is None else int(first["n_scored"])
    rr = _rows(reader, "response_rate", period, "and survey_type = 'relationship' and group_type = 'company'")
    out["response_rate"] = float(rr.iloc[0]["response_rate"]) if len(rr) else None
    out["delivered"] = int(rr.iloc[0]["delivered"]) if len(rr) else 0
    out["responses"] = int(rr.iloc[0]["responses"]) if len(rr) else 0
    cov = _rows(reader, "contact_coverage", period)
    out["active_accounts"] = len(cov)
    out["decision_maker_coverage"] = float(cov["has_decision_maker_response"].astype(bool).mean()) if len(cov) else None
    sla = _rows(reader, "follow_up_sla", period)
    met = int((sla["sla_status"] == "met").sum())
    due = int(sla["sla_status"].isin(["met", "breached", "missing"]).sum())
    out["sla_met"], out["sla_due"] = met, due
    out["sla_attainment"] = (met / due) if due else None
    return out


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


def render(counts: list[tuple], head: dict, locations: dict[str, Path | str]) -> str:
    lines = ["", "cxloop run summary", "=" * 18, "", "Rows per entity (extracted = loaded + quarantined):"]
    lines.append(f"  {'source':<12}{'entity':<14}{'extracted':>10}{'loaded':>10}{'quarantined':>13}{'released':>10}")
    for source, entity_name, received, loaded, quarantined, released in counts:
        lines.append(f"  {source:<12}{entity_name:<14}{received:>10}{loaded:>10}{quarantined:>13}{released:>10}")
    if any(c[5] for c in counts):
        lines.append("  (released: quarantined only because the parent row had not arrived yet, loaded once it did)")
    lines += ["", f"Headline for period starting {head['period_start']}:"]
    if head.get("nps") is not None:
        lines.append(
            f"  Relationship NPS (respondent): {head['nps']:+.1f}  "
            f"95% CI [{head['nps_ci_low']:+.1f}, {head['nps_ci_high']:+.1f}], n = {head['nps_n']}"
        )
    else:
        lines.append("  Relationship NPS (respondent): no scored responses")
    lines.append(
        f"  Relationship response rate:    {_pct(head['response_rate'])} "
        f"({head['responses']} of {head['delivered']} delivered; target 70%)"
    )
    lines.append(
        f"  Decision-maker coverage:       {_pct(head['decision_maker_coverage'])} "
        f"of {head['active_accounts']} active accounts"
    )
    lines.append(
        f"  Follow-up SLA attainment:      {_pct(head['sla_attainment'])} "
        f"({head['sla_met']} of {head['sla_due']} due follow-ups met 48 h; target 80%)"
    )
    lines += ["", "Where things are:"]
    for label, path in locations.items():
        lines.append(f"  {label:<13}{path}")
    return "\n".join(lines) + "\n"
