"""The BI snapshot: a read-only DuckDB copy of the marts, swapped in atomically after each build.

BI tools (DuckDB CLI, Metabase, Superset, DBeaver, notebooks) never open the pipeline's own
warehouse file: DuckDB allows one writing process per file, and a reader holding the
warehouse would block the next run (or be blocked by it). Instead each successful build
publishes a separate file that only readers open, always with ``read_only=True``:

0. Temporaries a killed publish left behind (``.cx.duckdb.<pid>.tmp``, its ``.wal``, and
   ``.cx.json.<pid>.tmp``) are removed when their pid is no longer alive; nothing else.
1. The writer's database is checkpointed (no WAL left behind by the run).
2. A fresh DuckDB file is written next to the published path (``.cx.duckdb.<pid>.tmp``):
   every table of schema ``marts`` (the contract's marts, required, and any further marts the
   dbt project builds, with the table and column comments dbt persisted) plus
   ``main.published`` (one row: run id, as-of, published-at, dbt invocation) and
   ``main.published_marts`` (mart, rows). It is checkpointed and closed.
3. The temp file is opened again read-only and verified: every mart present, row counts equal
   to the writer's.
4. Each mart is also written as Parquet at a stable path, ``marts/<mart>.parquet`` next to the
   snapshot, for tools that read Parquet rather than DuckDB: copied from the verified temp
   file into ``.<mart>.parquet.<pid>.tmp`` and renamed over the previous one (one rename per
   file: a reader of several files during a publish may mix two runs; ``cx.json``, written
   last, names the run they all belong to once the publish is done).
5. ``os.replace`` renames it onto the published path. The rename is atomic on one file
   system: a reader opening the path sees either the previous snapshot or the new one, never
   a partial file; a reader that already had the old file open keeps its inode until it
   closes. The process that writes never opens the published path itself.

The file is written in DuckDB's storage format of ``v1.4.0`` (``CXLOOP_SNAPSHOT_STORAGE_VERSION``
sets another, e.g. ``latest``): the DuckDB this pipeline runs (2.x) would otherwise write its
own newest format, which the DuckDB 1.x releases embedded in BI drivers and the 1.x CLI cannot
open ("Trying to read a database file with version number ..."). 1.4, 1.5 and 2.x read v1.4.0.

Only the marts are published (no raw, staging or seed tables): the raw layer carries account
and owner names and quarantined source records, which BI users do not need. The directory
marts' ``owner_name`` (a CRM user's name, personal data: :data:`UNPUBLISHED_COLUMNS`) is left
out of the snapshot and the Parquet files; account names (business data) are published.

For the Postgres target there is nothing to publish: BI tools connect to Postgres with a
read-only role (see docs/bi-connections.md) and :func:`publish_snapshot` returns ``None``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from cxloop.config import Settings
from cxloop.serve.exports import MARTS, METRIC_CONTRACT_VERSION

log = logging.getLogger(__name__)

PUBLISHED_ENV = "CXLOOP_PUBLISHED"
SNAPSHOT_ALIAS = "cx_snapshot"
STORAGE_ENV = "CXLOOP_SNAPSHOT_STORAGE_VERSION"
#: the oldest DuckDB whose readers open the snapshot: 1.4 and 1.5 (BI drivers, the CLI) and 2.x
DEFAULT_STORAGE_VERSION = "v1.4.0"
#: mart columns never published to BI: the CRM owner's display name (marts/directory)
UNPUBLISHED_COLUMNS = frozenset({"owner_name"})


class PublishError(RuntimeError):
    pass


def published_path(settings: Settings) -> Path:
    """Where the BI snapshot lives: ``$CXLOOP_PUBLISHED`` or ``<var>/published/cx.duckdb``."""
    value = os.environ.get(PUBLISHED_ENV)
    return Path(value).expanduser().resolve() if value else settings.var_dir / "published" / "cx.duckdb"


def storage_version(env: dict[str, str] | None = None) -> str:
    """The DuckDB storage format the snapshot is written in (``$CXLOOP_SNAPSHOT_STORAGE_VERSION``,
    default :data:`DEFAULT_STORAGE_VERSION`): ``vMAJOR.MINOR.PATCH`` or ``latest``."""
    import re

    value = ((os.environ if env is None else env).get(STORAGE_ENV) or DEFAULT_STORAGE_VERSION).strip()
    if value != "latest" and not re.fullmatch(r"v\d{1,3}\.\d{1,3}\.\d{1,3}", value):
        raise PublishError(f"{STORAGE_ENV}: {value[:40]!r} is not a DuckDB version like v1.4.0 (or latest)")
    return value


def manifest_path(path: Path) -> Path:
    """The JSON manifest written beside a published file (``cx.duckdb`` -> ``cx.json``)."""
    return path.with_suffix(".json")


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote_ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _remove(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def stale_temporaries(path: Path) -> list[Path]:
    """Leftovers of killed publishes next to ``path``: this module's own temporaries only
    (``.<name>.<pid>.tmp`` of the snapshot and of its manifest, and the snapshot temp's
    ``.wal``) whose pid is not a live process. Nothing else in the folder ever matches."""
    import re

    names = (path.name, manifest_path(path).name)
    pattern = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.tmp(?P<wal>\.wal)?$")
    stale = []
    for candidate in sorted(path.parent.glob(".*.tmp*")):
        m = pattern.match(candidate.name)
        if not m or m["name"] not in names or (m["wal"] and m["name"] != path.name):
            continue
        if int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])) and candidate.is_file():
            stale.append(candidate)
    for candidate in sorted(parquet_dir(path).glob(".*.parquet.*.tmp")):
        m = pattern.match(candidate.name)
        if m and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])) and candidate.is_file():
            stale.append(candidate)
    return stale


def parquet_dir(path: Path) -> Path:
    """Where the marts are published as Parquet: ``marts/`` next to the snapshot."""
    return Path(path).parent / "marts"


def _publish_parquet(snapshot: Path, marts: list[str], folder: Path) -> dict[str, str]:
    """Every mart of the (verified, not yet swapped in) ``snapshot`` as ``folder/<mart>.parquet``,
    each written to a temporary name and renamed over the previous file."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    con = duckdb.connect(str(snapshot), read_only=True)
    try:
        for mart in marts:
            final = folder / f"{mart}.parquet"
            tmp = folder / f".{mart}.parquet.{os.getpid()}.tmp"
            try:
                con.execute(f"copy marts.{_quote_ident(mart)} to {_quote_literal(str(tmp))} (format parquet)")
                tmp.chmod(0o444)
                os.replace(tmp, final)
            except Exception:
                _remove(tmp)
                raise
            written[mart] = f"{folder.name}/{final.name}"
    finally:
        con.close()
    return written


def clean_stale_temporaries(path: Path) -> list[Path]:
    """Remove :func:`stale_temporaries` of ``path``; returns what was removed."""
    removed = []
    for leftover in stale_temporaries(path):
        try:
            leftover.unlink()
            removed.append(leftover)
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d temporaries of killed publishes: %s", len(removed), [p.name for p in removed])
    return removed


def _writer_marts(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table of the warehouse's ``marts`` schema: the contract's marts first, then any
    others the dbt project builds (they reach BI too). A missing contract mart is an error."""
    tables = {
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() and schema_name = 'marts'"
        ).fetchall()
    }
    missing = [m for m in MARTS if m not in tables]
    if missing:
        raise PublishError(f"the warehouse lacks the contract's marts {missing}: nothing published")
    return [*MARTS, *sorted(tables - set(MARTS))]


def _copy_marts(
    con: duckdb.DuckDBPyConnection, tmp: Path, meta: dict, marts: list[str], storage: str
) -> dict[str, int]:
    """Write the marts and the bookkeeping tables into a new database file ``tmp``, in DuckDB's
    storage format ``storage``."""
    counts: dict[str, int] = {}
    con.execute(f"attach {_quote_literal(str(tmp))} as {SNAPSHOT_ALIAS} (storage_version {_quote_literal(storage)})")
    try:
        con.execute(f"create schema {SNAPSHOT_ALIAS}.marts")
        for mart in marts:
            con.execute(
                f"create table {SNAPSHOT_ALIAS}.marts.{mart} as select {_published_columns(con, mart)} "
                f"from marts.{mart}"
            )
            counts[mart] = con.execute(f"select count(*) from {SNAPSHOT_ALIAS}.marts.{mart}").fetchone()[0]
        _copy_comments(con, marts)
        con.execute(
            f"create table {SNAPSHOT_ALIAS}.main.published ("
            " run_id varchar, as_of timestamp, published_at timestamp,"
            " dbt_invocation_id varchar, metric_contract_version varchar, n_marts integer)"
        )
        con.execute(
            f"insert into {SNAPSHOT_ALIAS}.main.published values (?, ?, ?, ?, ?, ?)",
            [
                meta["run_id"],
                meta["as_of"],
                meta["published_at"],
                meta.get("dbt_invocation_id"),
                METRIC_CONTRACT_VERSION,
                len(marts),
            ],
        )
        con.execute(f'create table {SNAPSHOT_ALIAS}.main.published_marts (mart varchar, "rows" bigint)')
        con.executemany(
            f"insert into {SNAPSHOT_ALIAS}.main.published_marts values (?, ?)", [[m, n] for m, n in counts.items()]
        )
        con.execute(f"checkpoint {SNAPSHOT_ALIAS}")
    finally:
        con.execute(f"detach {SNAPSHOT_ALIAS}")
    return counts


def _published_columns(con: duckdb.DuckDBPyConnection, mart: str) -> str:
    """The select list of a mart's published copy: every column but :data:`UNPUBLISHED_COLUMNS`."""
    columns = [
        r[0]
        for r in con.execute(
            "select column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'marts' and table_name = ? order by column_index",
            [mart],
        ).fetchall()
    ]
    kept = [c for c in columns if c not in UNPUBLISHED_COLUMNS]
    return ", ".join(_quote_ident(c) for c in kept) if kept else "*"


def _copy_comments(con: duckdb.DuckDBPyConnection, marts: list[str]) -> None:
    """Carry the table and column descriptions dbt persisted (persist_docs) into the snapshot,
    so BI tools show them. Best effort: a missing description is not an error."""
    tables = con.execute(
        "select table_name, comment from duckdb_tables() "
        "where database_name = current_database() and schema_name = 'marts' and comment is not null"
    ).fetchall()
    for table, comment in tables:
        if table in marts:
            con.execute(f"comment on table {SNAPSHOT_ALIAS}.marts.{table} is {_quote_literal(comment)}")
    columns = con.execute(
        "select table_name, column_name, comment from duckdb_columns() "
        "where database_name = current_database() and schema_name = 'marts' and comment is not null"
    ).fetchall()
    for table, column, comment in columns:
        if table in marts and column not in UNPUBLISHED_COLUMNS:
            con.execute(
                f"comment on column {SNAPSHOT_ALIAS}.marts.{table}.{_quote_ident(column)} is {_quote_literal(comment)}"
            )


def open_latest(path: Path | str, alias: str = "cx") -> duckdb.DuckDBPyConnection:
    """A connection that sees the snapshot published last, for processes that live across runs
    (notebooks, dashboards' Python back ends, services). ``duckdb.connect(path)`` hands back
    the database instance the process already has open for that path, so while any connection
    to it lives, every new one keeps seeing the snapshot of the first; this opens a fresh
    in-memory database and attaches the file read-only under ``alias`` (the marts are
    ``<alias>.marts.<mart>``), which reads whatever file the path names now. Close it when
    done; call again for the next query batch."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"attach {_quote_literal(str(path))} as {_quote_ident(alias)} (read_only)")
        con.execute(f"use {_quote_ident(alias)}")  # unqualified marts.<mart> reads the snapshot
    except Exception:
        con.close()
        raise
    return con


def check_snapshot(path: Path | str) -> dict:
    """Open a published file read-only and check it is complete: every mart of the contract
    is listed in ``published_marts``, and every listed mart holds exactly the rows recorded.

    Returns ``{"run_id", "as_of", "counts", "problems"}``; ``problems`` is empty for a
    complete snapshot. Used to verify a snapshot before it is swapped in, by the tests'
    polling readers, and usable as a health check by anything that reads the snapshot.
    """
    con = duckdb.connect(str(path), read_only=True)
    try:
        run_id, as_of = con.execute("select run_id, as_of from main.published").fetchone()
        recorded = dict(con.execute('select mart, "rows" from main.published_marts').fetchall())
        counts = {
            mart: con.execute(f"select count(*) from marts.{mart}").fetchone()[0]
            for mart in [*MARTS, *sorted(set(recorded) - set(MARTS))]
        }
    finally:
        con.close()
    problems = []
    if not set(MARTS) <= set(recorded):
        problems.append(f"published_marts lacks {sorted(set(MARTS) - set(recorded))}")
    problems += [
        f"marts.{m}: {counts[m]} rows, published_marts says {recorded.get(m)}"
        for m in counts
        if counts[m] != recorded.get(m)
    ]
    return {"run_id": run_id, "as_of": as_of, "counts": counts, "problems": problems}


def publish_snapshot(
    settings: Settings,
    as_of: datetime,
    run_id: str,
    dbt_invocation_id: str | None = None,
    target: Path | None = None,
) -> Path | None:
    """Publish the marts of ``settings.warehouse_path`` as the BI snapshot; return its path.

    ``target`` overrides :func:`published_path`. Returns ``None`` for the Postgres target.
    Raises :class:`PublishError` (leaving the previous snapshot in place) when the new file
    does not verify.
    """
    if settings.target != "duckdb":
        log.info("target %s: BI tools read the warehouse directly; no snapshot to publish", settings.target)
        return None
    started = time.perf_counter()
    path = Path(target) if target is not None else published_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.resolve() == Path(settings.warehouse_path).resolve():
        raise PublishError("the published path must not be the warehouse itself")
    storage = storage_version()  # a bad setting fails before anything is written
    clean_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    meta = {
        "run_id": run_id,
        "as_of": as_of.replace(tzinfo=None),
        "published_at": datetime.now(UTC).replace(tzinfo=None),
        "dbt_invocation_id": dbt_invocation_id,
    }
    # The pipeline's own connection config (not read_only), as in exports: DuckDB refuses a
    # connection with another configuration to a file this process already holds open (tasks
    # share one process under `airflow dags test`; dbt releases it after each invocation).
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("checkpoint")
        marts = _writer_marts(con)
        writer_counts = {mart: con.execute(f"select count(*) from marts.{mart}").fetchone()[0] for mart in marts}
        counts = _copy_marts(con, tmp, meta, marts, storage)
    except Exception:
        _remove(tmp)
        raise
    finally:
        con.close()
    try:
        check = check_snapshot(tmp)
        problems = list(check["problems"])
        if check["counts"] != writer_counts:
            problems.append(f"row counts {check['counts']} differ from the warehouse's {writer_counts}")
        if Path(str(tmp) + ".wal").exists():
            problems.append("the snapshot left a WAL file behind")
        if problems:
            raise PublishError("snapshot did not verify: " + "; ".join(problems))
        parquet = _publish_parquet(tmp, marts, parquet_dir(path))
        # Read-only on disk too: a BI tool that forgets read_only cannot open it for writing
        # (for non-root users), and nothing ever writes to a published file in place.
        tmp.chmod(0o444)
        os.replace(tmp, path)
    except Exception:
        _remove(tmp)
        raise
    elapsed = time.perf_counter() - started
    manifest = {
        "path": str(path),
        "run_id": run_id,
        "as_of": meta["as_of"].isoformat(),
        "published_at": meta["published_at"].isoformat() + "Z",
        "dbt_invocation_id": dbt_invocation_id,
        "metric_contract_version": METRIC_CONTRACT_VERSION,
        "duckdb_storage_version": storage,
        "parquet": parquet,
        "row_counts": counts,
        "bytes": path.stat().st_size,
        "seconds": round(elapsed, 3),
    }
    empty = [m for m in MARTS if counts.get(m) == 0]
    if empty:
        log.warning("published empty marts: %s", ", ".join(empty))
    manifest["empty_marts"] = empty
    _write_atomic(manifest_path(path), json.dumps(manifest, indent=2, sort_keys=True))
    log.info("published %s (%d bytes, %.2fs): %s", path, manifest["bytes"], elapsed, counts)
    return path


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
