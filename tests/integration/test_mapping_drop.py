"""A small hostile file drop with a team's own spellings, through the real files source, the gate
and DuckDB: mapped values load, unmapped ones are quarantined or warned with the mapping to add,
and every row ends in the warehouse or in quarantine."""

from __future__ import annotations

from datetime import datetime

import duckdb
from cxloop import pipeline
from cxloop.config import Settings, SourceSettings

AS_OF = datetime(2025, 6, 30)

FILES = {
    "owners.csv": "owner_id,owner_name,team,is_active,updated_at\n005A,Ana,EMEA,true,2025-01-01T00:00:00Z\n",
    "accounts.csv": (
        "account_id,account_name,segment,region,tier,arr,owner_id,renewal_date,is_active,is_deleted,created_at,"
        "updated_at\n"
        "001A,Acme,ENT,EMEA,A,100,005A,2025-09-30,true,false,2023-01-01T00:00:00Z,2025-01-01T00:00:00Z\n"
        "001B,Beta,Enterprize,EMEA,B,100,005A,2025-09-30,true,false,2023-01-01T00:00:00Z,2025-01-01T00:00:00Z\n"
    ),
    "contacts.csv": (
        "contact_id,account_id,email,title,buying_role,buying_role_source,is_active,opted_out,is_deleted,updated_at\n"
        "003A,001A,a@acme.example,IT,system_admin,,true,false,false,2025-01-01T00:00:00Z\n"
        "003B,001A,b@acme.example,Direcor,,,true,false,false,2025-01-01T00:00:00Z\n"
        "003C,001A,c@acme.example,CFO,,,true,false,false,2025-01-01T00:00:00Z\n"
    ),
    "surveys.csv": (
        "survey_id,survey_name,survey_type,is_active,updated_at\nSV1,Rel,Relationship,true,2025-01-01T00:00:00Z\n"
    ),
    "responses.csv": (
        "response_id,invitation_id,survey_id,contact_id,account_id,recorded_at,nps_score,is_finished,has_comment\n"
        "R1,,SV1,003A,001A,06/08/2020,9,true,false\n"
        "R2,,SV1,003B,001A,06/09/2020,7,true,false\n"
        "R3,,SV1,003C,001A,2020-06-10,3,true,false\n"
    ),
}

CONFIG = """crm: files
survey: files
options:
  files:
    drop_dir: {drop}
mappings:
  files:
    buying_role: {{system_admin: user}}
    segment: {{ENT: enterprise, SMB: smb}}
    timestamp_formats: {{responses.recorded_at: "%m/%d/%Y"}}
"""


def test_hostile_drop_with_mappings_lands_or_quarantines_every_row(tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name, text in FILES.items():
        (drop / name).write_text(text, encoding="utf-8")
    cfg = tmp_path / "sources.yml"
    cfg.write_text(CONFIG.format(drop=drop), encoding="utf-8")
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", str(cfg))
    monkeypatch.setenv("CXLOOP_PII_KEY", "test-only-key-not-a-secret")
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    batch = pipeline.extract(SourceSettings("files", "", "", {"drop_dir": str(drop)}), settings, AS_OF)
    report = pipeline.validate_and_load([batch], settings, AS_OF)
    counts = report["counts"]
    for e, c in counts.items():
        assert c["received"] == c["loaded"] + c["quarantined"], (e, c)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        roles = dict(con.execute("select contact_id, buying_role from raw.contacts").fetchall())
        segments = dict(con.execute("select account_id, segment from raw.accounts").fetchall())
        recorded = dict(con.execute("select response_id, recorded_at from raw.responses").fetchall())
        survey_type = con.execute("select survey_type from raw.surveys").fetchone()[0]
        q = con.execute("select entity, field, reason from raw.quarantine order by entity, row_number").fetchall()
        warn = con.execute(
            """select entity, "column", unexpected_count from raw.validation_results
               where expectation = 'cxloop_value_mapped' and not success"""
        ).fetchall()
    finally:
        con.close()
    assert roles == {"003A": "user", "003B": "unknown", "003C": "decision_maker"}
    assert segments == {"001A": "enterprise"}
    assert survey_type == "relationship"
    assert recorded == {"R1": datetime(2020, 6, 8), "R2": datetime(2020, 6, 9)}
    reasons = {(e, f): r for e, f, r in q}
    assert "mappings.files.segment: add 'Enterprize: <one of enterprise, smb>'" in reasons[("accounts", "segment")]
    assert "accounts.csv line 3" in reasons[("accounts", "segment")]
    assert "does not match the declared format %m/%d/%Y" in reasons[("responses", "recorded_at")]
    assert "responses.csv line 4" in reasons[("responses", "recorded_at")]
    assert len(q) == 2
    assert ("contacts", "buying_role", 1) in warn


def test_emptied_entity_and_empty_drop_are_warn_results(tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    drop.mkdir()
    for name in ("owners.csv", "accounts.csv", "contacts.csv"):
        (drop / name).write_text(FILES[name], encoding="utf-8")
    cfg = tmp_path / "sources.yml"
    cfg.write_text(f"crm: files\nsurvey: files\noptions:\n  files:\n    drop_dir: {drop}\n", encoding="utf-8")
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", str(cfg))
    monkeypatch.setenv("CXLOOP_PII_KEY", "test-only-key-not-a-secret")
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    source = SourceSettings("files", "", "", {"drop_dir": str(drop)})

    def run_once():
        batch = pipeline.extract(source, settings, AS_OF)
        pipeline.validate_and_load([batch], settings, AS_OF)
        return batch["batch_id"]

    def warns(batch_id):
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
        try:
            return con.execute(
                "select entity from raw.validation_results where batch_id = ? and "
                "expectation = 'cxloop_source_not_empty' and severity = 'warn' and not success order by entity",
                [batch_id],
            ).fetchall()
        finally:
            con.close()

    assert warns(run_once()) == []  # first batch: nothing before it
    (drop / "contacts.csv").write_text(FILES["contacts.csv"].splitlines()[0] + "\n", encoding="utf-8")
    assert warns(run_once()) == [("contacts",)]  # header only, after 3 rows
    for f in drop.iterdir():
        f.unlink()
    assert warns(run_once()) == [("drop",)]
