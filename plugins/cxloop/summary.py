"""The run summary: what was extracted, loaded and quarantined, and the headline metrics."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb


def period_start(ts: datetime, grain: str = "quarter") -> date:
    if grain == "month":
        return date(ts.year, ts.month, 1)
    if grain == "quarter":
        return date(ts.year, 3 * ((ts.month - 1) // 3) + 1, 1)
    raise ValueError(f"period grain {grain!r} is not one of quarter, month")


def latest_period(as_of: datetime, grain: str = "quarter") -> date:
    """The period holding the last instant of the data window (as_of is exclusive)."""
    return period_start(as_of - timedelta(microseconds=1), grain)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list) -> tuple | None:
    return con.execute(sql, params).fetchone()


def headline(con: duckdb.DuckDBPyConnection, as_of: datetime, grain: str = "quarter") -> dict:
    period = latest_period(as_of, grain)
    out: dict = {"period_start": period.isoformat()}
    row = _one(
        con,
        """select nps, ci_low, ci_high, n_scored from marts.portfolio_nps
           where period_start = ? and survey_type = 'relationship' and group_type = 'company'
             and method = 'respondent'""",
        [period],
    )
    out["nps"], out["nps_ci_low"], out["nps_ci_high"], out["nps_n"] = row if row else (None, None, None, 0)
    row = _one(
        con,
        """select response_rate, delivered, responses from marts.response_rate
           where period_start = ? and survey_type = 'relationship' and group_type = 'company'""",
        [period],
    )
    out["response_rate"], out["delivered"], out["responses"] = row if row else (None, 0, 0)
    row = _one(
        con,
        """select avg(case when has_decision_maker_response then 1.0 else 0.0 end), count(*)
           from marts.contact_coverage where period_start = ?""",
        [period],
    )
    out["decision_maker_coverage"], out["active_accounts"] = row if row else (None, 0)
    row = _one(
        con,
        """select count(*) filter (where sla_status = 'met'),
                  count(*) filter (where sla_status in ('met', 'breached', 'missing'))
           from marts.follow_up_sla where period_start = ?""",
        [period],
    )
    met, due = row if row else (0, 0)
    out["sla_met"], out["sla_due"] = met, due
    out["sla_attainment"] = (met / due) if due else None
    return out


def load_counts(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> list[tuple]:
    if not batch_ids:
        return []
    return con.execute(
        """select source, entity, sum(received), sum(loaded), sum(quarantined)
           from raw.batches where batch_id in (select unnest(?)) group by 1, 2 order by 1, 2""",
        [batch_ids],
    ).fetchall()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render(counts: list[tuple], head: dict, locations: dict[str, Path | str]) -> str:
    lines = ["", "cxloop run summary", "=" * 18, "", "Rows per entity (extracted = loaded + quarantined):"]
    lines.append(f"  {'source':<12}{'entity':<14}{'extracted':>10}{'loaded':>10}{'quarantined':>13}")
    for source, entity_name, received, loaded, quarantined in counts:
        lines.append(f"  {source:<12}{entity_name:<14}{received:>10}{loaded:>10}{quarantined:>13}")
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
        f"  Decision-maker coverage:       {_pct(head['decision_maker_coverage'])} of {head['active_accounts']} active accounts"
    )
    lines.append(
        f"  Follow-up SLA attainment:      {_pct(head['sla_attainment'])} "
        f"({head['sla_met']} of {head['sla_due']} due follow-ups met 48 h; target 80%)"
    )
    lines += ["", "Where things are:"]
    for label, path in locations.items():
        lines.append(f"  {label:<13}{path}")
    return "\n".join(lines) + "\n"
