"""cxloop's dbt package built on Spark (dbt-spark, session method, pyspark in local mode):
`make test-spark` (CXLOOP_SPARK_TESTS=1), not part of `make test` (a JVM start per dbt
command and Spark's per-query overhead make it minutes, not seconds).

The raw layer of test_dbt_package (the same generated world, seed and as_of) is built twice:
into DuckDB as cxloop's own `raw.<entity>`, built by the cxloop project as the root project
with its native duckdb__ macros (the reference, exactly as test_dbt_package's), and as Spark
tables `landing.cx_<entity>` (parquet, in a Hive metastore of the test's folder) written by
pyspark itself. A host project in a temporary folder installs this checkout with `local:` and
runs `dbt deps` and `dbt build` on Spark (method session, master local[2]), with the package's
spark__ macros (dbt_project/macros/adapters/spark.sql). Every mart on Spark must equal the
DuckDB mart, value for value within 1e-9 relative (the tolerance of the Postgres parity).

What the host sets for Spark on parquet (docs/dbt-package.md, "Spark"): the package's two
snapshots disabled (dbt-spark snapshots need delta, iceberg or hudi; the int_*_versions
models then read the current CRM rows as the one version a first snapshot gives them), the
seeds' column types in Spark's names, and the marts' contracts not enforced (their data_type
names are DuckDB's and Postgres'); the mart columns are still compared by name and order.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("CXLOOP_SPARK_TESTS") != "1", reason="Spark build: make test-spark (CXLOOP_SPARK_TESTS=1)"
)

import test_dbt_package as pkg  # noqa: E402  (the raw layer, the reference build, dbt runner)
from _mart_compare import MART_GRAIN, sorted_rows  # noqa: E402
from cxloop.contract import ENTITIES, LINEAGE_COLUMNS  # noqa: E402

PYTHON = sys.executable
SPARK_TYPES = {"string": "string", "int": "bigint", "float": "double", "bool": "boolean", "date": "date",
               "timestamp": "timestamp"}  # fmt: skip
RESULTS_TYPES = {"batch_id": "string", "source": "string", "entity": "string", "expectation": "string",
                 "column": "string", "severity": "string", "success": "boolean", "rows_checked": "bigint",
                 "unexpected_count": "bigint", "checked_at": "timestamp"}  # fmt: skip
# the package's seeds in Spark's type names (the package's own are text / float8 / integer)
SEED_TYPES = {
    "role_weights": {"role": "string", "weight": "double", "rank": "int"},
    "coverage_slots": {"tier": "string", "role": "string", "required": "int"},
    "sla_policy": {"first_contact_hours": "double", "close_days": "int"},
    "business_hours": {"iso_day_of_week": "int", "open_hour": "double", "close_hour": "double"},
}


def spark_conf(work: Path) -> dict[str, str]:
    """One Spark configuration for the writer, dbt and the reader: local[2], a Hive metastore
    (embedded Derby) and warehouse folder inside the test's folder, the session in UTC."""
    return {
        "spark.master": "local[2]",
        "spark.app.name": "cxloop-dbt-package",
        "spark.ui.enabled": "false",
        "spark.driver.memory": "2g",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": str(work / "spark-warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={work / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={work}",
    }


# A pyspark program run as a subprocess (its JVM, and the embedded Derby metastore it locks,
# end with it): argv[1] = JSON {conf, action, ...}.
SPARK_PROGRAM = textwrap.dedent("""
    import json, sys
    from pyspark.sql import SparkSession
    job = json.loads(sys.argv[1])
    builder = SparkSession.builder.enableHiveSupport()
    for k, v in job["conf"].items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if job["action"] == "land":
        spark.sql(f"create database {job['schema']}")
        for table in job["tables"]:
            cols = ", ".join(f"cast(`{c}` as {t}) as `{c}`" for c, t in table["columns"])
            spark.sql(f"create table {job['schema']}.`{table['name']}` using parquet as "
                      f"select {cols} from parquet.`{table['path']}`")
            print(table["name"], spark.table(f"{job['schema']}.`{table['name']}`").count())
    elif job["action"] == "read":
        out = {}
        for row in spark.sql(f"show tables in {job['schema']}").collect():
            name = row["tableName"]
            frame = spark.table(f"{job['schema']}.`{name}`").toPandas()
            frame.to_pickle(f"{job['out']}/{name}.pkl")
            out[name] = len(frame)
        print(json.dumps(out))
    spark.stop()
""")


def run_spark(work: Path, job: dict) -> str:
    run = subprocess.run(
        [PYTHON, "-c", SPARK_PROGRAM, json.dumps({"conf": spark_conf(work), **job})],
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, f"pyspark {job['action']} failed:\n{run.stdout[-3000:]}\n{run.stderr[-4000:]}"
    return run.stdout


def land_spark(work: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The raw tables as Spark parquet tables landing.cx_<table>, typed as the contract says."""
    staged = work / "staged"
    staged.mkdir()
    jobs = []
    for name, frame in tables.items():
        if name == "validation_results":
            types = RESULTS_TYPES
        else:
            types = {c.name: SPARK_TYPES[c.type] for c in (*ENTITIES[name].columns, *LINEAGE_COLUMNS)}
        frame = frame[list(types)].copy()
        for col, t in types.items():
            if t == "bigint":
                frame[col] = frame[col].astype("Int64")
        path = staged / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        jobs.append({"name": pkg.TABLE_PREFIX + name, "path": str(path), "columns": list(types.items())})
    run_spark(work, {"action": "land", "schema": pkg.LANDED_SCHEMA, "tables": jobs})


def write_spark_host(host: Path, work: Path) -> None:
    (host / "models").mkdir(parents=True)
    identifiers = {f"cxloop_{t}_identifier": f"{pkg.TABLE_PREFIX}{t}" for t in pkg.RAW_TABLES}
    project = {
        "name": "cx_host",
        "version": "1.0.0",
        "config-version": 2,
        "profile": "cx_host",
        "model-paths": ["models"],
        "vars": {
            "cxloop": {
                "as_of": pkg.AS_OF.strftime("%Y-%m-%dT%H:%M:%S"),
                "cxloop_raw_schema": pkg.LANDED_SCHEMA,
                "cxloop_schema_prefix": pkg.PREFIX,
                **identifiers,
            }
        },
        "models": {"cxloop": {"marts": {"+contract": {"enforced": False}}}},
        "seeds": {"cxloop": {name: {"+column_types": types} for name, types in SEED_TYPES.items()}},
        "snapshots": {"cxloop": {"+enabled": False}},
        "exposures": {"cxloop": {"+enabled": False}},
    }
    (host / "dbt_project.yml").write_text(json.dumps(project, indent=2))
    (host / "packages.yml").write_text(json.dumps({"packages": [{"local": str(pkg.PACKAGE)}]}))
    profiles = {
        "cx_host": {
            "target": "spark",
            "outputs": {
                "spark": {
                    "type": "spark",
                    "method": "session",
                    "host": "NA",
                    "schema": "analytics",
                    "threads": 2,
                    "server_side_parameters": spark_conf(work),
                }
            },
        }
    }
    (host / "profiles.yml").write_text(json.dumps(profiles, indent=2))
    (host / "models" / "host_account_nps_summary.sql").write_text(pkg.HOST_OWN_MODEL)


@pytest.fixture(scope="module")
def spark_build(tmp_path_factory):
    pytest.importorskip("pyspark")
    pytest.importorskip("dbt.adapters.spark")
    work = tmp_path_factory.mktemp("dbt-package-spark")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tables = pkg.raw_tables(work / "demo")
    root_db = work / "root.duckdb"
    pkg.load_duckdb(root_db, "raw", "", tables)
    as_of = json.dumps({"as_of": pkg.AS_OF.strftime("%Y-%m-%dT%H:%M:%S")})
    no_tests = ["--exclude-resource-type", "test", "unit_test"]
    timings["duckdb_reference_build"] = pkg.dbt(
        ["build", "--target", "duckdb", "--vars", as_of, "--target-path", str(work / "root_target"),
         "--log-path", str(work / "root_logs"), *no_tests],
        cwd=work, project=pkg.PACKAGE, env={"CXLOOP_WAREHOUSE": str(root_db)},
    )  # fmt: skip
    t = time.perf_counter()
    land_spark(work, tables)
    timings["spark_landing"] = time.perf_counter() - t
    host = work / "host"
    write_spark_host(host, work)
    timings["host_deps"] = pkg.dbt(["deps"], cwd=work, project=host)
    timings["host_build_spark"] = pkg.dbt(["build", *no_tests, "--target-path", "target_spark"], cwd=work, project=host)
    marts = work / "spark_marts"
    marts.mkdir()
    t = time.perf_counter()
    counts = json.loads(run_spark(work, {"action": "read", "schema": f"{pkg.PREFIX}marts", "out": str(marts)})
                        .strip().splitlines()[-1])  # fmt: skip
    timings["spark_read_marts"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    return {"work": work, "host": host, "root_db": root_db, "marts": marts, "counts": counts, "timings": timings}


def test_spark_host_build_succeeded(spark_build):
    print("dbt package on Spark, timings (s):", {k: round(v, 1) for k, v in spark_build["timings"].items()})
    results = pkg._results(spark_build["host"] / "target_spark")
    failed = [r for r in results if r["status"] not in ("success", "pass")]
    assert not failed, failed
    models = [r for r in results if r["unique_id"].startswith("model.cxloop.")]
    seeds = [r for r in results if r["unique_id"].startswith("seed.cxloop.")]
    assert len(models) >= 35 and len(seeds) == 4, (len(models), len(seeds))
    assert any(r["unique_id"] == "model.cx_host.host_account_nps_summary" for r in results)


def test_spark_build_ran_the_spark_macros(spark_build):
    """The compiled models carry Spark's spellings (sequence/explode, timestampadd, string and
    double types), none of DuckDB's or Postgres' and no text / float8 cast."""
    target = spark_build["host"] / "target_spark" / "compiled" / "cxloop"
    code = {p.stem: p.read_text() for p in target.rglob("*.sql")}
    assert "explode(sequence(" in code["int_periods"] and "explode(sequence(" in code["int_business_calendar"]
    assert "timestampadd(" in code["follow_up_sla"] and "as string)" in code["stg_crm__accounts"]
    wrong = [f"{m}: {w}" for m, sql in code.items() for w in ("as text)", "as float8)", "to_days(", "make_interval(",
             "unnest(", "isodow", "generate_series(")  if w in sql]  # fmt: skip
    assert not wrong, wrong


def assert_close_mart(name: str, spark: pd.DataFrame, duck: pd.DataFrame) -> None:
    assert list(spark.columns) == list(duck.columns), f"{name}: columns differ: {list(spark.columns)}"
    assert len(spark) == len(duck), f"{name}: {len(spark)} rows on Spark vs {len(duck)} on DuckDB"
    keys = MART_GRAIN.get(name, list(duck.columns))
    bad = []
    for i, (a, b) in enumerate(zip(sorted_rows(spark, keys), sorted_rows(duck, keys), strict=True)):
        for col in duck.columns:
            x, y = a[col], b[col]
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
                same = not isinstance(y, bool) and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
            else:
                same = x == y
            if not same:
                bad.append(f"row {i} {[a[k] for k in keys]} {col}: {x!r} != {y!r}")
    assert not bad, f"{name}: {len(bad)} values differ: " + "; ".join(bad[:8])


def test_every_spark_mart_equals_the_duckdb_build(spark_build):
    duck = pkg._duckdb_marts(spark_build["root_db"], "marts")
    spark = {p.stem: pd.read_pickle(p) for p in spark_build["marts"].glob("*.pkl")}
    assert len(duck) >= 14 and sorted(spark) == sorted(duck), (sorted(spark), sorted(duck))
    empty = [m for m, f in duck.items() if f.empty and m != "at_risk_accounts"]
    assert not empty, f"empty marts make the comparison vacuous: {empty}"
    for name in sorted(duck):
        assert_close_mart(name, spark[name], duck[name])
