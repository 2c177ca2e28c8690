"""The BI snapshot: a verified read-only copy of the marts, swapped in atomically, that readers
poll without ever seeing a lock error or a partial snapshot while consecutive runs publish."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import stat
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from _warehouse_fixture import build_marts, poll_published, warehouse_copy
from cxloop.config import Settings
from cxloop.serve.exports import MARTS
from cxloop.serve.publish import PublishError, check_snapshot, manifest_path, publish_snapshot, published_path

pytestmark = pytest.mark.e2e

N_READERS = 3


@pytest.fixture(scope="module")
def private(demo_warehouse, tmp_path_factory):
    """A copy of the shared demo warehouse in a var folder of its own (these tests rebuild it)."""
    return warehouse_copy(demo_warehouse, tmp_path_factory.mktemp("publish-var")), demo_warehouse


def _open_paths() -> set[str]:
    fds = Path("/proc/self/fd")
    out = set()
    for fd in fds.iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            pass
    return out


def _writer_counts(settings: Settings) -> dict[str, int]:
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        tables = con.execute(
            "select table_name from duckdb_tables() where database_name = current_database() and schema_name = 'marts'"
        ).fetchall()
        assert set(MARTS) <= {t for (t,) in tables}
        return {t: con.execute(f"select count(*) from marts.{t}").fetchone()[0] for (t,) in tables}
    finally:
        con.close()


def test_published_path_defaults_under_var(private, monkeypatch):
    settings, _ = private
    monkeypatch.delenv("CXLOOP_PUBLISHED", raising=False)
    assert published_path(settings) == settings.var_dir / "published" / "cx.duckdb"
    monkeypatch.setenv("CXLOOP_PUBLISHED", str(settings.var_dir / "elsewhere" / "bi.duckdb"))
    assert published_path(settings) == settings.var_dir / "elsewhere" / "bi.duckdb"


def test_publish_writes_a_verified_read_only_copy_of_the_marts(private, tmp_path):
    settings, shared = private
    target = tmp_path / "published" / "cx.duckdb"
    path = publish_snapshot(settings, shared.as_of, "run-1", "inv-1", target=target)
    assert path == target
    check = check_snapshot(path)
    assert check["problems"] == []
    assert check["run_id"] == "run-1" and check["as_of"] == shared.as_of
    assert check["counts"] == _writer_counts(settings)
    assert all(n > 0 for n in check["counts"].values())
    # only the marts and the bookkeeping: no raw layer (names, quarantined records) in BI's copy
    con = duckdb.connect(str(path), read_only=True)
    try:
        schemas = {r[0] for r in con.execute("select distinct schema_name from duckdb_tables()").fetchall()}
        described = con.execute(
            "select count(*) from duckdb_columns() where schema_name = 'marts' and comment is not null"
        ).fetchone()[0]
        with pytest.raises(duckdb.Error):
            con.execute("create table marts.x as select 1")
    finally:
        con.close()
    assert schemas == {"marts", "main"}
    assert described > 0, "the column descriptions dbt persisted should reach BI tools"
    assert not stat.S_IMODE(path.stat().st_mode) & 0o222, "a published file is read-only on disk"
    manifest = json.loads(manifest_path(path).read_text())
    assert manifest["row_counts"] == check["counts"] and manifest["run_id"] == "run-1"
    assert manifest["dbt_invocation_id"] == "inv-1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["cx.duckdb", "cx.json", "marts"], "temp files left"
    # every mart also as Parquet at a stable path, with the snapshot's rows, read-only on disk
    parquet = {f.stem: f for f in (path.parent / "marts").iterdir()}
    assert set(parquet) == set(check["counts"]), sorted(parquet)
    assert {m: pq.read_metadata(f).num_rows for m, f in parquet.items()} == check["counts"]
    assert manifest["parquet"] == {m: f"marts/{m}.parquet" for m in check["counts"]}
    assert all(not stat.S_IMODE(f.stat().st_mode) & 0o222 for f in parquet.values())
    assert str(path) not in _open_paths(), "the writer must not hold the published file"


def test_publish_refuses_the_warehouse_itself_and_postgres_is_a_no_op(private):
    settings, shared = private
    with pytest.raises(PublishError):
        publish_snapshot(settings, shared.as_of, "r", target=settings.warehouse_path)
    assert publish_snapshot(replace(settings, target="postgres"), shared.as_of, "r") is None


def test_readers_polling_during_consecutive_runs_see_no_lock_errors_and_only_complete_snapshots(private):
    settings, shared = private
    path = settings.var_dir / "published" / "cx.duckdb"
    timings = {}
    t = time.perf_counter()
    publish_snapshot(settings, shared.as_of, "run-0", target=path)
    timings["run-0"] = time.perf_counter() - t

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    results, progress = ctx.Queue(), ctx.Queue()
    readers = [
        ctx.Process(target=poll_published, args=(str(path), stop, results, i, progress)) for i in range(N_READERS)
    ]
    first_seen: dict[str, set[int]] = {}

    def wait_until_every_reader_saw(run_id: str) -> None:
        """Instead of a fixed sleep: every reader has polled this run's snapshot at least once."""
        deadline = time.monotonic() + 60
        while len(first_seen.get(run_id, ())) < N_READERS:
            reader_no, seen_run = progress.get(timeout=max(0.1, deadline - time.monotonic()))
            first_seen.setdefault(seen_run, set()).add(reader_no)

    for proc in readers:
        proc.start()
    expected_counts: dict[str, dict[str, int]] = {}
    try:
        wait_until_every_reader_saw("run-0")  # the readers have started polling

        # the warehouse before run-1's rebuild: run-3 goes back to it by a file copy (what a
        # second dbt build at the shared as_of would rebuild, at a fraction of the cost)
        before = settings.warehouse_path.with_name("before-run-1.duckdb")
        shutil.copyfile(settings.warehouse_path, before)

        def run(
            run_id: str, *, as_of: datetime | None = None, edit: str | None = None, restore: bool = False
        ) -> None:
            if as_of is not None:  # a real rebuild of every model by dbt
                build_marts(settings, as_of)
            if restore:
                shutil.copyfile(before, settings.warehouse_path)
            if edit is not None:
                con = duckdb.connect(str(settings.warehouse_path))
                con.execute(edit)
                con.close()
            started = time.perf_counter()
            publish_snapshot(settings, as_of or shared.as_of, run_id, target=path)
            timings[run_id] = time.perf_counter() - started
            expected_counts[run_id] = _writer_counts(settings)
            wait_until_every_reader_saw(run_id)  # no reader misses a run

        run("run-1", as_of=datetime(2026, 7, 1))  # an earlier window: other row counts
        run("run-2", edit="delete from marts.data_quality where rowid % 3 = 0")
        run("run-3", restore=True)
        run("run-4")
        run("run-5", edit="delete from marts.account_nps where rowid % 5 = 0")
    finally:
        stop.set()
        summaries = [results.get(timeout=60) for _ in readers]
        for proc in readers:
            proc.join(timeout=30)
    assert all(proc.exitcode == 0 for proc in readers)
    polls = sum(s["polls"] for s in summaries)
    errors = [e for s in summaries for e in s["errors"]]
    incomplete = [e for s in summaries for e in s["incomplete"]]
    seen = {run_id for s in summaries for run_id in s["seen"]}
    print(  # noqa: T201 - the measured figures, shown with -s
        f"\npublish seconds {json.dumps({k: round(v, 3) for k, v in timings.items()})}; "
        f"{N_READERS} readers, {polls} polls, {len(errors)} errors, {len(incomplete)} incomplete, "
        f"snapshots seen per reader {[s['seen'] for s in summaries]}"
    )
    assert errors == []
    assert incomplete == []
    assert polls >= 50 * N_READERS
    assert seen == {f"run-{i}" for i in range(6)}, f"readers only saw {sorted(seen)}"
    assert all(set(s["seen"]) == seen for s in summaries), "every reader saw every run"
    assert len({json.dumps(c, sort_keys=True) for c in expected_counts.values()}) >= 3, "runs should differ"
    final = check_snapshot(path)
    assert final["run_id"] == "run-5" and final["counts"] == expected_counts["run-5"]
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in {"cx.duckdb", "cx.json", "marts"}]
    leftovers += [p.name for p in (path.parent / "marts").iterdir() if not p.name.endswith(".parquet")]
    assert leftovers == []
    assert pq.read_metadata(path.parent / "marts" / "account_nps.parquet").num_rows == expected_counts["run-5"][
        "account_nps"
    ], "the Parquet files are the last run's"


def test_the_snapshot_opens_in_the_duckdb_1x_command_line_client(private, tmp_path, monkeypatch):
    """What BI drivers and the CLI of DuckDB 1.x read: the registry's duckdb-cli (1.5) opens the
    snapshot and counts what the warehouse holds; the same marts in DuckDB's newest format are
    what it cannot open, which is why the snapshot is written in v1.4.0's."""
    import subprocess
    import sys

    from cxloop.serve.publish import STORAGE_ENV

    settings, shared = private
    cli = Path(sys.executable).with_name("duckdb")  # the console script of the duckdb-cli package
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v1."), version

    def count_in_cli(path: Path) -> subprocess.CompletedProcess:
        sql = "select count(*) from marts.account_nps"
        return subprocess.run([str(cli), "-readonly", "-csv", "-noheader", str(path), "-c", sql],
                              capture_output=True, text=True, timeout=60)

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    path = publish_snapshot(settings, shared.as_of, "cli", target=tmp_path / "compatible" / "cx.duckdb")
    opened = count_in_cli(path)
    assert opened.returncode == 0, opened.stderr
    assert int(opened.stdout.strip()) == _writer_counts(settings)["account_nps"] > 0
    assert json.loads(manifest_path(path).read_text())["duckdb_storage_version"] == "v1.4.0"

    monkeypatch.setenv(STORAGE_ENV, "latest")
    newest = publish_snapshot(settings, shared.as_of, "cli", target=tmp_path / "newest" / "cx.duckdb")
    refused = count_in_cli(newest)
    assert refused.returncode != 0 and "version number" in refused.stderr, refused.stderr

    monkeypatch.setenv(STORAGE_ENV, "1.4; drop table x")
    with pytest.raises(PublishError, match=f"^{STORAGE_ENV}: .* is not a DuckDB version like v1.4.0"):
        publish_snapshot(settings, shared.as_of, "cli", target=tmp_path / "bad" / "cx.duckdb")
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_a_long_lived_process_sees_the_newest_snapshot_through_open_latest(private, tmp_path):
    """DuckDB caches a database instance per path and process: while one connection to the
    snapshot lives, duckdb.connect(path) keeps returning the first snapshot's data. open_latest
    reads the file the path names now. Both halves are checked, so the test fails if either the
    caching goes away unnoticed (the docs would then say too much) or the helper stops working."""
    from cxloop.serve.publish import open_latest

    settings, shared = private
    path = tmp_path / "published" / "cx.duckdb"
    publish_snapshot(settings, shared.as_of, "run-old", target=path)
    held = duckdb.connect(str(path), read_only=True)  # e.g. a notebook's connection, kept open
    try:
        publish_snapshot(settings, shared.as_of, "run-new", target=path)
        again = duckdb.connect(str(path), read_only=True)
        try:
            assert again.execute("select run_id from main.published").fetchone()[0] == "run-old"
        finally:
            again.close()
        latest = open_latest(path)
        try:
            assert latest.execute("select run_id from main.published").fetchone()[0] == "run-new"
            assert latest.execute("select count(*) from marts.account_nps").fetchone()[0] > 0
            with pytest.raises(duckdb.Error):
                latest.execute("create table marts.x as select 1")
        finally:
            latest.close()
    finally:
        held.close()
