"""Salesforce Bulk API 2.0 query jobs (the demo server's emulation and the connector's bulk path),
and the Qualtrics connector's parallel export windows and incremental XM directory.

One small generated world (scale 0.3, a fraction of a second) and one demo server per module;
every extraction is real HTTP over loopback."""

from __future__ import annotations

import base64
from datetime import datetime

import pyarrow as pa
import pytest
import requests
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer
from cxloop.extract import salesforce
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
