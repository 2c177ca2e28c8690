"""The Postgres raw layer (cxloop.store.postgres_store) against a real server.

Every test runs in a throwaway database created for this module and dropped at its end; the
raw and marts schemas are reset before each test. Skipped, with the reason, only when no
Postgres server is reachable (CXLOOP_PG_HOST/PORT/USER/PASSWORD, default 127.0.0.1:5432 as
postgres).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import psycopg2.extensions
import pytest
from cxloop.config import Settings
from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.gate.outcome import ValidationOutcome
from cxloop.gate.validation import validate_batch
from cxloop.store import duckdb_store as duck_wh
from cxloop.store import postgres_store as wh
from cxloop.store.base import QUARANTINE_COLUMNS, RESULT_COLUMNS

DATA = Path(__file__).resolve().parents[1] / "data"
CLEAN = json.loads((DATA / "bad_inputs" / "clean_batch.json").read_text(encoding="utf-8"))
AS_OF = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)
EXTRACTED = dt.datetime(2025, 6, 30, 1, 0, tzinfo=dt.UTC)
TABLES = [*ENTITY_ORDER, "quarantine", "validation_results", "batches"]
PG_ENV = {
    k: os.environ[k]
    for k in ("CXLOOP_PG_HOST", "CXLOOP_PG_PORT", "CXLOOP_PG_USER", "CXLOOP_PG_PASSWORD")
    if os.environ.get(k)
}


def dsn_for(dbname: str) -> str:
    return Settings.from_env({**PG_ENV, "CXLOOP_PG_DBNAME": dbname}).pg_dsn()


def admin() -> psycopg2.extensions.connection:
    con = psycopg2.connect(dsn_for("postgres"), connect_timeout=3)
    con.autocommit = True
    return con


@pytest.fixture(scope="module")
def dbname():
    try:
        admin().close()
    except psycopg2.OperationalError as exc:
        where = dsn_for("postgres").replace(" password=" + PG_ENV.get("CXLOOP_PG_PASSWORD", "\0"), " password=***")
        pytest.skip(f"no PostgreSQL reachable ({where}): {str(exc).strip()}")
    name = f"cx_test_wh_{uuid.uuid4().hex[:10]}"
    assert wh.ensure_database(dsn_for(name)) is True
    assert wh.ensure_database(dsn_for(name)) is False  # idempotent
    roles: list[str] = []
    yield name, roles
    a = admin()
    with a.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        for role in roles:  # their privileges lived only in the dropped database
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    a.close()


@pytest.fixture
def con(dbname):
    c = wh.connect(dsn_for(dbname[0]))
    with c.cursor() as cur:
        for schema in ("raw", "marts", "staging"):
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    wh.ensure_raw_schema(c)
    yield c
    c.close()


@pytest.fixture
def bi_role(dbname):
    role = f"cx_bi_test_{uuid.uuid4().hex[:8]}"
    dbname[1].append(role)
    return role


def rows():
    return copy.deepcopy(CLEAN["frames"])


def outcome(r, batch_id="b1", con=None, **kw):
    frames = {e: pd.DataFrame(v, dtype=object) for e, v in r.items()}
    known = wh.known_keys(con) if con is not None else None
    return validate_batch(frames, batch_id=batch_id, source="demo", as_of=AS_OF, known_keys=known, **kw)


def fetch(con, query, params=None):
    with con.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def snapshot(con):
    return {t: sorted(fetch(con, f"SELECT * FROM raw.{t}"), key=repr) for t in TABLES}


# ------------------------------------------------------------------------------- schema


def test_schema_has_contract_columns_types_lineage_and_primary_keys(con):
    for name in ENTITY_ORDER:
        cols = fetch(
            con,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema='raw' AND table_name=%s ORDER BY ordinal_position",
            (name,),
        )
        assert [c[0] for c in cols] == ENTITIES[name].column_names + [c.name for c in LINEAGE_COLUMNS]
        pk = fetch(
            con,
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f"raw.{name}",),
        )
        assert pk == [(ENTITIES[name].primary_key,)]
    types = dict(
        fetch(con, "SELECT column_name, data_type FROM information_schema.columns WHERE table_name='accounts'")
    )
    assert types["arr"] == "double precision" and types["renewal_date"] == "date"
    assert types["updated_at"] == "timestamp without time zone" and types["is_active"] == "boolean"
    assert types["_extracted_at"] == "timestamp without time zone"
    wh.ensure_raw_schema(con)  # idempotent


# ------------------------------------------------------------------------------- loading


def test_clean_batch_loads_fully(con, tmp_path):
    out = outcome(rows(), con=con)
    counts = wh.load_outcome(con, out, extracted_at=EXTRACTED, quarantine_dir=tmp_path / "q")
    for name in ENTITY_ORDER:
        n = fetch(con, f"SELECT count(*) FROM raw.{name}")[0][0]
        assert n == len(CLEAN["frames"][name]) == counts[name]["loaded"]
    assert fetch(con, "SELECT DISTINCT _batch_id, _source, _extracted_at FROM raw.responses") == [
        ("b1", "demo", dt.datetime(2025, 6, 30, 1, 0))
    ]
    batches = fetch(con, "SELECT entity, received, loaded, quarantined FROM raw.batches ORDER BY entity")
    assert len(batches) == len(CLEAN["frames"]) == len(ENTITY_ORDER)
    assert all(r[1] == r[2] and r[3] == 0 for r in batches)
    assert fetch(con, "SELECT count(*) FROM raw.validation_results")[0][0] == len(out.results)
    assert (tmp_path / "q" / "quarantine_b1.parquet").exists()
    assert fetch(con, "SELECT renewal_date, arr FROM raw.accounts WHERE account_id = '001A'") == [
        (dt.date(2025, 9, 30), 120000.5)
    ]


def test_loading_the_same_batch_twice_is_idempotent(con):
    r = rows()
    r["responses"][1]["nps_score"] = 11  # one quarantined row
    out = outcome(r, con=con)
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    before = snapshot(con)
    assert len(before["quarantine"]) == 1
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert snapshot(con) == before  # including _loaded_at / loaded_at of the first load


def test_newer_extraction_wins_and_a_late_older_batch_does_not_overwrite(con):
    wh.load_outcome(con, outcome(rows(), batch_id="b1", con=con), extracted_at=EXTRACTED)
    r = rows()
    r["responses"][0]["nps_score"] = 8
    wh.load_outcome(
        con,
        outcome({"responses": r["responses"]}, batch_id="b2", con=con),
        extracted_at=EXTRACTED + dt.timedelta(days=1),
    )
    assert fetch(con, "SELECT count(*) FROM raw.responses")[0][0] == 3
    assert fetch(con, "SELECT nps_score, _batch_id FROM raw.responses WHERE response_id='R_1'") == [(8, "b2")]
    r["responses"][0]["nps_score"] = 0
    wh.load_outcome(con, outcome({"responses": r["responses"]}, batch_id="b0", con=con), extracted_at=EXTRACTED)
    assert fetch(con, "SELECT nps_score, _batch_id FROM raw.responses WHERE response_id='R_1'") == [(8, "b2")]
    assert fetch(con, "SELECT _batch_id, count(*) FROM raw.responses GROUP BY 1") == [("b2", 3)]
    # ... but it is still recorded as loaded (its bookkeeping rows exist)
    assert fetch(con, "SELECT count(*) FROM raw.batches WHERE batch_id = 'b0'") == [(1,)]


def test_quarantine_results_and_batches_rows(con, tmp_path):
    r = rows()
    r["responses"][1]["nps_score"] = "7.5"
    out = outcome(r, con=con, origin={"responses": "responses.parquet"})
    wh.load_outcome(con, out, extracted_at=EXTRACTED, quarantine_dir=tmp_path)
    q = fetch(con, "SELECT batch_id, source, entity, primary_key, row_number, field, reason FROM raw.quarantine")
    assert q == [
        (
            "b1",
            "demo",
            "responses",
            "R_2",
            2,
            "nps_score",
            "responses.parquet row 2 field nps_score: '7.5' is not an integer 0-10",
        )
    ]
    assert pd.read_parquet(tmp_path / "quarantine_b1.parquet").reason.tolist() == [q[0][6]]
    assert fetch(con, "SELECT received, loaded, quarantined FROM raw.batches WHERE entity='responses'") == [(3, 2, 1)]
    assert fetch(con, "SELECT count(*) FROM raw.responses")[0][0] == 2
    got = pd.DataFrame(fetch(con, "SELECT * FROM raw.validation_results"), columns=RESULT_COLUMNS)
    want = out.results.reindex(columns=RESULT_COLUMNS)
    key = ["entity", "expectation", "column"]
    got = got.sort_values(key, na_position="first").reset_index(drop=True)
    want = want.sort_values(key, na_position="first").reset_index(drop=True)
    assert got["success"].tolist() == want["success"].astype(bool).tolist()
    assert got["unexpected_count"].tolist() == want["unexpected_count"].astype(int).tolist()
    assert got["column"].isna().tolist() == want["column"].isna().tolist()
    # a reload of only the responses part replaces that entity's bookkeeping, nothing else
    others = fetch(con, "SELECT count(*) FROM raw.validation_results WHERE entity <> 'responses'")
    part = outcome({"responses": rows()["responses"]}, batch_id="b1", con=con)
    wh.load_outcome(con, part, extracted_at=EXTRACTED)
    assert fetch(con, "SELECT count(*) FROM raw.quarantine") == [(0,)]
    assert fetch(con, "SELECT count(*) FROM raw.batches") == [(len(ENTITY_ORDER),)]
    assert fetch(con, "SELECT received, loaded, quarantined FROM raw.batches WHERE entity='responses'") == [(3, 3, 0)]
    assert fetch(con, "SELECT count(*) FROM raw.validation_results WHERE entity <> 'responses'") == others
    assert fetch(con, "SELECT count(*) FROM raw.validation_results WHERE entity = 'responses'") == [
        (len(part.results),)
    ]


def test_known_keys_and_sent_at_feed_the_next_batch(con):
    wh.load_outcome(con, outcome(rows(), con=con), extracted_at=EXTRACTED)
    keys = wh.known_keys(con)
    assert set(keys) == set(ENTITY_ORDER)
    assert keys["invitations"] == {"EMD_1:CID_A", "EMD_1:CID_B", "EMD_2:CID_C"}
    sent = wh.known_invitation_sent_at(con)
    assert sent["EMD_1:CID_A"] == dt.datetime(2025, 3, 1, 9, 0)
    r = rows()["responses"]
    r[1]["recorded_at"] = "2025-02-01T00:00:00Z"
    r.append(dict(r[0], response_id="R_9", invitation_id="EMD_404"))
    q = outcome({"responses": r}, batch_id="b2", con=con, known_sent_at=sent).quarantine
    assert set(zip(q.row_number, q.field, strict=True)) == {(2, "recorded_at"), (4, "invitation_id")}
    assert (
        fetch(
            con,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE state = 'idle in transaction' AND datname = current_database()",
        )[0][0]
        == 0
    )


def test_awkward_strings_and_floats_round_trip_exactly_like_duckdb(con, tmp_path):
    """COPY CSV: quotes, commas, newlines, backslashes, a literal \\N, NUL-free unicode, and the
    empty string all arrive verbatim; floats are bit-identical; the raw layer equals DuckDB's."""
    r = rows()
    evil = 'Robert\'); DROP TABLE raw.owners;-- "x", ü\nline2\\N\t\\'
    r["owners"][0]["owner_name"] = evil
    r["owners"][1]["team"] = "\\N"
    r["accounts"][0]["account_name"] = "'; DELETE FROM raw.accounts; --"
    r["accounts"][0]["arr"] = 0.1 + 0.2
    r["accounts"][1]["arr"] = 1e-300
    out = outcome(r, con=con)
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert fetch(con, "SELECT owner_name FROM raw.owners WHERE owner_id='005A'") == [(evil,)]
    assert fetch(con, "SELECT team FROM raw.owners WHERE owner_id='005B'") == [("\\N",)]
    assert fetch(con, "SELECT arr FROM raw.accounts ORDER BY account_id") == [(0.1 + 0.2,), (1e-300,)]
    d = duck_wh.connect(tmp_path / "cx.duckdb")
    duck_wh.load_outcome(d, out, extracted_at=EXTRACTED)
    for name in ENTITY_ORDER:
        cols = ", ".join(f'"{c}"' for c in ENTITIES[name].column_names + ["_batch_id", "_source", "_extracted_at"])
        mine = sorted(fetch(con, f"SELECT {cols} FROM raw.{name}"), key=repr)
        theirs = sorted(d.execute(f"SELECT {cols} FROM raw.{name}").fetchall(), key=repr)
        assert mine == theirs, name
    d.close()


def test_a_failed_load_leaves_nothing_behind(con):
    out = outcome(rows(), con=con)
    out.valid["responses"] = pd.concat([out.valid["responses"], out.valid["responses"].head(1)])
    with pytest.raises(ValueError):
        wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert all(len(v) == 0 for v in snapshot(con).values())
    # a failure inside the database (NOT NULL lineage) rolls back too, and the connection is usable
    out = outcome(rows(), con=con)
    with pytest.raises(psycopg2.errors.NotNullViolation):
        wh.load_outcome(con, _with_null_quarantine_row(out), extracted_at=EXTRACTED)
    assert all(len(v) == 0 for v in snapshot(con).values())
    wh.load_outcome(con, out, extracted_at=EXTRACTED)
    assert fetch(con, "SELECT count(*) FROM raw.owners") == [(2,)]


def _with_null_quarantine_row(out: ValidationOutcome) -> ValidationOutcome:
    bad = copy.copy(out)
    bad.quarantine = pd.DataFrame([dict.fromkeys(QUARANTINE_COLUMNS)], columns=QUARANTINE_COLUMNS)
    bad.quarantine["row_number"] = 1
    return bad


# ------------------------------------------------------------------------------- COPY


class RecordingCursor(psycopg2.extensions.cursor):
    log: list[str] = []

    def execute(self, query, vars=None):  # noqa: A002
        RecordingCursor.log.append(query if isinstance(query, str) else query.as_string(self))
        return super().execute(query, vars)

    def copy_expert(self, sql, file, size=8192):
        RecordingCursor.log.append(sql)
        return super().copy_expert(sql, file, size)


def synthetic_responses(n: int, seed: int = 7) -> pd.DataFrame:
    """n valid responses rows with the gate's output dtypes."""
    rng = np.random.default_rng(seed)
    ids = pd.array([f"R_{i:07d}" for i in range(n)], dtype="string")
    recorded = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 180 * 86400, n), unit="s")
    return pd.DataFrame(
        {
            "response_id": ids,
            "invitation_id": pd.array([f"EMD_{i % 97}:CID_{i}" for i in range(n)], dtype="string"),
            "survey_id": pd.array(["SV_rel"] * n, dtype="string"),
            "contact_id": pd.array([f"003{i:07d}" for i in range(n)], dtype="string"),
            "account_id": pd.array([f"001{i % 500:05d}" for i in range(n)], dtype="string"),
            "recorded_at": pd.Series(recorded).astype("datetime64[us]"),
            "nps_score": pd.array(np.where(rng.random(n) < 0.05, -1, rng.integers(0, 11, n)), dtype="Int64"),
            "is_finished": pd.array(rng.random(n) < 0.9, dtype="boolean"),
            "has_comment": pd.array(rng.random(n) < 0.3, dtype="boolean"),
        }
    ).assign(nps_score=lambda f: f["nps_score"].mask(f["nps_score"] < 0))


def bulk_outcome(frame: pd.DataFrame, batch_id: str) -> ValidationOutcome:
    now = dt.datetime(2025, 6, 30)
    results = pd.DataFrame(
        [[batch_id, "demo", "responses", "expect_x", "nps_score", "error", True, len(frame), 0, now]],
        columns=RESULT_COLUMNS,
    )
    n = len(frame)
    return ValidationOutcome(
        batch_id=batch_id,
        source="demo",
        as_of=now,
        checked_at=now,
        valid={"responses": frame},
        quarantine=pd.DataFrame(columns=QUARANTINE_COLUMNS),
        results=results,
        counts={"responses": {"received": n, "loaded": n, "quarantined": 0}},
        warnings=pd.DataFrame(columns=QUARANTINE_COLUMNS),
    )


def test_bulk_load_uses_copy_never_row_inserts_and_reports_throughput(con, dbname, record_property):
    n = 100_000
    frame = synthetic_responses(n)
    rec = psycopg2.connect(dsn_for(dbname[0]), cursor_factory=RecordingCursor)
    rec.autocommit = True
    RecordingCursor.log = []
    t0 = time.perf_counter()
    wh.load_outcome(rec, bulk_outcome(frame, "bulk1"), extracted_at=EXTRACTED)
    first = time.perf_counter() - t0
    statements = list(RecordingCursor.log)
    RecordingCursor.log = []
    t0 = time.perf_counter()  # every key already stored: delete + insert of all 100k rows
    wh.load_outcome(rec, bulk_outcome(frame, "bulk2"), extracted_at=EXTRACTED + dt.timedelta(hours=1))
    merge = time.perf_counter() - t0
    rec.close()

    assert fetch(con, "SELECT count(*), count(DISTINCT _batch_id), count(nps_score) FROM raw.responses") == [
        (n, 1, int(frame["nps_score"].notna().sum()))
    ]
    got = pd.DataFrame(
        fetch(con, "SELECT response_id, recorded_at, nps_score FROM raw.responses ORDER BY response_id"),
        columns=["response_id", "recorded_at", "nps_score"],
    )
    assert got["recorded_at"].astype("datetime64[us]").tolist() == frame["recorded_at"].tolist()
    assert got["nps_score"].astype("Int64").equals(frame["nps_score"].reset_index(drop=True))

    copies = [s for s in statements if re.match(r"\s*COPY\b", s)]
    assert any('COPY "_cx_stage_responses"' in s and "FROM STDIN" in s for s in copies)
    assert any(s.startswith("COPY raw.validation_results") for s in copies)
    assert any(s.startswith("COPY raw.batches") for s in copies)
    assert not [s for s in statements if re.search(r"\bVALUES\b", s, re.I)], "row-wise INSERT ... VALUES issued"
    inserts = [s for s in statements if re.match(r"\s*INSERT\b", s, re.I)]
    assert inserts and all("SELECT" in s and 'FROM "_cx_stage_' in s for s in inserts)  # set-based merge only
    assert len(statements) < 40, f"statement count must not grow with rows: {len(statements)}"

    rate, merge_rate = n / first, n / merge
    record_property("copy_rows_per_s", round(rate))
    record_property("merge_rows_per_s", round(merge_rate))
    print(
        f"COPY load: {n} rows in {first:.2f}s = {rate:,.0f} rows/s; "
        f"full re-merge {merge:.2f}s = {merge_rate:,.0f} rows/s"
    )
    assert rate > 5_000, f"{rate:.0f} rows/s is far below what COPY delivers"


# ------------------------------------------------------------------------------- BI role


def _as_role(con, role):
    cur = con.cursor()
    cur.execute(f'SET ROLE "{role}"')
    return cur


def _make_mart(con, name="account_nps"):
    with con.cursor() as cur:
        cur.execute("CREATE SCHEMA IF NOT EXISTS marts")
        cur.execute("CREATE SCHEMA IF NOT EXISTS staging")
        cur.execute(f"CREATE TABLE marts.{name} AS SELECT 'A1'::text AS account_id, 42.0::float8 AS nps")
        cur.execute("CREATE OR REPLACE VIEW staging.stg_crm__owners AS SELECT * FROM raw.owners")


def test_bi_role_reads_marts_and_is_denied_raw_and_staging(con, bi_role):
    wh.load_outcome(con, outcome(rows(), con=con), extracted_at=EXTRACTED)
    _make_mart(con)
    assert wh.ensure_bi_role(con, bi_role) == bi_role
    assert fetch(
        con,
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname=%s",
        (bi_role,),
    ) == [(False, False, False, False)]
    cur = _as_role(con, bi_role)
    cur.execute("SELECT account_id, nps FROM marts.account_nps")
    assert cur.fetchall() == [("A1", 42.0)]
    for relation in (
        "raw.responses",
        "raw.owners",
        "raw.contacts",
        "raw.quarantine",
        "staging.stg_crm__owners",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="permission denied"):
            cur.execute(f"SELECT * FROM {relation} LIMIT 1")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("INSERT INTO marts.account_nps VALUES ('x', 1)")  # read-only
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("CREATE TABLE marts.mine (x int)")
    cur.execute("RESET ROLE")
    cur.close()


def test_bi_role_keeps_access_when_dbt_recreates_a_mart(con, bi_role):
    """dbt-postgres builds a table as <name>__dbt_tmp, renames the old one away, renames the
    new one in and drops the old: default privileges cover the new table without re-granting."""
    _make_mart(con)
    wh.ensure_bi_role(con, bi_role)
    with con.cursor() as cur:
        cur.execute("CREATE TABLE marts.account_nps__dbt_tmp AS SELECT 'A2'::text AS account_id, 7.0::float8 AS nps")
        cur.execute("ALTER TABLE marts.account_nps RENAME TO account_nps__dbt_backup")
        cur.execute("ALTER TABLE marts.account_nps__dbt_tmp RENAME TO account_nps")
        cur.execute("DROP TABLE marts.account_nps__dbt_backup")
        cur.execute("CREATE TABLE marts.brand_new_mart AS SELECT 1 AS x")
    cur = _as_role(con, bi_role)
    cur.execute("SELECT account_id FROM marts.account_nps")
    assert cur.fetchall() == [("A2",)]
    cur.execute("SELECT x FROM marts.brand_new_mart")
    assert cur.fetchall() == [(1,)]
    cur.execute("RESET ROLE")
    # a table created by another role is not covered by the default privileges; after the
    # pipeline calls grant_bi_access it is
    other = f"{bi_role}_owner"
    with con.cursor() as c:
        c.execute(f'CREATE ROLE "{other}" NOLOGIN')
        c.execute(f'GRANT CREATE, USAGE ON SCHEMA marts TO "{other}"')
        c.execute(f'SET ROLE "{other}"')
        c.execute("CREATE TABLE marts.foreign_made AS SELECT 1 AS x")
        c.execute("RESET ROLE")
    try:
        cur.execute(f'SET ROLE "{bi_role}"')
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT x FROM marts.foreign_made")
        cur.execute("RESET ROLE")
        wh.grant_bi_access(con, bi_role)
        cur.execute(f'SET ROLE "{bi_role}"')
        cur.execute("SELECT x FROM marts.foreign_made")
        assert cur.fetchall() == [(1,)]
        cur.execute("RESET ROLE")
    finally:
        with con.cursor() as c:
            c.execute("DROP TABLE marts.foreign_made")
            c.execute(f'REVOKE ALL ON SCHEMA marts FROM "{other}"')
            c.execute(f'DROP ROLE "{other}"')
    cur.close()


def test_grant_bi_access_is_idempotent_revokes_stray_grants_and_creates_a_missing_role(con, bi_role):
    _make_mart(con)
    assert wh.grant_bi_access(con, bi_role) == bi_role  # role did not exist: created
    with con.cursor() as c:  # someone grants too much by hand
        c.execute(f'GRANT USAGE ON SCHEMA raw TO "{bi_role}"')
        c.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA raw TO "{bi_role}"')
    wh.grant_bi_access(con, bi_role)
    wh.grant_bi_access(con, bi_role)
    cur = _as_role(con, bi_role)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute("SELECT * FROM raw.contacts")
    cur.execute("SELECT count(*) FROM marts.account_nps")
    assert cur.fetchone() == (1,)
    cur.execute("RESET ROLE")
    cur.close()
    assert fetch(
        con,
        "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = %s AND table_schema <> 'marts'",
        (bi_role,),
    ) == [(0,)]


def test_bi_role_logs_in_only_with_a_password_from_the_environment(con, dbname, bi_role, monkeypatch):
    _make_mart(con)
    monkeypatch.setenv(wh.BI_PASSWORD_ENV, "from-env-only")
    wh.ensure_bi_role(con, bi_role)
    assert fetch(con, "SELECT rolcanlogin FROM pg_roles WHERE rolname=%s", (bi_role,)) == [(True,)]
    assert fetch(con, "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname=%s", (bi_role,)) == [(True,)]
    bi = psycopg2.connect(
        Settings.from_env(
            {
                **PG_ENV,
                "CXLOOP_PG_USER": bi_role,
                "CXLOOP_PG_PASSWORD": "from-env-only",
                "CXLOOP_PG_DBNAME": dbname[0],
            }
        ).pg_dsn()
    )
    try:
        with bi.cursor() as cur:
            cur.execute("SELECT current_user, count(*) FROM marts.account_nps")
            assert cur.fetchone() == (bi_role, 1)
    finally:
        bi.close()
    monkeypatch.delenv(wh.BI_PASSWORD_ENV)
    wh.ensure_bi_role(con, bi_role)  # no password configured: back to NOLOGIN
    assert fetch(con, "SELECT rolcanlogin FROM pg_roles WHERE rolname=%s", (bi_role,)) == [(False,)]


def test_connect_creates_a_missing_database(dbname):
    name = f"{dbname[0]}_auto"
    try:
        c = wh.connect(dsn_for(name))
        assert c.get_dsn_parameters()["dbname"] == name
        c.close()
        with pytest.raises(psycopg2.OperationalError):
            wh.connect(dsn_for(name + "_no"), create_database=False)
    finally:
        a = admin()
        with a.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        a.close()
