"""The file-drop source: every format round-trips to exactly the contract columns, the demo drop
extracts and validates to the generator's truth (planted faults quarantined as through the APIs),
and messages name files and lines."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

try:
    import cxloop  # noqa: F401
except ImportError:  # the package is not installed in the venv: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.demo import generator as gen
from cxloop.demo.file_drops import FORMATS, file_columns, write_file_drops
from cxloop.extract.files import MANIFEST_NAME, extract_files, load_manifest, relabel_outcome
from cxloop.extract.pseudonymise import email_hash
from cxloop.gate.validation import validate_batch

KEY = b"test-only-key"
AS_OF = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    gen.generate(out, seed=11, scale=0.1, as_of=AS_OF)
    return out


@pytest.fixture(scope="module")
def validated(demo, tmp_path_factory):
    drop = tmp_path_factory.mktemp("drop")
    written = write_file_drops(demo, drop)
    result = extract_files(drop, pii_key=KEY, landing_dir=tmp_path_factory.mktemp("landing"))
    assert result.ok, [p.message for p in result.problems]
    out = validate_batch(
        result.frames,
        batch_id="files-demo",
        source="files",
        as_of=AS_OF,
        known_keys={e: set() for e in ENTITY_ORDER},
        origin=result.origin,
    )
    return drop, written, result, relabel_outcome(out, result)


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips_to_exactly_the_contract_columns(demo, tmp_path, fmt):
    written = write_file_drops(demo, tmp_path, formats=(fmt,))
    assert all(name.endswith("." + fmt) for names in written.values() for name in names)
    result = extract_files(tmp_path, pii_key=KEY)
    assert result.ok and not result.ignored
    assert set(result.frames) == set(ENTITY_ORDER)
    for e in ENTITY_ORDER:
        frame = result.frames[e]
        assert list(frame.columns) == ENTITIES[e].column_names, e
        values = {type(v) for c in frame.columns for v in frame[c].tolist()}
        assert values <= {str, type(None)}, (e, values)  # text as read, nothing coerced
        assert len(frame) >= pq.read_table(demo / "truth" / f"{e}.parquet").num_rows
    # the raw e-mail address never leaves the reader
    contacts = result.frames["contacts"]
    assert not contacts.astype(str).apply(lambda s: s.str.contains("@")).any().any()
    assert "email" not in contacts.columns


def test_file_contract_of_contacts_carries_raw_email():
    cols = file_columns("contacts")
    assert "email" in cols and "email_hash" not in cols and "email_domain_valid" not in cols
    assert file_columns("responses") == ENTITIES["responses"].column_names


def _norm(v):
    if v is None or (not isinstance(v, str | bool) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp | dt.datetime):
        return pd.Timestamp(v).strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return float(v)
    return str(v) if not hasattr(v, "item") else _norm(v.item())


def test_demo_drop_extracts_to_the_truth(demo, validated):
    _, written, _, out = validated
    assert len(written["responses"]) == len(FORMATS)  # one entity spread over several files
    gt = json.loads((demo / "ground_truth.json").read_text())
    contacts_src = {
        r["Id"]: r["Email"] for r in json.loads((demo / "source/salesforce/Contact.json").read_text())
    }
    for e in ENTITY_ORDER:
        c = gt["counts"][e]
        assert out.counts[e] == {
            "received": c["served"],
            "loaded": c["expected_loaded"],
            "quarantined": c["expected_quarantined"],
        }, e
        truth = pd.read_parquet(demo / "truth" / f"{e}.parquet")
        got = out.valid[e]
        pk = ENTITIES[e].primary_key
        truth = truth.sort_values(pk).reset_index(drop=True)
        got = got.sort_values(pk).reset_index(drop=True)
        for col in ENTITIES[e].column_names:
            if col == "email_hash":
                want = [email_hash(contacts_src[k], KEY) for k in got[pk]]
                assert got[col].tolist() == want
                continue
            g, t = [_norm(v) for v in got[col].tolist()], [_norm(v) for v in truth[col].tolist()]
            if ENTITIES[e].column(col).type == "date":
                g, t = [x and x[:10] for x in g], [x and x[:10] for x in t]
            assert g == t, (e, col)
    faults = pq.read_table(demo / "truth" / "faults.parquet").to_pylist()
    assert set(zip(out.quarantine.entity, out.quarantine.primary_key, strict=True)) == {
        (f["entity"], f["key"]) for f in faults
    }
    by_kind = {f["kind"]: f for f in faults}
    q = out.quarantine
    oor = q[q.primary_key == by_kind["out_of_range"]["key"]]
    assert oor.field.tolist() == ["nps_score"] and "is not an integer 0-10" in oor.reason.item()
    orphan = q[q.primary_key == by_kind["orphan"]["key"]]
    assert "is not a known accounts key" in orphan.reason.item()


def test_messages_name_files_and_lines(validated):
    drop, written, result, out = validated
    for reason, entity, row, fld in zip(
        out.quarantine.reason,
        out.quarantine.entity,
        out.quarantine.row_number,
        out.quarantine.field,
        strict=True,
    ):
        file, line = result.locate(entity, int(row))
        unit = "row" if file.endswith(".parquet") else "line"
        assert reason.startswith(f"{file} {unit} {line} field {fld}"), reason
    dup = out.quarantine[(out.quarantine.entity == "accounts")].reason.item()
    fmt = written["accounts"][0]
    assert f"{drop / fmt} " in dup and "first seen at " + str(drop / fmt) in dup
    # CSV: the header is line 1, so the first data row is line 2
    first = next(e for e, names in written.items() if names[0].endswith(".csv"))
    assert result.locate(first, 1) == (str(drop / written[first][0]), 2)


def test_manifest_carries_the_row_origins_without_values(validated):
    _, _, result, out = validated
    path = Path(result.manifest_path)
    assert path.name == MANIFEST_NAME
    text = path.read_text()
    assert "@" not in text  # no e-mail address, no values at all
    again = load_manifest(path)
    assert again.origin == result.origin
    assert again.locations == result.locations
    assert again.row_labels("responses") == result.row_labels("responses")


def test_messages_name_the_file_with_an_unrelabelled_gate_too(validated):
    drop, _, result, _ = validated
    bad = {e: f.copy() for e, f in result.frames.items()}
    bad["owners"].loc[0, "is_active"] = "perhaps"
    out = validate_batch(
        {"owners": bad["owners"]}, batch_id="b", source="files", as_of=AS_OF, origin=result.origin
    )
    assert out.quarantine.reason.item().startswith(result.origin["owners"] + " row 1 field is_active")
    relabel_outcome(out, result)
    file, line = result.locate("owners", 1)
    assert out.quarantine.reason.item().startswith(
        f"{file} {'row' if file.endswith('parquet') else 'line'} {line}"
    )
