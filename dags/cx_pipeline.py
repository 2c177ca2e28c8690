"""
### cx_pipeline: the B2B Net Promoter warehouse, end to end

Extracts CRM data (Salesforce: owners, accounts, contacts with buying roles, follow-up
tasks) and survey data (Qualtrics: surveys, invitations, responses), lands every batch as
immutable Parquet, gates it through the Great Expectations suites in `expectations/`
(bad rows go to `raw.quarantine` with their reason), loads the rest into the warehouse's
`raw` schema, builds the dbt marts (`marts.account_nps`, `portfolio_nps`,
`contact_coverage`, `response_rate`, `follow_up_sla`, `data_quality`) and exports them.

**Data window.** `as_of` (a run parameter, ISO timestamp) is the end of the data window and
the "now" of every SLA and close-out rule, so a rerun gives the same answer. When it is not
given, the run's data interval end is used.

**Sources.** `config/sources.yml` names the CRM source (salesforce, hubspot or files) and
the survey source (qualtrics or files); `CXLOOP_CRM_SOURCE` / `CXLOOP_SURVEY_SOURCE`
override it. Credentials come from the Airflow connection `cx_<source>` (host = API base
URL, password = bearer token, extra = options such as `{"directory_id": "POOL_..."}`), or
from `CXLOOP_<SOURCE>_BASE_URL` / `_TOKEN` / `_OPT_<OPTION>`.

**Incremental.** Each entity is read from its watermark (minus a lookback) to `as_of`;
watermarks live in `raw.watermarks` and advance only after the batch is committed.

All logic lives in the `cxloop` package (`plugins/cxloop`); this file only wires tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

MARTS_ASSET = Asset("cxloop_marts")


def _source_settings(name: str):
    """Connection first (cx_<name>), environment second."""
    from cxloop.config import SourceSettings, source_from_env

    try:
        from airflow.sdk import Connection

        conn = Connection.get(f"cx_{name}")
    except Exception:  # noqa: BLE001 - no such connection: fall back to the environment
        conn = None
    if conn is not None and conn.host:
        host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
        if conn.port:
            host = f"{host}:{conn.port}"
        return SourceSettings(name=name, base_url=host, token=conn.password or "", options=dict(conn.extra_dejson))
    return source_from_env(name)


@dag(
    dag_id="cx_pipeline",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["cx", "nps", "warehouse"],
    doc_md=__doc__,
    params={"as_of": Param(None, type=["null", "string"], description="end of the data window (ISO)")},
    default_args={
        "owner": "cx-data",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    },
)
def cx_pipeline():
    @task
    def resolve_as_of(params=None, data_interval_end=None, dag_run=None) -> str:
        from cxloop.config import parse_as_of

        value = (params or {}).get("as_of") or data_interval_end or getattr(dag_run, "run_after", None)
        return parse_as_of(value).isoformat()

    @task
    def extract_domain(domain: str, as_of: str) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import extract
        from cxloop.source_config import DOMAINS, load_source_config

        config = load_source_config()
        source = _source_settings(config.source_for(domain))
        return extract(source, Settings.from_env(), parse_as_of(as_of), entities=DOMAINS[domain], config=config)

    @task(retries=0)
    def validate_and_load(batches: list[dict], as_of: str) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import validate_and_load as run

        return run(batches, Settings.from_env(), parse_as_of(as_of))

    @task(outlets=[MARTS_ASSET], retries=1)
    def dbt_build(load_report: dict, as_of: str) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import build

        return build(Settings.from_env(), parse_as_of(as_of))

    @task
    def export_marts(build_report: dict, as_of: str, run_id=None) -> str:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import export

        return export(Settings.from_env(), parse_as_of(as_of), run_id or "manual", build_report.get("invocation_id"))

    @task
    def summarise(load_report: dict, export_dir: str, as_of: str) -> dict:
        from cxloop.config import Settings, parse_as_of
        from cxloop.pipeline import summarise as run

        result = run(Settings.from_env(), parse_as_of(as_of), load_report["batch_ids"], export_dir)
        print(result["text"])  # noqa: T201 - the summary belongs in the task log
        return result["headline"]

    as_of = resolve_as_of()
    crm = extract_domain.override(task_id="extract_crm")("crm", as_of)
    survey = extract_domain.override(task_id="extract_survey")("survey", as_of)
    loaded = validate_and_load([crm, survey], as_of)
    built = dbt_build(loaded, as_of)
    exported = export_marts(built, as_of)
    summarise(loaded, exported, as_of)


cx_pipeline()
