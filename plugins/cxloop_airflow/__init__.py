"""Airflow wiring shared by the cxloop DAG files: assets, the warehouse pool, default args,
source connections and the run's as_of (:func:`resolve_as_of`, one rule for every DAG). Kept
apart from the `cxloop` core, which imports no Airflow; all pipeline logic lives there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
        description=(
            "end of the data window (ISO); default: the data interval end (ingestion) or the window "
            "the warehouse is complete up to (transform, publish)"
        ),
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


@contextmanager
def fail_fast(source: str | None = None, *, config: bool = False) -> Iterator[None]:
    """Errors no retry can heal end the task at once (``AirflowFailException``: no retries),
    with one line naming the source, the endpoint and what to fix: a 400/401/403/404 from a
    source (:class:`cxloop.extract.http_client.PermanentSourceError`, or a connector's error
    wrapping one) and a rejected configuration (``SourceConfigError``). With ``config=True``
    (around reading the configuration, the credentials and the as_of only) any ``ValueError``
    counts as a rejected configuration too. Transient errors (5xx, 429, connection errors)
    pass through and keep the task's retries."""
    from airflow.sdk.exceptions import AirflowFailException
    from cxloop.extract.http_client import SourceHTTPError, as_permanent
    from cxloop.source_config import SourceConfigError

    try:
        yield
    except SourceHTTPError as exc:
        permanent = as_permanent(exc, getattr(exc, "source", None) or source or "source")
        if permanent is None:
            raise
        raise AirflowFailException(permanent.one_line()) from None
    except SourceConfigError as exc:
        raise AirflowFailException(_one_line(f"configuration rejected: {exc}")) from None
    except ValueError as exc:
        if not config:
            raise
        raise AirflowFailException(_one_line(str(exc))) from None


def _one_line(text: str) -> str:
    from cxloop.config import redact

    return " ".join(redact(text).split())


def source_settings(name: str):
    """Connection first (cx_<name>), environment second. A source without credentials fails
    with a ValueError naming the variables and the connection to set."""
    from cxloop.config import SourceSettings, source_from_env

    try:
        from airflow.sdk import Connection

        conn = Connection.get(f"cx_{name}")
    except Exception:  # noqa: BLE001 - no such connection: fall back to the environment
        conn = None
    try:
        if conn is not None and conn.host:
            host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
            if conn.port:
                host = f"{host}:{conn.port}"
            return SourceSettings(
                name=name, base_url=host, token=conn.password or "", options=dict(conn.extra_dejson)
            )
        return source_from_env(name)
    except ValueError as exc:
        var = f"CXLOOP_{name.upper()}"
        raise ValueError(
            f"{exc}: set {var}_BASE_URL and {var}_TOKEN, or the Airflow connection cx_{name} "
            "(host: the base URL, password: the token)"
        ) from None


# How a run without an `as_of` param finds its window end: a scheduled ingestion takes its
# data interval end; an asset-triggered transform or publish has no interval and takes the
# window the warehouse is complete up to (the extraction windows the ingestions recorded).
def load_event_extra(report: dict, as_of: str) -> dict:
    """What a raw-layer asset event says (Airflow's asset view, and any DAG it schedules): the
    run's as_of, its batches, and per entity the rows received, loaded and quarantined. Counts
    and ids only, never a row's content."""
    return {
        "as_of": as_of,
        "batch_ids": list(report.get("batch_ids", [])),
        "rows": {
            entity: {k: int(c[k]) for k in ("received", "loaded", "quarantined")}
            for entity, c in sorted(report.get("counts", {}).items())
        },
        "failed_expectations": int(report.get("failed_expectations", 0)),
    }


def build_event_extra(result: dict, as_of: str) -> dict:
    """What the marts' asset event says: the as_of the marts were built for, dbt's invocation
    id (raw.dbt_results and the exports' manifest carry the same), its nodes by status, and the
    source tables by freshness status (``dbt source freshness`` of the same as_of)."""
    freshness = result.get("freshness") or {}
    return {
        "as_of": as_of,
        "dbt_invocation_id": result.get("invocation_id"),
        "success": bool(result.get("success")),
        "nodes": {status: int(n) for status, n in sorted(result.get("counts", {}).items())},
        "elapsed_s": round(float(result.get("elapsed_s") or 0.0), 1),
        "freshness": {status: int(n) for status, n in sorted((freshness.get("counts") or {}).items())},
    }


INTERVAL = "interval"
WAREHOUSE = "warehouse"


def resolve_as_of(params=None, *, fallback: str, data_interval_end=None, run_after=None, settings=None) -> str:
    """The run's as_of (ISO, naive UTC), the one rule for every DAG:

    1. the `as_of` param, when given (refused, ValueError, when it lies more than
       CXLOOP_MAX_AS_OF_SKEW_HOURS, default 24, in the future: see ``cxloop.check``);
    2. ``fallback="interval"`` (ingestion): the data interval end, else the run's logical
       ``run_after`` (a manual run without an interval);
       ``fallback="warehouse"`` (transform, publish): ``cxloop.pipeline.data_as_of`` of the
       warehouse in ``settings`` (default: from the environment); ValueError when nothing
       has been loaded yet.
    """
    from cxloop.check import refuse_future_as_of
    from cxloop.config import parse_as_of

    explicit = (params or {}).get("as_of")
    if explicit:
        return refuse_future_as_of(parse_as_of(explicit)).isoformat()
    if fallback == INTERVAL:
        value = data_interval_end or run_after
        if not value:
            raise ValueError("as_of: no `as_of` param, no data interval end and no run_after for this run")
        return refuse_future_as_of(parse_as_of(value)).isoformat()
    if fallback == WAREHOUSE:
        from cxloop.config import Settings
        from cxloop.store.state import data_as_of_light  # pipeline.data_as_of, without the data stack

        found = data_as_of_light(settings or Settings.from_env())
        if found is None:
            raise ValueError("as_of: no data loaded yet; run the ingestion DAGs first, or pass the `as_of` param")
        return parse_as_of(found).isoformat()
    raise ValueError(f"resolve_as_of: fallback {fallback!r} is not {INTERVAL!r} or {WAREHOUSE!r}")
