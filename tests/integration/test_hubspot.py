"""The HubSpot CRM v3 emulation of the demo server and the HubSpot connector.

Protocol tests talk to the emulation over real HTTP; fault tests inject 429s, 500s, timeouts,
truncated bodies, dropped connections and a failure in the middle of paging through a FaultPlan;
the equivalence test shows the HubSpot path yields the Salesforce path's frames on demo data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from cxloop.demo import hubspot_api
from cxloop.demo.generator import generate
from cxloop.demo.hubspot_api import Fault, FaultPlan, FaultRule, configure
from cxloop.demo.server import DemoServer
from cxloop.extract.http_client import RetryPolicy
from cxloop.extract.hubspot import HubSpotClient, HubSpotError, RateLimiter, extract_hubspot
from cxloop.extract.salesforce import extract_salesforce

TOKEN = "pat-na1-0badc0de-1234-5678-9abc-def012345678"
CRM = ("owners", "accounts", "contacts", "follow_ups", "renewals")
FAST_RETRY = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05, retry_after_cap=2.0)
FAST = {"search_rate": None, "request_rate": None, "retry": FAST_RETRY}
PK = {
    "owners": "owner_id", "accounts": "account_id", "contacts": "contact_id", "follow_ups": "follow_up_id",
    "renewals": "renewal_id",
}  # fmt: skip
# The columns that legitimately differ: values as the source spelled them (Salesforce picklist
# label vs HubSpot's internal enumeration value): the role (buying_role itself is equal), the
# opportunity type / dealtype and the stage.
DIFFERS = {"contacts": {"buying_role_source"}, "renewals": {"renewal_type", "stage_name"}}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hubspot-world")
    generate(out, seed=5, scale=0.2)
    return out


@pytest.fixture
def server(world):
    srv = DemoServer(world, TOKEN)
    srv.start()
    configure(srv, search_rate=0)  # rate limit off unless a test turns it on
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def baseline(world) -> dict[str, pd.DataFrame]:
    with DemoServer(world, TOKEN) as url:
        return extract_hubspot(url, TOKEN, **FAST)


def source_records(world: Path, name: str) -> list[dict]:
    return json.loads((world / "source" / "salesforce" / f"{name}.json").read_text())


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def by_pk(frames: dict[str, pd.DataFrame], entity: str) -> pd.DataFrame:
    return frames[entity].sort_values(PK[entity], kind="stable").reset_index(drop=True)


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for entity in a:
        pd.testing.assert_frame_equal(by_pk(a, entity), by_pk(b, entity))


def assert_complete(frames: dict[str, pd.DataFrame], world: Path) -> None:
    """No gaps (every live source record is there) and no duplicates beyond the planted one."""
    expect = {
        "owners": [r["Id"] for r in source_records(world, "User")],
        "accounts": [r["Id"] for r in source_records(world, "Account")],  # includes the planted copy
        "contacts": [r["Id"] for r in source_records(world, "Contact")],
        "follow_ups": [
            r["Id"]
            for r in source_records(world, "Task")
            if r.get("Survey_Response_Id__c") and not r.get("IsDeleted")
        ],
        "renewals": [r["Id"] for r in source_records(world, "Opportunity") if r["Type"] == "Renewal"],
    }
    for entity, ids in expect.items():
        got = frames[entity][PK[entity]].tolist()
        assert sorted(got) == sorted(ids), entity


def search(base: str, otype: str, body: dict) -> requests.Response:
    return requests.post(f"{base}/crm/v3/objects/{otype}/search", json=body, headers=auth(), timeout=10)


# ----------------------------------------------------------------------------------------
# The emulated protocol
# ----------------------------------------------------------------------------------------


def test_search_pages_with_after_sorted_no_duplicates_no_gaps(server, world):
    body = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "hs_buying_role", "lastmodifieddate"],
        "limit": 50,
    }
    ids, stamps, pages = [], [], 0
    while True:
        r = search(server.base_url, "contacts", body)
        assert r.status_code == 200, r.text
        page = r.json()
        pages += 1
        for res in page["results"]:
            ids.append(res["id"])
            stamps.append(res["properties"]["lastmodifieddate"])
            assert set(res["properties"]) >= {"email", "hs_buying_role", "hs_object_id", "createdate"}
        nxt = page.get("paging", {}).get("next", {}).get("after")
        if not nxt:
            break
        body["after"] = nxt
    live = [c["Id"] for c in source_records(world, "Contact") if not c["IsDeleted"]]
    assert page["total"] == len(live) == len(ids) == len(set(ids))
    assert sorted(ids) == sorted(live)
    assert stamps == sorted(stamps) and pages == -(-len(live) // 50)


def test_search_filters_between_in_has_property(server, world):
    tasks = source_records(world, "Task")
    with_resp = [t for t in tasks if t.get("Survey_Response_Id__c") and not t["IsDeleted"]]
    r = search(
        server.base_url,
        "tasks",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "survey_response_id", "operator": "HAS_PROPERTY"}]}
            ],
            "limit": 200,
        },
    )
    assert r.json()["total"] == len(with_resp)
    statuses = {t["Status"] for t in tasks}
    assert statuses <= {"Not Started", "In Progress", "Completed", "Deferred"}
    r = search(
        server.base_url,
        "tasks",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "hs_task_status", "operator": "IN", "values": ["COMPLETED"]}]}
            ],
            "properties": ["hs_task_status"],
            "limit": 200,
        },
    )
    assert {x["properties"]["hs_task_status"] for x in r.json()["results"]} == {"COMPLETED"}
    assert r.json()["total"] == sum(t["Status"] == "Completed" and not t["IsDeleted"] for t in tasks)
    # BETWEEN with ISO values, OR across filter groups
    r = search(
        server.base_url,
        "companies",
        {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "hs_lastmodifieddate",
                            "operator": "BETWEEN",
                            "value": "2000-01-01T00:00:00Z",
                            "highValue": "2100-01-01T00:00:00Z",
                        }
                    ]
                },
                {"filters": [{"propertyName": "name", "operator": "EQ", "value": "no such company"}]},
            ],
            "limit": 1,
        },
    )
    assert r.json()["total"] == len(source_records(world, "Account"))


def test_search_validation_and_the_result_cap(server):
    r = search(server.base_url, "contacts", {"limit": 201})
    assert r.status_code == 400
    err = r.json()
    assert err["status"] == "error" and err["category"] == "VALIDATION_ERROR" and err["correlationId"]
    r = search(server.base_url, "contacts", {"limit": 10, "after": "10000"})
    assert r.status_code == 400 and "10000" in r.json()["message"]
    configure(server, result_cap=100)
    assert search(server.base_url, "contacts", {"limit": 100, "after": "0"}).status_code == 200
    r = search(server.base_url, "contacts", {"limit": 10, "after": "100"})
    assert r.status_code == 400
    assert hubspot_api.emulation(server).stats.cap_rejections == 2
    r = search(
        server.base_url, "contacts", {"sorts": [{"propertyName": "email"}, {"propertyName": "jobtitle"}]}
    )
    assert r.status_code == 400
    r = search(
        server.base_url,
        "contacts",
        {
            "filterGroups": [
                {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "yesterday"}]}
            ]
        },
    )
    assert r.status_code == 400
    r = requests.post(f"{server.base_url}/crm/v3/objects/widgets/search", json={}, headers=auth(), timeout=5)
    assert r.status_code == 400 and r.json()["status"] == "error"


def test_list_endpoint_owners_and_associations(server, world):
    base = server.base_url
    seen, after = [], None
    while True:
        params = {"limit": 100, "properties": "email,jobtitle", "associations": "companies"}
        if after:
            params["after"] = after
        r = requests.get(f"{base}/crm/v3/objects/contacts", params=params, headers=auth(), timeout=5)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += page["results"]
        after = page.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    contacts = {c["Id"]: c for c in source_records(world, "Contact")}
    assert sorted(x["id"] for x in seen) == sorted(i for i, c in contacts.items() if not c["IsDeleted"])
    one = seen[0]
    assert one["associations"]["companies"]["results"][0]["id"] == contacts[one["id"]]["AccountId"]
    assert (
        requests.get(
            f"{base}/crm/v3/objects/contacts", params={"limit": 101}, headers=auth(), timeout=5
        ).status_code
        == 400
    )

    users = source_records(world, "User")
    owners = {}
    for archived in ("false", "true"):
        r = requests.get(
            f"{base}/crm/v3/owners", params={"archived": archived, "limit": 2}, headers=auth(), timeout=5
        )
        page = r.json()
        while True:
            for o in page["results"]:
                owners[o["id"]] = o
            nxt = page.get("paging", {}).get("next", {}).get("after")
            if not nxt:
                break
            page = requests.get(
                f"{base}/crm/v3/owners",
                params={"archived": archived, "limit": 2, "after": nxt},
                headers=auth(),
                timeout=5,
            ).json()
    assert len(owners) == len(users)
    for u in users:
        o = owners[u["Id"]]
        assert o["archived"] is (not u["IsActive"])
        assert f"{o['firstName']} {o['lastName']}" == u["Name"] and o["teams"][0]["name"] == u["Department"]

    task = next(t for t in source_records(world, "Task") if not t["IsDeleted"])
    r = requests.post(
        f"{base}/crm/v4/associations/tasks/contacts/batch/read",
        json={"inputs": [{"id": task["Id"]}, {"id": "no-such-task"}]},
        headers=auth(),
        timeout=5,
    )
    assert r.status_code == 207
    body = r.json()
    assert body["results"][0]["to"][0]["toObjectId"] == task["WhoId"] and body["numErrors"] == 1
    r = requests.post(
        f"{base}/crm/v4/associations/tasks/contacts/batch/read",
        json={"inputs": [{"id": str(i)} for i in range(1001)]},
        headers=auth(),
        timeout=5,
    )
    assert r.status_code == 400


def test_auth_401(server):
    r = search(server.base_url, "contacts", {})
    assert r.status_code == 200
    r = requests.post(f"{server.base_url}/crm/v3/objects/contacts/search", json={}, timeout=5)
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
    r = requests.get(f"{server.base_url}/crm/v3/owners", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert r.status_code == 401
    with pytest.raises(HubSpotError) as exc:
        extract_hubspot(server.base_url, "wrong-token-123456", **FAST)
    e = exc.value
    assert e.status == 401 and e.attempts == 1
    assert "hubspot" in str(e) and "/crm/v3/owners" in str(e) and "INVALID_AUTHENTICATION" in str(e)
    assert "wrong-token-123456" not in str(e)


def test_server_rate_limit_answers_429_with_retry_after(server):
    configure(server, search_rate=3, search_period=1.0)
    codes = [search(server.base_url, "companies", {"limit": 1}) for _ in range(4)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    r = codes[3]
    assert r.status_code == 429
    assert 0 < float(r.headers["Retry-After"]) <= 1.0
    body = r.json()
    assert (
        body["status"] == "error" and body["errorType"] == "RATE_LIMIT" and body["policyName"] == "SECONDLY"
    )
    # other endpoints are not held by the search limit
    assert requests.get(f"{server.base_url}/crm/v3/owners", headers=auth(), timeout=5).status_code == 200


def test_client_waits_when_the_server_says_429(server, world, baseline):
    configure(server, search_rate=2, search_period=1.0)
    stats: dict = {}
    frames = extract_hubspot(server.base_url, TOKEN, page_size=100, stats=stats, **FAST)  # no client limiter
    assert hubspot_api.emulation(server).stats.rate_limited > 0
    assert stats["http_retries"] >= hubspot_api.emulation(server).stats.rate_limited
    assert_same(frames, baseline)
    assert_complete(frames, world)


def test_client_limiter_stays_under_five_per_second(server, baseline):
    configure(server, search_rate=5, search_period=1.0)  # HubSpot's documented limit
    stats: dict = {}
    t0 = time.monotonic()
    frames = extract_hubspot(
        server.base_url, TOKEN, page_size=40, entities=("contacts",), stats=stats, retry=FAST_RETRY
    )
    elapsed = time.monotonic() - t0
    n = stats["search_requests"]
    assert n >= 9
    assert hubspot_api.emulation(server).stats.rate_limited == 0
    assert elapsed >= (n - 4) / 4 - 0.05  # at most 4 searches in any second
    pd.testing.assert_frame_equal(by_pk(frames, "contacts"), by_pk(baseline, "contacts"))


def test_rate_limiter_sliding_window():
    clock = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        clock[0] += s

    lim = RateLimiter(2, 1.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        lim.acquire()
    assert lim.calls == 5 and len(sleeps) == 2 and clock[0] >= 2.0


# ----------------------------------------------------------------------------------------
# Windows and the 10,000-result cap
# ----------------------------------------------------------------------------------------


def test_windows_split_below_the_result_cap(server, world, baseline):
    cap = 60  # the test's stand-in for 10,000
    configure(server, result_cap=cap)
    stats: dict = {}
    frames = extract_hubspot(server.base_url, TOKEN, page_size=25, max_results=cap, stats=stats, **FAST)
    emu = hubspot_api.emulation(server)
    assert stats["windows_split"] > 0 and stats["windows_read"] > 3
    assert emu.stats.cap_rejections == 0
    assert all(int(s.get("after") or 0) < cap for s in emu.stats.search_log)
    assert_same(frames, baseline)
    assert_complete(frames, world)


def test_without_splitting_the_cap_is_a_clear_error(server):
    configure(server, result_cap=60)
    with pytest.raises(HubSpotError) as exc:  # the client believes in a larger cap: pages past 60
        extract_hubspot(
            server.base_url, TOKEN, page_size=25, max_results=10_000, entities=("contacts",), **FAST
        )
    assert exc.value.status == 400 and "/crm/v3/objects/contacts/search" in str(exc.value)


def test_start_end_and_fixed_windows(server, world):
    contacts = source_records(world, "Contact")
    stamps = sorted(pd.Timestamp(c["SystemModstamp"]) for c in contacts)
    start, end = stamps[len(stamps) // 4].to_pydatetime(), stamps[3 * len(stamps) // 4].to_pydatetime()
    frames = extract_hubspot(
        server.base_url,
        TOKEN,
        start=start,
        end=end,
        window=pd.Timedelta(days=30),
        entities=("contacts",),
        **FAST,
    )
    want = sorted(
        c["Id"] for c in contacts if start <= pd.Timestamp(c["SystemModstamp"]).to_pydatetime() < end
    )
    assert sorted(frames["contacts"]["contact_id"]) == want


def test_more_than_the_cap_in_one_millisecond_is_an_error(tmp_path):
    sf = tmp_path / "source" / "salesforce"
    sf.mkdir(parents=True)
    same = "2025-03-01T10:00:00.000+0000"
    rows = [
        {
            "Id": f"003X{i:03d}",
            "AccountId": "001X",
            "Email": f"p{i}@x.example",
            "Title": None,
            "Buying_Role__c": None,
            "Active__c": True,
            "HasOptedOutOfEmail": False,
            "IsDeleted": False,
            "SystemModstamp": same,
        }
        for i in range(8)
    ]
    (sf / "Contact.json").write_text(json.dumps(rows))
    srv = DemoServer(tmp_path, TOKEN)
    with srv as url:
        configure(srv, search_rate=0, result_cap=5)
        with pytest.raises(HubSpotError) as exc:
            extract_hubspot(url, TOKEN, page_size=2, max_results=5, entities=("contacts",), **FAST)
    assert "millisecond" in str(exc.value) and "contacts" in str(exc.value)


def test_records_modified_while_read_are_read_again(server, world, baseline, monkeypatch):
    """A record modified between two pages moves to the end of the open window: offset paging
    would skip the record after it. The window is read again; the latest version is kept."""
    emu = hubspot_api.emulation(server)
    contacts = emu.objects()["contacts"]
    live = sorted(
        (c for c in contacts if not c["archived"]),
        key=lambda c: (c["properties"]["lastmodifieddate"], c["id"]),
    )
    moved = live[5]
    original = HubSpotClient._search
    calls = {"n": 0}

    def search_then_modify(self, obj, body, land_as):
        page = original(self, obj, body, land_as)
        if obj == "contacts":
            calls["n"] += 1
            if calls["n"] == 1:
                stamp = "2030-01-01T00:00:00.000Z"
                moved["properties"]["lastmodifieddate"] = stamp
                moved["properties"]["hs_lastmodifieddate"] = stamp
                moved["updatedAt"] = stamp
        return page

    monkeypatch.setattr(HubSpotClient, "_search", search_then_modify)
    stats: dict = {}
    frames = extract_hubspot(
        server.base_url, TOKEN, page_size=40, entities=("contacts",), stats=stats, **FAST
    )
    got = frames["contacts"]
    assert stats["window_rereads"] >= 1
    assert got["contact_id"].is_unique and sorted(got["contact_id"]) == sorted(
        baseline["contacts"]["contact_id"]
    )
    assert got.set_index("contact_id").loc[moved["id"], "updated_at"] == pd.Timestamp("2030-01-01")


# ----------------------------------------------------------------------------------------
# Injected faults
# ----------------------------------------------------------------------------------------

SEARCH = r"/search$"


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(Fault("rate_limit", retry_after=0.3), path=SEARCH, first=2),
        FaultRule(Fault("status", status=500), path=SEARCH, first=2, count=2),
        FaultRule(Fault("status", status=503), path=r"^/crm/v3/owners", first=1),
        FaultRule(Fault("delay", seconds=1.0), path=SEARCH, first=3),
        FaultRule(Fault("truncate", keep=0.5, full_length=True), path=SEARCH, first=2),
        FaultRule(Fault("truncate", keep=0.3, full_length=False), path=SEARCH, first=2),
        FaultRule(Fault("truncate", keep=0.5), path=r"^/crm/v3/owners", first=1),
        FaultRule(Fault("drop"), path=r"/batch/read$", first=1),
    ],
    ids=[
        "429-retry-after",
        "500-twice",
        "503-owners",
        "timeout",
        "truncated-dropped",
        "truncated-short-json",
        "truncated-owners",
        "dropped-associations",
    ],
)
def test_faults_are_survived(server, world, baseline, rule):
    plan = FaultPlan.of(rule)
    configure(server, faults=plan)
    stats: dict = {}
    t0 = time.monotonic()
    frames = extract_hubspot(server.base_url, TOKEN, page_size=60, read_timeout=0.4, stats=stats, **FAST)
    assert plan.injected, "the fault was never injected"
    assert stats["http_retries"] + stats["body_retries"] >= 1
    if rule.fault.kind == "rate_limit":
        assert time.monotonic() - t0 >= 0.3  # Retry-After honoured
    assert_same(frames, baseline)
    assert_complete(frames, world)


def test_failure_in_the_middle_of_paging_then_a_rerun_completes(server, world, baseline, tmp_path):
    landing = tmp_path / "landing"
    # contacts' third search page fails for good (500 on every retry)
    plan = FaultPlan.of(
        FaultRule(Fault("status", status=500), path=r"/objects/contacts/search$", first=3, count=None)
    )
    configure(server, faults=plan)
    with pytest.raises(HubSpotError) as exc:
        extract_hubspot(server.base_url, TOKEN, landing, page_size=50, **FAST)
    e = exc.value
    text = str(e)
    assert text.startswith("hubspot: extracting contacts:")
    assert (
        "POST" in text and f"{server.base_url}/crm/v3/objects/contacts/search" in text and "HTTP 500" in text
    )
    assert e.attempts == FAST_RETRY.max_retries + 1
    assert TOKEN not in text and TOKEN not in repr(e.args)
    pages_before = sorted(p.name for p in (landing / "hubspot" / "contacts").rglob("page-*.json"))
    assert pages_before == ["page-0001.json", "page-0002.json"]

    configure(server, faults=None)
    frames = extract_hubspot(server.base_url, TOKEN, landing, page_size=50, **FAST)
    assert_same(frames, baseline)
    assert_complete(frames, world)
    assert frames["contacts"]["contact_id"].is_unique
    landed = list((landing / "hubspot").rglob("*.json"))
    assert len(landed) > 10
    assert not any(TOKEN in p.read_text() for p in landed)
    # the landed search pages hold every contact exactly once
    ids = []
    for p in (landing / "hubspot" / "contacts" / "search").rglob("page-*.json"):
        ids += [r["id"] for r in json.loads(p.read_text())["results"]]
    assert sorted(ids) == sorted(frames["contacts"].loc[~frames["contacts"]["is_deleted"], "contact_id"])


def test_faults_leave_other_routes_alone_unless_asked(server, world):
    configure(server, faults=FaultPlan.of(FaultRule(Fault("status", status=500), count=None)))  # /crm/ only
    sf = extract_salesforce(server.base_url, TOKEN, retry=FAST_RETRY)
    assert len(sf["contacts"]) == len(source_records(world, "Contact"))
    plan = FaultPlan.of(FaultRule(Fault("status", status=503), path=r"^/services/data/", first=1))
    configure(server, faults=plan)
    sf = extract_salesforce(server.base_url, TOKEN, retry=FAST_RETRY)
    assert len(plan.injected) == 1 and plan.injected[0][1].startswith("/services/data/v60.0/query")
    assert len(sf["accounts"]) == len(source_records(world, "Account"))


# ----------------------------------------------------------------------------------------
# The HubSpot path equals the Salesforce path on demo data
# ----------------------------------------------------------------------------------------


def test_hubspot_frames_equal_salesforce_frames(server, world):
    hs = extract_hubspot(server.base_url, TOKEN, **FAST)
    sf = extract_salesforce(server.base_url, TOKEN)
    assert set(hs) == set(sf) == set(CRM)
    for entity in CRM:
        a, b = by_pk(hs, entity), by_pk(sf, entity)
        assert list(a.columns) == list(b.columns), entity
        same = [c for c in a.columns if c not in DIFFERS.get(entity, set())]
        pd.testing.assert_frame_equal(a[same], b[same], obj=entity)
    # the differing column: the same role, spelled HubSpot's way
    pairs = set(
        zip(
            by_pk(sf, "contacts")["buying_role_source"].fillna("-"),
            by_pk(hs, "contacts")["buying_role_source"].fillna("-"),
            strict=True,
        )
    )
    assert pairs <= {
        ("Decision Maker", "DECISION_MAKER"),
        ("Economic Buyer", "BUDGET_HOLDER"),
        ("Influencer", "INFLUENCER"),
        ("Technical Evaluator", "INFLUENCER"),
        ("End User", "END_USER"),
        ("Other", "OTHER"),
        ("-", "-"),
    }
    assert len(pairs) >= 6
    # no raw e-mail address anywhere in the frames
    for frame in hs.values():
        for c in frame.columns:
            if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]):
                assert not frame[c].astype(str).str.contains("@", regex=False).any(), c
