"""Failure notifications for the DAGs: always a log line, plus an optional JSON webhook.

Airflow calls :func:`on_failure` with the task's context (a mapping); nothing here imports
Airflow. Set ``CXLOOP_ALERT_WEBHOOK`` to a URL (Slack/Teams incoming webhook, an incident
tool) to receive ``{"text", "dag_id", "task_id", "run_id", "try_number", "error"}``. A webhook
that fails is logged, never raised: alerting must not hide the original failure.

A source whose freshness is in error (``dbt source freshness`` before each build, judged against
the run's as_of) is posted the same way by :func:`freshness_alert`:
``{"text", "kind": "source_freshness", "as_of", "tables": [{"table", "status", "age_hours"}]}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_ENV = "CXLOOP_ALERT_WEBHOOK"


def failure_payload(context: Mapping[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    task_id = getattr(ti, "task_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    error = context.get("exception")
    text = f"cxloop: {dag_id}.{task_id} failed in run {run_id}: {type(error).__name__ if error else 'error'}"
    return {
        "text": text,
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": run_id,
        "try_number": getattr(ti, "try_number", None),
        "error": str(error)[:2000] if error else None,
    }


def on_failure(context: Mapping[str, Any]) -> None:
    payload = failure_payload(context)
    log.error("%s (%s)", payload["text"], payload["error"])
    post(payload)


def post(payload: dict[str, Any]) -> bool:
    """POST ``payload`` (JSON) to ``CXLOOP_ALERT_WEBHOOK`` when it is set. True when the webhook
    took it; a failing webhook is logged, never raised."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return False
    try:
        import requests

        response = requests.post(url, json=payload, timeout=5)
        if response.status_code >= 300:
            log.warning("alert webhook answered HTTP %s", response.status_code)
            return False
        return True
    except Exception as exc:  # noqa: BLE001 - alerting must never raise
        log.warning("alert webhook failed: %s", type(exc).__name__)
        return False


def freshness_payload(as_of: str, errors: list[tuple[str, str, float | None]]) -> dict[str, Any]:
    """What a freshness alert says: the as_of and, per source table in error, its status and how
    many hours its data window lags (None: never loaded). Names and numbers only."""
    tables = [
        {"table": name, "status": status, "age_hours": None if age is None else round(float(age), 1)}
        for name, status, age in sorted(errors)
    ]
    shown = ", ".join(
        f"{t['table']} ({'never loaded' if t['age_hours'] is None else str(t['age_hours']) + ' h behind'})"
        for t in tables
    )
    return {
        "text": f"cxloop: source freshness error as of {as_of}: {shown}",
        "kind": "source_freshness",
        "as_of": as_of,
        "tables": tables,
    }


def freshness_alert(as_of: str, errors: list[tuple[str, str, float | None]]) -> dict[str, Any]:
    """Log, and post to the webhook, the source tables whose freshness is in error."""
    payload = freshness_payload(as_of, errors)
    log.error("%s", payload["text"])
    post(payload)
    return payload
