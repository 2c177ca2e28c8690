"""`cxloop demo` then `cxloop demo --keep` at a later as_of replay ONE demo world: the warehouse
ends where one fresh demo run at the later date ends.

The demo's own preparation (cxloop.demo.run.prepare and demo_source_env: world, record, drop,
environment) for each invocation, then the pipeline's steps as the DAGs call them (extract one
domain at a time with the sources the environment names, validate_and_load, dbt build), with
real HTTP against the demo server and real DuckDB. The fresh run at the later date is the
session's shared demo warehouse (same seed, scale, as_of and sources): the test checks that a
fresh demo prepares exactly its world.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import _background
import duckdb
import pytest
from _warehouse_fixture import AS_OF, SCALE, SEED, build_marts
from cxloop import pipeline
from cxloop.config import Settings, source_from_env
from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.demo.run import DemoOptions, demo_source_env, prepare, read_world_record
from cxloop.demo.server import DemoServer
from cxloop.serve.exports import MARTS
from cxloop.source_config import DOMAINS, load_source_config

EARLIER = datetime(2026, 4, 1)
# per-batch bookkeeping, not the world: batch ids and check times differ between any two runs
BATCH_MARTS = {"data_quality"}


def tree_digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def demo_pass(settings: Settings, options: DemoOptions, *, marts: bool) -> dict:
    """What one `cxloop demo` invocation does, with the DAGs' steps called directly."""
    plan = prepare(settings, options)
    token = "demo-keep-token"
    reports = {}
    with DemoServer(settings.demo_dir / "source", token=token) as base_url, pytest.MonkeyPatch.context() as mp:
        env = demo_source_env(settings, base_url, token, plan.crm, plan.survey, as_of=plan.as_of)
        for key, value in env.items():
            mp.setenv(key, value)
        config = load_source_config()
        for domain in ("crm", "survey"):
            source = source_from_env(config.source_for(domain))
            batch = pipeline.extract(source, settings, plan.as_of, entities=DOMAINS[domain], config=config)
            reports[domain] = pipeline.validate_and_load([batch], settings, plan.as_of)
    if marts:
        build_marts(settings, plan.as_of)
    return {"plan": plan, "reports": reports, "world": tree_digest(settings.demo_dir / "source")}


def raw_rows(path) -> dict[str, list]:
    con = duckdb.connect(str(path))  # the pipeline's configuration: dbt, run in this process, may hold the file
    try:
        return {
            e: con.execute(f"select {', '.join(ENTITIES[e].column_names)} from raw.{e} order by all").fetchall()
            for e in ENTITY_ORDER
        }
    finally:
        con.close()


def mart_rows(path) -> dict[str, list]:
    con = duckdb.connect(str(path))
    try:
        marts = [m for m in MARTS if m not in BATCH_MARTS]
        return {m: con.execute(f"select * from marts.{m} order by all").fetchall() for m in marts}
    finally:
        con.close()


@pytest.fixture(scope="module")
def kept():
    return _background.result("kept")


@_background.prestart("kept")
def _kept(_param=None):
    """`cxloop demo --as-of EARLIER` then `cxloop demo --keep --as-of AS_OF` into one warehouse
    (in a background process while other tests run: tests/_background.py)."""
    settings = Settings.from_env({"CXLOOP_VAR": str(_background.workdir("demo-keep"))})
    # (no dbt build after the first: the marts of the end state are the subject, and a build costs ~17 s)
    first = demo_pass(settings, DemoOptions(seed=SEED, scale=SCALE, as_of=EARLIER.isoformat()), marts=False)
    after_first = raw_rows(settings.warehouse_path)
    second = demo_pass(settings, DemoOptions(seed=SEED, scale=SCALE, as_of=AS_OF.isoformat(), keep=True), marts=True)
    return settings, first, after_first, second


def test_keep_replays_the_same_world(kept):
    settings, first, after_first, second = kept
    assert first["world"] == second["world"]  # the second invocation did not regenerate
    assert first["plan"].horizon == second["plan"].horizon == AS_OF
    record = read_world_record(settings)
    assert [r["as_of"] for r in record["runs"]] == [EARLIER.isoformat(), AS_OF.isoformat()]
    # every response and follow-up of the first run is still there, unchanged, after the second
    final = raw_rows(settings.warehouse_path)
    for entity in ("responses", "follow_ups", "invitations"):
        assert after_first[entity], entity
        assert set(after_first[entity]) <= set(final[entity]), entity
    # the first run saw nothing of the world after its as_of
    from cxloop.extract.registry import CURSOR_COLUMNS

    for entity, column in CURSOR_COLUMNS.items():
        at = ENTITIES[entity].column_names.index(column)
        assert all(r[at] is None or r[at] < EARLIER for r in after_first[entity]), entity
        if entity != "owners":  # a handful of owners, all changed long before
            assert any(r[at] is not None and r[at] >= EARLIER for r in final[entity]), entity


def test_keep_runs_end_where_one_fresh_run_ends(kept, demo_warehouse, tmp_path):
    settings, _, _, _ = kept
    # a fresh demo at AS_OF prepares exactly the world of the session's demo warehouse ...
    fresh = Settings.from_env({"CXLOOP_VAR": str(tmp_path)})
    plan = prepare(fresh, DemoOptions(seed=SEED, scale=SCALE, as_of=AS_OF.isoformat()))
    assert plan.horizon == demo_warehouse.as_of
    assert tree_digest(fresh.demo_dir / "source") == tree_digest(demo_warehouse.source_dir)
    # ... and the two kept runs end with its raw tables and its marts
    from _warehouse_fixture import warehouse_copy

    copy = warehouse_copy(demo_warehouse, tmp_path / "shared-copy")
    assert raw_rows(settings.warehouse_path) == raw_rows(copy.warehouse_path)
    got, want = mart_rows(settings.warehouse_path), mart_rows(copy.warehouse_path)
    assert all(want[m] for m in want), [m for m in want if not want[m]]
    assert {m: len(r) for m, r in got.items()} == {m: len(r) for m, r in want.items()}
    assert [m for m in want if got[m] != want[m]] == []
