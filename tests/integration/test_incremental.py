"""Incremental extraction: watermarks, lookback windows, late parents, idempotent reruns.

Real HTTP against the demo Qualtrics/Salesforce server, real validation, real DuckDB.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import _background
import duckdb
import pytest
from _warehouse_fixture import SCALE, SEED  # the world of the session's shared demo warehouse
from cxloop.config import Settings, SourceSettings
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer
from cxloop.extract.registry import connector
from cxloop.pipeline import extract, read_watermarks, validate_and_load

AS_OF = datetime(2026, 10, 1)
STEPS = [datetime(2025, 4, 1), datetime(2025, 9, 1), datetime(2026, 1, 15), datetime(2026, 6, 1), AS_OF]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The demo world of the session's shared warehouse (same seed, scale and as_of: the
    generator is deterministic), generated and served here so that tests needing only the
    sources do not build the warehouse."""
    out = tmp_path_factory.mktemp("demo")
    generate(out, seed=SEED, scale=SCALE, as_of=AS_OF)
    token = secrets.token_urlsafe(12)
    with DemoServer(out / "source", token=token) as base_url:
        yield {
            "salesforce": SourceSettings("salesforce", base_url, token),
            "qualtrics": SourceSettings("qualtrics", base_url, token, {"directory_id": "POOL_cxloopdemo"}),
        }


def run(settings: Settings, sources: dict, as_of: datetime) -> dict:
    batches = [extract(sources[name], settings, as_of) for name in ("salesforce", "qualtrics")]
    return validate_and_load(batches, settings, as_of) | {"batches": batches}


def table_fingerprints(path) -> dict[str, tuple[int, str]]:
    """(row count, SHA-256 of the sorted rows) of every raw table, lineage columns left out."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for name in ENTITY_ORDER:
            cols = ", ".join(ENTITIES[name].column_names)
            rows = con.execute(f"select {cols} from raw.{name} order by all").fetchall()
            out[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def full(demo_warehouse, tmp_path_factory):
    """One full extraction at AS_OF: (a copy of) the session's demo warehouse, which is exactly
    run() of both sources at AS_OF on this world (then dbt, which writes no raw table)."""
    from _warehouse_fixture import warehouse_copy

    shared = demo_warehouse
    assert shared.as_of == AS_OF
    settings = warehouse_copy(shared, tmp_path_factory.mktemp("full"))
    return settings, shared.load_report | {"batches": shared.batches}


@pytest.fixture(scope="module")
def incremental():
    return _background.result("incremental")


@_background.prestart("incremental")
def _incremental(_param=None):
    """Five runs at STEPS into one warehouse, against a demo server of the same world as the
    `source` fixture's (the generator is deterministic), in a background process while other
    tests run (tests/_background.py)."""
    root = _background.workdir("incremental")
    generate(root / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    token = secrets.token_urlsafe(12)
    settings = Settings.from_env({"CXLOOP_VAR": str(root / "var")})
    with DemoServer(root / "demo" / "source", token=token) as base_url:
        sources = {
            "salesforce": SourceSettings("salesforce", base_url, token),
            "qualtrics": SourceSettings("qualtrics", base_url, token, {"directory_id": "POOL_cxloopdemo"}),
        }
        reports = [run(settings, sources, step) for step in STEPS]
    return settings, reports


def test_five_incremental_runs_equal_one_full_extraction(full, incremental):
    want = table_fingerprints(full[0].warehouse_path)
    got = table_fingerprints(incremental[0].warehouse_path)
    assert got == want
    assert all(n > 0 for n, _ in want.values())


def test_incremental_runs_read_only_their_window(incremental, full):
    _, reports = incremental
    _, full_report = full
    full_rows = sum(full_report["batches"][1]["rows"].values())
    later = [sum(r["batches"][1]["rows"].values()) for r in reports[1:]]
    # each later Qualtrics batch carries far less than the whole history
    assert all(n < full_rows for n in later), (later, full_rows)
    windows = reports[-1]["batches"][0]["windows"]
    assert windows["accounts"][0] is not None, "the last run must start from a watermark"


def test_late_parents_release_quarantined_children(incremental):
    settings, reports = incremental
    released = sum(c.get("released", 0) for r in reports for c in r["counts"].values())
    assert released > 0, "contacts or follow-ups that arrived before their parent were never released"
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        pending = con.execute(
            """select count(*) from raw.quarantine q where not exists (
                   select 1 from raw.quarantine_releases r
                   where r.batch_id = q.batch_id and r.entity = q.entity and r.row_number = q.row_number)
                 and q.expectation = 'expect_column_values_to_be_in_set' and q.entity = 'follow_ups'"""
        ).fetchone()[0]
    finally:
        con.close()
    assert pending == 0, "a follow-up whose response has arrived is still quarantined"


def test_watermarks_advance_and_a_rerun_changes_nothing(source, incremental):
    settings, _ = incremental
    marks = read_watermarks(settings, "salesforce")
    assert set(marks) == set(connector("salesforce").entities)
    assert all(m < AS_OF for m in marks.values())
    before = table_fingerprints(settings.warehouse_path)
    run(settings, source, AS_OF)
    assert table_fingerprints(settings.warehouse_path) == before
    assert read_watermarks(settings, "salesforce") == marks


def test_a_failed_load_leaves_the_watermarks_unchanged(source, tmp_path):
    from cxloop.gate.outcome import BatchRejected

    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path)})
    run(settings, source, STEPS[0])
    marks = read_watermarks(settings, "qualtrics")
    batch = extract(source["qualtrics"], settings, AS_OF)
    # break the landed batch structurally: a renamed column rejects it whole
    import pyarrow.parquet as pq

    path = batch["files"]["responses"]
    table = pq.read_table(path)
    pq.write_table(table.rename_columns(["responseId" if c == "response_id" else c for c in table.column_names]), path)
    with pytest.raises(BatchRejected, match="response_id"):
        validate_and_load([batch], settings, AS_OF)
    assert read_watermarks(settings, "qualtrics") == marks
