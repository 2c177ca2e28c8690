"""The governance report: one static, self-contained HTML file per run.

Charts are plotly figures; plotly.js is embedded once in the page's <head>, so the file opens
offline (no CDN, no fonts, no images fetched). It reads the marts through WarehouseReader
(DuckDB or Postgres) and applies the governance pack's rules first (cxloop.serve.exports.govern):
the same PII policy (no contact-level data; accounts and owners by CRM id) and the same
suppression (groups with n < min_n have their metrics nulled and are not plotted).

Sections:
1. NPS trend by segment (portfolio respondent NPS per period) with its interval band.
2. Contact coverage heatmap: account tier x buying role, share of required role slots on file
   and responded in the latest period.
3. Response rate by send cohort against its target, per survey type.
4. Follow-up SLA attainment by owner (latest periods) against its target.
5. Revenue at risk: ARR of the upcoming renewals by renewal quarter and account NPS class, the
   ARR at risk within the renewal window (governance KPIs ``arr_at_risk`` / ``arr_at_risk_rate``).
6. Does NPS predict renewal: renewal rate (Wilson interval) and net revenue retention by account
   class, and the promoter-minus-detractor difference with its interval.
7. The at-risk accounts table.

Where it goes: ``<exports>/reports/governance-report-<as_of date>-<run id>.html`` (the dbt
exposure ``governance_report`` points at that folder), and it is listed, with its size and
sha256, in the run's export folder manifest (``<exports>/<as_of date>/<run id>/manifest.json``,
key ``report``, path relative to that folder) when that folder was exported first, as the
pipeline does (:func:`list_in_manifest`). It stays out of the export folder itself, so that
folder's data files and SHA256SUMS stay byte-identical between runs of the same data (the
report's run block differs per run).

Every value from the data is HTML-escaped, in the table and in every label handed to plotly
(which renders a subset of HTML in names and axis labels). The page is deterministic for
identical marts and as_of except for one clearly marked block at its end (between
``RUN_BLOCK_START`` and ``RUN_BLOCK_END``): run id, dbt invocation and generation time.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from cxloop.config import Settings
from cxloop.serve.exports import METRIC_CONTRACT_VERSION, govern, min_n_group, sha256_file

log = logging.getLogger(__name__)

ROLES = ("decision_maker", "influencer", "user", "other", "unknown")
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "displayModeBar": False}
# The marts the report reads whole, each through the governance rules (contact_coverage_by_role
# is read for one period besides), in the order of cxloop.serve.exports.MARTS: the "Empty
# marts" line names them in this order.
REPORT_MARTS = (
    "portfolio_nps", "response_rate", "governance_kpis", "at_risk_accounts", "revenue_at_risk", "nps_renewal_outcomes",
)
RUN_BLOCK_START = "<!-- run metadata: the only part of this page that differs between runs on the same data -->"
RUN_BLOCK_END = "<!-- end of run metadata -->"


def esc(value: object) -> str:
    """A data value as text safe in HTML and in plotly's pseudo-HTML labels."""
    return html.escape(str(value), quote=True)

# Per role coverage by tier (contract 4) in the latest period before as_of, from the mart.
COVERAGE_BY_ROLE_MART = """
select coalesce(tier, slot_tier) as tier, role,
       sum(required) as required,
       sum(slots_on_file) as on_file,
       sum(slots_responded) as responded
from marts.contact_coverage_by_role
where period_start = ?
group by coalesce(tier, slot_tier), role
"""


def _period_label(values: pd.Series) -> list[str]:
    """2026-Q3 under the quarter grain, 2026-07 under the month grain (program period_grain;
    a month that starts a quarter is still a month there)."""
    from cxloop.program import load_program

    stamps = pd.to_datetime(values)
    quarters = load_program().period_grain == "quarter"
    return [
        f"{t.year}-Q{(t.month - 1) // 3 + 1}" if quarters and t.month in (1, 4, 7, 10) else f"{t:%Y-%m}"
        for t in stamps
    ]


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": esc(title), "x": 0.01},
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18},
        font={"family": "sans-serif"},
    )
    return fig


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, 240)


def nps_trend_figure(portfolio: pd.DataFrame, survey_type: str = "relationship") -> go.Figure:
    """Respondent NPS per segment and period, with the adjusted-Wald interval as a band.
    Suppressed periods (n_scored < min_n) are gaps."""
    title = f"{survey_type.capitalize()} NPS by segment (respondent NPS, 95% interval band)"
    df = portfolio[
        (portfolio.group_type == "segment")
        & (portfolio.method == "respondent")
        & (portfolio.survey_type == survey_type)
    ].sort_values("period_start")
    if df.empty:
        return _empty(title, "no segment NPS in the data")
    fig = go.Figure()
    for i, (segment, g) in enumerate(df.groupby("group_value", sort=True)):
        color = PALETTE[i % len(PALETTE)]
        x = _period_label(g.period_start)
        shown = g.nps.notna().to_numpy()
        xs = [v for v, ok in zip(x, shown, strict=True) if ok]
        lo, hi = g.ci_low[shown].tolist(), g.ci_high[shown].tolist()
        if xs:
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1], y=hi + lo[::-1], fill="toself", fillcolor=color, opacity=0.18,
                    line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=esc(segment),
                    name=f"{esc(segment)} interval",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x, y=g.nps.tolist(), mode="lines+markers", name=esc(segment), legendgroup=esc(segment),
                line={"color": color, "width": 2}, connectgaps=False,
                customdata=g[["n_scored", "ci_low", "ci_high"]].to_numpy(),
                hovertemplate="%{x}: NPS %{y:.1f} (%{customdata[1]:.1f} to %{customdata[2]:.1f}), n=%{customdata[0]}"
                "<extra>" + esc(segment) + "</extra>",
            )
        )
    fig.update_yaxes(title="NPS (points)", range=[-100, 100], zeroline=True)
    fig.update_xaxes(title="period", type="category")
    return _layout(fig, title)


def coverage_heatmap_figure(by_role: pd.DataFrame, period_label: str) -> go.Figure:
    """Tier x role heatmaps: share of required role slots with a contact on file, and with a
    scored response in the period."""
    title = f"Contact coverage by account tier and buying role ({period_label})"
    if by_role.empty:
        return _empty(title, "no coverage data for the period")
    df = by_role.copy()
    for col in ("required", "on_file", "responded"):
        df[col] = pd.to_numeric(df[col]).astype(float)
    roles = [r for r in ROLES if r in set(df.role)] + sorted(set(df.role) - set(ROLES))
    tiers = sorted(df.tier.dropna().unique())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("slots on file", "slots responded"), horizontal_spacing=0.12)
    for col_index, measure in enumerate(("on_file", "responded"), start=1):
        pivot = (
            df.assign(share=df[measure] / df.required.where(df.required > 0))
            .pivot_table(index="tier", columns="role", values="share", aggfunc="mean")
            .reindex(index=tiers, columns=roles)
        )
        z = pivot.to_numpy()
        text = [["" if pd.isna(v) else f"{v:.0%}" for v in row] for row in z]
        fig.add_trace(
            go.Heatmap(
                z=z, x=[esc(str(r).replace("_", " ")) for r in roles], y=[f"tier {esc(t)}" for t in tiers],
                zmin=0, zmax=1,
                colorscale="Blues", text=text, texttemplate="%{text}", showscale=col_index == 2,
                colorbar={"title": "share", "tickformat": ".0%"},
                hovertemplate="%{y}, %{x}: %{z:.0%}<extra></extra>",
            ),
            row=1, col=col_index,
        )
    fig.update_yaxes(autorange="reversed")  # tier A on top
    return _layout(fig, title, 380)


def response_rate_figure(rates: pd.DataFrame) -> go.Figure:
    """Company response rate per send cohort and survey type, with the target as a line.
    Open cohorts (still within the close-out window) are drawn lighter."""
    title = "Response rate by send cohort against target"
    df = rates[rates.group_type == "company"].sort_values("period_start")
    if df.empty:
        return _empty(title, "no response-rate data")
    unmeasured: set[str] = set()
    if "rate_basis" in df.columns:  # a program (or survey type) that records only responses
        measured = df.rate_basis.ne("no_invitations")
        unmeasured = set(df.survey_type[~measured]) - set(df.survey_type[measured])
        if not measured.any():
            return _empty(title, "response rate not measured: no invitations")
    survey_types = sorted(df.survey_type.unique())
    fig = make_subplots(
        rows=1, cols=len(survey_types), shared_yaxes=True,
        subplot_titles=[esc(t) + (" (not measured: no invitations)" if t in unmeasured else "") for t in survey_types],
    )
    for i, (survey_type, g) in enumerate(df.groupby("survey_type", sort=True), start=1):
        x = _period_label(g.period_start)
        closed = g.is_cohort_closed.fillna(False).astype(bool).to_numpy()
        colors = [PALETTE[0] if c else "#9ecae1" for c in closed]
        fig.add_trace(
            go.Bar(
                x=x, y=g.response_rate.tolist(), marker={"color": colors}, name=f"{esc(survey_type)} response rate",
                customdata=g[["delivered", "responses"]].to_numpy(), showlegend=False,
                hovertemplate="%{x}: %{y:.0%} (%{customdata[1]} of %{customdata[0]})<extra></extra>",
            ),
            row=1, col=i,
        )
        fig.add_trace(
            go.Scatter(
                x=x, y=g.target.tolist(), mode="lines", name="target", line={"color": PALETTE[3], "dash": "dash"},
                showlegend=i == 1,
            ),
            row=1, col=i,
        )
        fig.update_xaxes(type="category", row=1, col=i)
    fig.update_yaxes(tickformat=".0%", range=[0, 1], row=1, col=1, title="response rate")
    return _layout(fig, title + " (lighter bars: cohort still open)")


def sla_figure(kpis: pd.DataFrame, min_n: int, n_periods: int = 4) -> go.Figure:
    """Follow-up SLA attainment (first contact within target) by owner, for the latest periods,
    with the target line. Owners appear by CRM id; suppressed groups are left out."""
    title = "Follow-up SLA attainment by owner"
    df = kpis[(kpis.kpi == "sla_attainment") & (kpis.group_type == "owner")].copy()
    if df.empty:
        return _empty(title, "no follow-up SLA data")
    periods = sorted(df.period_start.unique())[-n_periods:]
    df = df[df.period_start.isin(periods)].sort_values(["period_start", "group_value"])
    fig = go.Figure()
    for i, (period, g) in enumerate(df.groupby("period_start", sort=True)):
        fig.add_trace(
            go.Bar(
                x=[esc(v) for v in g.group_value], y=g.value.tolist(), name=_period_label(pd.Series([period]))[0],
                marker={"color": PALETTE[i % len(PALETTE)]}, customdata=g[["n"]].to_numpy(),
                hovertemplate="owner %{x}: %{y:.0%} (n=%{customdata[0]})<extra></extra>",
            )
        )
    target = df.target.dropna()
    if not target.empty:
        fig.add_hline(y=float(target.iloc[0]), line={"color": PALETTE[3], "dash": "dash"},
                      annotation_text=f"target {float(target.iloc[0]):.0%}")
    fig.update_layout(barmode="group")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05], title="attainment")
    fig.update_xaxes(title="owner (CRM id)", type="category")
    return _layout(fig, f"{title} (latest {len(periods)} periods; groups with n < {min_n} not shown)")


CLASS_COLOURS = {"promoter": "#2ca02c", "passive": "#ff7f0e", "detractor": "#d62728", "unclassified": "#9e9e9e"}


def _company_kpi(kpis: pd.DataFrame, kpi: str) -> pd.Series | None:
    """The latest company-level row of a governance KPI, if any."""
    df = kpis[(kpis.kpi == kpi) & (kpis.group_type == "company")]
    return None if df.empty else df.sort_values("period_start").iloc[-1]


def revenue_figure(revenue: pd.DataFrame) -> go.Figure:
    """ARR of the upcoming renewals by renewal quarter (stacked by account class), with the ARR
    at risk of each quarter (renewing within the window with a risk signal) as markers."""
    title = "ARR of upcoming renewals by renewal quarter and account NPS class"
    if revenue.empty:
        return _empty(title, "no upcoming renewal with ARR")
    df = revenue[revenue.period_start == revenue.period_start.max()].copy()
    df["quarter"] = _period_label(pd.to_datetime(df["renewal_quarter"]))
    quarters = sorted(set(zip(pd.to_datetime(df["renewal_quarter"]), df["quarter"], strict=True)))
    order = [label for _, label in quarters]
    fig = go.Figure()
    for cls, colour in CLASS_COLOURS.items():
        g = df[df.account_class == cls].set_index("quarter").reindex(order)
        if g["arr"].notna().any():
            fig.add_trace(go.Bar(
                x=order, y=g["arr"].fillna(0).tolist(), name=esc(cls), marker={"color": colour},
                customdata=g[["n_accounts"]].fillna(0).to_numpy(),
                hovertemplate=f"{esc(cls)} %{{x}}: %{{y:,.0f}} ARR (%{{customdata[0]:.0f}} accounts)<extra></extra>",
            ))
    at_risk = df.groupby("quarter")["arr_at_risk"].sum().reindex(order)
    fig.add_trace(go.Scatter(
        x=order, y=at_risk.fillna(0).tolist(), mode="markers", name="ARR at risk (within the window)",
        marker={"color": "#111111", "symbol": "diamond", "size": 11},
        hovertemplate="at risk %{x}: %{y:,.0f} ARR<extra></extra>",
    ))
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="renewal quarter", type="category")
    fig.update_yaxes(title="ARR", tickformat=",.0f")
    return _layout(fig, title)


def renewal_figure(outcomes: pd.DataFrame) -> go.Figure:
    """Renewal rate with its Wilson interval and net revenue retention by account class of the
    period before the renewal; suppressed classes (n_renewals < min_n) are not plotted."""
    title = "Renewal rate and net revenue retention by account NPS class"
    df = outcomes[outcomes.account_class.isin([*CLASS_COLOURS, "all"]) & outcomes.renewal_rate.notna()]
    if df.empty:
        return _empty(title, "no decided renewal in a reportable class")
    df = df.set_index("account_class").reindex([c for c in (*CLASS_COLOURS, "all") if c in set(df.account_class)])
    labels = [esc(c) for c in df.index]
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=labels, y=df.renewal_rate.tolist(), name="renewal rate (95% Wilson interval)",
        marker={"color": [CLASS_COLOURS.get(c, PALETTE[0]) for c in df.index]},
        error_y={"type": "data", "symmetric": False, "array": (df.renewal_rate_ci_high - df.renewal_rate).tolist(),
                 "arrayminus": (df.renewal_rate - df.renewal_rate_ci_low).tolist()},
        customdata=df[["n_renewals", "n_won"]].to_numpy(),
        hovertemplate="%{x}: %{y:.0%} renewed (%{customdata[1]:.0f} of %{customdata[0]:.0f})<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=labels, y=df.net_revenue_retention.tolist(), mode="markers", name="net revenue retention",
        marker={"color": "#111111", "symbol": "diamond", "size": 11},
        hovertemplate="%{x}: NRR %{y:.0%}<extra></extra>",
    ))
    fig.update_xaxes(title="account class in the period before the renewal", type="category")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", title="share of renewals / of ARR")
    return _layout(fig, title)


def revenue_note(kpis: pd.DataFrame, outcomes: pd.DataFrame) -> str:
    """The headline figures under the two revenue charts, from governance_kpis and
    nps_renewal_outcomes (never recomputed here)."""
    parts = []
    arr = _company_kpi(kpis, "arr_at_risk")
    rate = _company_kpi(kpis, "arr_at_risk_rate")
    if arr is not None and pd.notna(arr.value):
        text = f"ARR at risk: {float(arr.value):,.0f} across {int(arr.n)} accounts renewing soon"
        if rate is not None and pd.notna(rate.value):
            text += f" ({float(rate.value):.1%} of the ARR renewing in the window)"
        parts.append(text + ", with a detractor decision maker or no decision-maker response.")
    elif arr is not None:
        parts.append(f"ARR at risk: not shown ({int(arr.n)} accounts, fewer than the minimum group size).")
    diff = outcomes[outcomes.account_class == "promoter_minus_detractor"]
    if not diff.empty and pd.notna(diff.renewal_rate.iloc[0]):
        d = diff.iloc[0]
        parts.append(
            f"Promoter minus detractor accounts: {100 * float(d.renewal_rate):+.1f} points of renewal rate "
            f"(95% Newcombe interval {100 * float(d.renewal_rate_ci_low):+.1f} to "
            f"{100 * float(d.renewal_rate_ci_high):+.1f})."
        )
    elif not outcomes.empty:
        parts.append("Promoter minus detractor: not reportable (a class has fewer renewals than the minimum).")
    return "".join(f'<p class="note">{esc(p)}</p>' for p in parts)


def at_risk_table(at_risk: pd.DataFrame) -> str:
    if at_risk.empty:
        return '<p class="note">No account is at risk in the latest period.</p>'
    columns = [
        ("risk_rank", "rank"), ("account_id", "account"), ("segment", "segment"), ("owner_id", "owner"),
        ("arr", "ARR"), ("renewal_date", "renewal"), ("risk_reasons", "risk reasons"),
    ]
    head = "".join(f"<th>{esc(label)}</th>" for _, label in columns)
    rows = []
    for rec in at_risk.sort_values("risk_rank").to_dict("records"):
        cells = []
        for col, _ in columns:
            value = rec.get(col)
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                text = ""
            elif col == "arr":
                text = f"{float(value):,.0f}"
            elif col == "renewal_date":
                text = f"{pd.Timestamp(value):%Y-%m-%d}"
            elif col == "risk_reasons":
                text = str(value).replace("_", " ").replace(",", ", ")
            else:
                text = str(value)
            cells.append(f"<td>{esc(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="at-risk"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def load_report_data(settings: Settings, as_of: datetime, min_n: int | None = None) -> dict:
    """Everything the report shows, read through WarehouseReader and passed through the
    governance rules (PII columns dropped, small groups suppressed)."""
    from cxloop.serve.reader import WarehouseReader

    min_n = min_n_group(settings) if min_n is None else min_n
    with WarehouseReader(settings) as reader:
        frames = {mart: reader.df(f"select * from marts.{mart}") for mart in REPORT_MARTS}
        periods = reader.df(
            "select max(period_start) as p from marts.contact_coverage where period_start < ?", [as_of]
        )
        latest = periods.p.iloc[0] if len(periods) else None
        if latest is None or pd.isna(latest):
            latest, by_role = None, pd.DataFrame()
        else:
            latest = pd.Timestamp(latest).date()  # a plain date binds in DuckDB and psycopg2 alike
            by_role = reader.df(COVERAGE_BY_ROLE_MART, [latest])
    for frame in frames.values():
        if "period_start" in frame:
            frame["period_start"] = pd.to_datetime(frame["period_start"])
    return {
        **{mart: govern(mart, frame, min_n) for mart, frame in frames.items()},
        "coverage_by_role": by_role,
        "coverage_period": latest,
        "min_n": min_n,
        "empty": [mart for mart, frame in frames.items() if frame.empty],
    }


CSS = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1280px; color: #222; }
header { border-bottom: 2px solid #1f77b4; margin-bottom: 12px; }
h1 { font-size: 24px; margin: 0 0 6px 0; }
h2 { font-size: 18px; margin: 28px 0 4px 0; }
.meta { color: #555; font-size: 13px; }
.meta span { margin-right: 18px; }
.note { color: #555; font-size: 13px; }
.chart { border: 1px solid #e5e5e5; border-radius: 4px; padding: 4px; }
table.at-risk { border-collapse: collapse; font-size: 14px; width: 100%; }
table.at-risk th, table.at-risk td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; }
table.at-risk th { background: #f3f6fa; }
"""


def render_report(data: dict, *, as_of: datetime, run_id: str, dbt_invocation_id: str | None = None,
                  min_n: int | None = None) -> str:
    min_n = data.get("min_n") if min_n is None else min_n
    period = data.get("coverage_period")
    period_label = _period_label(pd.Series([period]))[0] if period is not None and not pd.isna(period) else "n/a"
    figures = [
        ("nps-trend", "NPS trend by segment", nps_trend_figure(data["portfolio_nps"])),
        ("coverage", "Contact coverage", coverage_heatmap_figure(data["coverage_by_role"], period_label)),
        ("response-rate", "Response rate", response_rate_figure(data["response_rate"])),
        ("sla", "Follow-up SLA", sla_figure(data["governance_kpis"], min_n)),
        ("revenue", "Revenue at risk", revenue_figure(data["revenue_at_risk"])),
        ("renewal", "Does NPS predict renewal?", renewal_figure(data["nps_renewal_outcomes"])),
    ]
    notes = {"renewal": revenue_note(data["governance_kpis"], data["nps_renewal_outcomes"])}
    sections = []
    for div_id, heading, fig in figures:
        div = fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id=f"chart-{div_id}")
        sections.append(
            f'<section><h2>{esc(heading)}</h2><div class="chart">{div}</div>{notes.get(div_id, "")}</section>'
        )
    sections.append(
        "<section><h2>At-risk accounts</h2>"
        '<p class="note">Active accounts renewing soon with a risk signal in the latest period, by ARR.</p>'
        f"{at_risk_table(data['at_risk_accounts'])}</section>"
    )
    def spans(pairs) -> str:
        return "".join(f"<span>{esc(k)}: <b>{esc(v)}</b></span>" for k, v in pairs)

    meta = spans((("as of", as_of.isoformat(sep=" ")), ("metric contract", METRIC_CONTRACT_VERSION)))
    run_meta = spans(
        (
            ("run", run_id),
            ("dbt invocation", dbt_invocation_id or "n/a"),
            ("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        )
    )
    empty = data.get("empty") or []
    empty_note = f'<p class="note">Empty marts: {esc(", ".join(empty))}.</p>' if empty else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cxloop governance report {esc(as_of.strftime('%Y-%m-%d'))}</title>
<style>{CSS}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<header>
<h1>cxloop governance report</h1>
<div class="meta">{meta}</div>
<p class="note">No personal data: accounts and owners appear by CRM id only. Groups with fewer than {esc(min_n)}
respondents (or deliveries, follow-ups, accounts) are suppressed and not plotted.</p>
{empty_note}
</header>
{''.join(sections)}
{RUN_BLOCK_START}
<footer class="meta" id="run-meta">{run_meta}</footer>
{RUN_BLOCK_END}
</body>
</html>
"""


def build_report(
    settings: Settings,
    as_of: datetime,
    run_id: str,
    out_dir: Path | None = None,
    dbt_invocation_id: str | None = None,
    min_n: int | None = None,
) -> Path:
    """Write ``out_dir/governance-report-<as_of date>-<run_id>.html`` and return its path.
    ``out_dir`` defaults to ``<exports>/reports``."""
    started = time.perf_counter()
    data = load_report_data(settings, as_of, min_n)
    text = render_report(data, as_of=as_of, run_id=run_id, dbt_invocation_id=dbt_invocation_id)
    folder = Path(out_dir) if out_dir is not None else settings.exports_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    path = folder / f"governance-report-{as_of:%Y-%m-%d}-{safe_run}.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    export_folder = settings.exports_dir / f"{as_of:%Y-%m-%d}" / safe_run
    listed = list_in_manifest(path, export_folder)
    log.info(
        "report %s (%d bytes, %.2fs)%s",
        path,
        path.stat().st_size,
        time.perf_counter() - started,
        f", listed in {export_folder / 'manifest.json'}" if listed else "",
    )
    return path


def list_in_manifest(report: Path, export_folder: Path) -> bool:
    """Record ``report`` (path relative to ``export_folder``, bytes, sha256) under the key
    ``report`` of ``export_folder/manifest.json``. False (nothing written) when the folder has
    no manifest, i.e. the run was not exported."""
    manifest = Path(export_folder) / "manifest.json"
    if not manifest.is_file():
        return False
    doc = json.loads(manifest.read_text())
    doc["report"] = {
        "file": Path(os.path.relpath(report, export_folder)).as_posix(),
        "bytes": report.stat().st_size,
        "sha256": sha256_file(report),
        "deterministic": "byte-identical for identical marts and as_of outside the run metadata block",
        "note": "the single-page governance report; kept in <exports>/reports/ (the dbt exposure's url), "
        "outside this folder and its SHA256SUMS, whose files are byte-identical between runs",
    }
    tmp = manifest.with_name(f".{manifest.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    tmp.replace(manifest)
    return True
