"""Governance exports: every mart of the contract as Parquet and CSV in a dated folder, with a
checksummed manifest. No PII; groups with n < min_n (default 5) suppressed (contract 7).

Engine-neutral: the marts are read through :class:`cxloop.serve.reader.WarehouseReader`, so the same
pack comes out of the DuckDB file and the Postgres warehouse.

What a pack holds, per mart (``GOVERNANCE`` below is the rule set; the manifest repeats it):

- No contact-level data at all. ``follow_up_sla`` is one row per detractor response (response
  id, contact id, the contact's score, timestamps): it is exported aggregated to
  period x survey type x owner (team) instead, with counts by SLA status, attainment, completion
  and recovery, and median calendar hours. No file carries response_id, contact_id, follow_up_id,
  email_hash, a name or a free-text field.
- Accounts and owners appear by their CRM ids only (account_id, owner_id); account and owner
  names live in the raw layer and never reach a mart or an export.
- The one exception, for the account teams rather than reviewers: ``worklists/<owner>.csv``,
  each owner's rows of ``account_team_worklist``, keep the CRM's contact and follow-up task ids
  (:data:`WORKLIST_CRM_IDS`) of whom to call, and nothing else about the person. The mart's
  governance copy (``account_team_worklist.csv``) has neither. File names come from untrusted
  owner ids through :func:`worklist_file_names`.
- Suppression: each mart's group size ``n`` (n_scored for NPS, with n_accounts as well for the
  account-based portfolio methods; delivered for response rates; n for governance KPIs;
  required follow-ups for the SLA aggregate). Rows with n < min_n keep their keys and n but
  have every metric derived from the answers nulled, and ``suppressed = true``. In
  ``account_nps`` the previous-period columns are nulled too when the previous period's row
  was itself suppressed (otherwise nps_prev would leak it).
- ``contact_coverage``, ``at_risk_accounts``, ``revenue_at_risk`` and ``data_quality`` carry no
  survey answers aggregated over a group of respondents (slot counts, account flags and ARR,
  batch checks): they are exported whole, with ``suppressed = false``. ``nps_renewal_outcomes``
  is suppressed on ``n_renewals`` (its promoter-minus-detractor row when either class is small).

Determinism (a governance review compares two packs by checksum): identical warehouse
contents and as_of give byte-identical data files. Rows are sorted on each mart's full grain;
CSV floats are written with a fixed 9 decimals (the marts' own rounding, macro ``cx_round``);
Parquet is written with fixed options and no wall-clock metadata. What varies from run to run
(run id, export time, dbt invocation, watermarks, and ``data_quality``'s batch ids and
check times) lives in ``manifest.json`` alone: ``data_quality`` names each batch by a stable
label (``<source>#<n>``, n counting the source's batches in check order) that the manifest
maps to its batch id and check time.

For a reviewer the folder carries ``README.md`` (what each file is, its grain and row count, the
suppression rule, how to verify) and ``SHA256SUMS`` (``sha256sum -c SHA256SUMS`` checks every
data file and the README). Both are as deterministic as the data files; the manifest, which
changes with every run, is not listed in SHA256SUMS and checksums the data files itself.

CSV cells are neutralised against formula injection (OWASP): a text cell starting with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return is written as ``'<value>`` and quoted.
Numeric columns are never touched (``-5`` stays a number) and Parquet keeps the exact value.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cxloop.config import Settings

log = logging.getLogger(__name__)

METRIC_CONTRACT_VERSION = "v1"
MIN_N_VAR = "min_n_group"  # the program setting / dbt var: "5 for any group in an export" (contract 3)
CSV_FLOAT_FORMAT = "{:.9f}"  # the marts round every float to 9 decimals (macro cx_round)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "row_group_size": 1 << 20,
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
}
MARTS = (
    "account_nps",
    "portfolio_nps",
    "contact_coverage",
    "response_rate",
    "follow_up_sla",
    "governance_kpis",
    "at_risk_accounts",
    "revenue_at_risk",
    "nps_renewal_outcomes",
    "data_quality",
    "account_team_worklist",
)
WORKLIST_MART = "account_team_worklist"
WORKLIST_DIR = "worklists"
# The per-owner worklists go to the account teams, who work the contacts in the CRM: they keep
# the CRM's own ids of the contact and the follow-up task (and nothing else about the person).
# Every other PII column (the survey platform's response_id, names, e-mail, hashes, titles,
# free text) is dropped from them as from every other file.
WORKLIST_CRM_IDS = frozenset({"contact_id", "follow_up_id"})

# Columns that identify a person (or a single response of one) and are never exported.
PII_COLUMNS = frozenset(
    {
        "contact_id",
        "response_id",
        "follow_up_id",
        "email",
        "email_hash",
        "first_name",
        "last_name",
        "contact_name",
        "owner_name",
        "account_name",
        "title",
        "comment",
        "free_text",
    }
)


class ExportContractError(RuntimeError):
    """A mart lacks a column the governance rules need (so it could not be made safe)."""


@dataclass(frozen=True)
class MartRule:
    keys: tuple[str, ...]  # sort order of the exported rows
    n: str | None = None  # group size column; None: no suppression applies
    metrics: tuple[str, ...] = ()  # nulled when suppressed
    note: str = ""


GOVERNANCE: dict[str, MartRule] = {
    "account_nps": MartRule(
        keys=("period_start", "survey_type", "account_id", "method"),
        n="n_scored",
        metrics=(
            "waterfall_role", "promoters", "passives", "detractors", "nps", "var_pts", "ci_low",
            "ci_high", "nps_prev", "var_pts_prev", "is_significant_change",
        ),
        note="suppressed when n_scored < min_n; *_prev also nulled when the previous period's row is suppressed",
    ),
    "portfolio_nps": MartRule(
        keys=("period_start", "survey_type", "group_type", "group_value", "method"),
        n="n_scored",
        metrics=("promoters", "passives", "detractors", "nps", "var_pts", "ci_low", "ci_high"),
        note="suppressed when n_scored < min_n, or (account-based methods) n_accounts < min_n",
    ),
    "contact_coverage": MartRule(
        keys=("period_start", "account_id"),
        note="account-level slot counts, no answers: exported whole",
    ),
    "response_rate": MartRule(
        keys=("period_start", "survey_type", "group_type", "group_value"),
        n="delivered",
        metrics=(
            "responses", "scored_responses", "response_rate", "scored_response_rate",
            "accounts_responded", "account_response_rate", "meets_target",
        ),
        note="suppressed when delivered < min_n",
    ),
    "follow_up_sla": MartRule(
        keys=("period_start", "survey_type", "owner_id", "team"),
        n="follow_ups_required",
        metrics=(
            "met", "breached", "missing", "active", "sla_attainment", "completed", "completion_due",
            "completion_rate", "recovered", "with_next_score", "median_calendar_hours_to_first_contact",
            "median_calendar_hours_to_close",
        ),
        note="row-level mart (one row per detractor response) exported aggregated to period x survey_type x "
        "owner_id x team; suppressed when follow_ups_required < min_n",
    ),
    "governance_kpis": MartRule(
        keys=("period_start", "group_type", "group_value", "kpi"),
        n="n",
        metrics=("value", "ci_low", "ci_high", "meets_target"),
        note="suppressed when n < min_n",
    ),
    "at_risk_accounts": MartRule(
        keys=("period_start", "risk_rank", "account_id"),
        note="account-level list by CRM id, no contact data: exported whole",
    ),
    "revenue_at_risk": MartRule(
        keys=("period_start", "renewal_quarter", "account_class"),
        note="ARR of accounts by renewal quarter and account class, with at_risk_accounts' flags: account-level "
        "CRM figures like at_risk_accounts, exported whole",
    ),
    "nps_renewal_outcomes": MartRule(
        keys=("account_class",),
        n="n_renewals",
        metrics=(
            "n_won", "renewal_rate", "renewal_rate_ci_low", "renewal_rate_ci_high", "previous_arr", "renewed_arr",
            "net_revenue_retention",
        ),
        note="suppressed when n_renewals < min_n; the promoter_minus_detractor row also when it is not "
        "reportable (either class has fewer than min_n renewals)",
    ),
    "account_team_worklist": MartRule(
        keys=("owner_id", "item_rank"),
        note="one row per actionable item per owner (coverage gap, open follow-up, promoter decision maker to "
        "activate); account-level, no answers: exported whole, here without contact or follow-up ids; the "
        "per-owner files worklists/<owner>.csv keep the CRM contact and follow-up ids",
    ),
    "data_quality": MartRule(
        keys=("source", "batch", "entity", "expectation", "column_name"),
        note="batch x expectation results, no row data: exported whole; batch_id and checked_at are replaced "
        "by a stable batch label that the manifest's data_quality_batches maps back to them",
    ),
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require(mart: str, frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ExportContractError(f"marts.{mart} lacks {missing}: cannot apply its governance rule")


def aggregate_follow_up_sla(frame: pd.DataFrame) -> pd.DataFrame:
    """The follow-up SLA mart (one row per required follow-up) as period x survey type x owner."""
    _require(
        "follow_up_sla",
        frame,
        ["period_start", "survey_type", "owner_id", "team", "sla_status", "is_completed", "is_completion_due",
         "is_recovered", "next_score", "calendar_hours_to_first_contact", "calendar_hours_to_close"],
    )
    f = frame.copy()
    status = f["sla_status"].astype(object)
    for name in ("met", "breached", "missing", "active"):
        f[name] = (status == name).astype("int64")
    f["completed"] = f["is_completed"].fillna(False).astype(bool).astype("int64")
    f["completion_due"] = f["is_completion_due"].fillna(False).astype(bool).astype("int64")
    f["recovered"] = f["is_recovered"].fillna(False).astype(bool).astype("int64")
    f["with_next_score"] = f["next_score"].notna().astype("int64")
    f["owner_id"] = f["owner_id"].astype(object).where(f["owner_id"].notna(), "(none)")
    f["team"] = f["team"].astype(object).where(f["team"].notna(), "(none)")
    for col in ("calendar_hours_to_first_contact", "calendar_hours_to_close"):
        f[col] = pd.to_numeric(f[col], errors="coerce").astype(float)
    keys = ["period_start", "survey_type", "owner_id", "team"]
    out = (
        f.groupby(keys, dropna=False)
        .agg(
            follow_ups_required=("sla_status", "size"),
            met=("met", "sum"),
            breached=("breached", "sum"),
            missing=("missing", "sum"),
            active=("active", "sum"),
            completed=("completed", "sum"),
            completion_due=("completion_due", "sum"),
            recovered=("recovered", "sum"),
            with_next_score=("with_next_score", "sum"),
            median_calendar_hours_to_first_contact=("calendar_hours_to_first_contact", "median"),
            median_calendar_hours_to_close=("calendar_hours_to_close", "median"),
        )
        .reset_index()
    )
    decided = out["met"] + out["breached"] + out["missing"]
    out["sla_attainment"] = (out["met"] / decided.where(decided > 0)).astype(float)
    out["completion_rate"] = (out["completed"] / out["completion_due"].where(out["completion_due"] > 0)).astype(float)
    # the marts' own precision (macro cx_round): the same bytes whatever the float noise
    floats = [
        "sla_attainment", "completion_rate", "median_calendar_hours_to_first_contact", "median_calendar_hours_to_close",
    ]
    out[floats] = out[floats].round(9)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def min_n_group(settings: Settings | None = None) -> int:
    """The program setting ``min_n_group`` (config ``program:`` section, override
    CXLOOP_PROGRAM_MIN_N_GROUP; :mod:`cxloop.program`), the same value the pipeline hands dbt:
    the one definition of the smallest group an export, the report or the summary shows.
    ``settings`` is accepted for the callers that pass it; the value does not depend on it."""
    from cxloop.program import load_program

    return int(load_program().min_n_group)


def label_batches(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict]]:
    """``data_quality`` with its run-dependent columns (batch_id, checked_at) replaced by a
    stable ``batch`` label ``<source>#<n>`` (n: the source's batches ordered by first check
    time, then id); returns the frame and the label -> {batch_id, checked_at} map."""
    if "batch_id" not in frame.columns:
        return frame, {}
    f = frame.copy()
    checked = pd.to_datetime(f["checked_at"]) if "checked_at" in f.columns else pd.Series(pd.NaT, index=f.index)
    first = (
        pd.DataFrame({"source": f["source"].astype(object), "batch_id": f["batch_id"].astype(object), "at": checked})
        .groupby(["source", "batch_id"], dropna=False)["at"]
        .min()
        .reset_index()
        .sort_values(["source", "at", "batch_id"], kind="stable", na_position="last")
    )
    first["n"] = first.groupby("source", dropna=False).cumcount() + 1
    first["batch"] = [f"{s}#{n}" for s, n in zip(first["source"], first["n"], strict=True)]
    labels = dict(zip(first["batch_id"], first["batch"], strict=True))
    batches = {
        row.batch: {"batch_id": row.batch_id, "first_checked_at": None if pd.isna(row.at) else row.at.isoformat()}
        for row in first.itertuples()
    }
    f.insert(0, "batch", f["batch_id"].astype(object).map(labels))
    return f.drop(columns=[c for c in ("batch_id", "checked_at") if c in f.columns]), batches


def govern(mart: str, frame: pd.DataFrame, min_n: int | None = None) -> pd.DataFrame:
    """One mart made fit for a governance pack: PII columns dropped (follow_up_sla
    aggregated, data_quality's batches labelled), small groups suppressed, a ``suppressed``
    flag added, rows in the order of the mart's full grain. ``min_n`` defaults to the dbt
    project's ``min_n_group``."""
    rule = GOVERNANCE[mart]
    min_n = min_n_group() if min_n is None else min_n
    if mart == "follow_up_sla":
        frame = aggregate_follow_up_sla(frame)
    if mart == "data_quality":
        frame = label_batches(frame)[0]
    frame = frame.drop(columns=[c for c in frame.columns if c in PII_COLUMNS]).copy()
    _require(mart, frame, [k for k in rule.keys if k != "column_name"])
    if rule.n is None:
        frame["suppressed"] = False
    else:
        _require(mart, frame, [rule.n, *rule.metrics])
        n = pd.to_numeric(frame[rule.n], errors="coerce")
        small = (n < min_n) | n.isna()
        if mart == "portfolio_nps":
            _require(mart, frame, ["method", "n_accounts"])
            account_based = frame["method"].astype(object) != "respondent"
            small |= account_based & (pd.to_numeric(frame["n_accounts"], errors="coerce").fillna(0) < min_n)
        if mart == "nps_renewal_outcomes":  # the difference would reveal a small class's rate
            _require(mart, frame, ["account_class", "is_reportable"])
            difference = frame["account_class"].astype(object) == "promoter_minus_detractor"
            small |= difference & ~frame["is_reportable"].astype("boolean").fillna(False).astype(bool)
        small = small.fillna(True).astype(bool)
        if mart == "account_nps":
            prev_small = _previous_row_suppressed(frame, small)
            for col in ("nps_prev", "var_pts_prev", "is_significant_change"):
                frame[col] = _null_where(frame[col], prev_small)
        for col in rule.metrics:
            frame[col] = _null_where(frame[col], small)
        frame["suppressed"] = small.to_numpy()
    keys = [k for k in rule.keys if k in frame.columns]
    return frame.sort_values(keys, na_position="last", kind="stable").reset_index(drop=True)


def _null_where(series: pd.Series, mask: pd.Series) -> pd.Series:
    mask = pd.Series(mask.to_numpy(), index=series.index)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_integer_dtype(series):
        # plain bool/int cannot hold nulls: move to the nullable extension type first
        series = series.astype("boolean" if pd.api.types.is_bool_dtype(series) else "Int64")
    return series.mask(mask)


def _previous_row_suppressed(frame: pd.DataFrame, small: pd.Series) -> pd.Series:
    """For each account_nps row: is the row of the immediately previous period (same survey
    type, account, method) suppressed? The period list is the mart's own distinct periods;
    with no rows or a single period there is no previous row."""
    keys = ["survey_type", "account_id", "method"]
    own = frame[keys].astype(object).copy()
    own["period_start"] = pd.to_datetime(frame["period_start"])
    periods = sorted(own["period_start"].dropna().unique())
    if len(periods) < 2:
        return pd.Series(False, index=frame.index)
    previous = dict(zip(periods[1:], periods[:-1], strict=False))
    own["_small"] = small.to_numpy()
    lookup = own.rename(columns={"period_start": "_prev_period", "_small": "_prev_small"})
    probe = own[keys].copy()
    # map() of a datetime column to datetimes, NaT where there is no previous period: keep the
    # dtype the lookup side has, or the merge compares float64 with datetime64
    probe["_prev_period"] = own["period_start"].map(previous).astype(lookup["_prev_period"].dtype)
    merged = probe.merge(lookup, on=[*keys, "_prev_period"], how="left")
    return pd.Series(merged["_prev_small"].fillna(False).astype(bool).to_numpy(), index=frame.index)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            # Postgres hands back Decimal/date objects; let Arrow infer, strings stay strings
            out[col] = out[col].where(out[col].notna(), None)
    return pa.Table.from_pandas(out, preserve_index=False)


def is_text_column(series: pd.Series) -> bool:
    """A column of text values (not numbers, booleans or dates): the only kind that formula
    neutralisation may touch."""
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return True
    if series.dtype != object:
        return False
    values = series.dropna()
    return len(values) > 0 and all(isinstance(v, str) for v in values)


def neutralise_formula(value: str) -> str:
    """OWASP CSV injection rule: a text cell a spreadsheet would evaluate gets a leading ``'``."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _csv_field(text: str, force_quote: bool = False) -> str:
    if force_quote or any(ch in text for ch in ',"\n\r') or text != text.strip(" "):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_cell(value: object, text_column: bool) -> str:
    import datetime as dt
    import math
    from decimal import Decimal

    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and math.isnan(value):
        return ""
    if text_column and isinstance(value, str):
        safe = neutralise_formula(value)
        return _csv_field(safe, force_quote=safe != value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        number = float(value)
        return CSV_FLOAT_FORMAT.format(0.0 if number == 0 else number)
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    return _csv_field(str(value))


def to_csv_text(frame: pd.DataFrame) -> str:
    """The frame as CSV text: header, one line per row, ``\\n`` line ends, floats with a fixed
    9 decimals, timestamps and dates as ``YYYY-MM-DDTHH:MM:SS``, empty cells for nulls, text
    cells neutralised against formula injection (numbers never)."""
    text_columns = [is_text_column(frame[c]) for c in frame.columns]
    lines = [",".join(_csv_field(str(c)) for c in frame.columns)]
    columns = [frame[c].astype(object).tolist() for c in frame.columns]
    for row in zip(*columns, strict=True) if columns else ():
        lines.append(",".join(_csv_cell(v, t) for v, t in zip(row, text_columns, strict=True)))
    return "\n".join(lines) + "\n"


def _write(frame: pd.DataFrame, folder: Path, mart: str) -> list[Path]:
    table = _to_arrow(frame)
    parquet = folder / f"{mart}.parquet"
    pq.write_table(table, parquet, **PARQUET_OPTIONS)
    csv = folder / f"{mart}.csv"
    csv.write_bytes(to_csv_text(frame).encode("utf-8"))
    return [parquet, csv]


def _settings_for(warehouse: Settings | Path | str) -> Settings:
    if isinstance(warehouse, Settings):
        return warehouse
    return replace(Settings.from_env(), target="duckdb", warehouse_path=Path(warehouse))


def export_marts(
    warehouse: Settings | Path | str,
    exports_dir: Path,
    *,
    as_of: datetime,
    run_id: str,
    dbt_invocation_id: str | None = None,
    watermarks: dict | None = None,
    min_n: int | None = None,
) -> Path:
    """Write ``exports_dir/<as_of date>/<run_id>/<mart>.{parquet,csv}`` and ``manifest.json``.

    ``warehouse`` is the run's :class:`Settings` (DuckDB or Postgres, read through
    WarehouseReader) or, as before, the path of a DuckDB warehouse file. ``min_n`` defaults to
    the dbt project's ``min_n_group``. Returns the folder.
    """
    from cxloop.serve.reader import WarehouseReader

    settings = _settings_for(warehouse)
    min_n = min_n_group(settings) if min_n is None else min_n
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    folder = Path(exports_dir) / as_of.strftime("%Y-%m-%d") / safe_run
    folder.mkdir(parents=True, exist_ok=True)
    files: list[dict] = []
    marts: dict[str, dict] = {}
    with WarehouseReader(settings) as reader:
        frames = {mart: reader.df(f"select * from marts.{mart}") for mart in MARTS}
    for mart in MARTS:
        source = frames[mart]
        out = govern(mart, source, min_n)
        dropped = sorted(c for c in source.columns if c in PII_COLUMNS)
        for path in _write(out, folder, mart):
            files.append(
                {
                    "mart": mart,
                    "file": path.name,
                    "format": path.suffix.lstrip("."),
                    "rows": len(out),
                    "bytes": path.stat().st_size,
                    "sha256": sha256_file(path),
                }
            )
        marts[mart] = {
            "mart_rows": len(source),
            "rows": len(out),
            "empty": len(source) == 0,
            "columns": list(out.columns),
            "dropped_columns": dropped,
            "suppressed_rows": int(out["suppressed"].sum()),
            "rule": GOVERNANCE[mart].note,
        }
    with WarehouseReader(settings) as reader:
        # every CRM owner gets a file, one with nothing to do a header-only one (the owner
        # dimension mart, marts/directory/owner_directory: marts only, never staging)
        owners = reader.df("select owner_id from marts.owner_directory")["owner_id"].tolist()
    worklists = write_worklists(frames[WORKLIST_MART], owners, folder)
    for entry in worklists:
        files.append({"mart": WORKLIST_MART, "format": "csv", **entry})
    empty = [m for m in MARTS if marts[m]["empty"]]
    if empty:
        log.warning("exporting empty marts (header-only files): %s", ", ".join(empty))
    manifest = {
        "metric_contract_version": METRIC_CONTRACT_VERSION,
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "dbt_invocation_id": dbt_invocation_id,
        "source_watermarks": watermarks or {},
        "data_quality_batches": label_batches(frames["data_quality"])[1],
        "empty_marts": empty,
        "suppression": {
            "min_n": min_n,
            "min_n_from": f"program setting {MIN_N_VAR}",
            "rule": "rows whose group size n is below min_n keep keys and n; their metric columns are null "
            "and suppressed = true (per mart: see marts.<mart>.rule)",
        },
        "pii": {
            "policy": "no contact-level identifiers, names, e-mail (hashes) or free text; accounts and owners "
            "by CRM id only",
            "never_exported_columns": sorted(PII_COLUMNS),
        },
        "csv": {
            "floats": "fixed 9 decimals",
            "formula_injection": "text cells starting with = + - @ tab or carriage return are prefixed with ' "
            "and quoted (OWASP); numeric columns untouched; Parquet holds the exact values",
        },
        "determinism": "every data file is byte-identical for identical warehouse contents and as_of; only this "
        "manifest carries run-dependent values (run_id, exported_at, dbt_invocation_id, watermarks, batch ids)",
        "marts": marts,
        "worklists": {
            "folder": WORKLIST_DIR,
            "rule": "one CSV per CRM owner (and one for items without an owner), rows in item_rank order; file "
            "names are the owner id when it is safe, else a sanitised name with a hash suffix (owner_id column "
            "names the owner); CRM contact_id and follow_up_id kept, no other contact data",
            "files": [{"owner_id": w["owner_id"], "file": w["file"], "rows": w["rows"]} for w in worklists],
        },
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    readme = folder / "README.md"
    readme.write_text(reviewer_readme(as_of, min_n, marts, files), encoding="utf-8")
    checked = [*(f["file"] for f in files), readme.name]
    sums = "".join(f"{sha256_file(folder / name)}  {name}\n" for name in checked)
    (folder / "SHA256SUMS").write_text(sums, encoding="utf-8")
    log.info("exported %d files to %s", len(files), folder)
    return folder


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def reviewer_readme(as_of: datetime, min_n: int, marts: dict[str, dict], files: list[dict]) -> str:
    """The folder's README.md for a governance reviewer. Built from the rule set, the mart row
    counts and the file list only (never from cell values), so it is byte-identical whenever
    the data files are."""
    lines = [
        f"# cxloop governance export, as of {as_of:%Y-%m-%d}",
        "",
        "Every mart of the metric contract (`docs/metric-contract.md` in the cxloop repository), each as",
        "Parquet (exact values) and CSV (the same rows; floats with 9 decimals). One row per grain",
        "below; rows are sorted on the grain, so two exports of the same data are byte-identical.",
        "",
        "| mart | files | rows | grain (one row per) | suppression and contents |",
        "|---|---|---|---|---|",
    ]
    by_mart: dict[str, list[str]] = {}
    worklists = [f for f in files if f["file"].startswith(f"{WORKLIST_DIR}/")]
    for f in files:
        if f not in worklists:
            by_mart.setdefault(f["mart"], []).append(f"`{f['file']}`")
    if worklists:
        by_mart.setdefault(WORKLIST_MART, []).append(f"`{WORKLIST_DIR}/*.csv` ({len(worklists)} owners)")
    for mart, info in marts.items():
        grain = ", ".join(GOVERNANCE[mart].keys)
        lines.append(
            f"| {mart} | {' '.join(by_mart.get(mart, []))} | {info['rows']} | {_md_cell(grain)} | "
            f"{_md_cell(info['rule'])}{' (empty: header only)' if info['empty'] else ''} |"
        )
    lines += [
        "",
        "## Suppression",
        "",
        f"A row whose group size is below {min_n} (the program setting `{MIN_N_VAR}`) keeps its keys and",
        "its group size, has every metric derived from the answers set to null, and `suppressed = true`.",
        "The table above names each mart's group size column.",
        "",
        "## Personal data",
        "",
        "No contact-level identifier, name, e-mail address or hash, and no free text. Accounts and",
        "owners appear by CRM id only. Text cells that a spreadsheet would run as a formula (starting",
        "with `=`, `+`, `-`, `@`, a tab or a carriage return) are written as `'<value>` in the CSV.",
        "The one exception is the folder below, which is addressed to the account teams.",
        "",
        "## Account-team worklists",
        "",
        f"`{WORKLIST_DIR}/<owner>.csv`: one file per CRM owner (an owner with nothing to do gets a",
        "header-only file; items without an owner are in `_unassigned.csv`), the owner's rows of",
        "`account_team_worklist` in `item_rank` order: role slots short (on file, invited or responded),",
        "follow-ups due or overdue, promoter decision makers to activate. They carry the CRM's contact",
        "id and follow-up task id of the contact to act on, and nothing else about the person (no name,",
        "e-mail, title, score or survey response id). The file name is the owner id when that is",
        "plain (letters, digits, `_`, `-`), else a sanitised name with a hash suffix; the `owner_id`",
        "column holds the id itself.",
        "",
        "## How to verify",
        "",
        "    sha256sum -c SHA256SUMS",
        "",
        "checks every data file and this README. `manifest.json` holds what changes from run to run",
        "(run id, export time, dbt invocation, source watermarks, the data-quality batch ids) and a",
        "checksum and row count per file; it is not listed in SHA256SUMS for that reason.",
        "",
    ]
    return "\n".join(lines)


_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
UNASSIGNED = "_unassigned"


def worklist_file_names(owner_ids: list) -> dict:
    """owner id -> file name under worklists/, deterministic and collision-free. Owner ids are
    untrusted text: an id made only of ``A-Z a-z 0-9 _ -`` (at most 64 characters, not
    starting with ``_`` or ``-``, not a device name) is its own name; any other id is reduced
    to those characters and gets ``-<first hex digits of sha256(id)>``; no owner (None) is
    ``_unassigned``. Names are compared case-insensitively (for case-insensitive file systems);
    a clash takes more hex digits until it is gone. The ``.csv`` suffix is added here."""
    import re

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    names: dict = {}
    taken: set[str] = set()
    ordered = sorted({o for o in owner_ids if o is not None}, key=str)
    plain = [o for o in ordered if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", str(o))
             and str(o).lower() not in _RESERVED_NAMES]
    if any(o is None for o in owner_ids):
        names[None] = UNASSIGNED
        taken.add(UNASSIGNED)
    for owner in plain:
        if str(owner).lower() not in taken:
            names[owner] = str(owner)
            taken.add(str(owner).lower())
    for owner in ordered:
        if owner in names:
            continue
        base = re.sub(r"[^A-Za-z0-9_-]", "_", str(owner).strip())[:48].strip("_-") or "owner"
        width = 8
        while f"{base}-{digest(str(owner))[:width]}".lower() in taken:
            width += 4
        names[owner] = f"{base}-{digest(str(owner))[:width]}"
        taken.add(names[owner].lower())
    return {owner: f"{name}.csv" for owner, name in names.items()}


def write_worklists(frame: pd.DataFrame, owners: list, folder: Path) -> list[dict]:
    """``folder/worklists/<owner>.csv``: each owner's items of ``account_team_worklist`` in
    item_rank order (a header-only file for an owner with none), without response_id and every
    other PII column except the CRM ids in :data:`WORKLIST_CRM_IDS`, formula-neutralised like
    every CSV. ``owners`` are the CRM's owners; owners of items are added. Returns one entry per
    file (owner_id, file relative to ``folder``, rows, bytes, sha256), in file-name order."""
    _require(WORKLIST_MART, frame, ["owner_id", "item_rank"])
    drop = [c for c in frame.columns if c in PII_COLUMNS and c not in WORKLIST_CRM_IDS]
    items = frame.drop(columns=drop)
    owner_col = items["owner_id"].astype(object).where(items["owner_id"].notna(), None)
    names = worklist_file_names([*(o for o in owners if o is not None), *owner_col.tolist()])
    out_dir = folder / WORKLIST_DIR
    out_dir.mkdir(exist_ok=True)
    entries = []
    for owner, name in sorted(names.items(), key=lambda kv: kv[1]):
        mine = items[owner_col.isna()] if owner is None else items[owner_col == owner]
        mine = mine.sort_values("item_rank", kind="stable").reset_index(drop=True)
        path = out_dir / name
        path.write_bytes(to_csv_text(mine).encode("utf-8"))
        entries.append(
            {
                "owner_id": owner,
                "file": f"{WORKLIST_DIR}/{name}",
                "rows": len(mine),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
        )
    return entries


def verify_manifest(folder: Path) -> list[str]:
    """Problems found re-checking a manifest's files, the pack's pages and the report (empty
    when every checksum verifies)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    problems = []
    listed = [
        *manifest["files"],
        *manifest.get("pack", {}).get("files", []),
        *([manifest["report"]] if "report" in manifest else []),
    ]
    for entry in listed:
        path = folder / entry["file"]
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: checksum differs from manifest")
    return problems
