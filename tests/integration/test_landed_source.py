"""The landed source on hand-written Fivetran-shaped tables, in DuckDB and in Postgres.

Fixture tables (schemas ``sf`` and ``ql``) in Fivetran's Salesforce and Qualtrics shapes with
what real landed schemas hold: soft-deleted rows, a history-mode table, a task without a
survey link, a response whose NPS question is missing, distribution contacts with every
status, a buying role only on the contact roles, hostile values. The tests read them through
``pipeline.extract`` (and, on DuckDB, through the gate into a warehouse): the mapping, deletes
propagating, incremental runs equal to one full read, quarantine reasons naming the landed
table, row key and column, and hostile identifiers in the configuration refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import _landed_fixture as landed_fixture
import duckdb
import pandas as pd
import pytest
from cxloop import pipeline
from cxloop.config import Settings, SourceSettings
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.extract.landed_tables import LandedConfigError, land_landed
from cxloop.source_config import DOMAINS

T0 = datetime(2026, 1, 1)
T1 = datetime(2026, 3, 1)
T2 = datetime(2026, 6, 1)
H = timedelta(hours=1)
STATUSES = ("Success", "HardBounce", "Failure", "Blocked", "SurveyFinished", "Complaint")

S, B, TS, F = "TEXT", "BOOLEAN", "TIMESTAMP", "DOUBLE PRECISION"
TABLES: dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple]]] = {
    ("sf", "user"): (
        [("id", S), ("name", S), ("department", S), ("is_active", B), ("system_modstamp", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS), ("_fivetran_active", B)],
        [("U1", "Ana", "CSM", True, T0, False, T0, True),
         ("U2", "Old Name", "CSM", True, T0, False, T0, False),  # history mode: an old version
         ("U2", "New Name", "CSM", True, T0 + H, False, T0 + H, True),
         ("U3", "Gone", "CSM", True, T0, True, T0 + H, True)],
    ),
    ("sf", "account"): (
        [("id", S), ("name", S), ("segment_c", S), ("tier_c", S), ("annual_recurring_revenue_c", S),
         ("owner_id", S), ("active_c", B), ("is_deleted", B), ("system_modstamp", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("A1", "=HYPERLINK(\"x\")", "enterprise", "A", "1000", "U1", True, False, T0, False, T0),
         ("A2", "Deleted Co", "smb", "B", "10", "U1", True, False, T0, True, T0 + H),
         ("A3", "<b>Bad ARR</b>", "smb", "C", "n/a", "U1", True, False, T1 + H, False, T1 + H)],
    ),
    ("sf", "contact"): (
        [("id", S), ("account_id", S), ("email", S), ("title", S), ("buying_role_c", S), ("active_c", B),
         ("has_opted_out_of_email", B), ("is_deleted", B), ("system_modstamp", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("C1", "A1", "Ana@X.example", "VP Sales", "Economic Buyer", True, False, False, T0, False, T0),
         ("C2", "A1", "bo@x.example", "Analyst", None, True, False, False, T0, False, T0),
         ("C3", "A1", "cy@x.example", "Engineer", None, True, False, False, T1 + H, False, T1 + H),
         (" C4 ", None, "=cmd|' /C calc'!A0", "<script>", None, True, False, False, T0, False, T0)],
    ),
    ("sf", "account_contact_relation"): (
        [("id", S), ("account_id", S), ("contact_id", S), ("roles", S), ("is_deleted", B),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("R1", "A1", "C2", "Decision Maker;Influencer", False, False, T0)],
    ),
    ("sf", "opportunity_contact_role"): (
        [("id", S), ("opportunity_id", S), ("contact_id", S), ("role", S), ("is_primary", B),
         ("is_deleted", B), ("system_modstamp", TS), ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("OCR1", "O1", "C3", "Technical Evaluator", True, False, T1 + H, False, T1 + H)],
    ),
    ("sf", "task"): (
        [("id", S), ("what_id", S), ("who_id", S), ("owner_id", S), ("status", S), ("survey_response_id_c", S),
         ("created_date", TS), ("is_deleted", B), ("system_modstamp", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("T1", "A1", "C1", "U1", "Completed", "R1", T0 + 5 * H, False, T0 + 5 * H, False, T0 + 5 * H),
         ("T2", "A1", "C1", "U1", "Not Started", None, T0 + 5 * H, False, T0 + 5 * H, False, T0 + 5 * H),
         ("T3", "A1", "C1", "U1", "Completed", "R1", T0 + 5 * H, True, T0 + 6 * H, False, T0 + 6 * H)],
    ),
    ("sf", "opportunity"): (
        [("id", S), ("account_id", S), ("type", S), ("stage_name", S), ("amount", F), ("close_date", "DATE"),
         ("is_closed", B), ("is_won", B), ("is_deleted", B), ("system_modstamp", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("O1", "A1", "Renewal", "Closed Won", 900.0, T0.date(), True, True, False, T0, False, T0),
         ("O2", "A1", "New Business", "Closed Won", 5.0, T0.date(), True, True, False, T0, False, T0)],
    ),
    ("ql", "survey"): (
        [("id", S), ("survey_name", S), ("is_active", B), ("last_modified", TS),
         ("_fivetran_deleted", B), ("_fivetran_synced", TS)],
        [("SV1", "Relationship NPS", True, T0, False, T0), ("SV2", "Old pulse", True, T0, True, T0 + H)],
    ),
    ("ql", "question"): (
        [("id", S), ("survey_id", S), ("question_type", S), ("selector", S), ("_fivetran_deleted", B),
         ("_fivetran_synced", TS)],
        [("QID7", "SV1", "MC", "NPS", False, T0), ("QID2", "SV1", "TE", "ML", False, T0)],
    ),
    ("ql", "directory_contact"): (
        [("id", S), ("directory_id", S), ("ext_ref", S), ("_fivetran_synced", TS)],
        [(f"CID{i}", "POOL_1", "C1" if i == 1 else "C2", T0) for i in range(1, 3)],
    ),
    ("ql", "distribution"): (
        [("id", S), ("survey_link_survey_id", S), ("send_date", TS), ("_fivetran_deleted", B),
         ("_fivetran_synced", TS)],
        [("D1", "SV1", T0 + H, False, T0 + H)],
    ),
    ("ql", "distribution_contact"): (
        [("distribution_id", S), ("contact_id", S), ("contact_lookup_id", S), ("status", S), ("response_id", S),
         ("sent_at", TS), ("_fivetran_synced", TS)],
        [("D1", "CID1", "L1", "SurveyFinished", "R1", T0 + H, T0 + 2 * H),
         ("D1", "CID2", "L2", "SurveyFinished", "R2", T0 + H, T0 + 2 * H)]
        + [(f"D{k}", "CID2", f"L{k}", st, None, T0 + H, T0 + 2 * H) for k, st in enumerate(STATUSES, 2)],
    ),
    ("ql", "survey_response"): (
        [("id", S), ("survey_id", S), ("recorded_date", TS), ("finished", S), ("_fivetran_synced", TS)],
        [("R1", "SV1", T0 + 3 * H, "1", T0 + 3 * H), ("R2", "SV1", T0 + 3 * H, "1", T0 + 3 * H),
         ("R3", "SV1", T1 + 2 * H, "0", T1 + 2 * H)],
    ),
    ("ql", "question_response"): (
        [("_fivetran_id", S), ("response_id", S), ("question_id", S), ("value", S), ("_fivetran_synced", TS)],
        [("f1", "R1", "QID7", "9", T0 + 3 * H), ("f2", "R1", "QID2", "great", T0 + 3 * H),
         ("f3", "R2", "QID2", "no score given", T0 + 3 * H),  # R2's NPS question is missing
         ("f4", "R3", "QID7", "11", T1 + 2 * H)],
    ),
    ("ql", "survey_embedded_data"): (
        [("import_id", S), ("response_id", S), ("key", S), ("value", S), ("_fivetran_synced", TS)],
        [("e1", "R3", "AccountId", "A1", T1 + 2 * H), ("e2", "R3", "ContactId", "CID1", T1 + 2 * H)],
    ),
}  # fmt: skip
DISTS = [(f"D{k}", "SV1", T0 + H, False, T0 + H) for k in range(2, 2 + len(STATUSES))]
TABLES[("ql", "distribution")][1].extend(DISTS)

OPTIONS = {
    "crm_schema": "sf",
    "crm_flavour": "fivetran_salesforce",
    "survey_schema": "ql",
    "survey_flavour": "fivetran_qualtrics",
    "nps_question_type": "NPS",
    "directory_id": "POOL_1",
}


def duckdb_fixture(path) -> str:
    return landed_fixture.duckdb_database(path, ("sf", "ql"), TABLES)


def _pg_dsn(dbname: str) -> str:
    return landed_fixture.pg_dsn(dbname)


@pytest.fixture(scope="module")
def pg_database():
    yield from landed_fixture.pg_database("cx_landed_test", ("sf", "ql"), TABLES)


def _settings(var) -> Settings:
    return Settings.from_env({"CXLOOP_VAR": str(var)})


def _landed_rows(database: str, var, as_of: datetime) -> dict[str, pd.DataFrame]:
    settings = _settings(var)
    source = SourceSettings("landed", "", "", {**OPTIONS, "database": database})
    out = {}
    for domain in ("crm", "survey"):
        batch = pipeline.extract(source, settings, as_of, entities=DOMAINS[domain], full_refresh=True)
        out.update({e: pd.read_parquet(p).set_index(ENTITIES[e].primary_key) for e, p in batch["files"].items()})
    return out


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def landed(request, tmp_path_factory):
    var = tmp_path_factory.mktemp(f"landed-{request.param}")
    database = duckdb_fixture(var / "landed.duckdb") if request.param == "duckdb" else request.getfixturevalue(
        "pg_database"
    )
    return _landed_rows(database, var / "var", T2)


def test_deleted_rows_are_tombstones_where_the_contract_has_them(landed):
    assert landed["accounts"].loc["A2", "is_deleted"] == "true"
    assert landed["accounts"].loc["A1", "is_deleted"] == "false"
    assert landed["owners"].loc["U3", "is_active"] == "false"  # a deleted user: an inactive owner
    assert landed["surveys"].loc["SV2", "is_active"] == "false"
    assert "T3" not in landed["follow_ups"].index  # a deleted task is no follow-up


def test_history_mode_reads_the_active_version_only(landed):
    owners = landed["owners"]
    assert list(owners.index).count("U2") == 1
    assert owners.loc["U2", "owner_name"] == "New Name"


def test_tasks_without_a_survey_link_are_not_follow_ups(landed):
    assert sorted(landed["follow_ups"].index) == ["T1"]
    assert landed["follow_ups"].loc["T1", "status"] == "completed"


def test_buying_role_from_the_field_then_the_contact_roles(landed):
    contacts = landed["contacts"]
    assert contacts.loc["C1", "buying_role"] == "decision_maker"  # Economic Buyer, on the contact
    assert contacts.loc["C2", "buying_role"] == "decision_maker"  # account_contact_relation.roles
    assert contacts.loc["C2", "buying_role_source"] == "Decision Maker"
    assert contacts.loc["C3", "buying_role"] == "influencer"  # opportunity_contact_role.role
    assert contacts.loc["C1", "email_domain_valid"] == "true"
    assert "@" not in contacts.loc["C1", "email_hash"]  # the address never lands


def test_responses_nps_by_question_type_and_a_missing_nps_question(landed):
    responses = landed["responses"]
    assert responses.loc["R1", "nps_score"] == "9"
    assert pd.isna(responses.loc["R2", "nps_score"])  # skipped: null, not dropped
    assert responses.loc["R2", "has_comment"] == "true"
    assert responses.loc["R1", "invitation_id"] == "D1:CID1"
    assert responses.loc["R1", "contact_id"] == "C1"
    assert pd.isna(responses.loc["R3", "invitation_id"])  # no distribution contact, no DistributionId
    assert responses.loc["R3", "account_id"] == "A1"  # the response's embedded AccountId


def test_distribution_contacts_with_every_status(landed):
    inv = landed["invitations"]
    assert set(inv["delivery_status"]) == {"delivered", "bounced", "failed", "opted_out"}
    assert set(inv["source_status"]) == set(STATUSES) | {"SurveyFinished"}
    assert inv.loc["D1:CID1", "account_id"] == "A1"  # the CRM contact's account
    assert inv.loc["D1:CID1", "contact_id"] == "C1"


def test_renewals_only_of_the_renewal_types(landed):
    assert list(landed["renewals"].index) == ["O1"]


# -- through the gate, incrementally (DuckDB) ------------------------------------------------------


def _raw(settings: Settings) -> dict[str, list]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {
            e: con.execute(
                f"select {', '.join(ENTITIES[e].column_names)} from raw.{e} order by {ENTITIES[e].primary_key}"
            ).fetchall()
            for e in ENTITY_ORDER
        }
    finally:
        con.close()


def _run(database: str, settings: Settings, as_of: datetime, full: bool = False) -> dict:
    source = SourceSettings("landed", "", "", {**OPTIONS, "database": database})
    batches = [
        pipeline.extract(source, settings, as_of, entities=DOMAINS[d], full_refresh=full) for d in ("crm", "survey")
    ]
    return pipeline.validate_and_load(batches, settings, as_of)


def test_incremental_runs_equal_one_full_read_and_deletes_propagate(tmp_path):
    database = duckdb_fixture(tmp_path / "landed.duckdb")
    inc = _settings(tmp_path / "inc")
    _run(database, inc, T1)
    con = duckdb.connect(database)  # a later sync: C1 is deleted, A1 renamed
    con.execute("UPDATE sf.contact SET _fivetran_deleted = true, _fivetran_synced = ? WHERE id = 'C1'", [T1 + 3 * H])
    con.execute("UPDATE sf.account SET name = 'Renamed', _fivetran_synced = ? WHERE id = 'A1'", [T1 + 3 * H])
    con.close()
    _run(database, inc, T2)
    _run(database, inc, T2)  # a rerun changes nothing
    full = _settings(tmp_path / "full")
    report = _run(database, full, T2, full=True)
    assert _raw(inc) == _raw(full)
    raw = _raw(inc)
    contacts = {r[0]: r for r in raw["contacts"]}
    assert contacts["C1"][ENTITIES["contacts"].column_names.index("is_deleted")] is True
    accounts = {r[0]: r for r in raw["accounts"]}
    assert accounts["A1"][1] == "Renamed"
    assert report["counts"]["accounts"]["loaded"] == 3  # A3 loads; its ARR n/a is nulled with a warning
    con = duckdb.connect(str(full.warehouse_path), read_only=True)
    try:
        reasons = dict(con.execute("select primary_key, reason from raw.quarantine").fetchall())
    finally:
        con.close()
    assert reasons["C4"].startswith("sf.contact row key 'C4' column account_id")  # a required column is null
    assert reasons["R3"].startswith("ql.survey_response row key 'R3' column question_response.value: '11'")


# -- hostile configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"crm_schema": 'sf"; DROP TABLE sf.account; --'}, "crm_schema"),
        ({"survey_schema": "ql.question"}, "survey_schema"),
        ({"buying_role_field": 'Role__c" OR 1=1'}, "buying_role_field"),
        ({"directory_id": "POOL'1"}, "directory_id"),
        ({"crm_flavour": "stitch_hubspot"}, "is not one of fivetran_salesforce, fivetran_hubspot"),
        ({"crm_flavour": "fivetran_qualtrics"}, "is not one of fivetran_salesforce"),
        ({"database": ""}, "option database is not configured"),
    ],
)
def test_hostile_configuration_is_refused_in_one_line(tmp_path, change, words):
    database = duckdb_fixture(tmp_path / "landed.duckdb")
    options = {**OPTIONS, "database": database, **change}
    with pytest.raises(LandedConfigError) as err:
        land_landed(
            options, lambda *a: None, entities=ENTITY_ORDER, since={}, until=T2, home=tmp_path, raw_dir=None
        )
    assert words in str(err.value)
    assert "\n" not in str(err.value)
    con = duckdb.connect(database, read_only=True)
    try:
        assert con.execute("select count(*) from sf.account").fetchone()[0] == 3  # nothing ran
    finally:
        con.close()


def test_cxloop_check_names_the_landed_tables_missing(tmp_path):
    from cxloop.check import FAIL, OK, run_checks

    database = duckdb_fixture(tmp_path / "landed.duckdb")
    env = {
        "CXLOOP_HOME": str(tmp_path), "CXLOOP_VAR": str(tmp_path / "var"),
        "CXLOOP_SOURCES_CONFIG": str(tmp_path / "x.yml"),
        "CXLOOP_CRM_SOURCE": "landed", "CXLOOP_SURVEY_SOURCE": "landed", "CXLOOP_PII_KEY": "k" * 32,
        "CXLOOP_LANDED_OPT_DATABASE": database, "CXLOOP_LANDED_OPT_CRM_SCHEMA": "sf",
        "CXLOOP_LANDED_OPT_CRM_FLAVOUR": "fivetran_salesforce", "CXLOOP_LANDED_OPT_SURVEY_SCHEMA": "nowhere",
        "CXLOOP_LANDED_OPT_SURVEY_FLAVOUR": "fivetran_qualtrics",
    }  # fmt: skip
    landed = [c for c in run_checks(env) if c.name == "source landed"]
    assert [c.status for c in landed] == [OK, FAIL]
    assert "nowhere.survey" in landed[1].line()
