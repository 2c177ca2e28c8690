"""cxloop's dbt project installed as a dbt package in another dbt project (docs/dbt-package.md).

A host project is written in a temporary folder: packages.yml installs this checkout's
dbt_project/ with `local:`, its dbt_project.yml sets the package's vars under `vars: {cxloop:
...}` (raw schema `landing`, every raw table renamed `cx_<entity>`, schema prefix `pkg_`, the
as_of), it has a model of its own on a cxloop mart, and on DuckDB it overrides every
engine-specific cxloop macro (its own `dispatch` search order) with the package's portable
default__, the SQL that adapters without a spelling of their own get.
The raw layer (a generated world, the canonical tables of plugins/cxloop/contract.py with
their lineage columns) is written twice: as cxloop's own `raw.<entity>` into one DuckDB file,
built by the cxloop project as the root project with its native macros (the reference), and as
`landing.cx_<entity>` into another DuckDB file that the host attaches read-only as database
`landed` (var cxloop_raw_database), and into a throwaway Postgres database. `dbt deps` and
`dbt build` of the host then run on both adapters.

The tests check: every mart of the host's DuckDB build equals the cxloop project's own mart on
the same data, value for value, and the Postgres build (native postgres__ macros) equals it
within 1e-9; the sources, schemas, seeds and snapshots are the host's; the raw database is
left as it was. The dbt runs happen in a background body (tests/_background.py) while other
tests run.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import _background
import duckdb
import pandas as pd
import pytest
from _mart_compare import MART_GRAIN, sorted_rows
from cxloop.contract import ENTITIES, ENTITY_ORDER, LINEAGE_COLUMNS
from cxloop.demo.generator import generate
from cxloop.store.duckdb_store import RESULTS_DDL, SQL_TYPES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dbt_project"  # this checkout's project, not an installed copy
DBT = Path(sys.executable).parent / "dbt"
AS_OF = datetime(2026, 10, 1)
SEED, SCALE = 23, 0.1
LANDED_SCHEMA, PREFIX, TABLE_PREFIX = "landing", "pkg_", "cx_"
PG_TYPES = {**SQL_TYPES, "float": "DOUBLE PRECISION", "string": "TEXT"}
RAW_TABLES = (*ENTITY_ORDER, "validation_results")



def _pg_env() -> dict[str, str]:
    env = _background.ENV or os.environ
    return {
        k: env[k] for k in ("CXLOOP_PG_HOST", "CXLOOP_PG_PORT", "CXLOOP_PG_USER", "CXLOOP_PG_PASSWORD") if env.get(k)
    }


def _pg_connect(dbname: str):
    import psycopg2

    env = _pg_env()
    return psycopg2.connect(
        host=env.get("CXLOOP_PG_HOST", "127.0.0.1"),
        port=int(env.get("CXLOOP_PG_PORT", "5432")),
        user=env.get("CXLOOP_PG_USER", "postgres"),
        password=env.get("CXLOOP_PG_PASSWORD", ""),
        dbname=dbname,
        connect_timeout=3,
    )


# ------------------------------------------------------------------------------ the raw layer


def raw_tables(out: Path) -> dict[str, pd.DataFrame]:
    """A generated world's canonical tables with lineage columns, and the gate's results."""
    generate(out, seed=SEED, scale=SCALE, as_of=AS_OF)
    loaded = AS_OF - timedelta(hours=2)
    tables = {}
    for name in ENTITY_ORDER:
        frame = pd.read_parquet(out / "truth" / f"{name}.parquet")[ENTITIES[name].column_names].copy()
        frame["_batch_id"] = f"b-{name}"
        frame["_source"] = "demo"
        frame["_extracted_at"] = pd.Timestamp(loaded)
        frame["_loaded_at"] = pd.Timestamp(loaded)
        tables[name] = frame
    tables["validation_results"] = pd.DataFrame(
        [
            {"batch_id": f"b-{name}", "source": "demo", "entity": name, "expectation": "primary_key_unique",
             "column": ENTITIES[name].primary_key, "severity": "error", "success": True,
             "rows_checked": len(tables[name]), "unexpected_count": 0, "checked_at": pd.Timestamp(loaded)}
            for name in ENTITY_ORDER
        ]
    )  # fmt: skip
    return tables


def _ddl(name: str, relation: str, types: dict[str, str]) -> str:
    if name == "validation_results":
        ddl = RESULTS_DDL.replace("raw.validation_results", relation)
        return ddl.replace("VARCHAR", "TEXT") if types is PG_TYPES else ddl
    e = ENTITIES[name]
    cols = [f'"{c.name}" {types[c.type]}' for c in e.columns]
    cols += [f'"{c.name}" {types[c.type]} not null' for c in LINEAGE_COLUMNS]
    return f"create table {relation} ({', '.join(cols)})"


def load_duckdb(path: Path, schema: str, prefix: str, tables: dict[str, pd.DataFrame]) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(f"create schema {schema}")
        for name, frame in tables.items():
            relation = f'{schema}."{prefix}{name}"'
            con.execute(_ddl(name, relation, SQL_TYPES))
            con.register("incoming", frame)
            con.execute(f"insert into {relation} select * from incoming")
            con.unregister("incoming")
    finally:
        con.close()


def load_postgres(dbname: str, schema: str, prefix: str, tables: dict[str, pd.DataFrame]) -> None:
    con = _pg_connect(dbname)
    try:
        with con, con.cursor() as cur:
            cur.execute(f"create schema {schema}")
            for name, frame in tables.items():
                relation = f'{schema}."{prefix}{name}"'
                cur.execute(_ddl(name, relation, PG_TYPES))
                frame = frame.copy()
                for col in ENTITIES[name].columns if name in ENTITIES else ():
                    if col.type == "int":
                        frame[col.name] = frame[col.name].astype("Int64")
                buf = io.StringIO()
                frame.to_csv(buf, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f")
                buf.seek(0)
                cols = ", ".join(f'"{c}"' for c in frame.columns)
                cur.copy_expert(f"copy {relation} ({cols}) from stdin with (format csv, null '\\N')", buf)
    finally:
        con.close()


# ---------------------------------------------------------------------------- the host project

# Every engine-specific cxloop macro, overridden on DuckDB by the host (dispatch search order
# cx_host, cxloop) with the package's own portable default__: the DuckDB build of the host
# then runs the SQL that an adapter without its own implementation (Snowflake, BigQuery,
# Databricks) gets, and its marts must still equal cxloop's build with the native macros.
PORTABLE = {
    "cxloop_period_start": "ts, grain",
    "cxloop_shift_period": "period_start, n",
    "cxloop_period_series": "first_start, last_start",
    "cxloop_just_before": "ts",
    "cxloop_add_days": "ts, days",
    "cxloop_add_hours": "ts, hours",
    "cxloop_hours_between": "start_ts, end_ts",
    "cxloop_concat_ws": "separator, expressions",
    "cxloop_day_series": "first_date, last_date",
    "cxloop_iso_day_of_week": "ts",
    "cxloop_round": "expr, digits=9",
    "cxloop_analyze_table": "",
}
HOST_PORTABLE_MACROS = "".join(
    f"{{% macro duckdb__{name}({params}) -%}}\n"
    f"    {{{{ return(cxloop.default__{name}({params.replace('=9', '')})) }}}}\n"
    "{%- endmacro %}\n\n"
    for name, params in PORTABLE.items()
)

HOST_OWN_MODEL = """\
-- a model of the host's own on top of a cxloop mart
select survey_type, method, count(*) as account_periods, sum(n_scored) as n_scored
from {{ ref('cxloop', 'account_nps') }}
group by survey_type, method
"""


def write_host(host: Path, landed_db: Path, host_db: Path, pg_dbname: str) -> None:
    (host / "models").mkdir(parents=True)
    (host / "macros").mkdir()
    identifiers = {f"cxloop_{t}_identifier": f"{TABLE_PREFIX}{t}" for t in RAW_TABLES}
    project = {
        "name": "cx_host",
        "version": "1.0.0",
        "config-version": 2,
        "profile": "cx_host",
        "model-paths": ["models"],
        "macro-paths": ["macros"],
        "dispatch": [{"macro_namespace": "cxloop", "search_order": ["cx_host", "cxloop"]}],
        "vars": {
            "cxloop": {
                "as_of": AS_OF.strftime("%Y-%m-%dT%H:%M:%S"),
                "cxloop_raw_schema": LANDED_SCHEMA,
                "cxloop_schema_prefix": PREFIX,
                **identifiers,
            }
        },
        "exposures": {"cxloop": {"+enabled": False}},
    }
    (host / "dbt_project.yml").write_text(json.dumps(project, indent=2))  # JSON is YAML
    (host / "packages.yml").write_text(json.dumps({"packages": [{"local": str(PACKAGE)}]}))
    pg = _pg_env()
    profiles = {
        "cx_host": {
            "target": "duckdb",
            "outputs": {
                "duckdb": {
                    "type": "duckdb",
                    "path": str(host_db),
                    "attach": [{"path": str(landed_db), "alias": "landed", "read_only": True}],
                    "threads": 2,
                },
                "postgres": {
                    "type": "postgres",
                    "host": pg.get("CXLOOP_PG_HOST", "127.0.0.1"),
                    "port": int(pg.get("CXLOOP_PG_PORT", "5432")),
                    "user": pg.get("CXLOOP_PG_USER", "postgres"),
                    "password": "{{ env_var('HOST_PG_PASSWORD', '') }}",
                    "dbname": pg_dbname,
                    "schema": "analytics",
                    "threads": 2,
                },
            },
        }
    }
    (host / "profiles.yml").write_text(json.dumps(profiles, indent=2))
    (host / "macros" / "cxloop_portable.sql").write_text(HOST_PORTABLE_MACROS)
    (host / "models" / "host_account_nps_summary.sql").write_text(HOST_OWN_MODEL)


def dbt(args: list[str], *, cwd: Path, project: Path, env: dict[str, str] | None = None) -> float:
    """One dbt command (a subprocess), its seconds; fails with dbt's output."""
    full_env = {k: v for k, v in (_background.ENV or os.environ).items() if not k.startswith("CXLOOP_WAREHOUSE")}
    full_env.update({"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(env or {})})
    command = [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project)]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"dbt {' '.join(args)} failed:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    return time.perf_counter() - started


def _results(target: Path) -> list[dict]:
    return [
        {"unique_id": r["unique_id"], "status": r["status"]}
        for r in json.loads((target / "run_results.json").read_text())["results"]
    ]


def _duckdb_marts(path: Path, schema: str) -> dict[str, pd.DataFrame]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [schema]
        ).fetchall()]  # fmt: skip
        return {n: con.execute(f'select * from {schema}."{n}"').df() for n in names}
    finally:
        con.close()


def _drop_pg(dbname: str) -> None:
    admin = _pg_connect("postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s and pid <> pg_backend_pid()",
            (dbname,),
        )
        cur.execute(f'drop database if exists "{dbname}"')
    admin.close()


@_background.prestart("dbt_package")
def _package_builds(_param=None) -> dict:
    """The reference build (cxloop as the root project), then the host's deps and builds on DuckDB
    and Postgres; the Postgres marts are saved as Parquet before the database is dropped."""
    import psycopg2

    work = _background.workdir("dbt-package")
    tables = raw_tables(work / "demo")
    root_db, landed_db, host_db = work / "root.duckdb", work / "landed.duckdb", work / "host.duckdb"
    load_duckdb(root_db, "raw", "", tables)
    load_duckdb(landed_db, LANDED_SCHEMA, TABLE_PREFIX, tables)
    pg_dbname = f"cx_dbtpkg_{uuid.uuid4().hex[:10]}"
    host = work / "host"
    write_host(host, landed_db, host_db, pg_dbname)
    timings = {}
    out: dict = {
        "work": work,
        "root_db": root_db,
        "host_db": host_db,
        "landed_db": landed_db,
        "host": host,
        "timings": timings,
    }

    as_of = json.dumps({"as_of": AS_OF.strftime("%Y-%m-%dT%H:%M:%S")})
    no_tests = ["--exclude-resource-type", "test", "unit_test"]
    timings["root_build"] = dbt(
        ["build", "--target", "duckdb", "--vars", as_of, "--target-path", str(work / "root_target"),
         "--log-path", str(work / "root_logs"), *no_tests],
        cwd=work, project=PACKAGE, env={"CXLOOP_WAREHOUSE": str(root_db)},
    )  # fmt: skip
    timings["host_deps"] = dbt(["deps"], cwd=host, project=host)
    # the database of the raw tables comes from the command line, the rest from dbt_project.yml
    timings["host_build_duckdb"] = dbt(
        ["build", "--target", "duckdb", "--vars", json.dumps({"cxloop_raw_database": "landed"}),
         "--exclude-resource-type", "unit_test", "--target-path", "target_duckdb"],
        cwd=host, project=host,
    )  # fmt: skip
    out["duckdb_results"] = _results(host / "target_duckdb")
    out["manifest"] = host / "target_duckdb" / "manifest.json"

    try:
        _pg_connect("postgres").close()
    except psycopg2.OperationalError as exc:
        out["postgres_skipped"] = f"no PostgreSQL reachable: {str(exc).strip()}"
        return out
    admin = _pg_connect("postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'create database "{pg_dbname}"')
    admin.close()
    try:
        load_postgres(pg_dbname, LANDED_SCHEMA, TABLE_PREFIX, tables)
        timings["host_build_postgres"] = dbt(
            ["build", "--target", "postgres", *no_tests, "--target-path", "target_postgres"],
            cwd=host, project=host, env={"HOST_PG_PASSWORD": _pg_env().get("CXLOOP_PG_PASSWORD", "")},
        )  # fmt: skip
        out["postgres_results"] = _results(host / "target_postgres")
        con = _pg_connect(pg_dbname)
        try:
            with con.cursor() as cur:
                cur.execute(
                    "select table_schema, table_name from information_schema.tables "
                    "where table_schema in (%s, 'analytics') order by 1, 2",
                    (f"{PREFIX}marts",),
                )
                relations = cur.fetchall()
                pg_dir = work / "postgres_marts"
                pg_dir.mkdir()
                for schema, name in relations:
                    cur.execute(f'select * from "{schema}"."{name}"')
                    frame = pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
                    frame.to_pickle(pg_dir / f"{schema}.{name}.pkl")
                cur.execute(
                    "select schema_name from information_schema.schemata where schema_name not like 'pg_%%' "
                    "and schema_name <> 'information_schema' order by 1"
                )
                out["postgres_schemas"] = [r[0] for r in cur.fetchall()]
        finally:
            con.close()
        out["postgres_marts"] = pg_dir
    finally:
        _drop_pg(pg_dbname)
    out["postgres_dbname"] = pg_dbname
    return out


# ------------------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def dbt_package():
    return _background.result("dbt_package")


@pytest.fixture(scope="module")
def root_marts(dbt_package):
    return _duckdb_marts(dbt_package["root_db"], "marts")


@pytest.fixture(scope="module")
def host_marts(dbt_package):
    return _duckdb_marts(dbt_package["host_db"], f"{PREFIX}marts")


def assert_same_mart(name: str, left: pd.DataFrame, right: pd.DataFrame, rel_tol: float = 0.0) -> None:
    assert list(left.columns) == list(right.columns), f"{name}: columns differ"
    assert len(left) == len(right), f"{name}: {len(left)} rows vs {len(right)}"
    keys = MART_GRAIN.get(name, list(left.columns))
    bad = []
    for i, (a, b) in enumerate(zip(sorted_rows(left, keys), sorted_rows(right, keys), strict=True)):
        for col in left.columns:
            x, y = a[col], b[col]
            if isinstance(x, float) and isinstance(y, float):
                same = math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-12) if rel_tol else x == y
            else:
                same = x == y
            if not same:
                bad.append(f"row {i} {[a[k] for k in keys]} {col}: {x!r} != {y!r}")
    assert not bad, f"{name}: {len(bad)} values differ: " + "; ".join(bad[:8])


def test_host_builds_every_node_of_the_package(dbt_package):
    print("dbt package timings (s):", {k: round(v, 1) for k, v in dbt_package["timings"].items()})
    results = dbt_package["duckdb_results"]
    failed = [r for r in results if r["status"] not in ("success", "pass")]
    assert not failed, failed
    by_type: dict[str, int] = {}
    for r in results:
        if ".cxloop." in r["unique_id"]:
            kind = r["unique_id"].split(".")[0]
            by_type[kind] = by_type.get(kind, 0) + 1
    # the package's seeds, snapshots, models and data tests all ran in the host's build
    assert by_type.get("seed") == 4 and by_type.get("snapshot") == 2, by_type
    assert by_type.get("model", 0) >= 35 and by_type.get("test", 0) >= 150, by_type
    assert any(r["unique_id"] == "model.cx_host.host_account_nps_summary" for r in results)


def test_every_mart_equals_the_cxloop_projects_own(root_marts, host_marts):
    assert len(root_marts) >= 14, sorted(root_marts)
    assert sorted(host_marts) == sorted(root_marts)
    empty = [m for m, f in root_marts.items() if f.empty and m != "at_risk_accounts"]
    assert not empty, f"empty marts make the comparison vacuous: {empty}"
    for name in root_marts:
        assert_same_mart(name, host_marts[name], root_marts[name])


def test_host_model_reads_the_marts(dbt_package, host_marts):
    con = duckdb.connect(str(dbt_package["host_db"]), read_only=True)
    try:
        summary = con.execute(
            "select sum(account_periods), sum(n_scored) from main.host_account_nps_summary"
        ).fetchone()
    finally:
        con.close()
    nps = host_marts["account_nps"]
    assert summary == (len(nps), nps["n_scored"].sum()) and summary[0] > 0


def test_sources_schemas_and_seeds_are_the_hosts(dbt_package):
    manifest = json.loads(Path(dbt_package["manifest"]).read_text())
    sources = {s["source_name"] + "." + s["name"]: s for s in manifest["sources"].values()}
    # the raw tables, and the pipeline's own source_freshness (which a host does not have)
    assert len(sources) == len(RAW_TABLES) + 1 and "pipeline.source_freshness" in sources
    for key, s in ((k, v) for k, v in sources.items() if k != "pipeline.source_freshness"):
        assert (s["database"], s["schema"], s["identifier"]) == ("landed", LANDED_SCHEMA, TABLE_PREFIX + s["name"]), key
    assert not [e for e in manifest["exposures"].values() if e["package_name"] == "cxloop"]
    con = duckdb.connect(str(dbt_package["host_db"]), read_only=True)
    try:
        schemas = {r[0] for r in con.execute(
            "select distinct table_schema from information_schema.tables where table_catalog = 'host'"
        ).fetchall()}  # fmt: skip
        weights = con.execute(f"select count(*) from {PREFIX}seeds.role_weights").fetchone()[0]
        versions = con.execute(f"select count(*) from {PREFIX}snapshots.snap_crm__contacts").fetchone()[0]
    finally:
        con.close()
    con = duckdb.connect(str(dbt_package["landed_db"]), read_only=True)
    try:
        landed_tables = con.execute("select table_schema, table_name from information_schema.tables").fetchall()
    finally:
        con.close()
    wanted = {f"{PREFIX}{s}" for s in ("seeds", "snapshots", "staging", "intermediate", "marts")} | {"main"}
    assert schemas == wanted, schemas
    assert weights == 5 and versions > 0
    # the package wrote nothing into the raw database (attached read-only)
    assert sorted(landed_tables) == sorted((LANDED_SCHEMA, TABLE_PREFIX + t) for t in RAW_TABLES)


def test_duckdb_build_ran_the_portable_macros(dbt_package):
    """The host's DuckDB build compiled cxloop's models with the default__ implementations (dbt's
    cross-database macros), not the DuckDB spellings: to_months, to_days, to_microseconds,
    isodow and concat_ws appear nowhere."""
    target = Path(dbt_package["host"]) / "target_duckdb" / "compiled" / "cxloop"
    code = {p.stem: p.read_text() for p in target.rglob("*.sql")}
    assert {"int_periods", "int_business_calendar", "follow_up_sla", "at_risk_accounts"} <= set(code), sorted(code)
    native = [f"{m}: {w}" for m, sql in code.items() for w in ("to_months(", "to_days(", "to_microseconds(",
              "isodow(", "concat_ws(", "unnest(") if w in sql]  # fmt: skip
    assert not native, native
    assert (
        "generate_series(1, 1200)" in code["int_periods"]
        and "generate_series(1, 65536)" in code["int_business_calendar"]
    )


@pytest.fixture(scope="module")
def postgres(dbt_package):
    if "postgres_skipped" in dbt_package:
        pytest.skip(dbt_package["postgres_skipped"])
    folder = dbt_package["postgres_marts"]
    return {p.stem: pd.read_pickle(p) for p in folder.glob("*.pkl")}


def test_postgres_host_build(dbt_package, postgres, host_marts):
    failed = [r for r in dbt_package["postgres_results"] if r["status"] not in ("success", "pass")]
    assert not failed, failed
    assert f"{PREFIX}marts" in dbt_package["postgres_schemas"] and "marts" not in dbt_package["postgres_schemas"]
    pg_marts = {k.split(".", 1)[1]: v for k, v in postgres.items() if k.startswith(f"{PREFIX}marts.")}
    assert sorted(pg_marts) == sorted(host_marts)
    for name, frame in pg_marts.items():
        assert_same_mart(name, frame, host_marts[name], rel_tol=1e-9)


def test_postgres_database_dropped(dbt_package, postgres):
    con = _pg_connect("postgres")
    try:
        with con.cursor() as cur:
            cur.execute("select count(*) from pg_database where datname = %s", (dbt_package["postgres_dbname"],))
            assert cur.fetchone()[0] == 0
    finally:
        con.close()
