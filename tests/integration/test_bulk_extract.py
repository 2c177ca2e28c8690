"""Salesforce Bulk API 2.0 query jobs (the demo server's emulation and the connector's bulk path),
and the Qualtrics connector's parallel export windows and incremental XM directory.

One small generated world (scale 0.3, a fraction of a second) and one demo server per module;
every extraction is real HTTP over loopback."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import requests
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer
from cxloop.extract import qualtrics, salesforce
from cxloop.extract.http_client import SourceHTTPError
from cxloop.extract.salesforce import land_salesforce

TOKEN = "bulk-test-token-0000"
AS_OF = datetime(2026, 10, 1)
KEYS = {"owners": "owner_id", "accounts": "account_id", "contacts": "contact_id", "follow_ups": "follow_up_id",
        "renewals": "renewal_id"}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("bulk-world")
    generate(out, seed=9, scale=0.3)
    return out


@pytest.fixture(scope="module")
def server(world):
    srv = DemoServer(world, TOKEN)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def landed(url: str, **options) -> dict[str, list[dict]]:
    """Every entity's landed text rows (the pipeline's sink form), ordered by key."""
    got: dict[str, list[pa.Table]] = {}
    land_salesforce(url, TOKEN, lambda e, t, m: got.setdefault(e, []).append(t), **options)
    return {e: sorted(pa.concat_tables(t).to_pylist(), key=lambda r: r[KEYS[e]]) for e, t in got.items()}


def sf(server, path: str) -> str:
    return f"{server.base_url}/services/data/v60.0/{path}"


def auth(**extra) -> dict:
    return {"Authorization": f"Bearer {TOKEN}", **extra}


def test_bulk_and_rest_land_equal_data_for_the_same_window(server, tmp_path):
    """Whole history and one change window: the bulk path (every entity a job, result sets of
    97 records) lands exactly the REST path's text rows; its raw CSV sets are landed and every
    job is deleted after use."""
    since = {e: datetime(2026, 3, 1) for e in salesforce.ENTITIES}
    for window in ({}, {"since": since}):
        rest = landed(server.base_url, until=AS_OF, bulk_threshold=None, **window)
        bulk = landed(server.base_url, until=AS_OF, bulk_threshold=0, bulk_max_records=97,
                      landing_dir=tmp_path / "raw", **window)  # fmt: skip
        assert set(rest) == set(bulk) == set(salesforce.ENTITIES)
        assert {e: len(r) for e, r in rest.items()} == {e: len(r) for e, r in bulk.items()}
        assert all(rest[e] for e in ("accounts", "contacts", "follow_ups"))
        assert rest == bulk
    sets = sorted(p.name for p in (tmp_path / "raw" / "salesforce" / "Contact").iterdir())
    assert sets[0] == "bulk-0001.csv" and len(sets) > 1 and not any(s.endswith(".json") for s in sets)
    assert server._bulk_jobs == {}  # deleted after use


def test_the_threshold_sends_only_large_objects_to_bulk(server, tmp_path):
    """A COUNT() of each window decides: at 100 records or more a job, below it REST pages."""
    rows = landed(server.base_url, until=AS_OF, bulk_threshold=100, landing_dir=tmp_path)
    root = tmp_path / "salesforce"
    for entity, sobject in salesforce.SOBJECT.items():
        names = {p.suffix for p in (root / sobject).iterdir()}
        assert names == ({".csv"} if len(rows[entity]) >= 100 else {".json"}), (entity, len(rows[entity]), names)
    assert len(rows["owners"]) < 100 <= len(rows["contacts"])
    with pytest.raises(ValueError, match="bulk_threshold 'lots' is not a whole number"):
        landed(server.base_url, until=AS_OF, bulk_threshold="lots")


@pytest.mark.parametrize("state", ["Failed", "Aborted"])
def test_a_failed_or_aborted_job_fails_in_one_line_and_is_deleted(world, state):
    srv = DemoServer(world, TOKEN, bulk_faults={"Contact": state})
    url = srv.start()
    try:
        with pytest.raises(SourceHTTPError) as err:
            landed(url, until=AS_OF, bulk_threshold=0, entities=("contacts",))
        text = str(err.value)
        assert f"ended {state}" in text and "Contact" in text and "\n" not in text and TOKEN not in text
        assert srv._bulk_jobs == {}
    finally:
        srv.stop()


def test_demo_bulk_protocol(server):
    """Create (UploadComplete), poll (InProgress, then JobComplete), results only when complete,
    CSV sets with Sforce-Locator / Sforce-NumberOfRecords, 409 on another API version, DELETE
    only when terminal (204, then 404), abort with PATCH; COUNT() answers through REST and is
    refused by bulk."""
    s = requests.Session()
    s.headers.update(auth())
    soql = "SELECT Id, Name, IsDeleted FROM Account WHERE IsDeleted = false"
    job = s.post(sf(server, "jobs/query"), json={"operation": "query", "query": soql}).json()
    assert job["state"] == "UploadComplete" and job["object"] == "Account" and job["contentType"] == "CSV"
    early = s.get(sf(server, f"jobs/query/{job['id']}/results"))
    assert early.status_code == 400 and early.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert s.delete(sf(server, f"jobs/query/{job['id']}")).status_code == 400  # not terminal yet
    states = [s.get(sf(server, f"jobs/query/{job['id']}")).json()["state"] for _ in range(3)]
    assert states == ["InProgress", "InProgress", "JobComplete"]
    info = s.get(sf(server, f"jobs/query/{job['id']}")).json()
    total = info["numberRecordsProcessed"]
    assert total == s.get(sf(server, "query"), params={"q": soql.replace("Id, Name, IsDeleted", "COUNT()")}).json()[
        "totalSize"
    ]
    ids, locator, sets = [], None, 0
    while True:
        params = {"maxRecords": 25, **({"locator": locator} if locator else {})}
        r = s.get(sf(server, f"jobs/query/{job['id']}/results"), params=params)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv"
        lines = r.text.splitlines()
        assert lines[0] == '"Id","Name","IsDeleted"'
        assert int(r.headers["Sforce-NumberOfRecords"]) == len(lines) - 1 <= 25
        assert all(line.endswith(',"false"') for line in lines[1:])
        ids += [line.split(",")[0].strip('"') for line in lines[1:]]
        sets += 1
        locator = r.headers["Sforce-Locator"]
        if locator == "null":
            break
        assert base64.b64decode(locator).decode() == str(len(ids))
    assert len(ids) == total and sets == -(-total // 25)  # (the demo world holds a duplicate Id)
    assert s.get(sf(server, f"jobs/query/{job['id']}/results").replace("v60.0", "v59.0")).status_code == 409
    bad = s.get(sf(server, f"jobs/query/{job['id']}/results"), params={"locator": "!!"})
    assert bad.status_code == 400
    assert s.delete(sf(server, f"jobs/query/{job['id']}")).status_code == 204
    assert s.get(sf(server, f"jobs/query/{job['id']}")).status_code == 404

    other = s.post(sf(server, "jobs/query"), json={"operation": "queryAll", "query": "SELECT Id FROM Contact"}).json()
    aborted = s.patch(sf(server, f"jobs/query/{other['id']}"), json={"state": "Aborted"})
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    assert s.get(sf(server, f"jobs/query/{other['id']}")).json()["state"] == "Aborted"
    assert s.delete(sf(server, f"jobs/query/{other['id']}")).status_code == 204

    for body, code in [
        ({"operation": "query", "query": "SELECT COUNT() FROM Account"}, "INVALIDJOB"),
        ({"operation": "insert", "query": "SELECT Id FROM Account"}, "INVALIDJOB"),
        ({"operation": "query", "query": "SELECT Nope FROM Account"}, "INVALID_FIELD"),
    ]:
        r = s.post(sf(server, "jobs/query"), json=body)
        assert r.status_code == 400 and r.json()[0]["errorCode"] == code, body
    assert requests.post(sf(server, "jobs/query"), json={"operation": "query", "query": soql}).status_code == 401
    assert server._bulk_jobs == {}


# -- Qualtrics: parallel export windows, incremental XM directory ---------------------------------

DIRECTORY = "POOL_cxloopdemo"


def q_landed(url: str, **options) -> dict[str, list[pa.Table]]:
    got: dict[str, list[pa.Table]] = {}
    qualtrics.land_qualtrics(url, TOKEN, DIRECTORY, lambda e, t, m: got.setdefault(e, []).append(t), **options)
    return {e: pa.concat_tables(t).to_pylist() for e, t in got.items()}


def test_window_bounds_cut_the_span_and_keep_its_ends():
    lo, hi = datetime(2026, 1, 1), datetime(2026, 1, 29)
    assert qualtrics.window_bounds(None, hi, lo, 4, 7) == [
        (None, datetime(2026, 1, 8)), (datetime(2026, 1, 8), datetime(2026, 1, 15)),
        (datetime(2026, 1, 15), datetime(2026, 1, 22)), (datetime(2026, 1, 22), hi),
    ]  # fmt: skip
    assert qualtrics.window_bounds(datetime(2026, 1, 20), hi, lo, 4, 7) == [(datetime(2026, 1, 20), hi)]
    assert len(qualtrics.window_bounds(lo, hi, None, 4, 10)) == 2
    assert qualtrics.window_bounds(None, None, lo, 4, 7) == [(None, None)]
    assert qualtrics.window_bounds(lo, hi, None, 1, 7) == [(lo, hi)]


def test_responses_exported_in_parallel_windows_equal_one_export(server, tmp_path):
    """Four windows per survey (started together, downloaded ahead, merged in window order) land
    exactly the responses of one export per survey (an export file is in recorded-date order, so
    only duplicates appended to a file move), for the whole history and for a window; each
    window's file is landed."""
    for window in ({}, {"start": datetime(2026, 2, 1)}):
        one = q_landed(server.base_url, end=AS_OF, export_windows=1, **window)
        raw = tmp_path / f"raw-{len(window)}"
        four = q_landed(server.base_url, end=AS_OF, export_windows=4, min_window_days=1, landing_dir=raw, **window)
        assert one["responses"] and four.keys() == one.keys()
        for entity in one:  # the same rows; a file appends its duplicate responses last, a window's too
            assert sorted(map(json.dumps, four[entity])) == sorted(map(json.dumps, one[entity])), entity
        assert four["invitations"] == one["invitations"]
        files = sorted(p.name for p in (raw / "qualtrics" / "responses").rglob("*.zip"))
        assert files.count("window-01.zip") == 3 and "window-04.zip" in files


def _incremental_day(world_dir, tmp_path, changed_at):
    """A copy of the world whose directory has one contact moved to another account, 59 more
    touched (all modified at ``changed_at``) and one contact added."""
    import shutil

    day2 = tmp_path / "day2"
    shutil.copytree(world_dir, day2)
    path = day2 / "source" / "qualtrics" / "directory_contacts.json"
    contacts = json.loads(path.read_text())
    moved = next(c for c in contacts if (c.get("embeddedData") or {}).get("AccountId"))
    before = moved["embeddedData"]["AccountId"]
    other = next(a for c in contacts if (a := (c.get("embeddedData") or {}).get("AccountId")) not in (None, before))
    moved["embeddedData"]["AccountId"] = other
    for c in [moved, *[c for c in contacts if c is not moved][:59]]:
        c["lastModifiedDate"] = changed_at
    contacts.append({**moved, "contactId": "CID_added_by_test", "extRef": "003_added", "lastModifiedDate": changed_at})
    path.write_text(json.dumps(contacts))
    return day2, moved["contactId"], other


@pytest.mark.parametrize("search_depth", [10_000, 50])
def test_an_incremental_directory_read_equals_a_full_one(world, tmp_path, search_depth):
    """Day 1 reads the directory whole and keeps the mapping in the landing state; on day 2 one
    contact changed account, 59 were touched and one was added: the incremental run searches only
    the changed contacts (two pages of 50, no directory pages) and lands exactly what a whole read lands. When the
    search refuses (its depth limit), the directory is read whole, with the same result."""
    landing = tmp_path / "landing" / "source=qualtrics" / "raw"
    with DemoServer(world, TOKEN) as url:
        q_landed(url, end=AS_OF, landing_dir=landing / "day1")
    state = landing.parent / "state" / qualtrics.DIRECTORY_STATE
    assert state.exists() and oct(state.stat().st_mode & 0o777) == "0o600"

    changed_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    day2, moved, account = _incremental_day(world, tmp_path, changed_at)
    window = {"end": AS_OF, "start": datetime(2026, 1, 1), "invitations_since": datetime(2025, 10, 1)}
    with DemoServer(day2, TOKEN, page_size=50, search_depth=search_depth) as url:
        incremental = q_landed(url, landing_dir=landing / "day2", **window)
        whole = q_landed(url, **window)  # no landing state: the directory read whole
    raw = landing / "day2" / "qualtrics"
    if search_depth > 50:
        assert len(list((raw / "directory_search").iterdir())) == 2  # the 61 changed contacts
        assert not (raw / "directory_contacts").exists()
    else:
        assert (raw / "directory_contacts").exists()  # the refused search fell back to a whole read
    assert incremental == whole
    mine = [r for r in incremental["invitations"] if r["invitation_id"].endswith(f":{moved}")]
    assert mine and all(r["account_id"] == account for r in mine)
    kept = json.loads(state.read_text())
    assert ["CID_added_by_test", "003_added", account] in kept["contacts"]
