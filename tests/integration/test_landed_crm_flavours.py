"""The landed source's CRM flavours beyond Fivetran Salesforce, on hand-written tables in DuckDB
and in Postgres: Fivetran's HubSpot schema (``hs``), Airbyte's Salesforce streams (``absf``) and
Airbyte's HubSpot streams (``abhs``).

What landed schemas hold and the fixtures plant: merged HubSpot companies and contacts (the
merged-away record still in the table, and references to it from contacts, tasks and deals),
deleted rows (Fivetran's ``is_deleted`` / ``_fivetran_deleted``, Airbyte's ``IsDeleted``,
``archived`` and CDC ``_ab_cdc_deleted_at``), an append-mode Airbyte stream holding two versions
of a record, tasks without a survey link, a contact without a company. The tests read them
through ``pipeline.extract`` (and, on DuckDB, through the gate into a warehouse): the mapping,
merges resolved, deletes propagating, incremental runs equal to one full read, and quarantine
reasons naming the landed table, row key and column. No warehouse build: seconds.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import _landed_fixture as landed_fixture
import duckdb
import pandas as pd
import pytest
from cxloop import pipeline
from cxloop.config import Settings, SourceSettings
from cxloop.contract import ENTITIES
from cxloop.source_config import DOMAINS

T0 = datetime(2026, 1, 1)
T1 = datetime(2026, 3, 1)
T2 = datetime(2026, 6, 1)
H = timedelta(hours=1)
MERGED_AT = "1767225600000"  # epoch ms, as hs_calculated_merged_vids carries it

S, B, TS, F, INT = "TEXT", "BOOLEAN", "TIMESTAMP", "DOUBLE PRECISION", "BIGINT"
FT = [("_fivetran_synced", TS)]
AB = [("_airbyte_raw_id", S), ("_airbyte_extracted_at", TS), ("_airbyte_meta", S)]
META = '{"sync_id": 1, "changes": []}'


def ab(key: str, at: datetime) -> tuple:
    return (f"raw-{key}-{at.isoformat()}", at, META)


TABLES: dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple]]] = {
    # ---- Fivetran HubSpot
    ("hs", "owner"): (
        [("owner_id", S), ("first_name", S), ("last_name", S), ("email", S), ("is_active", B),
         ("updated_at", TS), ("_fivetran_deleted", B)] + FT,
        [("O1", "Ana", "Lee", "ana@x.example", True, T0, False, T0),
         ("O2", "Bo", None, "bo@x.example", False, T0, False, T0)],
    ),
    ("hs", "company"): (
        [("id", S), ("is_deleted", B), ("property_name", S), ("property_hubspot_owner_id", S), ("property_arr", F),
         ("property_active", B), ("property_createdate", TS), ("property_hs_lastmodifieddate", TS),
         ("property_hs_merged_object_ids", S)] + FT,
        [("K1", False, "Survivor Co", "O1", 1000.0, True, T0, T0, "K2", T0),
         ("K2", False, "Merged-away Co", "O1", 10.0, True, T0, T0, None, T0),  # merged into K1
         ("K3", True, "Deleted Co", "O1", 5.0, True, T0, T0, None, T0)],
    ),
    ("hs", "contact"): (
        [("id", S), ("property_email", S), ("property_jobtitle", S), ("property_hs_buying_role", S),
         ("property_associatedcompanyid", S), ("property_active", B), ("property_hs_email_optout", B),
         ("property_lastmodifieddate", TS), ("property_hs_calculated_merged_vids", S), ("_fivetran_deleted", B)] + FT,
        [("P1", "p1@x.example", "CFO", "BUDGET_HOLDER;END_USER", "K1", True, False, T0, f"P2:{MERGED_AT}", False, T0),
         ("P2", "p2@x.example", "CFO", None, "K1", True, False, T0, None, False, T0),  # merged into P1
         ("P3", "p3@x.example", "Engineer", "END_USER", None, True, False, T0, None, False, T0),  # via contact_company
         ("P4", "p4@x.example", "Analyst", None, "K2", True, False, T0, None, False, T0),  # company merged away
         ("P5", "p5@x.example", "Analyst", None, "K1", True, False, T0, None, True, T0 + H),  # deleted
         ("P9", "p9@x.example", "Intern", None, None, True, False, T0, None, False, T0)],  # no company
    ),
    ("hs", "contact_company"): (
        [("contact_id", S), ("company_id", S), ("type_id", INT)] + FT,
        [("P3", "K3", 279, T0), ("P3", "K2", 1, T0)],  # the primary (type 1) association wins
    ),
    ("hs", "engagement"): (
        [("id", S), ("type", S), ("owner_id", S), ("created_at", TS), ("last_updated", TS),
         ("_fivetran_deleted", B)] + FT,
        [("E1", "TASK", "O1", T0 + H, T0 + 2 * H, False, T0 + 2 * H),
         ("E2", "TASK", "O1", T0 + H, T0 + 2 * H, False, T0 + 2 * H),
         ("E3", "TASK", "O1", T0 + H, T0 + 2 * H, True, T0 + 2 * H)],
    ),
    ("hs", "engagement_task"): (
        [("engagement_id", S), ("property_hs_task_status", S), ("property_survey_response_id", S),
         ("property_hs_createdate", TS), ("property_hs_lastmodifieddate", TS), ("property_hubspot_owner_id", S)] + FT,
        [("E1", "COMPLETED", "R1", T0 + H, T0 + 2 * H, "O1", T0 + 2 * H),
         ("E2", "NOT_STARTED", None, T0 + H, T0 + 2 * H, "O1", T0 + 2 * H),  # no survey link
         ("E3", "COMPLETED", "R1", T0 + H, T0 + 2 * H, "O1", T0 + 2 * H)],  # deleted
    ),
    ("hs", "engagement_contact"): ([("engagement_id", S), ("contact_id", S)] + FT, [("E1", "P2", T0 + 2 * H)]),
    ("hs", "engagement_company"): ([("engagement_id", S), ("company_id", S)] + FT, [("E1", "K2", T0 + 2 * H)]),
    ("hs", "deal"): (
        [("deal_id", S), ("is_deleted", B), ("property_dealtype", S), ("property_dealstage", S),
         ("property_amount", F), ("property_closedate", TS), ("property_hs_is_closed", B),
         ("property_hs_is_closed_won", B), ("property_hs_lastmodifieddate", TS)] + FT,
        [("D1", False, "renewal", "closedwon", 900.0, T0, True, True, T0, T0),
         ("D2", False, "newbusiness", "closedwon", 5.0, T0, True, True, T0, T0)],
    ),
    ("hs", "deal_company"): ([("deal_id", S), ("company_id", S)] + FT, [("D1", "K2", T0), ("D2", "K1", T0)]),
    # ---- Airbyte Salesforce (stream tables named by SObject, API field names)
    ("absf", "User"): (
        [("Id", S), ("Name", S), ("Department", S), ("IsActive", B), ("SystemModstamp", TS)] + AB,
        [("U1", "Ana", "CSM", True, T0, *ab("U1", T0))],
    ),
    ("absf", "Account"): (
        [("Id", S), ("Name", S), ("OwnerId", S), ("Active__c", B), ("IsDeleted", B), ("SystemModstamp", TS)] + AB,
        [("A1", "Old Name", "U1", True, False, T0, *ab("A1", T0)),  # append mode: an older version
         ("A1", "New Name", "U1", True, False, T0 + H, *ab("A1", T0 + H)),
         ("A2", "Deleted Co", "U1", True, True, T0, *ab("A2", T0))],
    ),
    ("absf", "Contact"): (
        [("Id", S), ("AccountId", S), ("Email", S), ("Title", S), ("Buying_Role__c", S), ("Active__c", B),
         ("IsDeleted", B), ("SystemModstamp", TS), ("_ab_cdc_deleted_at", TS)] + AB,
        [("C1", "A1", "c1@x.example", "VP", "Economic Buyer", True, False, T0, None, *ab("C1", T0)),
         ("C2", "A1", "c2@x.example", "VP", None, True, False, T0, T0 + H, *ab("C2", T0 + H)),  # CDC delete
         ("C3", None, "c3@x.example", "VP", None, True, False, T0, None, *ab("C3", T0))],  # no account
    ),
    ("absf", "Task"): (
        [("Id", S), ("WhatId", S), ("WhoId", S), ("OwnerId", S), ("Status", S), ("Survey_Response_Id__c", S),
         ("CreatedDate", TS), ("IsDeleted", B), ("SystemModstamp", TS)] + AB,
        [("T1", "A1", "C1", "U1", "Completed", "R1", T0, False, T0, *ab("T1", T0)),
         ("T2", "A1", "C1", "U1", "Completed", None, T0, False, T0, *ab("T2", T0))],  # no survey link
    ),
    # ---- Airbyte HubSpot (streams; properties flattened; associations as JSON arrays)
    ("abhs", "owners"): (
        [("id", S), ("firstName", S), ("lastName", S), ("archived", B), ("updatedAt", TS), ("teams", S)] + AB,
        [("O1", "Ana", "Lee", False, T0, '[{"id": "9", "name": "CS EMEA", "primary": true}]', *ab("O1", T0))],
    ),
    ("abhs", "companies"): (
        [("id", S), ("archived", B), ("updatedAt", TS), ("properties_name", S),
         ("properties_hubspot_owner_id", S), ("properties_hs_merged_object_ids", S)] + AB,
        [("K1", False, T0, "Survivor Co", "O1", "K2", *ab("K1", T0)),
         ("K2", False, T0, "Merged-away Co", "O1", None, *ab("K2", T0)),
         ("K3", True, T0, "Archived Co", "O1", None, *ab("K3", T0))],
    ),
    ("abhs", "contacts"): (
        [("id", S), ("archived", B), ("updatedAt", TS), ("properties_email", S), ("properties_jobtitle", S),
         ("properties_hs_buying_role", S), ("properties_associatedcompanyid", S),
         ("properties_hs_calculated_merged_vids", S), ("companies", S)] + AB,
        [("P1", False, T0, "p1@x.example", "CFO", "DECISION_MAKER", None, f"P2:{MERGED_AT}", '["K1"]', *ab("P1", T0)),
         ("P2", False, T0, "p2@x.example", "CFO", None, None, None, '["K2"]', *ab("P2", T0)),
         ("P3", True, T0, "p3@x.example", "CFO", None, "K1", None, "[]", *ab("P3", T0))],  # archived
    ),
    ("abhs", "engagements_tasks"): (
        [("id", S), ("archived", B), ("updatedAt", TS), ("properties_hs_task_status", S),
         ("properties_survey_response_id", S), ("properties_hs_createdate", TS), ("contacts", S),
         ("companies", S)] + AB,
        [("E1", False, T0, "COMPLETED", "R1", T0, '["P2"]', '["K2"]', *ab("E1", T0)),
         ("E2", False, T0, "COMPLETED", "", T0, '["P1"]', '["K1"]', *ab("E2", T0)),  # no survey link
         ("E3", True, T0, "COMPLETED", "R1", T0, '["P1"]', '["K1"]', *ab("E3", T0))],  # archived
    ),
}  # fmt: skip
SCHEMAS = ("hs", "absf", "abhs")
OPTIONS = {
    "fivetran_hubspot": {"crm_schema": "hs", "crm_flavour": "fivetran_hubspot"},
    "airbyte_salesforce": {"crm_schema": "absf", "crm_flavour": "airbyte_salesforce"},
    "airbyte_hubspot": {"crm_schema": "abhs", "crm_flavour": "airbyte_hubspot"},
}


def duckdb_fixture(path) -> str:
    return landed_fixture.duckdb_database(path, SCHEMAS, TABLES)


def _pg_dsn(dbname: str) -> str:
    return landed_fixture.pg_dsn(dbname)


@pytest.fixture(scope="module")
def pg_database():
    yield from landed_fixture.pg_database("cx_landed_lh", SCHEMAS, TABLES)


def _settings(var) -> Settings:
    return Settings.from_env({"CXLOOP_VAR": str(var)})


def _rows(database: str, flavour: str, var, as_of: datetime) -> dict[str, pd.DataFrame]:
    source = SourceSettings("landed", "", "", {**OPTIONS[flavour], "database": database})
    batch = pipeline.extract(source, _settings(var), as_of, entities=DOMAINS["crm"], full_refresh=True)
    return {e: pd.read_parquet(p).set_index(ENTITIES[e].primary_key) for e, p in batch["files"].items()}


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def database(request, tmp_path_factory):
    if request.param == "duckdb":
        return duckdb_fixture(tmp_path_factory.mktemp("landed-flavours") / "landed.duckdb")
    return request.getfixturevalue("pg_database")


@pytest.fixture(scope="module")
def landed(database, tmp_path_factory):
    var = tmp_path_factory.mktemp("landed-flavours-var")
    return {f: _rows(database, f, var / f, T2) for f in OPTIONS}


# -- Fivetran HubSpot ----------------------------------------------------------------------------------


def test_fivetran_hubspot_merged_records_are_tombstones_and_references_resolve(landed):
    hs = landed["fivetran_hubspot"]
    accounts, contacts, tasks = hs["accounts"], hs["contacts"], hs["follow_ups"]
    assert accounts.loc["K2", "is_deleted"] == "true"  # merged into K1: never its own account
    assert accounts.loc["K1", "is_deleted"] == "false"
    assert contacts.loc["P2", "is_deleted"] == "true"  # merged into P1: never its own contact
    assert contacts.loc["P1", "is_deleted"] == "false"
    assert contacts.loc["P4", "account_id"] == "K1"  # its company K2 was merged into K1
    assert contacts.loc["P3", "account_id"] == "K1"  # primary association K2 -> K1
    assert tasks.loc["E1", "contact_id"] == "P1"  # the task's contact P2 -> P1
    assert tasks.loc["E1", "account_id"] == "K1"
    assert hs["renewals"].loc["D1", "account_id"] == "K1"  # the deal's company K2 -> K1


def test_fivetran_hubspot_mapping_deletes_and_tasks(landed):
    hs = landed["fivetran_hubspot"]
    assert hs["accounts"].loc["K3", "is_deleted"] == "true"
    assert hs["contacts"].loc["P5", "is_deleted"] == "true"  # _fivetran_deleted
    assert hs["contacts"].loc["P1", "buying_role"] == "decision_maker"  # the strongest of the multi-select
    assert hs["contacts"].loc["P1", "buying_role_source"] == "BUDGET_HOLDER;END_USER"
    assert "@" not in hs["contacts"].loc["P1", "email_hash"]
    assert sorted(hs["follow_ups"].index) == ["E1"]  # E2 has no survey link, E3 is deleted
    assert hs["follow_ups"].loc["E1", "status"] == "completed"
    assert hs["owners"].loc["O1", "owner_name"] == "Ana Lee"
    assert hs["owners"].loc["O2", "is_active"] == "false"
    assert list(hs["renewals"].index) == ["D1"]  # renewal deal types only


def test_buying_role_property_is_configurable(database, tmp_path):
    options = {**OPTIONS["fivetran_hubspot"], "buying_role_field": "jobtitle", "database": database}
    source = SourceSettings("landed", "", "", options)
    batch = pipeline.extract(source, _settings(tmp_path), T2, entities=("contacts",), full_refresh=True)
    contacts = pd.read_parquet(batch["files"]["contacts"]).set_index("contact_id")
    assert contacts.loc["P1", "buying_role_source"] == "CFO"


# -- Airbyte -------------------------------------------------------------------------------------------


def test_airbyte_salesforce_latest_version_and_deletes(landed):
    sf = landed["airbyte_salesforce"]
    assert sf["accounts"].loc["A1", "account_name"] == "New Name"  # the latest extracted version
    assert list(sf["accounts"].index).count("A1") == 1
    assert sf["accounts"].loc["A2", "is_deleted"] == "true"  # IsDeleted
    assert sf["contacts"].loc["C2", "is_deleted"] == "true"  # _ab_cdc_deleted_at
    assert sf["contacts"].loc["C1", "is_deleted"] == "false"
    assert sf["contacts"].loc["C1", "buying_role"] == "decision_maker"  # Buying_Role__c: Economic Buyer
    assert sorted(sf["follow_ups"].index) == ["T1"]  # T2 has no survey link


def test_airbyte_hubspot_merges_archived_and_associations(landed):
    hs = landed["airbyte_hubspot"]
    assert hs["accounts"].loc["K2", "is_deleted"] == "true"
    assert hs["accounts"].loc["K3", "is_deleted"] == "true"  # archived
    assert hs["contacts"].loc["P2", "is_deleted"] == "true"
    assert hs["contacts"].loc["P3", "is_deleted"] == "true"  # archived
    assert hs["contacts"].loc["P1", "account_id"] == "K1"  # from the companies array
    assert sorted(hs["follow_ups"].index) == ["E1"]
    assert hs["follow_ups"].loc["E1", "contact_id"] == "P1"
    assert hs["follow_ups"].loc["E1", "account_id"] == "K1"
    assert hs["owners"].loc["O1", "team"] == "CS EMEA"


# -- through the gate, incrementally (DuckDB) ---------------------------------------------------------


def _raw(settings: Settings, entities) -> dict[str, list]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {
            e: con.execute(
                f"select {', '.join(ENTITIES[e].column_names)} from raw.{e} order by {ENTITIES[e].primary_key}"
            ).fetchall()
            for e in entities
        }
    finally:
        con.close()


def _run(database: str, flavour: str, settings: Settings, as_of: datetime, full: bool = False) -> dict:
    source = SourceSettings("landed", "", "", {**OPTIONS[flavour], "database": database})
    batch = pipeline.extract(source, settings, as_of, entities=DOMAINS["crm"], full_refresh=full)
    return pipeline.validate_and_load([batch], settings, as_of)


def _reasons(settings: Settings) -> dict[str, str]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return dict(con.execute("select primary_key, reason from raw.quarantine").fetchall())
    finally:
        con.close()


CHANGES = {
    # a later sync: P4 merged into P1 (P1 changes, P4 does not), K1 renamed
    "fivetran_hubspot": [
        f"UPDATE hs.contact SET property_hs_calculated_merged_vids = 'P2:{MERGED_AT};P4:{MERGED_AT}', "
        f"_fivetran_synced = TIMESTAMP '{T1 + 3 * H}' WHERE id = 'P1'",
        f"UPDATE hs.company SET property_name = 'Renamed', _fivetran_synced = TIMESTAMP '{T1 + 3 * H}' WHERE id = 'K1'",
    ],
    # append mode: a new version of C1, deleted in the source
    "airbyte_salesforce": [
        "INSERT INTO absf.\"Contact\" SELECT \"Id\", \"AccountId\", \"Email\", \"Title\", \"Buying_Role__c\", "
        "\"Active__c\", true, "
        f"TIMESTAMP '{T1 + 3 * H}', NULL, 'raw-C1-later', TIMESTAMP '{T1 + 3 * H}', _airbyte_meta "
        "FROM absf.\"Contact\" WHERE \"Id\" = 'C1'",
    ],
}


@pytest.mark.parametrize("flavour", list(CHANGES))
def test_incremental_runs_equal_one_full_read_and_deletes_propagate(tmp_path, flavour):
    database = duckdb_fixture(tmp_path / "landed.duckdb")
    inc = _settings(tmp_path / "inc")
    _run(database, flavour, inc, T1)
    con = duckdb.connect(database)
    for sql in CHANGES[flavour]:
        con.execute(sql)
    con.close()
    _run(database, flavour, inc, T2)
    _run(database, flavour, inc, T2)  # a rerun changes nothing
    full = _settings(tmp_path / "full")
    _run(database, flavour, full, T2, full=True)
    assert _raw(inc, DOMAINS["crm"]) == _raw(full, DOMAINS["crm"])
    contacts = {r[0]: r for r in _raw(inc, ["contacts"])["contacts"]}
    deleted = ENTITIES["contacts"].column_names.index("is_deleted")
    reasons = _reasons(full)
    schema = OPTIONS[flavour]["crm_schema"]
    for key, reason in reasons.items():  # every reason: the landed table, the row key, the column
        assert re.match(rf"{schema}\.\w+ row key '{re.escape(key)}' column \S+", reason), reason
    if flavour == "fivetran_hubspot":
        assert contacts["P4"][deleted] is True  # merged away after the first run
        accounts = {r[0]: r for r in _raw(inc, ["accounts"])["accounts"]}
        assert accounts["K1"][1] == "Renamed"
        assert reasons["P9"].startswith("hs.contact row key 'P9' column property_associatedcompanyid")
    else:
        assert contacts["C1"][deleted] is True
        assert reasons["C3"].startswith("absf.Contact row key 'C3' column AccountId")


@pytest.mark.parametrize(("flavour", "schema"), [("airbyte_salesforce", "absf"), ("fivetran_hubspot", "nowhere")])
def test_cxloop_check_knows_the_new_flavours_tables(tmp_path, flavour, schema):
    from cxloop.check import FAIL, OK, run_checks

    database = duckdb_fixture(tmp_path / "landed.duckdb")
    env = {
        "CXLOOP_HOME": str(tmp_path), "CXLOOP_VAR": str(tmp_path / "var"),
        "CXLOOP_SOURCES_CONFIG": str(tmp_path / "x.yml"), "CXLOOP_CRM_SOURCE": "landed",
        "CXLOOP_SURVEY_SOURCE": "files", "CXLOOP_PII_KEY": "k" * 32,
        "CXLOOP_LANDED_OPT_DATABASE": database, "CXLOOP_LANDED_OPT_CRM_SCHEMA": schema,
        "CXLOOP_LANDED_OPT_CRM_FLAVOUR": flavour,
    }  # fmt: skip
    landed = [c for c in run_checks(env) if c.name == "source landed"]
    assert [c.status for c in landed] == ([OK] if schema == "absf" else [FAIL])
    if schema == "nowhere":
        assert "nowhere.owner" in landed[0].line()
