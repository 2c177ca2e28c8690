"""Failure notifications for the DAGs: always a log line, plus an optional JSON webhook.

Airflow calls :func:`on_failure` with the task's context (a mapping); nothing here imports
Airflow. Set ``CXLOOP_ALERT_WEBHOOK`` to a URL (Slack/Teams incoming webhook, an incident
tool) to receive ``{"text", "dag_id", "task_id", "run_id", "try_number", "error"}``. A webhook
that fails is logged, never raised: alerting must not hide the original failure.
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
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return
    try:
        import requests

        response = requests.post(url, json=payload, timeout=5)
        if response.status_code >= 300:
            log.warning("alert webhook answered HTTP %s", response.status_code)
    except Exception as exc:  # noqa: BLE001 - alerting must never raise
        log.warning("alert webhook failed: %s", type(exc).__name__)
