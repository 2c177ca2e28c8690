"""The DuckDB raw layer: schema, merge on primary key, idempotent reloads, bookkeeping."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

try:
    import cxloop  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.gate.validation import validate_batch
from cxloop.store import duckdb_store as wh

DATA = Path(__file__).resolve().parents[1] / "data"
CLEAN = json.loads((DATA / "bad_inputs" / "clean_batch.json").read_text(encoding="utf-8"))
AS_OF = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)
EXTRACTED = dt.datetime(2025, 6, 30, 1, 0, tzinfo=dt.UTC)
TABLES = [*ENTITY_ORDER, "quarantine", "validation_results", "batches"]


def rows():
    return copy.deepcopy(CLEAN["frames"])


def outcome(r, batch_id="b1", con=None, **kw):
    frames = {e: pd.DataFrame(v, dtype=object) for e, v in r.items()}
    known = wh.known_keys(con) if con is not None else None
    return validate_batch(frames, batch_id=batch_id, source="demo", as_of=AS_OF, known_keys=known, **kw)


def snapshot(con):
    return {t: con.execute(f"SELECT * FROM raw.{t} ORDER BY ALL").fetchall() for t in TABLES}


@pytest.fixture
def con(tmp_path):
    c = wh.connect(tmp_path / "wh" / "cx.duckdb")
    wh.ensure_raw_schema(c)
    yield c
    c.close()


def test_schema_has_contract_columns_sql_types_and_lineage(con):
    for name in ENTITY_ORDER:
        cols = con.execute(f"DESCRIBE raw.{name}").fetchall()
        names = [c[0] for c in cols]
        assert names == ENTITIES[name].column_names + [c.name for c in LINEAGE_COLUMNS]
    types = dict((c[0], c[1]) for c in con.execute("DESCRIBE raw.accounts").fetchall())
    assert types["arr"] == "DOUBLE" and types["renewal_date"] == "DATE"
    assert types["updated_at"] == "TIMESTAMP" and types["is_active"] == "BOOLEAN"
    assert (
        dict((c[0], c[1]) for c in con.execute("DESCRIBE raw.responses").fetchall())["nps_score"] == "BIGINT"
    )
    wh.ensure_raw_schema(con)  # idempotent


def test_clean_batch_loads_fully(con, tmp_path):
    out = outcome(rows(), con=con)
    counts = wh.load_outcome(con, out, extracted_at=EXTRACTED, quarantine_dir=tmp_path / "q")
    for name in ENTITY_ORDER:
        n = con.execute(f"SELECT count(*) FROM raw.{name}").fetchall()[0][0]
        assert n == len(CLEAN["frames"][name]) == counts[name]["loaded"]
    lineage = con.execute("SELECT DISTINCT _batch_id, _source, _extracted_at FROM raw.responses").fetchall()
    assert lineage == [("b1", "demo", dt.datetime(2025, 6, 30, 1, 0))]
    batches = con.execute(
        "SELECT entity, received, loaded, quarantined FROM raw.batches ORDER BY entity"
    ).fetchall()
    assert len(batches) == len(CLEAN["frames"]) == len(ENTITY_ORDER)
    assert all(r[1] == r[2] and r[3] == 0 for r in batches)
    assert con.execute("SELECT count(*) FROM raw.validation_results").fetchall()[0][0] == len(out.results)
    assert (tmp_path / "q" / "quarantine_b1.parquet").exists()
    got = con.execute("SELECT renewal_date, arr FROM raw.accounts WHERE account_id = '001A'").fetchall()
    assert got == [(dt.date(2025, 9, 30), 120000.5)]


def test_reloading_the_same_batch_changes_nothing(con):
    r = rows()
    r["responses"][1]["nps_score"] = 11
    out = outcome(r, con=con)
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    before = snapshot(con)
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert snapshot(con) == before
    assert len(before["quarantine"]) == 1


def test_quarantine_is_stored_and_written_as_parquet(con, tmp_path):
    r = rows()
    r["responses"][1]["nps_score"] = "7.5"
    out = outcome(r, con=con, origin={"responses": "responses.parquet"})
    wh.load_outcome(con, out, extracted_at=EXTRACTED, quarantine_dir=tmp_path)
    q = con.execute("SELECT entity, primary_key, row_number, field, reason FROM raw.quarantine").fetchall()
    assert q == [
        (
            "responses",
            "R_2",
            2,
            "nps_score",
            "responses.parquet row 2 field nps_score: '7.5' is not an integer 0-10",
        )
    ]
    pq = pd.read_parquet(tmp_path / "quarantine_b1.parquet")
    assert pq.reason.tolist() == [q[0][4]]
    assert con.execute(
        "SELECT received, loaded, quarantined FROM raw.batches WHERE entity='responses'"
    ).fetchall() == [(3, 2, 1)]
    assert con.execute("SELECT count(*) FROM raw.responses").fetchall()[0][0] == 2


def test_merge_on_primary_key_and_older_batches_do_not_overwrite(con):
    wh.load_outcome(con, outcome(rows(), batch_id="b1", con=con), extracted_at=EXTRACTED)
    r = rows()
    r["responses"][0]["nps_score"] = 8
    wh.load_outcome(
        con,
        outcome({"responses": r["responses"]}, batch_id="b2", con=con),
        extracted_at=EXTRACTED + dt.timedelta(days=1),
    )
    assert con.execute("SELECT count(*) FROM raw.responses").fetchall()[0][0] == 3
    assert con.execute(
        "SELECT nps_score, _batch_id FROM raw.responses WHERE response_id='R_1'"
    ).fetchall() == [(8, "b2")]
    # a late, older batch does not overwrite the newer row
    r["responses"][0]["nps_score"] = 0
    wh.load_outcome(
        con, outcome({"responses": r["responses"]}, batch_id="b0", con=con), extracted_at=EXTRACTED
    )
    assert con.execute(
        "SELECT nps_score, _batch_id FROM raw.responses WHERE response_id='R_1'"
    ).fetchall() == [(8, "b2")]


def test_known_keys_feed_the_next_batch(con):
    wh.load_outcome(con, outcome(rows(), con=con), extracted_at=EXTRACTED)
    keys = wh.known_keys(con)
    assert set(keys) == set(ENTITY_ORDER)
    assert keys["invitations"] == {"EMD_1:CID_A", "EMD_1:CID_B", "EMD_2:CID_C"}
    sent = wh.known_invitation_sent_at(con)
    # a later survey batch with only responses validates against the warehouse
    r = rows()["responses"]
    r[1]["recorded_at"] = "2025-02-01T00:00:00Z"
    r.append(dict(r[0], response_id="R_9", invitation_id="EMD_404"))
    out = outcome({"responses": r}, batch_id="b2", con=con, known_sent_at=sent)
    q = out.quarantine
    assert set(zip(q.row_number, q.field, strict=True)) == {(2, "recorded_at"), (4, "invitation_id")}


def test_sql_like_strings_load_verbatim(con):
    r = rows()
    evil = 'Robert\'); DROP TABLE raw.owners;-- "x" ü'
    r["owners"][0]["owner_name"] = evil
    r["accounts"][0]["account_name"] = "'; DELETE FROM raw.accounts; --"
    wh.load_outcome(con, outcome(r, con=con), extracted_at=EXTRACTED)
    assert con.execute("SELECT owner_name FROM raw.owners WHERE owner_id='005A'").fetchall() == [(evil,)]
    assert con.execute("SELECT count(*) FROM raw.accounts").fetchall()[0][0] == 2
    assert con.execute("SELECT account_name FROM raw.accounts WHERE account_id='001A'").fetchall() == [
        ("'; DELETE FROM raw.accounts; --",)
    ]


def test_a_failed_load_leaves_nothing_behind(con):
    out = outcome(rows(), con=con)
    out.valid["responses"] = pd.concat([out.valid["responses"], out.valid["responses"].head(1)])
    with pytest.raises(ValueError):
        wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert all(len(v) == 0 for v in snapshot(con).values())
