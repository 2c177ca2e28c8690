"""Parity: the same landed batches built on DuckDB and on Postgres give identical marts.

Demo data is generated and served by the demo HTTP server, extracted once per source, then
gated, loaded and built with dbt twice from the same landed batches: into a DuckDB file (the
session's demo warehouse, shared with the serving tests) and into a throwaway Postgres
database (created and dropped by this module). Every mart is then
compared value by value (rows sorted by the mart's key; floats within 1e-9 relative).

Skipped, with the reason, only when no Postgres server is reachable (CXLOOP_PG_HOST/PORT/
USER/PASSWORD, default 127.0.0.1:5432 as postgres).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import uuid

import duckdb
import pandas as pd
import psycopg2
import pytest
from _mart_compare import MART_GRAIN, sorted_rows
from cxloop import pipeline
from cxloop.config import Settings
from cxloop.serve.exports import MARTS
from cxloop.store import postgres_store as pg

pytestmark = pytest.mark.e2e

AS_OF = dt.datetime(2026, 10, 1)  # the shared demo warehouse's (seed 11, scale 0.2)
REL_TOL = 1e-9

# Columns that legitimately differ between two loads: the gate stamps checked_at with the
# wall-clock time it validated the batch, and each target validates it separately.
RUN_DEPENDENT = {"data_quality": {"checked_at"}}

PG_ENV = {
    k: os.environ[k]
    for k in ("CXLOOP_PG_HOST", "CXLOOP_PG_PORT", "CXLOOP_PG_USER", "CXLOOP_PG_PASSWORD")
    if os.environ.get(k)
}
# the project under test (both targets build the same one); overridable like in the pipeline
PROJECT_ENV = {k: os.environ[k] for k in ("CXLOOP_DBT_PROJECT", "CXLOOP_EXPECTATIONS") if os.environ.get(k)}


def _admin_dsn(dbname: str = "postgres") -> str:
    return Settings.from_env({**PG_ENV, "CXLOOP_PG_DBNAME": dbname}).pg_dsn()


def _postgres_or_skip() -> None:
    try:
        psycopg2.connect(_admin_dsn(), connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        where = _admin_dsn().replace(" password=" + PG_ENV.get("CXLOOP_PG_PASSWORD", "\0"), " password=***")
        pytest.skip(f"no PostgreSQL reachable ({where}): {str(exc).strip()}")


def _drop_database(dbname: str) -> None:
    admin = psycopg2.connect(_admin_dsn())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    admin.close()


@pytest.fixture(scope="module")
def built(demo_warehouse, tmp_path_factory):
    """The DuckDB side is the session's demo warehouse (tests/_warehouse_fixture.py: generated,
    extracted once over HTTP, gated, loaded and built); its landed batches are gated, loaded and
    built again into a throwaway Postgres database."""
    _postgres_or_skip()
    shared = demo_warehouse
    assert shared.as_of == AS_OF
    root = tmp_path_factory.mktemp("parity")
    dbname = f"cx_parity_{uuid.uuid4().hex[:10]}"
    role = f"cx_bi_parity_{uuid.uuid4().hex[:6]}"
    duck = shared.settings
    post = Settings.from_env(
        {
            **PROJECT_ENV,
            **PG_ENV,
            "CXLOOP_VAR": str(root / "var_postgres"),
            "CXLOOP_TARGET": "postgres",
            "CXLOOP_PG_DBNAME": dbname,
        }
    )
    batches = shared.batches
    timings: dict[str, float] = {
        "extract": shared.timings["extract"],
        "duckdb_load": shared.timings["load"],
        "duckdb_build": shared.timings["build"],
    }
    try:
        assert shared.build_report["success"], shared.build_report
        assert shared.load_report["batch_ids"] == sorted(b["batch_id"] for b in batches)
        # the BI role exists before dbt creates the marts: default privileges must cover them
        con = pg.connect(post.pg_dsn())
        pg.ensure_bi_role(con, role)
        con.close()
        t0 = time.perf_counter()
        loaded = pipeline.validate_and_load(batches, post, AS_OF)
        timings["postgres_load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        build = pipeline.build(post, AS_OF)
        timings["postgres_build"] = time.perf_counter() - t0
        assert build["success"], build
        assert loaded["batch_ids"] == sorted(b["batch_id"] for b in batches)
        yield {
            "duckdb": duck,
            "postgres": post,
            "role": role,
            "timings": timings,
            "batches": batches,
            "truth": shared.source_dir.parent / "truth",
        }
    finally:
        _drop_database(dbname)
        admin = psycopg2.connect(_admin_dsn())
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


def _read_marts_duckdb(settings: Settings) -> dict[str, pd.DataFrame]:
    # not read_only: dbt-duckdb may still hold the file open in this process, and DuckDB
    # refuses a second connection with another configuration
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        return {m: con.execute(f"SELECT * FROM marts.{m}").df() for m in MARTS}
    finally:
        con.close()


def _read_marts_postgres(settings: Settings) -> dict[str, pd.DataFrame]:
    con = pg.connect(settings.pg_dsn(), create_database=False)
    try:
        out = {}
        with con.cursor() as cur:
            for m in MARTS:
                cur.execute(f"SELECT * FROM marts.{m}")
                out[m] = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
        return out
    finally:
        con.close()


def _same(a, b) -> tuple[bool, float]:
    """Equal (floats within REL_TOL relative) and the relative float difference."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b, 0.0
        if math.isinf(a) or math.isinf(b):
            return a == b, 0.0
        diff = abs(a - b) / max(abs(a), abs(b), 1e-300) if a != b else 0.0
        return diff <= REL_TOL or abs(a - b) <= 1e-12, diff
    return a == b, 0.0


@pytest.fixture(scope="module")
def marts(built):
    return _read_marts_duckdb(built["duckdb"]), _read_marts_postgres(built["postgres"])


@pytest.mark.parametrize("mart", MARTS)
def test_mart_values_identical_on_duckdb_and_postgres(marts, mart, record_property):
    duck, post = marts
    d, p = duck[mart], post[mart]
    assert list(d.columns) == list(p.columns), f"{mart}: column order/names differ"
    assert len(d) == len(p), f"{mart}: {len(d)} rows on DuckDB, {len(p)} on Postgres"
    keys = MART_GRAIN[mart]
    skip = RUN_DEPENDENT.get(mart, set())
    dr, pr = sorted_rows(d, keys), sorted_rows(p, keys)
    assert len({tuple(r[k] for k in keys) for r in dr}) == len(dr), f"{mart}: key {keys} not unique"
    max_diff = 0.0
    mismatches = []
    for i, (a, b) in enumerate(zip(dr, pr, strict=True)):
        for c in d.columns:
            if c in skip:
                continue
            ok, diff = _same(a[c], b[c])
            max_diff = max(max_diff, diff)
            if not ok:
                mismatches.append(f"row {i} {[a[k] for k in keys]} {c}: duckdb={a[c]!r} postgres={b[c]!r}")
    record_property("rows", len(d))
    record_property("max_rel_float_diff", max_diff)
    print(f"parity {mart}: {len(d)} rows, max relative float difference {max_diff:.3g}")
    assert not mismatches, f"{mart}: {len(mismatches)} differing values, first: " + "; ".join(mismatches[:10])


def test_every_mart_has_rows(marts):
    duck, _ = marts
    empty = [m for m in MARTS if duck[m].empty]
    assert not empty, f"marts without rows make the parity check vacuous: {empty}"


def test_bi_role_reads_marts_built_by_dbt_and_nothing_else(built):
    """dbt created the marts after the role existed: default privileges cover them, and the
    role gets permission denied on raw, staging, intermediate and seeds."""
    con = pg.connect(built["postgres"].pg_dsn(), create_database=False)
    try:
        with con.cursor() as cur:
            cur.execute(f'SET ROLE "{built["role"]}"')
            for m in MARTS:
                cur.execute(f"SELECT count(*) FROM marts.{m}")
                assert cur.fetchone()[0] >= 0
            for relation in (
                "raw.responses",
                "raw.contacts",
                "staging.stg_crm__contacts",
                "intermediate.int_responses_enriched",
                "seeds.role_weights",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(f"SELECT 1 FROM {relation} LIMIT 1")
            cur.execute("RESET ROLE")
    finally:
        con.close()


def test_report_timings(built):
    print("parity timings (s): " + ", ".join(f"{k}={v:.1f}" for k, v in built["timings"].items()))


@pytest.mark.parametrize(
    "mart",
    ["account_nps", "portfolio_nps", "contact_coverage", "response_rate", "follow_up_sla", "revenue_at_risk",
     "nps_renewal_outcomes", "account_team_worklist"],
)  # fmt: skip
def test_postgres_marts_equal_independent_computation(built, marts, mart):
    """The Postgres marts against the oracle computed from the generator's truth tables."""
    import oracle
    from _mart_compare import compare_with_oracle
    from cxloop.contract import ENTITY_ORDER

    tables = {e: pd.read_parquet(built["truth"] / f"{e}.parquet") for e in ENTITY_ORDER}
    compare_with_oracle(mart, marts[1][mart], oracle.compute_marts(tables, AS_OF)[mart])
