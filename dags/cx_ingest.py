"""
### cx_ingest_crm / cx_ingest_survey: extract, gate and load one domain

One DAG per domain. `config/sources.yml` (or `CXLOOP_CRM_SOURCE` / `CXLOOP_SURVEY_SOURCE`)
says which system feeds it: CRM from Salesforce, HubSpot or file drops (owners, accounts,
contacts with buying roles, follow-up tasks); surveys from Qualtrics or file drops (surveys,
invitations, responses).

Each run reads every entity from its watermark (minus a lookback) up to `as_of` (the run
parameter, else the data interval end), lands the batch as immutable Parquet, gates it
through the Great Expectations suites (bad rows go to `raw.quarantine` with file, row, field
and reason), merges the rest into the warehouse's `raw` schema and only then advances the
watermarks. Rerunning a window changes nothing. A structurally broken batch fails the run
and moves no watermark. Errors no retry can heal (a 400/401/403/404 from the source, a
rejected configuration, a missing credential, a malformed or future `as_of`) fail the task at
once with one line saying what to fix; transient ones (5xx, 429, connection errors) are retried.

Produces the asset `cxloop_raw_crm` / `cxloop_raw_survey`, which schedules `cx_transform`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task
from cxloop_airflow import (
    AS_OF_PARAM,
    DEFAULT_ARGS,
    INTERVAL,
    RAW_ASSETS,
    TAGS,
    WAREHOUSE_POOL,
    fail_fast,
    load_event_extra,
    resolve_as_of,
    source_settings,
)

# the one line the Airflow UI shows in its DAG list
DESCRIPTIONS = {
    "crm": "Extract the CRM (owners, accounts, contacts with buying roles, follow-ups, renewals), gate and load it",
    "survey": "Extract the surveys, invitations and responses, gate them and load them",
}


def make_ingest_dag(domain: str):
    @dag(
        dag_id=f"cx_ingest_{domain}",
        schedule="@daily",
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, "ingest", domain],
        doc_md=__doc__,
        description=DESCRIPTIONS[domain],
        params=AS_OF_PARAM,
        default_args=DEFAULT_ARGS,
    )
    def ingest():
        @task(task_id="resolve_as_of")
        def run_as_of(params=None, data_interval_end=None, dag_run=None) -> str:
            run_after = getattr(dag_run, "run_after", None)
            with fail_fast(config=True):  # a malformed or future as_of cannot heal by retrying
                return resolve_as_of(
                    params, fallback=INTERVAL, data_interval_end=data_interval_end, run_after=run_after
                )

        @task(pool=WAREHOUSE_POOL)
        def read_watermarks() -> dict[str, str]:
            from cxloop.config import Settings
            from cxloop.source_config import load_source_config
            from cxloop.store.state import read_watermarks_light as read  # no pandas/pyarrow: a light task

            with fail_fast(config=True):
                source = load_source_config().source_for(domain)
                settings = Settings.from_env()
            return {e: t.isoformat() for e, t in read(settings, source).items()}

        @task
        def extract(as_of: str, watermarks: dict[str, str]) -> dict:
            from cxloop.config import Settings, parse_as_of
            from cxloop.pipeline import extract as run
            from cxloop.source_config import DOMAINS, load_source_config

            with fail_fast(config=True):  # a rejected configuration or a missing credential
                config = load_source_config()
                source = source_settings(config.source_for(domain))
                settings = Settings.from_env()
            with fail_fast(source.name):  # a 400/401/403/404 from the source: no retries
                return run(
                    source,
                    settings,
                    parse_as_of(as_of),
                    entities=DOMAINS[domain],
                    config=config,
                    watermarks={e: datetime.fromisoformat(t) for e, t in watermarks.items()},
                )

        @task(pool=WAREHOUSE_POOL, retries=0, outlets=[RAW_ASSETS[domain]])
        def validate_and_load(batch: dict, as_of: str, *, outlet_events=None) -> dict:
            from cxloop.config import Settings, parse_as_of
            from cxloop.pipeline import validate_and_load as run

            report = run([batch], Settings.from_env(), parse_as_of(as_of))
            if outlet_events is not None:  # the asset event carries the row counts and the as_of
                outlet_events[RAW_ASSETS[domain]].extra = load_event_extra(report, as_of)
            return report

        as_of = run_as_of()
        validate_and_load(extract(as_of, read_watermarks()), as_of)

    return ingest()


cx_ingest_crm = make_ingest_dag("crm")
cx_ingest_survey = make_ingest_dag("survey")
