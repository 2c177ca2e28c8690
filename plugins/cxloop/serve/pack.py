"""The governance pack: a small offline HTML folder per run, one page per section.

Written to ``<export folder>/pack/`` (``var/exports/<as-of date>/<run id>/pack/``), beside the
mart files, and listed with sha256 in that folder's ``manifest.json`` (key ``pack``). plotly.js
is written once as ``pack/plotly.min.js`` and loaded by every page from the folder: nothing is
fetched from the network.

Pages (``PAGES``): index, company KPIs against target, account NPS (portfolio NPS per segment
by method; where the promoters are: promoter accounts and promoter decision makers by segment
and by owner; pooled, role-weighted and waterfall per segment, by account name), account-team
(owner) scorecards, the follow-up monitor and data quality. Everything is read from the marts
(schema ``marts`` only, never staging) through WarehouseReader (read-only SELECTs) and the
governance rules of :func:`cxloop.serve.exports.govern`: no contact-level data (no contact id,
name, e-mail or score of a single response), rates and NPS of groups with n < min_n
suppressed. Account names and segments (business data) come from the account dimension mart
``account_directory`` and are HTML-escaped; owners (``owner_directory``) appear as CRM id plus
team, by name only with ``CXLOOP_PACK_OWNER_NAMES=1``. Follow-up counts by status are process
counts (no answers) and are shown whole. Promoter counts of a group come from answers and are
suppressed like its rates (docs/metric-contract.md 7.9).

Deterministic: identical marts and as_of give byte-identical pages, except the run block
between report.RUN_BLOCK_START and report.RUN_BLOCK_END on each page.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from cxloop.config import Settings
from cxloop.serve.exports import METRIC_CONTRACT_VERSION, govern, min_n_group, sha256_file
from cxloop.serve.report import CSS, PALETTE, PLOT_CONFIG, RUN_BLOCK_END, RUN_BLOCK_START, _period_label, esc

log = logging.getLogger(__name__)

OWNER_NAMES_ENV = "CXLOOP_PACK_OWNER_NAMES"
PAGES = (
    ("index", "Overview"),
    ("company", "Company KPIs"),
    ("account-nps", "Account NPS"),
    ("owners", "Account-team scorecards"),
    ("follow-ups", "Follow-up monitor"),
    ("data-quality", "Data quality"),
)
ACCOUNT_METHODS = ("pooled", "role_weighted", "waterfall")
PORTFOLIO_METHODS = ("respondent", "account_equal", "revenue_weighted", "account_classified")
PLOTLY_FILE = "plotly.min.js"
PACK_CSS = """
nav { margin: 8px 0 16px 0; font-size: 14px; }
nav a { margin-right: 14px; color: #1f77b4; }
nav a.here { font-weight: bold; color: #222; text-decoration: none; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
table.t { border-collapse: collapse; font-size: 13px; width: 100%; margin-top: 8px; }
table.t th, table.t td { border-bottom: 1px solid #ddd; padding: 4px 6px; text-align: left; }
table.t th { background: #f3f6fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.met { color: #2ca02c; font-weight: bold; } .missed { color: #d62728; font-weight: bold; }
"""


def owner_names_allowed() -> bool:
    return os.environ.get(OWNER_NAMES_ENV, "").strip() == "1"


# ---------------------------------------------------------------- reading
def _rows(reader, sql: str, params=None) -> pd.DataFrame:
    return reader.df(sql, params)


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame.reset_index(drop=True)
    return frame.sort_values(list(frame.columns), kind="stable", na_position="last").reset_index(drop=True)


def load_pack_data(settings: Settings, as_of: datetime, min_n: int | None = None) -> dict:
    from cxloop.serve.reader import WarehouseReader

    min_n = min_n_group(settings) if min_n is None else min_n
    with WarehouseReader(settings) as reader:
        marts = {
            m: reader.df(f"select * from marts.{m}")
            for m in ("governance_kpis", "account_nps", "portfolio_nps", "at_risk_accounts", "data_quality")
        }
        sla_rows = reader.df("select * from marts.follow_up_sla")
        # the account/owner dimension as of the run (marts/directory): one row per account / owner
        accounts = reader.df(
            "select account_id, account_name, segment, owner_id, is_active from marts.account_directory"
        )
        owners = reader.df("select owner_id, owner_name, owner_team as team from marts.owner_directory")
        coverage = reader.df(
            "select c.account_id, c.coverage_responded, c.has_decision_maker_response from marts.contact_coverage c "
            "where c.period_start = (select max(period_start) from marts.contact_coverage where period_start < ?)",
            [as_of],
        )
        quarantine = reader.df(
            "select source, entity, coalesce(expectation, '(none)') as expectation, count(*) as n_rows "
            "from raw.quarantine group by source, entity, coalesce(expectation, '(none)')"
        )
    # one row order whatever order the warehouse returned the rows in (a parallel scan may vary
    # it between runs): every frame sorted on all its columns, then only stable sorts below
    marts = {m: _ordered(f) for m, f in marts.items()}
    sla_rows, accounts, owners, coverage, quarantine = map(_ordered, (sla_rows, accounts, owners, coverage, quarantine))
    for frame in (*marts.values(), sla_rows):
        if "period_start" in frame:
            frame["period_start"] = pd.to_datetime(frame["period_start"])
    data = {m: govern(m, f, min_n) for m, f in marts.items() if m != "data_quality"}
    # promoter decision makers per group, aggregated from the account rows before their
    # account-level suppression, then suppressed per group (only the aggregate leaves here)
    data["promoter_dms"] = promoter_decision_makers(marts["account_nps"], accounts, min_n)
    data["data_quality"] = marts["data_quality"]  # batch ids / check times are never shown
    # follow-up process rows without any contact-level column or score
    keep = [
        c
        for c in (
            "period_start",
            "survey_type",
            "account_id",
            "owner_id",
            "team",
            "recorded_at",
            "first_contact_due_at",
            "close_due_at",
            "closed_at",
            "sla_status",
        )
        if c in sla_rows
    ]
    data["follow_ups"] = sla_rows[keep].copy()
    data.update(accounts=accounts, owners=owners, coverage=coverage, quarantine=quarantine, min_n=min_n)
    return data


def _group_values(frame: pd.DataFrame, column: str) -> pd.Series:
    """The group value of each row as portfolio_nps names it: a missing segment or owner is
    'unknown'."""
    values = frame[column].astype(object)
    return values.where(values.notna(), "unknown")


def promoter_decision_makers(account_nps: pd.DataFrame, accounts: pd.DataFrame, min_n: int) -> pd.DataFrame:
    """Promoter decision makers of the latest period per group (company 'all', segment, owner):
    from account_nps' waterfall rows whose role is decision_maker (the counted relationship
    responses of the account's decision makers, one per contact; ``promoters`` of them
    promoters), the accounts' segment and owner from account_directory. ``dm_respondents`` is
    the group size n; ``promoter_dms`` and ``share`` are null and ``suppressed`` true when
    n < min_n. Columns: group_type, group_value, dm_respondents, promoter_dms, share, suppressed."""
    columns = ["group_type", "group_value", "dm_respondents", "promoter_dms", "share", "suppressed"]
    need = {"survey_type", "method", "waterfall_role", "period_start", "account_id", "n_scored", "promoters"}
    if account_nps.empty or not need <= set(account_nps.columns):
        return pd.DataFrame(columns=columns)
    rel = account_nps[account_nps.survey_type == "relationship"]
    if rel.empty:
        return pd.DataFrame(columns=columns)
    latest = rel[rel.period_start == rel.period_start.max()]
    dm = latest[(latest.method == "waterfall") & (latest.waterfall_role == "decision_maker")]
    dm = dm[["account_id", "n_scored", "promoters"]].merge(
        accounts[["account_id", "segment", "owner_id"]], on="account_id", how="left"
    )
    rows = []
    for group_type, values in (
        ("company", pd.Series("all", index=dm.index, dtype=object)),
        ("segment", _group_values(dm, "segment")),
        ("owner", _group_values(dm, "owner_id")),
    ):
        for key in sorted(set(values), key=str):
            g = dm[values == key]
            n = int(g.n_scored.fillna(0).sum())
            promoters = int(g.promoters.fillna(0).sum())
            small = n < min_n
            rows.append(
                {
                    "group_type": group_type,
                    "group_value": key,
                    "dm_respondents": n,
                    "promoter_dms": None if small else promoters,
                    "share": None if small or n == 0 else round(promoters / n, 9),
                    "suppressed": small,
                }
            )
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- helpers
def _legend_above(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": esc(title), "x": 0.01, "y": 0.98, "yanchor": "top"},
        height=height,
        margin={"l": 70, "r": 30, "t": 90, "b": 50},
        template="plotly_white",
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "xanchor": "left"},
        font={"family": "sans-serif"},
    )
    return fig


def _chart(fig: go.Figure, div_id: str) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id=f"chart-{div_id}")
    return f'<div class="chart">{div}</div>'


def _empty_note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _table(columns: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>" for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _isna(v) -> bool:
    return v is None or (not isinstance(v, str) and pd.isna(v))


def _owner_label(owner_id, owners: pd.DataFrame) -> str:
    if _isna(owner_id):
        return "(no owner)"
    row = owners[owners.owner_id == owner_id]
    team = "" if row.empty or _isna(row.team.iloc[0]) else str(row.team.iloc[0])
    name = "" if row.empty or _isna(row.owner_name.iloc[0]) else str(row.owner_name.iloc[0])
    label = f"{name} ({team})" if owner_names_allowed() and name else f"{owner_id} ({team or 'no team'})"
    return label


def _fmt(kpi: str, v) -> str:
    if _isna(v):
        return "suppressed"
    v = float(v)
    if kpi.startswith("nps_"):
        return f"{v:+.1f}"
    if kpi.startswith("arr_") and not kpi.endswith("_rate"):
        return f"{v:,.0f}"
    return f"{v:.1%}"


def _kind(kpi: str) -> str:
    if kpi.startswith("nps_"):
        return "points"
    if kpi.startswith("arr_") and not kpi.endswith("_rate"):
        return "arr"
    return "rate"


# ---------------------------------------------------------------- pages
def company_page(data: dict) -> str:
    kpis = data["governance_kpis"]
    df = kpis[kpis.group_type == "company"].sort_values(["kpi", "period_start"], kind="stable")
    if df.empty:
        return _empty_note("No company KPI in governance_kpis.")
    charts, rows, hidden = [], [], []
    for i, (kpi, g) in enumerate(df.groupby("kpi", sort=True)):
        kind = _kind(kpi)
        x = _period_label(g.period_start)
        fig = go.Figure()
        if g.ci_low.notna().any():
            ok = g.ci_low.notna().to_numpy()
            xs = [v for v, k in zip(x, ok, strict=True) if k]
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=g.ci_high[ok].tolist() + g.ci_low[ok].tolist()[::-1],
                    fill="toself",
                    fillcolor=PALETTE[0],
                    opacity=0.18,
                    line={"width": 0},
                    hoverinfo="skip",
                    name="95% interval",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g.value.tolist(),
                mode="lines+markers",
                name=esc(kpi),
                line={"color": PALETTE[0], "width": 2},
                connectgaps=False,
            )
        )
        target = g.target.dropna()
        if not target.empty:
            t = float(target.iloc[-1])
            fig.add_hline(
                y=t,
                line={"color": PALETTE[3], "dash": "dash"},
                annotation_text=f"target {_fmt(kpi, t)}",
                annotation_position="top left",
            )
        fig.update_xaxes(type="category")
        if kind == "rate":
            fig.update_yaxes(tickformat=".0%", rangemode="tozero")
        elif kind == "points":
            fig.update_yaxes(range=[-100, 100], title="NPS (points)")
        else:
            fig.update_yaxes(tickformat=",.0f", rangemode="tozero")
        if g.value.notna().any():
            charts.append(_chart(_legend_above(fig, kpi.replace("_", " "), 300), f"kpi-{i}"))
        else:
            hidden.append(kpi)
        last = g.iloc[-1]
        if _isna(last.target):
            status = "no target"
        elif _isna(last.meets_target):
            status = "not reportable"
        else:
            status = "met" if bool(last.meets_target) else "not met"
        rows.append(
            [
                kpi,
                last.period_start.strftime("%Y-%m-%d"),
                _fmt(kpi, last.value),
                "" if _isna(last.target) else _fmt(kpi, last.target),
                status,
                int(last.n),
            ]
        )
    table = _table(["KPI", "latest period", "value", "target", "attainment", "n"], rows, {2, 3, 5})
    table = table.replace("<td>met</td>", '<td class="met">met</td>').replace(
        "<td>not met</td>", '<td class="missed">not met</td>'
    )
    note = _empty_note(f"Not drawn (suppressed in every period): {', '.join(hidden)}.") if hidden else ""
    return (
        "<section><h2>Attainment (latest period)</h2>" + table + "</section>"
        "<section><h2>KPI trends against target</h2>"
        + note
        + '<div class="grid">'
        + "".join(charts)
        + "</div></section>"
    )


def _latest(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    return df[df.period_start == df.period_start.max()]


PROMOTER_DIMENSIONS = (("segment", "segment"), ("owner", "owner (team)"))


def _promoter_rows(data: dict) -> dict[str, list[dict]]:
    """group_type -> one dict per group (label, promoter accounts, promoter decision makers)
    for the latest relationship period: promoter accounts from portfolio_nps'
    account_classified rows (governed: null when n_scored or n_accounts < min_n), promoter
    decision makers from :func:`promoter_decision_makers`."""
    port = data["portfolio_nps"]
    port = port[(port.survey_type == "relationship") & (port.method == "account_classified")]
    port = _latest(port)
    dms = data["promoter_dms"]
    owners = data["owners"]
    out: dict[str, list[dict]] = {}
    for group_type in ("company", *(d for d, _ in PROMOTER_DIMENSIONS)):
        p = port[port.group_type == group_type]
        d = dms[dms.group_type == group_type]
        values = sorted(set(p.group_value.dropna()) | set(d.group_value.dropna()), key=str)
        rows = []
        for v in values:
            pr = p[p.group_value == v]
            dr = d[d.group_value == v]
            pr = pr.iloc[0] if len(pr) else None
            dr = dr.iloc[0] if len(dr) else None
            label = (
                "all accounts"
                if group_type == "company"
                else _owner_label(v, owners)
                if group_type == "owner"
                else str(v)
            )
            n_acc = None if pr is None else int(pr.n_accounts)
            pa = None if pr is None or _isna(pr.promoters) else int(pr.promoters)
            rows.append(
                {
                    "label": label,
                    "n_accounts": n_acc,
                    "promoter_accounts": pa,
                    "account_share": None if pa is None or not n_acc else pa / n_acc,
                    "account_suppressed": pr is not None and pa is None,
                    "dm_respondents": None if dr is None else int(dr.dm_respondents),
                    "promoter_dms": None if dr is None or _isna(dr.promoter_dms) else int(dr.promoter_dms),
                    "dm_share": None if dr is None or _isna(dr.share) else float(dr.share),
                    "dm_suppressed": dr is not None and bool(dr.suppressed),
                }
            )
        out[group_type] = rows
    return out


def promoters_section(data: dict) -> str:
    """'Where the promoters are': promoter accounts and promoter decision makers of the latest
    relationship period, by segment and by owner, counts and share of the group; a group
    under min_n shows its size and "suppressed"."""
    groups = _promoter_rows(data)
    if not any(groups.values()):
        return "<section><h2>Where the promoters are</h2>" + _empty_note("No relationship NPS.") + "</section>"

    def count(n, suppressed):
        return "suppressed" if suppressed else ("" if n is None else n)

    def share(v, suppressed):
        return "suppressed" if suppressed else ("" if v is None else f"{v:.0%}")

    parts = [
        '<p class="note">Latest relationship period. Promoter accounts: accounts whose role-weighted mean score is '
        "9 or more (portfolio_nps, method account_classified), of the responding accounts. Promoter decision "
        "makers: decision makers whose counted response is a promoter (9-10), of the decision makers who answered "
        f"(account_nps, waterfall rows of role decision_maker). Groups with fewer than {esc(data['min_n'])} "
        "respondents (or responding accounts) are suppressed.</p>"
    ]
    for j, (group_type, title) in enumerate(PROMOTER_DIMENSIONS):
        rows = groups.get(group_type, []) + groups.get("company", [])
        if not groups.get(group_type):
            continue
        table = _table(
            [
                title,
                "responding accounts",
                "promoter accounts",
                "share",
                "decision makers answered",
                "promoter decision makers",
                "share",
            ],
            [
                [
                    r["label"],
                    "" if r["n_accounts"] is None else r["n_accounts"],
                    count(r["promoter_accounts"], r["account_suppressed"]),
                    share(r["account_share"], r["account_suppressed"]),
                    "" if r["dm_respondents"] is None else r["dm_respondents"],
                    count(r["promoter_dms"], r["dm_suppressed"]),
                    share(r["dm_share"], r["dm_suppressed"]),
                ]
                for r in rows
            ],
            {1, 2, 3, 4, 5, 6},
        )
        drawn = groups[group_type]
        chart = ""
        if any(r["account_share"] is not None or r["dm_share"] is not None for r in drawn):
            fig = go.Figure()
            for i, (key, name) in enumerate(
                (("account_share", "promoter accounts"), ("dm_share", "promoter decision makers"))
            ):
                fig.add_trace(
                    go.Bar(
                        y=[esc(r["label"]) for r in drawn],
                        x=[r[key] for r in drawn],
                        orientation="h",
                        name=name,
                        marker={"color": (PALETTE[2], PALETTE[0])[i]},
                    )
                )
            fig.update_layout(barmode="group")
            fig.update_xaxes(tickformat=".0%", range=[0, 1.05], title="share of the group")
            fig.update_yaxes(automargin=True, autorange="reversed")
            chart = _chart(
                _legend_above(
                    fig,
                    f"Where the promoters are: share by {title} (suppressed groups not drawn)",
                    160 + 60 * len(drawn),
                ),
                f"promoters-{j}",
            )
        else:
            chart = _empty_note(f"Every {group_type} group is suppressed: nothing to draw.")
        parts.append(f"<h3>By {esc(title)}</h3>{table}{chart}")
    return "<section><h2>Where the promoters are</h2>" + "".join(parts) + "</section>"


def account_nps_page(data: dict) -> str:
    acc = data["account_nps"]
    acc = acc[(acc.survey_type == "relationship") & acc.method.isin(ACCOUNT_METHODS)]
    acc = _latest(acc).merge(
        data["accounts"][["account_id", "account_name", "segment", "owner_id"]], on="account_id", how="left"
    )
    port = data["portfolio_nps"]
    port = _latest(port[(port.survey_type == "relationship") & (port.group_type == "segment")])
    out = []
    if not port.empty:
        fig = go.Figure()
        segments = sorted(port.group_value.dropna().unique())
        for i, method in enumerate(m for m in PORTFOLIO_METHODS if m in set(port.method)):
            g = port[port.method == method].set_index("group_value").reindex(segments)
            fig.add_trace(
                go.Bar(
                    y=[esc(s) for s in segments],
                    x=g.nps.tolist(),
                    orientation="h",
                    name=esc(method.replace("_", " ")),
                    marker={"color": PALETTE[i]},
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": (g.ci_high - g.nps).tolist(),
                        "arrayminus": (g.nps - g.ci_low).tolist(),
                    },
                )
            )
        fig.update_layout(barmode="group")
        fig.update_xaxes(range=[-100, 100], title="NPS (points), 95% interval")
        period = port.period_start.max().strftime("%Y-%m-%d")
        out.append(
            "<section><h2>Portfolio NPS by segment and method</h2>"
            + _chart(_legend_above(fig, f"Relationship NPS by segment, period {period}", 420), "portfolio")
            + "</section>"
        )
    out.append(promoters_section(data))
    if acc.empty:
        return "".join(out) + _empty_note("No account NPS in the latest period.")
    for j, (segment, g) in enumerate(acc.groupby(acc.segment.fillna("(none)"), sort=True)):
        names = g.drop_duplicates("account_id").sort_values(["account_name", "account_id"], kind="stable")
        labels = {
            a: esc(f"{n} ({a})" if _isna(n) else n) for a, n in zip(names.account_id, names.account_name, strict=True)
        }
        drawn = sorted(set(g.account_id[g.nps.notna()]))
        order = [labels[a] for a in names.account_id if a in drawn]
        fig = go.Figure()
        for i, method in enumerate(ACCOUNT_METHODS):
            m = g[g.method == method].set_index("account_id").reindex([a for a in names.account_id if a in drawn])
            fig.add_trace(
                go.Scatter(
                    y=order,
                    x=m.nps.tolist(),
                    mode="markers",
                    name=esc(method.replace("_", " ")),
                    marker={"color": PALETTE[i], "size": 9},
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": (m.ci_high - m.nps).tolist(),
                        "arrayminus": (m.nps - m.ci_low).tolist(),
                        "thickness": 1,
                    },
                )
            )
        fig.update_layout(scattermode="group")
        fig.update_xaxes(range=[-105, 105], title="account NPS (points), 95% interval")
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=order[::-1], automargin=True)
        height = 140 + 26 * len(order)
        chart = _chart(_legend_above(fig, f"Account NPS, segment {segment}", height), f"accounts-{j}") if order else ""
        chart += _empty_note(
            "Accounts whose NPS is suppressed under every method (n below the minimum) are in the table only."
        )
        rows = []
        for a in names.account_id:
            r = [labels[a]]
            for method in ACCOUNT_METHODS:
                m = g[(g.account_id == a) & (g.method == method)]
                if m.empty:
                    r.append("")
                    continue
                m = m.iloc[0]
                if _isna(m.nps):
                    r.append(f"suppressed (n={int(m.n_scored)})")
                else:
                    rep = "" if bool(m.is_reportable) else ", not reportable"
                    r.append(f"{m.nps:+.1f} [{m.ci_low:+.1f}, {m.ci_high:+.1f}] n={int(m.n_scored)}{rep}")
            rows.append(r)
        # labels are already escaped: unescape-free table built by hand
        head = "".join(f"<th>{esc(c)}</th>" for c in ["account", *ACCOUNT_METHODS])
        body = "".join(
            "<tr><td>" + r[0] + "</td>" + "".join(f"<td>{esc(c)}</td>" for c in r[1:]) + "</tr>" for r in rows
        )
        out.append(
            f"<section><h2>Segment {esc(segment)}</h2>{chart}"
            f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></section>'
        )
    return "".join(out)


def owner_scorecards(data: dict, as_of: datetime) -> pd.DataFrame:
    accounts = data["accounts"]
    active = accounts[accounts.is_active.fillna(False).astype(bool)]
    cov = data["coverage"].merge(accounts[["account_id", "owner_id"]], on="account_id", how="left")
    kpis = data["governance_kpis"]
    ok = _latest(kpis[kpis.group_type == "owner"])
    fu = data["follow_ups"].copy()
    open_ = fu[fu.closed_at.isna()] if "closed_at" in fu else fu.iloc[0:0]
    risk = _latest(data["at_risk_accounts"])
    ids = sorted(set(active.owner_id.dropna()) | set(ok.group_value.dropna()))
    cut = pd.Timestamp(as_of.replace(tzinfo=None))
    rows = []
    for o in ids:
        k = ok[ok.group_value == o].set_index("kpi").value
        op = open_[open_.owner_id == o]
        overdue = op[pd.to_datetime(op.close_due_at) < cut] if "close_due_at" in op else op.iloc[0:0]
        age = (cut - pd.to_datetime(op.recorded_at)).dt.days.max() if len(op) else None
        c = cov[cov.owner_id == o]
        rows.append(
            {
                "owner_id": o,
                "accounts": int((active.owner_id == o).sum()),
                "coverage_responded": round(float(c.coverage_responded.mean()), 9) if len(c) else None,
                "response_rate": k.get("response_rate"),
                "sla_attainment": k.get("sla_attainment"),
                "open_follow_ups": len(op),
                "overdue_follow_ups": len(overdue),
                "oldest_open_days": None if age is None or pd.isna(age) else int(age),
                "at_risk_arr": round(float(risk[risk.owner_id == o].arr.sum()), 6),
                "at_risk_accounts": int((risk.owner_id == o).sum()),
            }
        )
    return pd.DataFrame(rows)


def owners_page(data: dict, as_of: datetime) -> str:
    sc = owner_scorecards(data, as_of)
    if sc.empty:
        return _empty_note("No account owner in the CRM data.")
    owners = data["owners"]
    sc["label"] = [_owner_label(o, owners) for o in sc.owner_id]

    def pct(v):
        return "suppressed" if _isna(v) else f"{float(v):.0%}"

    rows = [
        [
            r.label,
            r.accounts,
            pct(r.coverage_responded),
            pct(r.response_rate),
            r.open_follow_ups,
            r.overdue_follow_ups,
            "" if _isna(r.oldest_open_days) else r.oldest_open_days,
            pct(r.sla_attainment),
            f"{r.at_risk_arr:,.0f} ({r.at_risk_accounts})",
        ]
        for r in sc.itertuples()
    ]
    table = _table(
        [
            "owner (team)",
            "active accounts",
            "coverage (responded)",
            "response rate",
            "open follow-ups",
            "overdue",
            "oldest open (days)",
            "SLA attainment",
            "at-risk ARR (accounts)",
        ],
        rows,
        {1, 2, 3, 4, 5, 6, 7, 8},
    )
    kpis = data["governance_kpis"]
    target = kpis[(kpis.kpi == "sla_attainment")].target.dropna()
    fig = go.Figure()
    for i, (col, name) in enumerate(
        (
            ("sla_attainment", "SLA attainment"),
            ("response_rate", "response rate"),
            ("coverage_responded", "coverage (responded)"),
        )
    ):
        fig.add_trace(
            go.Bar(
                y=[esc(v) for v in sc.label],
                x=sc[col].astype(float).tolist(),
                orientation="h",
                name=name,
                marker={"color": PALETTE[i]},
            )
        )
    if not target.empty:
        t = float(target.iloc[0])
        fig.add_vline(
            x=t,
            line={"color": PALETTE[3], "dash": "dash"},
            annotation_text=f"SLA target {t:.0%}",
            annotation_position="top right",
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(tickformat=".0%", range=[0, 1.05])
    fig.update_yaxes(automargin=True, autorange="reversed")
    fig = _legend_above(fig, "Owner rates, latest period (suppressed groups not drawn)", 160 + 60 * len(sc))
    return (
        "<section><h2>Scorecards</h2>"
        + table
        + "</section><section><h2>Rates by owner</h2>"
        + _chart(fig, "owners")
        + "</section>"
    )


def follow_ups_page(data: dict, as_of: datetime) -> str:
    fu = data["follow_ups"].copy()
    if fu.empty:
        return _empty_note("No detractor follow-up in the data.")
    owners = data["owners"]
    fu["recorded_at"] = pd.to_datetime(fu.recorded_at)
    fu["week"] = fu.recorded_at.dt.normalize() - pd.to_timedelta(fu.recorded_at.dt.weekday, unit="D")
    statuses = ("met", "breached", "missing", "active")
    colours = {"met": "#2ca02c", "breached": "#d62728", "missing": "#ff7f0e", "active": "#1f77b4"}
    weekly = fu.groupby(["week", "sla_status"]).size().unstack(fill_value=0).reindex(columns=statuses, fill_value=0)
    fig = go.Figure()
    for s in statuses:
        fig.add_trace(
            go.Bar(
                x=[w.strftime("%Y-%m-%d") for w in weekly.index],
                y=weekly[s].tolist(),
                name=s,
                marker={"color": colours[s]},
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="date", title="week of the detractor response")
    fig.update_yaxes(title="follow-ups required")
    week_chart = _chart(_legend_above(fig, "Follow-ups required by week and SLA status", 420), "weekly")
    fu["owner"] = [_owner_label(o, owners) for o in fu.owner_id]
    by_owner = fu.groupby(["owner", "sla_status"]).size().unstack(fill_value=0).reindex(columns=statuses, fill_value=0)
    fig = go.Figure()
    for s in statuses:
        fig.add_trace(
            go.Bar(
                y=[esc(o) for o in by_owner.index],
                x=by_owner[s].tolist(),
                orientation="h",
                name=s,
                marker={"color": colours[s]},
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(automargin=True, autorange="reversed")
    fig.update_xaxes(title="follow-ups required")
    owner_chart = _chart(
        _legend_above(fig, "Follow-ups by owner and SLA status (all periods)", 160 + 40 * len(by_owner)), "by-owner"
    )
    cut = pd.Timestamp(as_of.replace(tzinfo=None))
    recent = fu[fu.week >= cut - timedelta(weeks=13)]
    table_rows = []
    for (week, owner), g in recent.groupby(["week", "owner"], sort=True):
        counts = g.sla_status.value_counts()
        table_rows.append([week.strftime("%Y-%m-%d"), owner, len(g), *(int(counts.get(s, 0)) for s in statuses)])
    week_table = _table(["week", "owner (team)", "required", *statuses], table_rows, {2, 3, 4, 5, 6})
    names = data["accounts"].set_index("account_id").account_name
    open_ = fu[fu.closed_at.isna()].sort_values(["recorded_at", "account_id"], kind="stable").head(20)
    oldest = [
        [
            names.get(r.account_id, r.account_id),
            r.owner,
            r.recorded_at.strftime("%Y-%m-%d"),
            int((cut - r.recorded_at).days),
            r.sla_status,
            "" if _isna(r.close_due_at) else pd.Timestamp(r.close_due_at).strftime("%Y-%m-%d"),
        ]
        for r in open_.itertuples()
    ]
    oldest_html = (
        _table(["account", "owner (team)", "response recorded", "age (days)", "SLA status", "close due"], oldest, {3})
        if oldest
        else _empty_note("No open detractor follow-up.")
    )
    return (
        f"<section><h2>By week</h2>{week_chart}</section><section><h2>By owner</h2>{owner_chart}</section>"
        f"<section><h2>Oldest open detractor follow-ups</h2>{oldest_html}</section>"
        f"<section><h2>Last 13 weeks by owner</h2>{week_table}</section>"
    )


def data_quality_page(data: dict) -> str:
    dq = data["data_quality"]
    out = []
    kind = dq.check_kind if "check_kind" in dq else pd.Series("expectation", index=dq.index)
    exp = dq[kind.fillna("expectation") == "expectation"]
    if not exp.empty:
        failed = exp[~exp.success.fillna(False).astype(bool)]
        agg = (
            failed.groupby(["source", "entity", "expectation"], dropna=False)
            .agg(batches=("success", "size"), unexpected=("unexpected_count", "sum"))
            .reset_index()
            .sort_values(["source", "entity", "expectation"], kind="stable")
        )
        total = exp.groupby(["source", "entity"]).size()
        rows = [[r.source, r.entity, r.expectation, r.batches, int(r.unexpected or 0)] for r in agg.itertuples()]
        out.append(
            f'<section><h2>Expectations failed</h2><p class="note">{len(failed)} of {len(exp)} '
            f"expectation results failed across {len(total)} source entities.</p>"
            + (
                _table(["source", "entity", "expectation", "failed batches", "unexpected rows"], rows, {3, 4})
                if rows
                else ""
            )
            + "</section>"
        )
    q = data["quarantine"].sort_values(["source", "entity", "expectation"], kind="stable")
    if q.empty:
        out.append("<section><h2>Rows quarantined</h2>" + _empty_note("No row is quarantined.") + "</section>")
    else:
        labels = [esc(f"{s}.{e}: {x}") for s, e, x in zip(q.source, q.entity, q.expectation, strict=True)]
        fig = go.Figure(
            go.Bar(
                y=labels,
                x=q.n_rows.tolist(),
                orientation="h",
                marker={"color": PALETTE[3]},
                name="rows quarantined",
                showlegend=True,
            )
        )
        fig.update_yaxes(automargin=True, autorange="reversed")
        fig.update_xaxes(title="rows")
        out.append(
            "<section><h2>Rows quarantined by reason</h2>"
            + _chart(
                _legend_above(fig, "Quarantined rows by source entity and expectation", 160 + 34 * len(q)), "quarantine"
            )
            + "</section>"
        )
    fresh_cols = {"freshness_status", "loaded_up_to", "age_hours"}
    if "check_kind" in dq and fresh_cols <= set(dq.columns) and (dq.check_kind == "freshness").any():
        f = dq[dq.check_kind == "freshness"].sort_values(["source", "entity"], kind="stable")
        rows = [
            [
                r.source,
                r.entity,
                r.freshness_status,
                "" if _isna(r.loaded_up_to) else pd.Timestamp(r.loaded_up_to).strftime("%Y-%m-%d %H:%M"),
                "" if _isna(r.age_hours) else f"{float(r.age_hours):.1f}",
            ]
            for r in f.itertuples()
        ]
        out.append(
            "<section><h2>Freshness per source</h2>"
            + _table(["source", "entity", "status", "loaded up to", "age (hours)"], rows, {4})
            + "</section>"
        )
    else:
        out.append(
            "<section><h2>Freshness per source</h2>"
            + _empty_note("No freshness check in data_quality for this run.")
            + "</section>"
        )
    return "".join(out)


PAGE_NOTES = {
    "company": "every governance KPI of the company per period against its target, with its attainment",
    "account-nps": "portfolio NPS per segment by method; where the promoters are (promoter accounts and decision "
    "makers by segment and owner); account NPS pooled, role-weighted and waterfall by name",
    "owners": "per account team: accounts, coverage, response rate, open and overdue follow-ups, SLA, at-risk ARR",
    "follow-ups": "detractor follow-ups required, met, breached, missing and active by week and owner",
    "data-quality": "expectations failed, rows quarantined by reason, freshness of each source",
}


def index_page(data: dict) -> str:
    items = "".join(
        f'<li><a href="{slug}.html">{esc(title)}</a>: {esc(PAGE_NOTES[slug])}</li>' for slug, title in PAGES[1:]
    )
    kpis = data["governance_kpis"]
    latest = _latest(kpis[(kpis.group_type == "company") & kpis.target.notna()])
    met = latest.meets_target.astype("boolean")
    summary = (
        f"Company KPIs with a target in the latest period: {int(met.fillna(False).sum())} met, "
        f"{int((~met.fillna(True)).sum())} not met, {int(met.isna().sum())} not reportable."
    )
    return (
        f"<section><h2>Pages</h2><ul>{items}</ul>{_empty_note(summary)}"
        f'<p class="note">Owner names: {"shown" if owner_names_allowed() else "hidden (owner id and team)"}'
        f" ({OWNER_NAMES_ENV}).</p></section>"
    )


# ---------------------------------------------------------------- writing
def _page(slug: str, title: str, body: str, *, as_of: datetime, min_n: int, run_meta: str) -> str:
    here = ' class="here"'
    nav = "".join(f'<a href="{s}.html"{here if s == slug else ""}>{esc(t)}</a>' for s, t in PAGES)
    meta = "".join(
        f"<span>{esc(k)}: <b>{esc(v)}</b></span>"
        for k, v in (
            ("as of", as_of.isoformat(sep=" ")),
            ("metric contract", METRIC_CONTRACT_VERSION),
            ("min n", min_n),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cxloop governance pack: {esc(title)} {esc(as_of.strftime("%Y-%m-%d"))}</title>
<style>{CSS}{PACK_CSS}</style>
<script type="text/javascript" src="{PLOTLY_FILE}"></script>
</head>
<body>
<header>
<h1>cxloop governance pack: {esc(title)}</h1>
<div class="meta">{meta}</div>
<nav>{nav}</nav>
<p class="note">No contact-level data. Accounts by name, owners by CRM id and team. Rates and NPS of groups with
fewer than {esc(min_n)} respondents (or deliveries, follow-ups, accounts) are suppressed.</p>
</header>
{body}
{RUN_BLOCK_START}
<footer class="meta" id="run-meta">{run_meta}</footer>
{RUN_BLOCK_END}
</body>
</html>
"""


def render_pack(data: dict, *, as_of: datetime, run_id: str, dbt_invocation_id: str | None = None) -> dict[str, str]:
    """Page file name -> HTML text."""
    min_n = data["min_n"]
    run_meta = "".join(
        f"<span>{esc(k)}: <b>{esc(v)}</b></span>"
        for k, v in (
            ("run", run_id),
            ("dbt invocation", dbt_invocation_id or "n/a"),
            ("generated", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        )
    )
    bodies = {
        "index": index_page(data),
        "company": company_page(data),
        "account-nps": account_nps_page(data),
        "owners": owners_page(data, as_of),
        "follow-ups": follow_ups_page(data, as_of),
        "data-quality": data_quality_page(data),
    }
    return {
        f"{slug}.html": _page(slug, title, bodies[slug], as_of=as_of, min_n=min_n, run_meta=run_meta)
        for slug, title in PAGES
    }


def build_pack(
    settings: Settings,
    as_of: datetime,
    run_id: str,
    export_folder: Path,
    dbt_invocation_id: str | None = None,
    min_n: int | None = None,
) -> Path:
    """Write ``export_folder/pack/`` and list its files in ``export_folder/manifest.json`` if
    there is one. Returns the pack folder."""
    data = load_pack_data(settings, as_of, min_n)
    pages = render_pack(data, as_of=as_of, run_id=run_id, dbt_invocation_id=dbt_invocation_id)
    folder = Path(export_folder) / "pack"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PLOTLY_FILE).write_text(get_plotlyjs(), encoding="utf-8")
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    files = [
        {"file": f"pack/{p.name}", "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]
    manifest = Path(export_folder) / "manifest.json"
    if manifest.exists():
        doc = json.loads(manifest.read_text())
        doc["pack"] = {
            "folder": "pack",
            "entry": "pack/index.html",
            "deterministic": "pages byte-identical for identical marts and as_of outside the run metadata block",
            "files": files,
        }
        manifest.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
    log.info("governance pack %s (%d files)", folder, len(files))
    return folder
