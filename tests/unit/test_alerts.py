"""Failure callbacks: a log line always, a JSON webhook when configured, never an exception."""

from __future__ import annotations

from types import SimpleNamespace

from cxloop.alerts import WEBHOOK_ENV, failure_payload, on_failure


def context(error: Exception) -> dict:
    ti = SimpleNamespace(dag_id="cx_ingest_crm", task_id="extract", run_id="manual__1", try_number=3)
    return {"ti": ti, "run_id": "manual__1", "exception": error}


def test_payload_names_the_task_and_the_error():
    payload = failure_payload(context(ValueError("source salesforce: base URL is not configured")))
    assert payload["text"] == "cxloop: cx_ingest_crm.extract failed in run manual__1: ValueError"
    assert payload["try_number"] == 3
    assert "base URL" in payload["error"]


def test_webhook_receives_the_failure(webhook, monkeypatch, caplog):
    url, received = webhook
    monkeypatch.setenv(WEBHOOK_ENV, url)
    with caplog.at_level("ERROR", logger="cxloop.alerts"):
        on_failure(context(RuntimeError("dbt build failed")))
    assert received and received[0]["task_id"] == "extract"
    assert "dbt build failed" in caplog.text


def test_a_dead_webhook_never_raises(monkeypatch, caplog):
    monkeypatch.setenv(WEBHOOK_ENV, "http://127.0.0.1:9/unreachable")
    with caplog.at_level("WARNING", logger="cxloop.alerts"):
        on_failure(context(RuntimeError("boom")))
    assert "alert webhook failed" in caplog.text


def test_a_freshness_error_names_each_table_and_its_lag(webhook, monkeypatch):
    from cxloop.alerts import freshness_alert

    url, received = webhook
    monkeypatch.setenv(WEBHOOK_ENV, url)
    payload = freshness_alert(
        "2026-10-11T00:00:00", [("survey.responses", "error", 240.0), ("crm.owners", "error", None)]
    )
    assert received == [payload]
    assert payload["text"] == (
        "cxloop: source freshness error as of 2026-10-11T00:00:00: crm.owners (never loaded), "
        "survey.responses (240.0 h behind)"
    )
    assert [t["table"] for t in payload["tables"]] == ["crm.owners", "survey.responses"]
