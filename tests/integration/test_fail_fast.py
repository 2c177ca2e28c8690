"""Which source errors heal and which do not, over real HTTP on loopback.

A 400/401/403/404 raises PermanentSourceError after one attempt (source, endpoint path, status,
what to fix) and the DAG glue turns it into AirflowFailException (no retries); a 5xx is
retried by the client and, when it persists, stays a plain SourceHTTPError that the glue lets
through, so Airflow's retries still apply. The whole Airflow run of the rule (one task, one
attempt) is in tests/e2e/test_own_data.py."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from airflow.sdk.exceptions import AirflowFailException
from cxloop.extract.http_client import HttpClient, PermanentSourceError, RetryPolicy, SourceHTTPError
from cxloop.extract.hubspot import HubSpotError
from cxloop.source_config import SourceConfigError
from cxloop_airflow import fail_fast

TOKEN = "fail-fast-token-SECRET-0042"


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        self.hits[path] = self.hits.get(path, 0) + 1
        status = int(path.strip("/").split("/")[0])
        if path.endswith("/flaky") and self.hits[path] > 2:
            status = 200
        body = b'{"ok": true}' if status == 200 else b'{"message": "nope"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _client(url: str, sleeps: list[float]) -> HttpClient:
    retry = RetryPolicy(max_retries=3)
    return HttpClient(url, TOKEN, source="salesforce", retry=retry, sleep=sleeps.append, max_response_bytes=1 << 20)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_permanent_status_is_one_attempt_and_fails_the_task(url, status):
    sleeps: list[float] = []
    with pytest.raises(PermanentSourceError) as err:
        _client(url, sleeps).get(f"{status}/services/data/v60.0/query", params={"q": "x", "access_token": TOKEN})
    exc = err.value
    assert (exc.status, exc.attempts, exc.source, sleeps) == (status, 1, "salesforce", [])
    assert exc.endpoint == f"/{status}/services/data/v60.0/query"
    with pytest.raises(AirflowFailException) as failed:
        with fail_fast("salesforce"):
            raise exc
    line = str(failed.value)
    assert line.startswith(f"salesforce: GET /{status}/services/data/v60.0/query answered HTTP {status} (")
    assert "\n" not in line and TOKEN not in line and "access_token" not in line
    fix = "CXLOOP_SALESFORCE_TOKEN" if status in (401, 403) else "CXLOOP_SALESFORCE_BASE_URL" if status == 404 else ""
    assert fix in line


def test_a_5xx_is_retried_and_stays_retryable_for_airflow(url):
    sleeps: list[float] = []
    client = _client(url, sleeps)
    with pytest.raises(SourceHTTPError) as err:
        client.get("503/always")
    exc = err.value
    assert not isinstance(exc, PermanentSourceError)
    assert (exc.status, exc.attempts, len(sleeps)) == (503, 4, 3)
    with pytest.raises(SourceHTTPError) as passed:  # the glue lets it through: Airflow retries the task
        with fail_fast("salesforce"):
            raise exc
    assert passed.value is exc and not isinstance(passed.value, AirflowFailException)
    assert client.get("502/flaky").status_code == 200  # healed on the third attempt


def test_a_connector_error_wrapping_a_permanent_one_also_fails_fast():
    wrapped = HubSpotError("contacts", SourceHTTPError("POST", "http://h/crm/v3/objects/contacts/search", 401, "no"))
    with pytest.raises(AirflowFailException, match=r"^hubspot: POST /crm/v3/objects/contacts/search answered HTTP 401"):
        with fail_fast("hubspot"):
            raise wrapped


def test_configuration_errors_fail_fast_only_where_marked():
    with pytest.raises(AirflowFailException, match=r"^configuration rejected: x.yml: crm source"):
        with fail_fast("files"):
            raise SourceConfigError("x.yml: crm source 'sap' is not one of salesforce, hubspot, files")
    with pytest.raises(AirflowFailException, match="credentials are not configured"):
        with fail_fast(config=True):
            raise ValueError("source qualtrics: credentials are not configured")
    with pytest.raises(ValueError):  # a ValueError from the work itself keeps the retries
        with fail_fast("files"):
            raise ValueError("something in the data")


def test_a_missing_credential_names_what_to_set(monkeypatch):
    from cxloop_airflow import source_settings

    for var in ("CXLOOP_QUALTRICS_BASE_URL", "CXLOOP_QUALTRICS_TOKEN", "AIRFLOW_CONN_CX_QUALTRICS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CXLOOP_QUALTRICS_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(AirflowFailException) as err:
        with fail_fast(config=True):
            source_settings("qualtrics")
    assert str(err.value) == (
        "source qualtrics: credentials are not configured: set CXLOOP_QUALTRICS_BASE_URL and "
        "CXLOOP_QUALTRICS_TOKEN, or the Airflow connection cx_qualtrics (host: the base URL, password: the token)"
    )
