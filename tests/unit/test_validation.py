"""The validation gate with real Great Expectations: coercion, checks, quarantine, cascade,
reconciliation; plus the bad-input corpus in tests/data/bad_inputs/ (one JSON case per file)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import _background
import pandas as pd
import pytest

try:
    import cxloop  # noqa: F401
except ImportError:  # the package is not installed in the venv: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.gate.coerce import coerce_column
from cxloop.gate.data_docs import build_data_docs
from cxloop.gate.outcome import BatchRejected, ValidationOutcome
from cxloop.gate.suites import build_suite, load_suite_config, memoised_configurations
from cxloop.gate.validation import validate_batch
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS

BAD_INPUTS = Path(__file__).resolve().parents[1] / "data" / "bad_inputs"
CLEAN = json.loads((BAD_INPUTS / "clean_batch.json").read_text(encoding="utf-8"))
AS_OF = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)
ORIGIN = {e: f"{e}.parquet" for e in ENTITY_ORDER}
CASES = sorted(p.stem for p in BAD_INPUTS.glob("*.json") if p.stem != "clean_batch")


def clean_rows() -> dict[str, list[dict]]:
    return copy.deepcopy(CLEAN["frames"])


def frames_of(rows: dict[str, list[dict]]) -> dict[str, pd.DataFrame]:
    return {
        e: pd.DataFrame(r, columns=list(r[0]) if r else ENTITIES[e].column_names, dtype=object)
        for e, r in rows.items()
    }


def run(rows_or_frames, **kw) -> ValidationOutcome:
    frames = rows_or_frames
    if frames and isinstance(next(iter(frames.values())), list):
        frames = frames_of(frames)
    kw.setdefault("batch_id", "b-test")
    kw.setdefault("source", "demo")
    kw.setdefault("as_of", AS_OF)
    kw.setdefault("origin", ORIGIN)
    return validate_batch(frames, **kw)


def quarantined(outcome: ValidationOutcome) -> set[tuple]:
    q = outcome.quarantine
    return set(zip(q.entity, q.row_number, q.field, q.expectation, strict=True))


def reasons(outcome: ValidationOutcome, entity: str) -> list[str]:
    return outcome.quarantine.loc[outcome.quarantine.entity == entity, "reason"].tolist()


# --------------------------------------------------------------------------- suites


def test_every_entity_has_a_suite_with_severity_and_reason():
    for name in ENTITY_ORDER:
        cfg = load_suite_config(name)
        suite = build_suite(cfg)  # GX accepts the stored JSON
        assert len(suite.expectations) == len(cfg["expectations"])
        for exp in cfg["expectations"]:
            assert exp["meta"]["severity"] in ("error", "warn"), exp
            assert exp["meta"]["reason"], exp
        types = [(x["type"], x["kwargs"].get("column")) for x in cfg["expectations"]]
        e = ENTITIES[name]
        assert ("expect_column_values_to_be_unique", e.primary_key) in types
        for c in e.columns:
            if c.required:
                assert ("expect_column_values_to_not_be_null", c.name) in types
        refs = {x["meta"].get("column") for x in cfg["expectations"] if x["meta"].get("check") == "reference"}
        assert refs == set(e.references)
        structure = [x for x in cfg["expectations"] if x["type"] == "expect_table_columns_to_match_set"]
        assert structure[0]["kwargs"]["column_set"] == e.column_names


# --------------------------------------------------------------------------- clean batch


def test_clean_batch_loads_fully_with_proper_dtypes():
    out = run(clean_rows())
    assert out.quarantine.empty, out.quarantine.reason.tolist()
    assert out.warnings.empty
    for name in ENTITY_ORDER:
        n = len(CLEAN["frames"][name])
        assert out.counts[name] == {"received": n, "loaded": n, "quarantined": 0}
        assert list(out.valid[name].columns) == ENTITIES[name].column_names
    r = out.valid["responses"]
    assert str(r["nps_score"].dtype) == "Int64"
    assert r["nps_score"].tolist()[:2] == [3, 9] and pd.isna(r["nps_score"].iloc[2])
    assert str(r["recorded_at"].dtype) == "datetime64[us]"
    assert str(r["is_finished"].dtype) == "boolean"
    a = out.valid["accounts"]
    assert a["arr"].tolist() == [120000.5, 0.0]
    assert str(a["renewal_date"].dtype).startswith("datetime64")
    # Salesforce '+0000' offsets become naive UTC
    assert out.valid["owners"]["updated_at"].iloc[0] == pd.Timestamp("2025-01-03 10:00:00")
    assert out.valid["owners"]["is_active"].tolist() == [True, False]
    # one result row per expectation per entity, every check passed
    assert list(out.results.columns) == RESULT_COLUMNS
    assert out.results.success.all()
    assert (out.results.batch_id == "b-test").all() and (out.results.source == "demo").all()
    for name in ENTITY_ORDER:
        n_gx = len(load_suite_config(name)["expectations"])
        gx_rows = out.results[
            (out.results.entity == name) & out.results.expectation.str.startswith("expect_")
        ]
        assert len(gx_rows) == n_gx
    assert list(out.quarantine.columns) == QUARANTINE_COLUMNS


def test_gx_results_are_real_suite_validation_results():
    out = run(clean_rows())
    res = out.gx_results["responses"]
    assert res.success is True
    assert {r.expectation_config.type for r in res.results} >= {
        "expect_column_values_to_be_between",
        "expect_column_pair_values_a_to_be_greater_than_b",
    }


# --------------------------------------------------------------------------- single checks


def test_coercion_failure_names_file_row_field_and_value():
    rows = clean_rows()
    rows["responses"][1]["nps_score"] = "7.5"
    out = run(rows)
    assert reasons(out, "responses") == [
        "responses.parquet row 2 field nps_score: '7.5' is not an integer 0-10"
    ]
    q = out.quarantine.iloc[0]
    assert (q.primary_key, q.row_number, q.field, q.severity) == ("R_2", 2, "nps_score", "error")
    assert json.loads(q.record_json)["nps_score"] == "7.5"
    assert out.counts["responses"] == {"received": 3, "loaded": 2, "quarantined": 1}
    assert out.valid["responses"]["response_id"].tolist() == ["R_1", "R_3"]


def test_each_failing_row_is_quarantined_once_per_reason_but_counted_once():
    rows = clean_rows()
    rows["responses"][1].update(nps_score=12, recorded_at="2031-01-01T00:00:00Z")
    out = run(rows)
    assert sorted(out.quarantine.field) == ["nps_score", "recorded_at"]
    assert out.counts["responses"] == {"received": 3, "loaded": 2, "quarantined": 1}


def test_structural_failure_rejects_the_batch_naming_file_and_columns():
    frames = frames_of(clean_rows())
    frames["responses"] = frames["responses"].rename(columns={"nps_score": "score"})
    frames["accounts"] = frames["accounts"].drop(columns=["arr", "tier"])
    with pytest.raises(BatchRejected) as exc:
        run(
            frames,
            origin={"responses": "landing/b1/responses.parquet", "accounts": "landing/b1/accounts.parquet"},
        )
    msg = str(exc.value)
    assert "landing/b1/responses.parquet" in msg and "nps_score" in msg and "score (renamed?)" in msg
    assert "landing/b1/accounts.parquet: missing contract column(s) tier, arr" in msg
    assert {p["entity"] for p in exc.value.problems} == {"responses", "accounts"}
    assert set(exc.value.results.entity) == {"responses", "accounts"}
    assert not exc.value.results.success.any()


def test_duplicates_keep_the_first_occurrence():
    rows = clean_rows()
    dup = dict(rows["responses"][0], nps_score=10)
    rows["responses"].insert(2, dup)  # row 3 duplicates row 1
    out = run(rows)
    assert reasons(out, "responses") == [
        "responses.parquet row 3 field response_id: 'R_1' duplicates primary key response_id "
        "(the first occurrence is kept); first seen at row 1"
    ]
    v = out.valid["responses"].set_index("response_id")
    assert v.loc["R_1", "nps_score"] == 3
    # the kept key is valid, so its follow-up is not cascaded
    assert out.counts["follow_ups"]["loaded"] == 1
    uniq = out.results[(out.results.entity == "responses") & (out.results.expectation.str.endswith("unique"))]
    assert uniq.unexpected_count.item() == 2 and not uniq.success.item()


def test_cascade_follows_the_reference_chain():
    rows = clean_rows()
    rows["accounts"][1]["is_active"] = "maybe"  # account 001B -> contact 003C -> invitation, response
    out = run(rows)
    q = out.quarantine
    cascade = q[q.expectation == "cxloop_parent_not_quarantined"]
    assert set(zip(cascade.entity, cascade.reason, strict=True)) == {
        ("contacts", "parent accounts 001B quarantined"),
        ("invitations", "parent accounts 001B quarantined"),
        ("invitations", "parent contacts 003C quarantined"),
        ("responses", "parent accounts 001B quarantined"),
        ("responses", "parent contacts 003C quarantined"),
        ("renewals", "parent accounts 001B quarantined"),
    }
    assert out.counts["invitations"] == {"received": 3, "loaded": 2, "quarantined": 1}


def test_parent_already_in_warehouse_stops_the_cascade():
    rows = clean_rows()
    rows["accounts"][1]["is_active"] = "maybe"
    out = run(rows, known_keys={e: set() for e in ENTITY_ORDER} | {"accounts": {"001B"}})
    assert set(out.quarantine.entity) == {"accounts"}


def test_references_use_warehouse_keys_and_batch_keys():
    rows = clean_rows()
    only = {"responses": rows["responses"], "follow_ups": rows["follow_ups"]}
    known = {e: set() for e in ENTITY_ORDER}
    out = run(only, known_keys=known)
    assert out.counts["responses"]["quarantined"] == 3
    assert out.counts["follow_ups"]["quarantined"] == 1  # parent responses R_1 quarantined
    known.update(
        invitations={"EMD_1:CID_A", "EMD_1:CID_B"},
        surveys={"SV_rel", "SV_tx"},
        contacts={"003A", "003B", "003C"},
        accounts={"001A", "001B"},
        owners={"005A"},
    )
    sent = {"EMD_1:CID_A": "2025-03-01T09:00:00Z", "EMD_1:CID_B": "2025-03-05T09:00:00Z"}
    out = run(only, known_keys=known, known_sent_at=sent)
    # R_2 recorded 03-03, its invitation (from the warehouse) sent 03-05
    assert reasons(out, "responses") == [
        "responses.parquet row 2 field recorded_at: '2025-03-03T10:00:00Z' is before the sent_at of its "
        "invitation ('2025-03-05T09:00:00')"
    ]


def test_without_known_keys_absent_parents_are_skipped_not_failed():
    rows = clean_rows()
    out = run({"responses": rows["responses"]})
    assert out.quarantine.empty
    assert "responses.invitation_id -> invitations" in out.skipped


def test_warn_rows_are_kept_and_recorded():
    rows = clean_rows()
    rows["contacts"][0]["email_domain_valid"] = "false"
    out = run(rows)
    assert out.quarantine.empty
    assert out.warnings.field.tolist() == ["email_domain_valid"]
    res = out.results[(out.results.entity == "contacts") & (out.results.severity == "warn")]
    failed = res[~res.success]
    assert failed.unexpected_count.tolist() == [1]


def test_reconciliation_holds_for_a_messy_batch():
    rows = clean_rows()
    rows["responses"][0]["nps_score"] = "x"
    rows["responses"][1]["response_id"] = None
    rows["responses"].append(dict(rows["responses"][2]))
    rows["invitations"][2]["delivery_status"] = "sent"
    out = run(rows)
    for name, c in out.counts.items():
        assert c["received"] == c["loaded"] + c["quarantined"], name
        assert c["quarantined"] == out.quarantine[out.quarantine.entity == name].row_number.nunique()


@pytest.mark.parametrize(
    "value,ok,expected",
    [
        ("7", True, 7),
        (" 8 ", True, 8),
        (9.0, True, 9),
        ("10.0", True, 10),
        (None, True, None),
        ("", True, None),
        ("7.5", False, None),
        (True, False, None),
        ("nan", False, None),
        ([1], False, None),
    ],
)
def test_int_coercion(value, ok, expected):
    typed, failed = coerce_column(pd.Series([value], dtype=object), "int")
    assert bool(failed[0]) is (not ok)
    assert (pd.isna(typed.iloc[0]) and expected is None) or typed.iloc[0] == expected


def test_timestamp_coercion_handles_offsets_and_garbage():
    s = pd.Series(
        [
            "2025-01-03T10:00:00.000+0000",
            "2025-01-03T12:00:00+02:00",
            "2025-01-03",
            "yesterday",
            1700000000,
            None,
        ],
        dtype=object,
    )
    typed, failed = coerce_column(s, "timestamp")
    assert failed.tolist() == [False, False, False, True, True, False]
    assert typed.iloc[0] == typed.iloc[1] == pd.Timestamp("2025-01-03 10:00")


def test_data_docs_are_written(tmp_path):
    rows = clean_rows()
    rows["responses"][1]["nps_score"] = 11
    out = run(rows)
    index = build_data_docs(out, tmp_path / "docs")
    text = index.read_text(encoding="utf-8")
    assert "responses.html" in text and "expect_column_values_to_be_between" in text
    # table-level checks name the table, not a missing column (pandas would print nan)
    assert "<td>(whole table)</td>" in text and ">nan<" not in text and ">None<" not in text
    page = (tmp_path / "docs" / "responses.html").read_text(encoding="utf-8")
    assert "nps_score" in page and "GX rendering failed" not in page


# --------------------------------------------------------------------------- bad-input corpus


def _value(v):
    if isinstance(v, dict) and "repeat" in v:
        return v["repeat"] * v["times"]
    return v


def build_case_frames(case: dict) -> dict[str, pd.DataFrame]:
    rows = clean_rows()
    for s in case.get("set", []):
        rows[s["entity"]][s["row"] - 1][s["field"]] = _value(s["value"])
    for a in case.get("append", []):
        base = dict(rows[a["entity"]][a["copy_of_row"] - 1]) if "copy_of_row" in a else {}
        base.update({k: _value(v) for k, v in a.get("values", {}).items()})
        rows[a["entity"]].append(base)
    frames = frames_of(rows)
    for e, cols in case.get("drop_columns", {}).items():
        frames[e] = frames[e].drop(columns=cols)
    for e, mapping in case.get("rename_columns", {}).items():
        frames[e] = frames[e].rename(columns=mapping)
    for e, extra in case.get("add_columns", {}).items():
        for c, v in extra.items():
            frames[e][c] = v
    return frames


def _match(rows_df: pd.DataFrame, expected: list[dict]) -> None:
    got = set(zip(rows_df.entity, rows_df.row_number, rows_df.field, rows_df.expectation, strict=True))
    want = {(x["entity"], x["row_number"], x["field"], x["expectation"]) for x in expected}
    assert got == want, f"unexpected: {sorted(got - want)}; missing: {sorted(want - got)}"
    for x in expected:
        hit = rows_df[
            (rows_df.entity == x["entity"])
            & (rows_df.row_number == x["row_number"])
            & (rows_df.field == x["field"])
            & (rows_df.expectation == x["expectation"])
        ]
        assert x["reason_contains"] in hit.reason.iloc[0], hit.reason.iloc[0]


@pytest.fixture(scope="module")
def bad_input_outcomes() -> dict:
    return _background.result("bad_input_outcomes")


@_background.prestart("bad_input_outcomes")
def _bad_input_outcomes(_param=None) -> dict[str, dict]:
    """Every case of the corpus through the gate, in a background process while other tests run
    (tests/_background.py; about a second of Great Expectations per case): per case, the
    rejection's message, or what the tests read of the outcome (small frames and counts)."""
    done: dict[str, dict] = {}
    for case_name in CASES:
        case = json.loads((BAD_INPUTS / f"{case_name}.json").read_text(encoding="utf-8"))
        try:
            out = run(build_case_frames(case))
        except BatchRejected as exc:
            done[case_name] = {"rejected": str(exc)}
            continue
        done[case_name] = {
            "quarantine": out.quarantine, "warnings": out.warnings, "counts": out.counts, "valid": out.valid,
            "results": out.results,
        }
    return done


@pytest.mark.parametrize("case_name", CASES)
def test_bad_input_case(case_name, bad_input_outcomes):
    case = json.loads((BAD_INPUTS / f"{case_name}.json").read_text(encoding="utf-8"))
    expect = case["expect"]
    got = bad_input_outcomes[case_name]
    if "rejected" in expect:
        assert "rejected" in got, f"{case_name}: the batch should have been rejected whole"
        for text in expect["rejected"]["message_contains"]:
            assert text in got["rejected"]
        return
    assert "rejected" not in got, got.get("rejected")
    out = SimpleNamespace(**got)
    _match(out.quarantine, expect.get("quarantine", []))
    if "warnings" in expect:
        _match(out.warnings, expect["warnings"])
    for name, c in expect.get("counts", {}).items():
        for k, v in c.items():
            assert out.counts[name][k] == v, (name, k)
    for c in out.counts.values():
        assert c["received"] == c["loaded"] + c["quarantined"]
    for vv in expect.get("valid_values", []):
        e = ENTITIES[vv["entity"]]
        df = out.valid[vv["entity"]]
        got = df.loc[df[e.primary_key] == vv["key"], vv["field"]]
        assert len(got) == 1
        value = got.iloc[0]
        assert (vv["value"] is None and pd.isna(value)) or value == vv["value"]
    for r in expect.get("results", []):
        res = out.results
        hit = res[(res.entity == r["entity"]) & (res.expectation == r["expectation"])]
        if "column" in r:
            hit = hit[hit.column == r["column"]]
        assert len(hit) == 1
        for k in ("severity", "success", "unexpected_count"):
            if k in r:
                assert hit[k].iloc[0] == r[k], k
    if "record_json_max_chars" in expect:
        assert out.quarantine.record_json.str.len().max() <= expect["record_json_max_chars"]


def test_configuration_memo_lives_for_one_validation_only():
    """The gate memoises GX's Expectation.configuration for one validate call
    (cxloop.gate.suites.memoised_configurations): one object inside the block, a fresh one
    outside it, and a suite parameter ($max_timestamp, from as_of) substituted in one
    validation never sticks to the next: a response 2 days after as_of is quarantined as
    future, not at a later as_of, and again at the first."""
    expectation = build_suite(load_suite_config("responses")).expectations[0]
    with memoised_configurations():
        assert expectation.configuration is expectation.configuration
    assert expectation.configuration is not expectation.configuration
    assert expectation.configuration == expectation.configuration

    rows = clean_rows()
    rows["responses"][0]["recorded_at"] = (AS_OF + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = [run(rows, as_of=as_of) for as_of in (AS_OF, AS_OF + dt.timedelta(days=5), AS_OF)]
    flagged = [
        set(q.loc[(q.entity == "responses") & (q.field == "recorded_at"), "row_number"])
        for q in (o.quarantine for o in future)
    ]
    assert flagged == [{1}, set(), {1}]


def test_bad_input_corpus_is_big_enough():
    assert len(CASES) >= 15
