"""The mappings: section (cxloop.extract.mapping) and how the gate applies a source's mapping."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.extract.mapping import load_mappings
from cxloop.extract.roles import DEFAULT_TITLE_RULES
from cxloop.gate.coerce import coerce_with_format
from cxloop.gate.validation import validate_batch

CLEAN = json.loads((Path(__file__).resolve().parents[1] / "data" / "bad_inputs" / "clean_batch.json").read_text())
AS_OF = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)


def run(rows, mapping):
    frames = {e: pd.DataFrame(r, columns=list(r[0]) if r else ENTITIES[e].column_names, dtype=object)
              for e, r in rows.items()}
    return validate_batch(frames, batch_id="b-map", source="files", as_of=AS_OF,
                          origin={e: f"{e}.csv" for e in ENTITY_ORDER}, mapping=mapping)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"mappings": {"files": {"colour": {}}}}, "mappings.files: unknown key 'colour'"),
        ({"mappings": {"sap": {}}}, "mappings: unknown source 'sap'"),
        ({"mappings": {"files": {"title_rules": [["(unclosed", "user"]]}}},
         "mappings.files.title_rules rule 1: invalid regular expression"),
        ({"mappings": {"files": {"buying_role": {"system_admin": "admin"}}}},
         "mappings.files.buying_role: 'system_admin' maps to 'admin', not one of"),
        ({"mappings": {"files": {"title_rules": [["cto", "boss"]]}}}, "role 'boss' is not one of"),
        ({"mappings": {"files": {"timestamp_formats": {"responses.nps_score": "%Y"}}}},
         "responses.nps_score is not a date or timestamp column"),
    ],
)
def test_load_mappings_rejects_with_one_line(raw, needle):
    with pytest.raises(ValueError) as exc:
        load_mappings(raw)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_shipped_config_loads_with_the_default_title_rules():
    shipped = load_mappings()
    assert shipped.for_source("files").title_rules == DEFAULT_TITLE_RULES
    assert shipped.for_source("salesforce").title_rules == DEFAULT_TITLE_RULES


def test_value_map_is_trimmed_and_case_folded():
    m = load_mappings({"mappings": {"files": {"buying_role": {"System_Admin": "user"}}}}).for_source("files")
    assert m.map_value("buying_role", " system_admin ") == ("user", True)
    assert m.map_value("buying_role", "Influencer") == ("influencer", True)  # already a contract value
    assert m.map_value("buying_role", "sysadmin") == (None, False)


def test_declared_date_format_decides_day_and_month():
    raw = pd.Series(["06/08/2020", " 12/31/2020 ", None], dtype=object)
    us, failed = coerce_with_format(raw, "timestamp", "%m/%d/%Y")
    assert list(us[:2]) == [pd.Timestamp("2020-06-08"), pd.Timestamp("2020-12-31")]
    assert not failed.any() and pd.isna(us[2])
    eu, failed = coerce_with_format(raw[:1], "date", "%d/%m/%Y")
    assert eu[0] == pd.Timestamp("2020-08-06") and not failed.any()


def test_value_not_matching_the_format_is_quarantined_naming_it():
    rows = copy.deepcopy(CLEAN["frames"])
    for r in rows["responses"]:
        r["recorded_at"] = "03/02/2025"
    rows["responses"][1]["recorded_at"] = "2025-03-02"
    m = load_mappings({"mappings": {"files": {"timestamp_formats": {"responses.recorded_at": "%m/%d/%Y"}}}})
    out = run(rows, m.for_source("files"))
    q = out.quarantine[out.quarantine.entity == "responses"]
    assert list(q.row_number) == [2]
    assert "'2025-03-02' does not match the declared format %m/%d/%Y" in q.reason.iloc[0]
    assert "mappings.files.timestamp_formats.responses.recorded_at" in q.reason.iloc[0]
    assert out.counts["responses"]["loaded"] == 2


def test_mapped_and_unmapped_roles_keep_the_contact_and_its_responses():
    rows = copy.deepcopy(CLEAN["frames"])
    rows["contacts"][0]["buying_role"] = "system_admin"
    rows["contacts"][1]["buying_role"] = "Direcor of IT"
    rows["contacts"][2]["buying_role"] = None
    rows["contacts"][2]["title"] = "Direcor"
    m = load_mappings({"mappings": {"files": {"buying_role": {"system_admin": "user"}}}}).for_source("files")
    out = run(rows, m)
    assert out.quarantine.empty, out.quarantine.reason.tolist()
    roles = dict(zip(out.valid["contacts"].contact_id, out.valid["contacts"].buying_role, strict=True))
    assert roles["003A"] == "user"
    assert set(roles.values()) == {"user", "unknown"} and list(roles.values()).count("unknown") == 2
    assert out.counts["responses"]["quarantined"] == 0
    res = out.results[(out.results.expectation == "cxloop_value_mapped") & (out.results.column == "buying_role")]
    assert list(res.severity) == ["warn"] and not res.success.iloc[0] and res.unexpected_count.iloc[0] == 2
    reasons = " | ".join(out.warnings.reason)
    assert "mappings.files.buying_role: add 'Direcor of IT: <one of decision_maker" in reasons
    assert "'Direcor' matches no title rule" in reasons


def test_unmapped_segment_is_quarantined_naming_the_mapping():
    rows = copy.deepcopy(CLEAN["frames"])
    rows["accounts"][1]["segment"] = "Enterprize"
    m = load_mappings({"mappings": {"files": {"segment": {"ENT": "enterprise", "Mid": "mid_market"}}}})
    out = run(rows, m.for_source("files"))
    q = out.quarantine[(out.quarantine.entity == "accounts") & (out.quarantine.field == "segment")]
    assert len(q) == 1
    assert "mappings.files.segment: add 'Enterprize: <one of enterprise, mid_market>'" in q.reason.iloc[0]
    assert out.counts["accounts"]["loaded"] == 1


def test_unmapped_delivery_status_reason_names_the_mapping():
    rows = copy.deepcopy(CLEAN["frames"])
    rows["invitations"][2]["delivery_status"] = "HardBounce"
    rows["invitations"][1]["delivery_status"] = "soft"
    m = load_mappings({"mappings": {"files": {"delivery_status": {"soft": "bounced"}}}}).for_source("files")
    out = run(rows, m)
    q = out.quarantine[(out.quarantine.entity == "invitations") & (out.quarantine.field == "delivery_status")]
    assert list(q.row_number) == [3]
    assert "'HardBounce' is not one of the delivery statuses" in q.reason.iloc[0]
    assert "mappings.files.delivery_status: add 'HardBounce: <one of delivered" in q.reason.iloc[0]


def test_crm_connectors_role_mapper_reads_the_configured_file(tmp_path, monkeypatch):
    from cxloop.extract.roles import configured_role_mapper

    cfg = tmp_path / "sources.yml"
    cfg.write_text("mappings:\n  salesforce:\n    buying_role: {System Admin: user}\n"
                   "    title_rules: [['\\bdirector\\b', influencer]]\n")
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", str(cfg))
    roles = configured_role_mapper("salesforce")
    assert roles.map("system admin") == "user"
    assert roles.map("Economic Buyer") == "decision_maker"  # the default picklist stays
    assert roles.map(None, "Director of IT") == "influencer"
    assert roles.map(None, "Direcor of IT") == "unknown"
    assert roles.map(None, "CEO") == "unknown"  # the source's rules replace the defaults
