"""Export every mart as Parquet and CSV into a dated folder with a checksummed manifest."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

METRIC_CONTRACT_VERSION = "v1"
MARTS = (
    "account_nps",
    "portfolio_nps",
    "contact_coverage",
    "response_rate",
    "follow_up_sla",
    "governance_kpis",
    "at_risk_accounts",
    "data_quality",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_marts(
    warehouse_path: Path,
    exports_dir: Path,
    *,
    as_of: datetime,
    run_id: str,
    dbt_invocation_id: str | None = None,
    watermarks: dict | None = None,
) -> Path:
    """Write ``exports_dir/<as_of date>/<run_id>/<mart>.{parquet,csv}`` and ``manifest.json``.

    Returns the folder.
    """
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    folder = exports_dir / as_of.strftime("%Y-%m-%d") / safe_run
    folder.mkdir(parents=True, exist_ok=True)
    files: list[dict] = []
    # The pipeline's own connection config (not read_only): under `airflow dags test` every
    # task runs in one process where dbt-duckdb may still hold the database open, and DuckDB
    # refuses a second connection with a different configuration. BI readers never open
    # this file; they read the published copy.
    con = duckdb.connect(str(warehouse_path))
    try:
        for mart in MARTS:
            rows = con.execute(f"select count(*) from marts.{mart}").fetchone()[0]
            for fmt, options in (("parquet", "(format parquet)"), ("csv", "(format csv, header true)")):
                path = folder / f"{mart}.{fmt}"
                con.execute(f"copy (select * from marts.{mart} order by all) to {_quote(path)} {options}")
                files.append({"mart": mart, "file": path.name, "format": fmt, "rows": rows, "sha256": sha256_file(path)})
    finally:
        con.close()
    manifest = {
        "metric_contract_version": METRIC_CONTRACT_VERSION,
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "dbt_invocation_id": dbt_invocation_id,
        "source_watermarks": watermarks or {},
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    log.info("exported %d files to %s", len(files), folder)
    return folder


def verify_manifest(folder: Path) -> list[str]:
    """Problems found re-checking a manifest's files (empty when every checksum verifies)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    problems = []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: checksum differs from manifest")
    return problems
