"""Landed-schema fixture tables (the sync tools' schemas, written by the tests themselves) in a
DuckDB file or a throw-away Postgres database: shared by test_landed_source (Fivetran
Salesforce and Qualtrics) and test_landed_crm_flavours (Fivetran HubSpot, Airbyte).

``tables`` maps ``(schema, table)`` to ``(columns, rows)``, columns as ``(name, sql type)``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import duckdb
import psycopg2
import pytest
from cxloop.config import Settings

Tables = dict[tuple[str, str], tuple[list[tuple[str, str]], list[tuple]]]


def fill(execute: Callable[[str, tuple | None], object], placeholder: str, schemas, tables: Tables) -> None:
    """Create ``schemas`` and ``tables`` through ``execute(sql, params)`` (params None: none)."""
    for schema in schemas:
        execute(f'CREATE SCHEMA "{schema}"', None)
    for (schema, table), (cols, rows) in tables.items():
        columns = ", ".join(f'"{c}" {t}' for c, t in cols)
        execute(f'CREATE TABLE "{schema}"."{table}" ({columns})', None)
        marks = ", ".join([placeholder] * len(cols))
        for row in rows:
            execute(f'INSERT INTO "{schema}"."{table}" VALUES ({marks})', row)


def duckdb_database(path, schemas, tables: Tables) -> str:
    """The tables in a new DuckDB file at ``path``; returns its path as text."""
    con = duckdb.connect(str(path))
    fill(lambda sql, p: con.execute(sql, p) if p else con.execute(sql), "?", schemas, tables)
    con.close()
    return str(path)


def pg_dsn(dbname: str) -> str:
    return Settings.from_env({"CXLOOP_PG_DBNAME": dbname}).pg_dsn()


def pg_database(prefix: str, schemas, tables: Tables) -> Iterator[str]:
    """A fixture body: a new Postgres database holding the tables; yields its DSN, drops it
    after. Skips when no PostgreSQL is reachable."""
    try:
        admin = psycopg2.connect(pg_dsn("postgres"), connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL reachable: {str(exc).strip()}")
    admin.autocommit = True
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    con = psycopg2.connect(pg_dsn(name))
    with con.cursor() as cur:
        fill(lambda sql, p: cur.execute(sql, p), "%s", schemas, tables)
    con.commit()
    con.close()
    try:
        yield pg_dsn(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
