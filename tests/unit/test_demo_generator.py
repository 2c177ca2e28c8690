"""The demo generator: determinism, scale, contract-shaped truth, planted faults, plausibility.

Everything runs at scale 0.2 (40 accounts). The source files are read back and mapped with the
documented rules (docs/demo-sources.md) to check that the truth is what a faithful connector
would load.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

try:
    import cxloop  # noqa: F401
except ModuleNotFoundError:  # the package is not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import (
    BUYING_ROLES,
    DELIVERY_STATUSES,
    ENTITIES,
    ENTITY_ORDER,
    FOLLOW_UP_STATUSES,
    SURVEY_TYPES,
)
from cxloop.demo import generator as gen

SEED = 7
SCALE = 0.2
AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
AS_OF_NAIVE = pd.Timestamp("2026-10-01 00:00:00")
ARROW_TYPE = {
    "string": "string",
    "int": "int64",
    "float": "double",
    "bool": "bool",
    "date": "date32[day]",
    "timestamp": "timestamp[us]",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo")
    gt = gen.generate(out, seed=SEED, scale=SCALE, as_of=AS_OF)
    return out, gt


def _truth(out: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(out / "truth" / f"{name}.parquet")


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _responses(out: Path) -> list[dict]:
    rows = []
    for f in sorted((out / "source" / "qualtrics" / "responses").glob("*.json")):
        for r in _load(f):
            rows.append({**r, "_survey_id": f.stem})
    return rows


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_files(world, tmp_path):
    out, gt = world
    gt2 = gen.generate(tmp_path / "again", seed=SEED, scale=SCALE, as_of=AS_OF)
    first, second = _files(out), _files(tmp_path / "again")
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert differing == []
    assert gt2 == gt
    gen.generate(tmp_path / "other", seed=SEED + 1, scale=SCALE, as_of=AS_OF)
    other = _files(tmp_path / "other")
    assert other["source/salesforce/Contact.json"] != first["source/salesforce/Contact.json"]


def test_written_layout(world):
    out, gt = world
    expected = {
        "source/salesforce/User.json",
        "source/salesforce/Account.json",
        "source/salesforce/Contact.json",
        "source/salesforce/Task.json",
        "source/qualtrics/surveys.json",
        "source/qualtrics/directory_contacts.json",
        "source/qualtrics/distributions.json",
        "source/qualtrics/distribution_history.json",
        "ground_truth.json",
        "truth/faults.parquet",
        *(f"truth/{e}.parquet" for e in ENTITY_ORDER),
    }
    files = set(_files(out))
    assert expected <= files
    surveys = _load(out / "source/qualtrics/surveys.json")
    assert {f"source/qualtrics/responses/{s['id']}.json" for s in surveys} <= files
    assert _load(out / "ground_truth.json") == gt
    assert gt["seed"] == SEED and gt["scale"] == SCALE
    assert gt["as_of"] == "2026-10-01T00:00:00Z" and gt["start"] == "2025-01-01"


def test_scale_changes_counts(world, tmp_path):
    _, small = world
    big = gen.generate(tmp_path / "big", seed=SEED, scale=2 * SCALE, as_of=AS_OF)
    assert small["entities"]["accounts"]["expected_loaded"] == 40
    assert big["entities"]["accounts"]["expected_loaded"] == 80
    assert big["entities"]["owners"]["served"] == 80 // 15 + 3
    for entity in ("contacts", "invitations", "responses", "follow_ups"):
        ratio = big["entities"][entity]["expected_loaded"] / small["entities"][entity]["expected_loaded"]
        assert 1.4 < ratio < 2.8, (entity, ratio)


def test_truth_tables_follow_the_contract(world):
    out, _ = world
    tables = {name: _truth(out, name) for name in ENTITY_ORDER}
    for name in ENTITY_ORDER:
        ent = ENTITIES[name]
        schema = pq.read_schema(out / "truth" / f"{name}.parquet")
        assert schema.names == ent.column_names, name
        for col in ent.columns:
            assert str(schema.field(col.name).type) == ARROW_TYPE[col.type], (name, col.name)
            if col.required:
                assert tables[name][col.name].notna().all(), (name, col.name)
        df = tables[name]
        assert len(df) > 0, name
        assert df[ent.primary_key].is_unique, name
        for column, parent in ent.references.items():
            parent_keys = set(tables[parent][ENTITIES[parent].primary_key])
            values = df[column].dropna()
            assert values.isin(parent_keys).all(), (name, column)
    assert set(tables["contacts"]["buying_role"]) <= set(BUYING_ROLES)
    assert set(tables["invitations"]["delivery_status"]) == set(DELIVERY_STATUSES)
    assert set(tables["follow_ups"]["status"]) <= set(FOLLOW_UP_STATUSES)
    assert set(tables["surveys"]["survey_type"]) == set(SURVEY_TYPES)
    scores = tables["responses"]["nps_score"].dropna()
    assert scores.between(0, 10).all() and (scores == scores.round()).all()
    assert tables["responses"]["nps_score"].isna().any()
    assert set(tables["accounts"]["segment"]) == {"enterprise", "mid_market", "smb"}
    assert set(tables["accounts"]["tier"]) <= {"A", "B", "C"}


def test_no_timestamp_at_or_after_as_of(world):
    out, _ = world
    for name in ENTITY_ORDER:
        for col in ENTITIES[name].columns:
            if col.type == "timestamp":
                values = _truth(out, name)[col.name].dropna()
                assert (values < AS_OF_NAIVE).all(), (name, col.name)
    # every datetime in the source files (link expiry dates are settings, not events)
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?(Z|[+-]\d{4})$")
    seen = 0

    def walk(obj, key=None):
        nonlocal seen
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)
        elif isinstance(obj, str) and iso.match(obj) and key != "expirationDate":
            ts = datetime.strptime(
                obj.replace("Z", "+0000"),
                "%Y-%m-%dT%H:%M:%S%z" if "." not in obj else "%Y-%m-%dT%H:%M:%S.%f%z",
            )
            assert ts < AS_OF, (key, obj)
            seen += 1

    for path in sorted((out / "source").rglob("*.json")):
        walk(_load(path))
    assert seen > 1000


def test_fault_counts_match_faults_table_and_sources(world):
    out, gt = world
    faults = _truth(out, "faults")
    assert list(faults.columns) == list(gen.FAULT_COLUMNS)
    kinds = Counter(faults["kind"])
    assert gt["faults"]["total"] == len(faults)
    assert gt["faults"]["by_kind"] == {k: kinds[k] for k in ("duplicate", "orphan", "out_of_range")}
    by_entity = Counter(zip(faults["entity"], faults["kind"], strict=True))
    assert {(e, k) for e, k in by_entity} == {
        ("accounts", "duplicate"),
        ("contacts", "orphan"),
        ("responses", "duplicate"),
        ("responses", "out_of_range"),
    }
    for (e, k), n in by_entity.items():
        assert gt["faults"]["by_entity"][e][k] == n >= 1

    sf = out / "source" / "salesforce"
    accounts, contacts, tasks = (
        _load(sf / "Account.json"),
        _load(sf / "Contact.json"),
        _load(sf / "Task.json"),
    )
    responses = _responses(out)
    history = _load(out / "source/qualtrics/distribution_history.json")
    n_history = sum(len(v) for v in history.values())

    # served counts are the records in the files; loaded = truth rows; the rest is quarantined
    served = {
        "owners": len(_load(sf / "User.json")),
        "accounts": len(accounts),
        "contacts": len(contacts),
        "follow_ups": len(tasks),
        "surveys": len(_load(out / "source/qualtrics/surveys.json")),
        "invitations": n_history,
        "responses": len(responses),
        "renewals": sum(1 for o in _load(sf / "Opportunity.json") if o["Type"] == gen.RENEWAL_TYPE),
    }
    for name in ENTITY_ORDER:
        counts = gt["entities"][name]
        assert counts["served"] == served[name], name
        assert counts["expected_loaded"] == len(_truth(out, name)), name
        assert counts["expected_quarantined"] == counts["served"] - counts["expected_loaded"]
        assert counts["expected_quarantined"] == int((faults["entity"] == name).sum()), name

    # duplicates: the same record twice in the source, once in the truth
    account_ids = Counter(a["Id"] for a in accounts)
    dup_accounts = set(faults.loc[(faults.entity == "accounts") & (faults.kind == "duplicate"), "key"])
    assert {k for k, n in account_ids.items() if n == 2} == dup_accounts
    assert max(account_ids.values()) == 2
    copies = [a for a in accounts if a["Id"] in dup_accounts]
    assert all(copies.count(c) == 2 for c in copies)
    assert set(_truth(out, "accounts")["account_id"]) == set(account_ids)

    response_ids = Counter(r["responseId"] for r in responses)
    dup_responses = set(faults.loc[(faults.entity == "responses") & (faults.kind == "duplicate"), "key"])
    assert {k for k, n in response_ids.items() if n == 2} == dup_responses
    assert max(response_ids.values()) == 2
    truth_responses = _truth(out, "responses")
    assert dup_responses <= set(truth_responses["response_id"])

    # orphans: AccountId names no account, never invited, not in the truth
    orphans = set(faults.loc[faults.kind == "orphan", "key"])
    orphan_rows = [c for c in contacts if c["Id"] in orphans]
    assert len(orphan_rows) == len(orphans)
    assert all(c["AccountId"] not in account_ids for c in orphan_rows)
    assert {c["Id"] for c in contacts if c["AccountId"] not in account_ids} == orphans
    directory = {d["contactId"]: d["extRef"] for d in _load(out / "source/qualtrics/directory_contacts.json")}
    invited = {directory[e["contactId"]] for elems in history.values() for e in elems}
    assert not invited & orphans
    assert not orphans & set(_truth(out, "contacts")["contact_id"])

    # out-of-range answers: served with QID1 outside 0-10, not in the truth, no follow-up task
    oor = faults[faults.kind == "out_of_range"]
    served_values = {r["responseId"]: r["values"].get("QID1") for r in responses}
    for key, value in zip(oor["key"], oor["value"], strict=True):
        assert served_values[key] == int(value) and served_values[key] in (-1, 11, 12)
    assert {k for k, v in served_values.items() if v is not None and not 0 <= v <= 10} == set(oor["key"])
    assert not set(oor["key"]) & set(truth_responses["response_id"])
    assert not set(oor["key"]) & {t["Survey_Response_Id__c"] for t in tasks}


def test_sources_map_onto_the_truth(world):
    """Map the source files with the rules of docs/demo-sources.md and compare with the truth."""
    out, _ = world
    sf = out / "source" / "salesforce"
    q = out / "source" / "qualtrics"

    contacts = {c["Id"]: c for c in _load(sf / "Contact.json")}
    t_contacts = _truth(out, "contacts").set_index("contact_id")
    for cid, row in t_contacts.iterrows():
        src = contacts[cid]
        assert gen.canonical_buying_role(src["Buying_Role__c"], src["Title"]) == row["buying_role"]
        assert row["account_id"] == src["AccountId"]
        assert bool(row["opted_out"]) == src["HasOptedOutOfEmail"]
        assert bool(row["is_active"]) == src["Active__c"]

    surveys = {s["id"]: s for s in _load(q / "surveys.json")}
    t_surveys = _truth(out, "surveys").set_index("survey_id")
    for sid, row in t_surveys.iterrows():
        assert gen.survey_type_of(surveys[sid]["name"]) == row["survey_type"]
    assert sorted(t_surveys["survey_name"]) == sorted([gen.RELATIONSHIP_SURVEY, *gen.TRANSACTIONAL_SURVEYS])

    dist_survey = {d["id"]: d["surveyLink"]["surveyId"] for d in _load(q / "distributions.json")}
    directory = {d["contactId"]: d["extRef"] for d in _load(q / "directory_contacts.json")}
    history = _load(q / "distribution_history.json")
    mapped = {}
    for did, elems in history.items():
        for e in elems:
            assert e["distributionId"] == did
            mapped[f"{did}:{e['contactId']}"] = (
                dist_survey[did],
                directory[e["contactId"]],
                gen.QUALTRICS_STATUS_MAP[e["status"]],
                e["sentAt"],
                e["responseId"],
            )
    t_inv = _truth(out, "invitations").set_index("invitation_id")
    assert set(mapped) == set(t_inv.index)
    for iid, row in t_inv.iterrows():
        survey_id, contact_id, status, sent, _ = mapped[iid]
        assert (survey_id, contact_id, status) == (
            row["survey_id"],
            row["contact_id"],
            row["delivery_status"],
        )
        assert pd.Timestamp(sent).tz_convert(None) == row["sent_at"]
        assert row["account_id"] == contacts[contact_id]["AccountId"]
    linked = {v[4]: k for k, v in mapped.items() if v[4]}

    t_resp = _truth(out, "responses").set_index("response_id")
    seen = set()
    for r in _responses(out):
        rid, v = r["responseId"], r["values"]
        if rid not in t_resp.index:
            continue
        seen.add(rid)
        row = t_resp.loc[rid]
        iid = f"{v['DistributionId']}:{v['ContactId']}"
        assert iid == row["invitation_id"] == linked[rid]
        assert r["_survey_id"] == row["survey_id"]
        assert v["externalDataReference"] == row["contact_id"] and v["AccountId"] == row["account_id"]
        assert pd.Timestamp(v["recordedDate"]).tz_convert(None) == row["recorded_at"]
        assert pd.Timestamp(v["recordedDate"]) >= pd.Timestamp(mapped[iid][3])
        if "QID1" in v:
            assert v["QID1"] == row["nps_score"]
        else:
            assert pd.isna(row["nps_score"])
        assert v["finished"] == row["is_finished"]
        assert ("QID2_TEXT" in v) == row["has_comment"]
    assert seen == set(t_resp.index)

    tasks = {t["Id"]: t for t in _load(sf / "Task.json")}
    t_fu = _truth(out, "follow_ups").set_index("follow_up_id")
    assert set(tasks) == set(t_fu.index)
    for fid, row in t_fu.iterrows():
        t = tasks[fid]
        assert gen.TASK_STATUS_MAP[t["Status"]] == row["status"]
        assert t["Survey_Response_Id__c"] == row["response_id"]
        assert (t["WhatId"], t["WhoId"], t["OwnerId"]) == (
            row["account_id"],
            row["contact_id"],
            row["owner_id"],
        )
        closed = t["CompletedDateTime"]
        assert (closed is None) == pd.isna(row["closed_at"])
        if closed:
            assert pd.Timestamp(closed).tz_convert(None) == row["closed_at"]
        assert pd.Timestamp(t["CreatedDate"]).tz_convert(None) == row["created_at"]


def test_title_fallback_rules():
    assert gen.role_from_title("CFO") == "decision_maker"
    assert gen.role_from_title("VP Procurement") == "decision_maker"
    assert gen.role_from_title("Solutions Architect") == "influencer"
    assert gen.role_from_title("Data Analyst") == "user"
    assert gen.role_from_title("Team Member") is None
    assert gen.role_from_title(None) is None
    assert gen.canonical_buying_role(None, "Chief Operating Officer") == "decision_maker"
    assert gen.canonical_buying_role("  ", "Intern") == "unknown"
    assert gen.canonical_buying_role("Economic Buyer", "Data Analyst") == "decision_maker"
    assert gen.canonical_buying_role("technical evaluator") == "influencer"
    for role, titles in gen.REVEALING_TITLES.items():
        assert {gen.role_from_title(t) for t in titles} == {role}
    assert {gen.role_from_title(t) for t in gen.UNREVEALING_TITLES} == {None}
    assert set(gen.ROLE_PICKLIST.values()) <= set(BUYING_ROLES)
    assert {r for _, r in gen.TITLE_ROLE_RULES} <= set(BUYING_ROLES)


def test_blank_picklists_and_title_fallback_in_data(world):
    out, _ = world
    contacts = _load(out / "source/salesforce/Contact.json")
    blank = [c for c in contacts if not c["Buying_Role__c"]]
    share = len(blank) / len(contacts)
    assert 0.08 < share < 0.25
    from_title = sum(gen.role_from_title(c["Title"]) is not None for c in blank)
    assert 0.25 < from_title / len(blank) < 0.75
    assert {c["Buying_Role__c"] for c in contacts} - {None} <= set(gen.ROLE_PICKLIST)
    assert all(re.fullmatch(r"[a-z0-9.]+@[a-z0-9-]+\.example\.com", c["Email"]) for c in contacts)
    assert len({c["Email"] for c in contacts}) == len(contacts)
    assert 0.02 < sum(c["HasOptedOutOfEmail"] for c in contacts) / len(contacts) < 0.10
    assert 0.03 < sum(not c["Active__c"] for c in contacts) / len(contacts) < 0.15


def test_role_rules_agree_with_the_salesforce_connector(world):
    roles = pytest.importorskip("cxloop.extract.roles")
    mapper = roles.RoleMapper()
    out, _ = world
    pairs = {(c["Buying_Role__c"], c["Title"]) for c in _load(out / "source/salesforce/Contact.json")}
    disagreements = [p for p in pairs if mapper.map(*p) != gen.canonical_buying_role(*p)]
    assert disagreements == []


def test_rates_and_shares_are_plausible(world):
    out, _ = world
    inv = _truth(out, "invitations")
    resp = _truth(out, "responses")
    surveys = _truth(out, "surveys").set_index("survey_id")["survey_type"]
    delivered = inv[inv.delivery_status == "delivered"]
    assert 0.8 < len(delivered) / len(inv) < 0.97
    assert (inv.delivery_status == "opted_out").sum() > 0 and (inv.delivery_status == "bounced").sum() > 0

    joined = delivered.merge(resp[["invitation_id", "recorded_at"]], on="invitation_id", how="left")
    lag = joined.recorded_at - joined.sent_at
    joined["in_window"] = lag.notna() & (lag <= pd.Timedelta(days=30))
    # cohorts whose 30-day window closed before as_of
    closed = joined[joined.sent_at < AS_OF_NAIVE - pd.Timedelta(days=31)]
    rate = closed.groupby(closed.survey_id.map(surveys)).in_window.mean()
    assert 0.55 < rate["relationship"] < 0.75, rate
    assert 0.15 < rate["transactional"] < rate["relationship"], rate

    late = (lag > pd.Timedelta(days=30)).sum() / lag.notna().sum()
    assert 0.02 < late < 0.09
    assert (lag.dropna() > pd.Timedelta(0)).all()

    scored = resp.nps_score.dropna()
    detractor_share = (scored <= 6).mean()
    promoter_share = (scored >= 9).mean()
    assert 0.10 < detractor_share < 0.35
    assert 0.30 < promoter_share < 0.65
    assert 0.02 < resp.nps_score.isna().mean() < 0.10
    assert 0.10 < resp.has_comment.mean() < 0.60

    fu = _truth(out, "follow_ups").merge(
        resp[["response_id", "recorded_at", "contact_id"]], on=["response_id", "contact_id"]
    )
    detractors = resp[resp.nps_score <= 6]
    assert 0.70 < detractors.response_id.isin(fu.response_id).mean() < 0.95
    assert set(fu.response_id) <= set(detractors.response_id)
    hours = (fu.first_contact_at - fu.recorded_at).dt.total_seconds() / 3600
    assert 10 < hours.median() < 35
    assert 0.08 < (hours.dropna() > 48).mean() < 0.35
    assert hours.isna().any()
    assert (fu.created_at > fu.recorded_at).all()
    assert (fu.first_contact_at.dropna() >= fu.created_at[fu.first_contact_at.notna()]).all()
    completed = fu[fu.status == "completed"]
    assert completed.closed_at.notna().all() and fu[fu.status != "completed"].closed_at.isna().all()
    days_to_close = (completed.closed_at - completed.first_contact_at).dt.days
    assert days_to_close.between(2, 20).all()

    # recovery can be measured: detractors answering again after their follow-up closed
    nxt = resp[["contact_id", "recorded_at", "nps_score"]].rename(
        columns={"recorded_at": "recorded_at_next", "nps_score": "nps_score_next"}
    )
    later = completed.merge(nxt, on="contact_id")
    later = later[(later.recorded_at_next > later.closed_at) & later.nps_score_next.notna()]
    assert later.response_id.nunique() >= 5


def test_accounts_owners_and_surveys(world):
    out, _ = world
    acc = _truth(out, "accounts")
    owners = _truth(out, "owners")
    assert set(owners.team) == {"Enterprise CSM", "Mid-Market CSM", "SMB Success"}
    by_segment = acc.groupby("segment").arr.median()
    assert by_segment["enterprise"] > by_segment["mid_market"] > by_segment["smb"]
    as_of_day = AS_OF_NAIVE.date()
    active = acc[acc.is_active]
    days = pd.Series([(d - as_of_day).days for d in active.renewal_date])
    assert days.between(1, 548).all()
    dists = _load(out / "source/qualtrics/distributions.json")
    rel_id = _truth(out, "surveys").set_index("survey_name").loc[gen.RELATIONSHIP_SURVEY, "survey_id"]
    waves = [pd.Timestamp(d["sendDate"]) for d in dists if d["surveyLink"]["surveyId"] == rel_id]
    assert [(w.year, w.quarter) for w in waves] == [(y, qq) for y in (2025, 2026) for qq in (1, 2, 3, 4)][:7]
    assert all(3 <= w.day <= 15 and w.month % 3 == 1 for w in waves)
    ids = [s["id"] for s in _load(out / "source/qualtrics/surveys.json")]
    assert all(re.fullmatch(r"SV_[0-9A-Za-z]{15}", i) for i in ids)
    assert all(re.fullmatch(r"EMD_[0-9A-Za-z]{15}", d["id"]) for d in dists)


def test_main_writes_and_summarises(tmp_path, capsys):
    rc = gen.main(
        ["--out", str(tmp_path / "cli"), "--seed", "3", "--scale", "0.05", "--as-of", "2026-07-01T00:00:00Z"]
    )
    assert rc == 0
    assert "demo sources in" in capsys.readouterr().out
    gt = _load(tmp_path / "cli" / "ground_truth.json")
    assert gt["as_of"] == "2026-07-01T00:00:00Z" and gt["seed"] == 3
    assert gt["entities"]["accounts"]["expected_loaded"] == 10
    sent = _truth(tmp_path / "cli", "invitations").sent_at
    assert sent.max() < pd.Timestamp("2026-07-01")


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="scale must be positive"):
        gen.generate(tmp_path, scale=0)
    with pytest.raises(ValueError, match="at least 30 days before as_of"):
        gen.generate(tmp_path, as_of=datetime(2025, 1, 10, tzinfo=UTC))
