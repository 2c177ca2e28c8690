"""The shared HTTP layer (retries, backoff, 429, timeouts, redaction) against a real loopback
server, and the Salesforce / Qualtrics connectors against the demo server on small files."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from cxloop.contract import BUYING_ROLES, ENTITIES
from cxloop.demo.server import DemoServer
from cxloop.extract.http_client import HttpClient, RetryPolicy, SourceHTTPError, parse_retry_after, safe_url
from cxloop.extract.pseudonymise import email_hash
from cxloop.extract.qualtrics import extract_qualtrics
from cxloop.extract.roles import RoleMapper
from cxloop.extract.salesforce import extract_salesforce
from test_demo_server import TOKEN, write_sample_sources

SECRET = "tok-9f8e7d6c5b4a"
PII_KEY = "test-pii-key"


# ----------------------------------------------------------------------------------------
# A scripted loopback server for the HTTP layer
# ----------------------------------------------------------------------------------------


class Script:
    """path -> list of (status, headers, body, delay) served in turn (the last one repeats)."""

    def __init__(self):
        self.routes: dict[str, list[tuple[int, dict, bytes, float]]] = {}
        self.hits: dict[str, list[tuple[float, str, dict]]] = {}
        self.lock = threading.Lock()

    def add(self, path, *steps):
        self.routes[path] = list(steps)
        self.hits[path] = []


@pytest.fixture
def scripted():
    script = Script()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _serve(self):
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with script.lock:
                hits = script.hits.setdefault(path, [])
                hits.append((time.monotonic(), self.command, dict(self.headers)))
                steps = script.routes.get(path, [(404, {}, b"{}", 0)])
                status, headers, body, delay = steps[min(len(hits) - 1, len(steps) - 1)]
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = _serve

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    script.base = f"http://127.0.0.1:{httpd.server_address[1]}/api/"
    yield script
    httpd.shutdown()
    httpd.server_close()


OK = (200, {}, b'{"ok": true}', 0)


def client(script, **kw):
    retry = kw.pop("retry", RetryPolicy(max_retries=4, backoff_base=0.05, backoff_max=1.0, retry_after_cap=5))
    return HttpClient(script.base, SECRET, source="test", retry=retry, **kw)


def test_bearer_header_sent(scripted):
    scripted.add("/api/x", OK)
    assert client(scripted).get_json("x")[0] == {"ok": True}
    assert scripted.hits["/api/x"][0][2]["Authorization"] == f"Bearer {SECRET}"


def test_500s_then_success_with_exponential_backoff(scripted):
    scripted.add("/api/flaky", (500, {}, b"{}", 0), (503, {}, b"{}", 0), (502, {}, b"{}", 0), OK)
    c = client(scripted)
    assert c.get_json("flaky")[0] == {"ok": True}
    hits = scripted.hits["/api/flaky"]
    assert len(hits) == 4 and c.stats.retries == 3
    # delays 0.05, 0.1, 0.2 each jittered into [d/2, d]: growing, and really waited
    s = c.stats.sleeps
    assert 0.025 <= s[0] <= 0.05 and 0.05 <= s[1] <= 0.1 and 0.1 <= s[2] <= 0.2
    gaps = [b[0] - a[0] for a, b in zip(hits, hits[1:], strict=False)]
    assert all(g >= d * 0.9 for g, d in zip(gaps, s, strict=True))


def test_jitter_varies():
    policy = RetryPolicy(backoff_base=1.0, backoff_max=100)
    import random

    rng = random.Random(1)
    draws = {round(policy.backoff(3, rng), 6) for _ in range(20)}
    assert len(draws) > 10 and all(4.0 <= d <= 8.0 for d in draws)


def test_gives_up_after_max_retries(scripted):
    scripted.add("/api/down", (500, {}, b'{"message": "db down"}', 0))
    c = client(scripted, retry=RetryPolicy(max_retries=2, backoff_base=0.01))
    with pytest.raises(SourceHTTPError) as ei:
        c.get("down")
    assert ei.value.status == 500 and ei.value.attempts == 3
    assert len(scripted.hits["/api/down"]) == 3


def test_429_honours_retry_after(scripted):
    scripted.add("/api/limited", (429, {"Retry-After": "1"}, b'{"error": "slow down"}', 0), OK)
    c = client(scripted)
    t0 = time.monotonic()
    assert c.get_json("limited")[0] == {"ok": True}
    hits = scripted.hits["/api/limited"]
    assert c.stats.sleeps == [1.0]
    assert hits[1][0] - hits[0][0] >= 0.95 and time.monotonic() - t0 >= 0.95


def test_429_retry_after_capped(scripted):
    scripted.add("/api/limited", (429, {"Retry-After": "3600"}, b"{}", 0), OK)
    c = client(scripted, retry=RetryPolicy(max_retries=3, retry_after_cap=0.2))
    t0 = time.monotonic()
    c.get("limited")
    assert c.stats.sleeps == [0.2] and time.monotonic() - t0 < 2


def test_retry_after_http_date():
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= parse_retry_after(future) <= 31
    assert parse_retry_after("7") == 7 and parse_retry_after("soon") is None


def test_read_timeout_retried(scripted):
    scripted.add("/api/slow", (200, {}, b'{"late": true}', 1.5), OK)
    c = client(scripted, read_timeout=0.3)
    t0 = time.monotonic()
    assert c.get_json("slow")[0] == {"ok": True}
    assert c.stats.retries == 1 and len(scripted.hits["/api/slow"]) == 2
    assert time.monotonic() - t0 < 1.5


def test_read_timeout_error_has_no_secret(scripted):
    scripted.add("/api/slow", (200, {}, b"{}", 1.0))
    c = client(scripted, read_timeout=0.2, retry=RetryPolicy(max_retries=1, backoff_base=0.01))
    with pytest.raises(SourceHTTPError) as ei:
        c.get("slow", params={"access_token": SECRET, "page": "2"})
    text = str(ei.value)
    assert "read timeout" in text and SECRET not in text and "page=2" in text
    # the requests exception (whose text holds the full URL) is neither chained nor in the context
    assert ei.value.__cause__ is None and ei.value.__context__ is None
    import traceback

    assert SECRET not in "".join(traceback.format_exception(ei.value))


def test_post_not_retried_unless_safe(scripted):
    scripted.add("/api/create", (500, {}, b"{}", 0), OK)
    c = client(scripted)
    with pytest.raises(SourceHTTPError) as ei:
        c.post("create", json={"a": 1})
    assert ei.value.status == 500 and len(scripted.hits["/api/create"]) == 1
    scripted.add("/api/create", (500, {}, b"{}", 0), OK)
    assert c.post("create", json={"a": 1}, retry_safe=True).status_code == 200
    assert len(scripted.hits["/api/create"]) == 2


def test_post_retried_on_429_even_if_not_marked(scripted):
    scripted.add("/api/create", (429, {"Retry-After": "0"}, b"{}", 0), OK)
    assert client(scripted).post("create", json={}).status_code == 200


def test_4xx_not_retried_and_secret_scrubbed(scripted):
    echo = json.dumps({"meta": {"error": {"errorMessage": f"bad token {SECRET}", "errorCode": "AUTH"}}})
    scripted.add("/api/secure", (401, {}, echo.encode(), 0))
    c = client(scripted)
    with pytest.raises(SourceHTTPError) as ei:
        c.get("secure", params={"api_key": SECRET, "skipToken": "abc"})
    text = str(ei.value) + repr(ei.value) + repr(ei.value.args)
    assert SECRET not in text
    assert (
        "401" in text and "bad token ***" in text and "api_key=REDACTED" in text and "skipToken=abc" in text
    )
    assert len(scripted.hits["/api/secure"]) == 1


def test_connection_refused_retried_then_clean_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = HttpClient(f"http://127.0.0.1:{port}/", SECRET, retry=RetryPolicy(max_retries=2, backoff_base=0.01))
    with pytest.raises(SourceHTTPError) as ei:
        c.get("x", params={"token": SECRET})
    assert c.stats.retries == 2 and ei.value.status is None
    assert SECRET not in str(ei.value) and "connection" in str(ei.value)


def test_token_never_sent_to_another_origin(scripted):
    c = client(scripted)
    with pytest.raises(SourceHTTPError) as ei:
        c.get("http://example.invalid/steal?x=1")
    assert "refusing" in str(ei.value) and SECRET not in str(ei.value)


def test_retry_warnings_logged_without_secret(scripted, caplog):
    scripted.add("/api/flaky", (503, {}, b"{}", 0), OK)
    with caplog.at_level("WARNING", logger="cxloop.extract.http_client"):
        client(scripted).get("flaky", params={"password": SECRET})
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)


def test_safe_url():
    assert (
        safe_url("http://u:pw@h/p?access_token=abc&q=SELECT+Id")
        == "http://h/p?access_token=REDACTED&q=SELECT+Id"
    )


# ----------------------------------------------------------------------------------------
# Connectors against the demo server on small hand-written files
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = write_sample_sources(tmp_path_factory.mktemp("src"))
    with DemoServer(root, TOKEN, page_size=4, export_polls=2) as base:
        yield base


@pytest.fixture
def pii_key(monkeypatch):
    monkeypatch.setenv("CXLOOP_PII_KEY", PII_KEY)


def test_salesforce_extract(demo, pii_key, tmp_path):
    frames = extract_salesforce(demo, TOKEN, landing_dir=tmp_path)
    assert set(frames) == {"owners", "accounts", "contacts", "follow_ups", "renewals"}
    for name, df in frames.items():
        assert list(df.columns) == ENTITIES[name].column_names, name

    owners = frames["owners"].set_index("owner_id")
    assert owners.loc["005U1", "owner_name"] == "Ann Owner" and owners.loc["005U2", "team"] == "West"
    assert not owners.loc["005U2", "is_active"]
    assert owners["updated_at"].dtype == "datetime64[us]"
    assert owners.loc["005U1", "updated_at"] == pd.Timestamp("2025-01-01 10:00:00")

    acc = frames["accounts"].set_index("account_id")
    assert len(acc) == 7 and bool(acc.loc["001A001", "is_deleted"]) and not acc.loc["001A000", "is_deleted"]
    assert acc.loc["001A002", "arr"] == "n/a" and acc.loc["001A003", "arr"] == 4000.0  # as received
    assert pd.isna(acc.loc["001A003", "segment"]) and acc.loc["001A000", "renewal_date"] == "2025-01-15"
    assert acc.loc["001A000", "created_at"] == pd.Timestamp("2025-01-01 10:00:00")

    con = frames["contacts"].set_index("contact_id")
    assert len(con) == 23 and bool(con.loc["003C022", "is_deleted"])
    assert con.loc["003C000", "email_hash"] == email_hash("person0@customer.example", PII_KEY.encode())
    assert bool(con.loc["003C000", "email_domain_valid"]) and not con.loc["003C003", "email_domain_valid"]
    assert pd.isna(con.loc["003C004", "email_hash"])
    flat = [str(v) for v in frames["contacts"].to_numpy().ravel().tolist()]
    assert not any("@" in v for v in flat)  # no raw e-mail anywhere in the frame
    # picklist first, title fallback, else unknown
    assert con.loc["003C000", "buying_role"] == "decision_maker"  # Decision Maker
    assert con.loc["003C001", "buying_role"] == "decision_maker"  # Economic Buyer
    assert con.loc["003C003", "buying_role"] == "influencer"  # Technical Evaluator
    assert con.loc["003C004", "buying_role"] == "user"  # End User
    assert con.loc["003C005", "buying_role"] == "other"  # Other
    assert con.loc["003C006", "buying_role"] == "decision_maker"  # blank, "CFO"
    assert con.loc["003C013", "buying_role"] == "unknown"  # blank, title None
    assert con.loc["003C020", "buying_role"] == "user"  # blank, "Data Analyst"
    assert con.loc["003C007", "buying_role"] == "decision_maker"  # picklist wins over "Director of IT"
    assert pd.isna(con.loc["003C006", "buying_role_source"])
    assert con.loc["003C001", "buying_role_source"] == "Economic Buyer"
    assert set(con["buying_role"]) <= set(BUYING_ROLES)

    fu = frames["follow_ups"].set_index("follow_up_id")
    assert sorted(fu.index) == [f"00TT{i:03d}" for i in range(5)]  # deleted task and non-NPS task out
    assert list(fu.loc[[f"00TT{i:03d}" for i in range(4)], "status"]) == [
        "open",
        "in_progress",
        "completed",
        "cancelled",
    ]
    assert fu.loc["00TT002", "closed_at"] == pd.Timestamp("2025-01-11 10:00:00")
    assert pd.isna(fu.loc["00TT001", "first_contact_at"])
    assert fu.loc["00TT000", "response_id"] == "R_000" and fu.loc["00TT000", "contact_id"] == "003C000"

    pages = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    assert "salesforce/Account/page-0001.json" in pages and "salesforce/Contact/page-0006.json" in pages
    landed = [
        r["Id"]
        for p in sorted((tmp_path / "salesforce/Contact").glob("page-*.json"))
        for r in json.loads(p.read_text())["records"]
    ]
    assert landed == [f"003C{i:03d}" for i in range(23)]


def test_salesforce_requires_pii_key(demo, monkeypatch):
    monkeypatch.delenv("CXLOOP_PII_KEY", raising=False)
    from cxloop.extract.pseudonymise import MissingKeyError

    with pytest.raises(MissingKeyError):
        extract_salesforce(demo, TOKEN)


def test_salesforce_bad_token_error(demo, pii_key):
    with pytest.raises(SourceHTTPError) as ei:
        extract_salesforce(demo, "wrong-token-123")
    assert ei.value.status == 401 and "INVALID_SESSION_ID" in str(ei.value)
    assert "wrong-token-123" not in str(ei.value)


def test_salesforce_datetime_offsets_and_bad_values(tmp_path, pii_key):
    root = write_sample_sources(tmp_path / "d")
    path = root / "source/salesforce/User.json"
    users = json.loads(path.read_text())
    users[0]["SystemModstamp"] = "2025-01-03T12:00:00.000+0200"
    users[1]["SystemModstamp"] = "yesterday"
    path.write_text(json.dumps(users))
    with DemoServer(root, TOKEN) as base:
        owners = extract_salesforce(base, TOKEN, entities=("owners",))["owners"].set_index("owner_id")
    assert owners.loc["005U1", "updated_at"] == "2025-01-03T10:00:00Z"  # UTC
    assert owners.loc["005U2", "updated_at"] == "yesterday"  # kept for the gate to quarantine


def test_qualtrics_extract(demo, tmp_path):
    frames = extract_qualtrics(demo, TOKEN, "POOL_1", landing_dir=tmp_path, poll_interval=0.01)
    for name, df in frames.items():
        assert list(df.columns) == ENTITIES[name].column_names, name

    sv = frames["surveys"].set_index("survey_id")
    assert (
        sv.loc["SV_rel", "survey_type"] == "relationship"
        and sv.loc["SV_txn", "survey_type"] == "transactional"
    )
    assert sv.loc["SV_txn", "updated_at"] == pd.Timestamp("2025-01-02 23:00:00")  # +01:00 -> UTC

    inv = frames["invitations"].set_index("invitation_id")
    assert len(inv) == 20 and inv.index.is_unique
    row = inv.loc["EMD_1:CID_002"]
    assert row["contact_id"] == "003C002" and row["account_id"] == "001A002" and row["survey_id"] == "SV_rel"
    assert row["delivery_status"] == "bounced" and row["source_status"] == "HardBounce"
    assert row["distribution_id"] == "EMD_1" and row["sent_at"] == pd.Timestamp("2025-01-05 09:00:02")
    statuses = dict(zip(inv["source_status"], inv["delivery_status"], strict=False))
    assert statuses == {
        "SurveyFinished": "delivered",
        "Opened": "delivered",
        "HardBounce": "bounced",
        "Failure": "failed",
        "Blocked": "opted_out",
        "SurveyPartiallyFinished": "delivered",
        "Success": "delivered",
        "SoftBounce": "bounced",
        "Complaint": "opted_out",
        "SessionExpired": "delivered",
    }

    res = frames["responses"].set_index("response_id")
    expected_ids = {"R_000", "R_005", "R_010", "R_012", "R_013", "R_014", "R_015"}
    assert set(res.index) == expected_ids
    assert res.loc["R_005", "invitation_id"] == "EMD_1:CID_005"
    assert res.loc["R_005", "contact_id"] == "003C005" and res.loc["R_005", "account_id"] == "001A005"
    assert res.loc["R_013", "nps_score"] == 11  # out of range passes through
    assert pd.isna(res.loc["R_014", "nps_score"])  # skipped
    assert res.loc["R_010", "nps_score"] == 10 and res.loc["R_000", "nps_score"] == 0
    assert bool(res.loc["R_000", "has_comment"]) and not res.loc["R_005", "has_comment"]
    assert not res.loc["R_005", "is_finished"] and res.loc["R_000", "is_finished"]
    assert res.loc["R_010", "recorded_at"] == pd.Timestamp("2025-01-08 10:00:00")
    assert str(res["nps_score"].dtype) == "Int64"

    z = tmp_path / "qualtrics/responses/SV_rel.zip"
    assert zipfile.is_zipfile(z)
    assert (tmp_path / "qualtrics/surveys/page-0001.json").exists()
    assert len(list((tmp_path / "qualtrics/directory_contacts").glob("page-*.json"))) == 6
    assert (tmp_path / "qualtrics/distribution_history/EMD_1/page-0003.json").exists()


def test_qualtrics_date_window(demo):
    frames = extract_qualtrics(
        demo, TOKEN, "POOL_1", start="2025-01-08T00:00:00Z", end="2025-01-09T00:00:00Z", poll_interval=0.01
    )
    res = frames["responses"]
    assert len(res) > 0 and (res["recorded_at"].dt.day == 8).all()


def test_qualtrics_bad_token(demo):
    with pytest.raises(SourceHTTPError) as ei:
        extract_qualtrics(demo, "nope-nope", "POOL_1")
    assert ei.value.status == 401 and "nope-nope" not in str(ei.value) and "Authentication" in str(ei.value)


def test_role_mapper_configurable():
    m = RoleMapper.from_config(
        {"picklist": {"Champion": "influencer"}, "title_rules": [["(?i)boss", "decision_maker"]]}
    )
    assert m.map(" champion ") == "influencer" and m.map("", "Big Boss") == "decision_maker"
    assert m.map("Decision Maker", "Intern") == "unknown"  # not in this picklist, title matches nothing
    with pytest.raises(ValueError):
        RoleMapper(picklist={"x": "ceo"})


# ----------------------------------------------------------------------------------------
# End to end on generated data (only once the generator exists)
# ----------------------------------------------------------------------------------------


def _generator():
    try:
        from cxloop.demo import generator
    except ImportError:
        return None
    return generator if hasattr(generator, "generate") else None


@pytest.mark.skipif(_generator() is None, reason="cxloop.demo.generator.generate not available yet")
def test_generated_data_round_trip(tmp_path, pii_key):
    gen = _generator()
    out = tmp_path / "demo"
    gen.generate(out, seed=7, scale=0.2)
    truth = json.loads((out / "ground_truth.json").read_text())
    served = {e: v["served"] for e, v in truth["entities"].items()}
    with DemoServer(out, TOKEN) as base:
        frames = {
            **extract_salesforce(base, TOKEN),
            **extract_qualtrics(base, TOKEN, "POOL_demo", poll_interval=0.01),
        }
    got = {e: len(df) for e, df in frames.items()}
    assert got == served
    for name, df in frames.items():
        assert list(df.columns) == ENTITIES[name].column_names


def test_salesforce_renewals_are_opportunities_of_the_configured_types(tmp_path):
    """Opportunity through SOQL: only the renewal types (default Renewal; a configured list,
    quotes escaped, else), deleted ones through queryAll, incremental on SystemModstamp."""
    from datetime import datetime

    root = write_sample_sources(tmp_path / "src")
    opp = {"AccountId": "001A000", "StageName": "Closed Won", "Amount": 110.0, "Previous_ARR__c": 100.0,
           "CloseDate": "2025-03-31", "IsClosed": True, "IsWon": True, "IsDeleted": False,
           "CreatedDate": "2025-01-02T10:00:00.000+0000"}  # fmt: skip
    records = [
        {**opp, "Id": "006R1", "Type": "Renewal", "SystemModstamp": "2025-04-01T10:00:00.000+0000"},
        {**opp, "Id": "006R2", "Type": "Renewal", "IsDeleted": True, "SystemModstamp": "2025-05-01T10:00:00.000+0000"},
        {**opp, "Id": "006U1", "Type": "Existing Customer - Upgrade", "SystemModstamp": "2025-04-02T10:00:00.000+0000"},
        {**opp, "Id": "006Q1", "Type": "O'Brien's renewal", "IsClosed": False, "IsWon": False, "Amount": "n/a",
         "SystemModstamp": "2025-06-01T10:00:00.000+0000"},
    ]  # fmt: skip
    (root / "source" / "salesforce" / "Opportunity.json").write_text(json.dumps(records))
    with DemoServer(root, TOKEN) as base:
        got = extract_salesforce(base, TOKEN, entities=("renewals",))["renewals"].set_index("renewal_id")
        assert sorted(got.index) == ["006R1", "006R2"] and bool(got.loc["006R2", "is_deleted"])
        assert list(got.columns) == ENTITIES["renewals"].column_names[1:]
        r1 = got.loc["006R1"]
        assert (r1.account_id, r1.renewal_type, r1.stage_name, r1.amount, r1.previous_amount, r1.close_date) == (
            "001A000", "Renewal", "Closed Won", 110.0, 100.0, "2025-03-31"
        )
        assert bool(r1.is_closed) and bool(r1.is_won) and r1.updated_at == pd.Timestamp("2025-04-01 10:00:00")
        other = extract_salesforce(
            base, TOKEN, entities=("renewals",), renewal_types="Existing Customer - Upgrade, O'Brien's renewal"
        )["renewals"].set_index("renewal_id")
        assert sorted(other.index) == ["006Q1", "006U1"] and other.loc["006Q1", "amount"] == "n/a"  # as received
        since = extract_salesforce(
            base, TOKEN, entities=("renewals",), since={"renewals": datetime(2025, 4, 15)}, until=datetime(2025, 7, 1)
        )["renewals"]
        assert since.renewal_id.tolist() == ["006R2"]


def test_salesforce_buying_role_field_is_configurable():
    from cxloop.extract.salesforce import build_soql

    _, soql = build_soql("contacts", role_field="Primary_Role__r.Name")
    assert "Primary_Role__r.Name" in soql and "Buying_Role__c" not in soql
    _, soql = build_soql("accounts")
    assert "{role_field}" not in soql
    with pytest.raises(ValueError, match="not a Salesforce field name"):
        build_soql("contacts", role_field="Name FROM User --")


def test_salesforce_soql_windows_are_half_open_on_the_composite_cursor():
    from datetime import datetime

    from cxloop.extract.salesforce import build_soql

    endpoint, soql = build_soql("follow_ups", datetime(2026, 1, 1), datetime(2026, 2, 1, 12, 30))
    assert endpoint == "query"
    assert soql.endswith(
        "WHERE Survey_Response_Id__c != null AND SystemModstamp >= 2026-01-01T00:00:00Z "
        "AND SystemModstamp < 2026-02-01T12:30:00Z ORDER BY SystemModstamp, Id"
    )
