"""
### cx_publish: serve the marts to BI and governance

Scheduled on the `cxloop_marts` asset, after every successful build:

1. `publish_snapshot`: a read-only copy of the DuckDB marts swapped in atomically at
   `var/published/cx.duckdb` (BI tools open that file, never the writer's);
2. `export_marts`: every mart of the contract as Parquet and CSV in a dated folder, without
   PII, groups under n = 5 suppressed, with a checksummed manifest;
3. `governance_pack`: the governance pack's offline HTML pages (company KPIs, account NPS,
   owner scorecards, follow-up monitor, data quality) in the export folder's `pack/`, listed
   in its manifest;
4. `governance_report`: one offline HTML report with the charts a governance review reads;
5. `summarise`: the run summary (rows loaded and quarantined, headline metrics, locations).

Its `as_of`: the run parameter, else (an asset-triggered run has no data interval) the end of
the data window the warehouse is complete up to, as in `cx_transform`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from cxloop_airflow import (
    AS_OF_PARAM,
    DEFAULT_ARGS,
    MARTS_ASSET,
    TAGS,
    WAREHOUSE,
    WAREHOUSE_POOL,
    fail_fast,
    resolve_as_of,
)


@dag(
    dag_id="cx_publish",
    schedule=[MARTS_ASSET],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "publish", "governance"],
    doc_md=__doc__,
    description="Publish the BI snapshot, write the governance exports, pack and report, print the run summary",
    params=AS_OF_PARAM,
    default_args=DEFAULT_ARGS,
)
def cx_publish():
    @task(task_id="resolve_as_of", pool=WAREHOUSE_POOL)
    def run_as_of(params=None) -> str:
        with fail_fast(config=True):  # nothing loaded yet, or a malformed / future as_of
            return resolve_as_of(params, fallback=WAREHOUSE)

    @task(pool=WAREHOUSE_POOL)
    def publish_snapshot(as_of: str, run_id=None) -> str | None:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import publish

        return publish(Settings.from_env(), parse_as_of(as_of), run_id or "manual", None)

    @task(pool=WAREHOUSE_POOL)
    def export_marts(as_of: str, run_id=None) -> str:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import export

        return export(Settings.from_env(), parse_as_of(as_of), run_id or "manual", None)

    @task(pool=WAREHOUSE_POOL)
    def governance_pack(as_of: str, export_dir: str, run_id=None) -> str:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import pack

        return pack(Settings.from_env(), parse_as_of(as_of), run_id or "manual", None, export_dir)

    @task(pool=WAREHOUSE_POOL)
    def governance_report(as_of: str, run_id=None) -> str:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import report

        return report(Settings.from_env(), parse_as_of(as_of), run_id or "manual", None)

    @task(pool=WAREHOUSE_POOL)
    def summarise(as_of: str, snapshot: str | None, export_dir: str, report_path: str, pack_dir: str) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import summarise as run

        result = run(
            Settings.from_env(),
            parse_as_of(as_of),
            None,
            export_dir,
            extra={
                "BI snapshot": snapshot or "(Postgres: marts schema)",
                "report": report_path,
                "pack": pack_dir,
            },
        )
        print(result["text"])  # noqa: T201 - the summary belongs in the task log
        return result["headline"]

    as_of = run_as_of()
    snapshot = publish_snapshot(as_of)
    exported = export_marts(as_of)
    snapshot >> exported
    pack_dir = governance_pack(as_of, exported)
    report_path = governance_report(as_of)
    pack_dir >> report_path
    summarise(as_of, snapshot, exported, report_path, pack_dir)


cx_publish()
