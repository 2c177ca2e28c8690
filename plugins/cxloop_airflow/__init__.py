"""Airflow wiring shared by the cxloop DAG files: assets, the warehouse pool, default args,
source connections and the run's as_of. Kept apart from the `cxloop` core, which imports no
Airflow; all pipeline logic lives there."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param

# Every task that writes (or may hold) the DuckDB warehouse takes this pool's only slot:
# DuckDB allows one writer process at a time.
WAREHOUSE_POOL = "warehouse_writer"
RAW_ASSETS = {"crm": Asset("cxloop_raw_crm"), "survey": Asset("cxloop_raw_survey")}
MARTS_ASSET = Asset("cxloop_marts")
TAGS = ["cx", "nps", "cxloop"]

AS_OF_PARAM = {
    "as_of": Param(
        None,
        type=["null", "string"],
        description="end of the data window (ISO); default: the run's data interval end",
    )
}


def _on_failure(context):
    from cxloop.alerts import on_failure

    on_failure(context)


DEFAULT_ARGS = {
    "owner": "cx-data",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": _on_failure,
}


def source_settings(name: str):
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


def explicit_as_of(params, data_interval_end=None, dag_run=None) -> str | None:
    """The run's as_of: the `as_of` param, else the data interval end, else None (an
    asset-triggered run has no interval: the caller takes the warehouse's data window)."""
    from cxloop.config import parse_as_of

    value = (params or {}).get("as_of") or data_interval_end
    return parse_as_of(value).isoformat() if value else None
