"""
### cx_transform: build the CX marts with dbt

Scheduled on the raw-layer assets (both `cxloop_raw_crm` and `cxloop_raw_survey` updated since
the last build, so a daily pair of ingestions triggers one build): first
`dbt source freshness` (task `source_freshness`: each source table's newest loaded data window
against the run's as_of, thresholds from the program settings `freshness_warn_hours` /
`freshness_error_hours`; kept in `raw.source_freshness`, an error is posted to the alert
webhook), then `dbt build` (seeds, snapshots, staging, intermediate, marts and every data test;
`marts.data_quality` carries the freshness rows) in one task, which keeps each node's result
in `raw.dbt_results` and in the task log.

An asset-triggered run has no data interval: its `as_of` (the "now" of SLA clocks and
close-out windows) is the end of the data window the warehouse is complete up to, read from
the extraction windows the ingestion DAGs recorded. A manual run may pass `as_of`.

Produces the asset `cxloop_marts`, which schedules `cx_publish`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from cxloop_airflow import (
    AS_OF_PARAM,
    DEFAULT_ARGS,
    MARTS_ASSET,
    RAW_ASSETS,
    TAGS,
    WAREHOUSE,
    WAREHOUSE_POOL,
    build_event_extra,
    fail_fast,
    resolve_as_of,
)


@dag(
    dag_id="cx_transform",
    schedule=(RAW_ASSETS["crm"] & RAW_ASSETS["survey"]),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=[*TAGS, "dbt"],
    doc_md=__doc__,
    description="dbt build of the CX marts (models and every data and unit test) for the run's as_of",
    params=AS_OF_PARAM,
    default_args=DEFAULT_ARGS,
)
def cx_transform():
    @task(task_id="resolve_as_of", pool=WAREHOUSE_POOL)
    def run_as_of(params=None) -> str:
        with fail_fast(config=True):  # nothing loaded yet, or a malformed / future as_of
            return resolve_as_of(params, fallback=WAREHOUSE)

    @task(pool=WAREHOUSE_POOL, retries=1)
    def source_freshness(as_of: str) -> dict:
        """A stale source is reported (data_quality, the alert webhook), never a failed task."""
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import check_freshness

        return check_freshness(Settings.from_env(), parse_as_of(as_of))

    @task(pool=WAREHOUSE_POOL, retries=1, outlets=[MARTS_ASSET])
    def dbt_build(as_of: str, freshness: dict, *, outlet_events=None) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import build

        result = {**build(Settings.from_env(), parse_as_of(as_of), freshness=False), "freshness": freshness}
        if outlet_events is not None:  # the asset event names the build and its as_of
            outlet_events[MARTS_ASSET].extra = build_event_extra(result, as_of)
        return result

    as_of = run_as_of()
    dbt_build(as_of, source_freshness(as_of))


cx_transform()
