"""The landed source on the demo world: the same figures as the HTTP path.

The shared demo warehouse (tests/_warehouse_fixture.py: seed 11, scale 0.2, read through the
demo's Salesforce and Qualtrics HTTP APIs) against the same world written as landed tables
(cxloop.demo.landed) and read by the landed source into a warehouse of its own, through the same
extract / gate / load / dbt build functions (in a background process per CRM flavour:
tests/_background.py): Fivetran's Salesforce schema and Airbyte's Salesforce streams, each with
Fivetran's Qualtrics schema. The raw layers hold the same rows, every mart dbt built from them
equals the HTTP path's (data_quality aside: it counts quarantined duplicates, which a landed
table cannot hold), and the independent oracle (tests/oracle.py) computed from the landed raw
tables equals the HTTP path's marts, so the headline figures agree.

The HubSpot flavours (Fivetran's ``hubspot`` schema, Airbyte's HubSpot streams) are checked at
the landing level, with no build of their own: the rows the landed source lands from them equal
the rows the HubSpot HTTP connector lands from the demo's HubSpot API on the same world (whose
marts tests/integration/test_hubspot.py covers), and the survey rows read with a HubSpot CRM
beside them equal those read with the Salesforce one.
"""

from __future__ import annotations

import _background
import duckdb
import pandas as pd
import pytest
from _mart_compare import compare_with_oracle
from _warehouse_fixture import AS_OF, SCALE, SEED, build_marts, warehouse_copy
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.serve.exports import MARTS

HEADLINE_MARTS = (
    "account_nps", "portfolio_nps", "contact_coverage", "response_rate", "follow_up_sla", "revenue_at_risk",
    "nps_renewal_outcomes",
)  # fmt: skip


CRM_BUILT = ("fivetran_salesforce", "airbyte_salesforce")  # one build each


@_background.prestart("landed_parity")
def _landed_parity(flavour=None) -> dict:
    from cxloop import pipeline
    from cxloop.config import Settings, SourceSettings
    from cxloop.demo.generator import generate
    from cxloop.demo.landed import CRM_SCHEMAS, SURVEY_SCHEMA, write_landed
    from cxloop.source_config import DOMAINS

    flavour = flavour or "fivetran_salesforce"
    var = _background.workdir(f"landed-parity-{flavour}")
    generate(var / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    database = write_landed(var / "demo", var / "demo" / "landed.duckdb")
    settings = Settings.from_env({"CXLOOP_VAR": str(var / "var")})
    options = {
        "database": str(database),
        "crm_schema": CRM_SCHEMAS[flavour],
        "crm_flavour": flavour,
        "survey_schema": SURVEY_SCHEMA,
        "survey_flavour": "fivetran_qualtrics",
    }
    source = SourceSettings("landed", "", "", options)
    batches = [pipeline.extract(source, settings, AS_OF, entities=DOMAINS[d]) for d in ("crm", "survey")]
    report = pipeline.validate_and_load(batches, settings, AS_OF)
    build = build_marts(settings, AS_OF)
    return {
        "warehouse": settings.warehouse_path, "counts": report["counts"], "build": build.get("success"),
        "world": var / "demo", "database": database,
    }  # fmt: skip


@pytest.fixture(scope="module", params=CRM_BUILT)
def landed_parity(request):
    return _background.result("landed_parity", request.param)


def _raw(path, entity: str) -> pd.DataFrame:
    e = ENTITIES[entity]
    con = duckdb.connect(str(path), read_only=True)
    try:
        frame = con.execute(f"select {', '.join(e.column_names)} from raw.{entity}").df()
    finally:
        con.close()
    return frame.sort_values(e.primary_key).reset_index(drop=True)


@pytest.fixture(scope="module")
def http_raw(demo_warehouse, tmp_path_factory):
    settings = warehouse_copy(demo_warehouse, tmp_path_factory.mktemp("landed-parity-http"))
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        marts = {m: con.execute(f"select * from marts.{m}").df() for m in MARTS}
    finally:
        con.close()
    return {"raw": {e: _raw(settings.warehouse_path, e) for e in ENTITY_ORDER}, "marts": marts}


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


# data_quality counts the rows quarantined per source: the landed source has no duplicate rows
# to quarantine (a landed table holds one row per key), so it differs by design
@pytest.mark.parametrize("mart", [m for m in MARTS if m != "data_quality"])
def test_every_mart_equals_http_path(landed_parity, http_raw, mart):
    """dbt built every mart from the landed rows, equal to the HTTP path's, row for row."""
    con = duckdb.connect(str(landed_parity["warehouse"]), read_only=True)
    try:
        got = con.execute(f"select * from marts.{mart}").df()
    finally:
        con.close()
    want = http_raw["marts"][mart]
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(_sorted(got), _sorted(want), check_dtype=False)


@pytest.mark.parametrize("entity", ENTITY_ORDER)
def test_raw_layer_equals_http_path(landed_parity, http_raw, entity):
    """Every contract column of every row the HTTP path loaded, and nothing else."""
    got = _raw(landed_parity["warehouse"], entity)
    want = http_raw["raw"][entity]
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_oracle_on_landed_rows_equals_http_marts(landed_parity, http_raw):
    """The oracle's marts from the landed raw tables equal dbt's marts of the HTTP path."""
    import oracle

    tables = {e: _raw(landed_parity["warehouse"], e) for e in ENTITY_ORDER}
    computed = oracle.compute_marts(tables, AS_OF)
    assert landed_parity["build"] is True  # dbt build: every model and test passed
    for mart in HEADLINE_MARTS:
        compare_with_oracle(mart, http_raw["marts"][mart], computed[mart])


def test_only_the_landed_faults_are_quarantined(landed_parity):
    """The planted orphan contacts and out-of-range answers land and are quarantined; a record
    served twice by the APIs is one row of a landed table, so nothing is quarantined for it."""
    counts = landed_parity["counts"]
    assert {c["source"] for c in counts.values()} == {"landed"}
    assert counts["contacts"]["quarantined"] >= 1
    assert counts["responses"]["quarantined"] >= 1
    assert counts["accounts"]["quarantined"] == 0
    for c in counts.values():
        assert c["received"] == c["loaded"] + c["quarantined"]


# -- the HubSpot flavours, at the landing level ------------------------------------------------------

CRM = ("owners", "accounts", "contacts", "follow_ups", "renewals")


def _landed_frames(options: dict, entities: tuple[str, ...], home) -> dict[str, pd.DataFrame]:
    """What the landed source hands the landing (contract columns, landed text form), per entity."""
    from cxloop.extract.landed_tables import land_landed

    return _sunk(lambda sink: land_landed(options, sink, entities=entities, since={}, until=AS_OF, home=home))


def _sunk(run) -> dict[str, pd.DataFrame]:
    import pyarrow as pa

    got: dict[str, list] = {}
    run(lambda entity, table, _maxima: got.setdefault(entity, []).append(table))
    return {
        e: pa.concat_tables(t).to_pandas().sort_values(ENTITIES[e].primary_key).reset_index(drop=True)
        for e, t in got.items()
    }


@pytest.fixture(scope="module")
def hubspot_http(tmp_path_factory):
    """The HubSpot HTTP connector's rows from the demo's HubSpot API on the parity world (each
    record once: a record served twice is one row of a landed table; the gate quarantines the
    second copy on the HTTP path)."""
    from cxloop.demo.server import DemoServer
    from cxloop.extract.hubspot import land_hubspot

    world = _background.result("landed_parity", CRM_BUILT[0])["world"]
    with DemoServer(world, "parity-token") as url:
        frames = _sunk(
            lambda sink: land_hubspot(url, "parity-token", sink, end=AS_OF, search_rate=None, request_rate=None)
        )
    return {e: f.drop_duplicates(ENTITIES[e].primary_key).reset_index(drop=True) for e, f in frames.items()}


@pytest.mark.parametrize("flavour", ["fivetran_hubspot", "airbyte_hubspot"])
def test_hubspot_flavours_land_what_the_hubspot_api_lands(hubspot_http, flavour, tmp_path):
    from cxloop.demo.landed import CRM_SCHEMAS

    database = _background.result("landed_parity", CRM_BUILT[0])["database"]
    options = {"database": str(database), "crm_schema": CRM_SCHEMAS[flavour], "crm_flavour": flavour}
    got = _landed_frames(options, CRM, tmp_path)
    for entity in CRM:
        want = hubspot_http[entity]
        assert len(want) > 0
        pd.testing.assert_frame_equal(got[entity][list(want.columns)], want, check_dtype=False, obj=entity)


def test_survey_rows_with_a_hubspot_crm_equal_those_with_salesforce(tmp_path):
    """The survey domain takes an invitation's account from the CRM contact in the same database:
    the same accounts whether that CRM is landed as Salesforce or as HubSpot."""
    from cxloop.demo.landed import CRM_SCHEMAS, SURVEY_SCHEMA

    database = _background.result("landed_parity", CRM_BUILT[0])["database"]
    entities = ("surveys", "invitations", "responses")
    frames = {}
    for flavour in ("fivetran_salesforce", "fivetran_hubspot", "airbyte_hubspot"):
        options = {
            "database": str(database), "crm_schema": CRM_SCHEMAS[flavour], "crm_flavour": flavour,
            "survey_schema": SURVEY_SCHEMA, "survey_flavour": "fivetran_qualtrics",
        }  # fmt: skip
        frames[flavour] = _landed_frames(options, entities, tmp_path)
    for flavour in ("fivetran_hubspot", "airbyte_hubspot"):
        for entity in entities:
            if entity != "surveys":
                assert frames[flavour][entity]["account_id"].notna().any()
            pd.testing.assert_frame_equal(frames[flavour][entity], frames["fivetran_salesforce"][entity], obj=entity)
