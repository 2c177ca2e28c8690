"""The session's demo warehouse, built once and shared by every test that only reads it.

Generated demo data (seed 11, scale 0.2, as of 2026-10-01) -> demo HTTP sources (Salesforce,
Qualtrics) -> pipeline.extract / validate_and_load / build, called directly (no Airflow), once per
session, in a background process that conftest starts at collection (tests/_background.py),
in a temporary folder. Read by the serving tests (publish, exports,
report, serve_marts), test_parity (its DuckDB side, and the landed batches it loads into
Postgres) and test_incremental (its one full extraction). The pytest fixture
``demo_warehouse`` (tests/conftest.py) returns it. Tests that change a warehouse work on a
copy (a DuckDB file copies in well under a second) or build their own with
:func:`new_warehouse`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import _background
from cxloop.config import Settings, SourceSettings

AS_OF = datetime(2026, 10, 1)
SEED = 11
SCALE = 0.2
QUALTRICS_OPTIONS = {"directory_id": "POOL_cxloopdemo"}


@dataclass
class BuiltWarehouse:
    settings: Settings
    as_of: datetime
    truth: dict
    load_report: dict
    build_report: dict
    source_dir: Path
    token: str
    batches: list[dict] = field(default_factory=list)  # the landed batches (salesforce, qualtrics)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage of the build

    def sources(self, base_url: str) -> list[SourceSettings]:
        return [
            SourceSettings(name="salesforce", base_url=base_url, token=self.token),
            SourceSettings(name="qualtrics", base_url=base_url, token=self.token, options=QUALTRICS_OPTIONS),
        ]


def build_marts(settings: Settings, as_of: datetime) -> dict:
    """pipeline.build (dbt in this process), leaving os.environ as it was: run_dbt points
    CXLOOP_WAREHOUSE at the warehouse, which must not leak into later tests' Settings."""
    import os

    from cxloop import pipeline

    before = os.environ.get("CXLOOP_WAREHOUSE")
    try:
        return pipeline.build(settings, as_of)
    finally:
        if before is None:
            os.environ.pop("CXLOOP_WAREHOUSE", None)
        else:
            os.environ["CXLOOP_WAREHOUSE"] = before


def run_pipeline_once(settings: Settings, source_dir: Path, token: str, as_of: datetime) -> tuple[dict, dict]:
    """extract (both sources) -> validate_and_load -> build against a demo server on source_dir."""
    _, load_report, build_report, _ = _run_pipeline(settings, source_dir, token, as_of)
    return load_report, build_report


def _run_pipeline(settings: Settings, source_dir: Path, token: str, as_of: datetime):
    """(landed batches, load report, build report, seconds per stage) of one pipeline pass."""
    import time

    from cxloop import pipeline
    from cxloop.demo.server import DemoServer

    timings = {}
    started = time.perf_counter()
    with DemoServer(source_dir, token=token) as base_url:
        batches = [
            pipeline.extract(SourceSettings(name="salesforce", base_url=base_url, token=token), settings, as_of),
            pipeline.extract(
                SourceSettings(name="qualtrics", base_url=base_url, token=token, options=QUALTRICS_OPTIONS),
                settings,
                as_of,
            ),
        ]
    timings["extract"] = time.perf_counter() - started
    started = time.perf_counter()
    load_report = pipeline.validate_and_load(batches, settings, as_of)
    timings["load"] = time.perf_counter() - started
    started = time.perf_counter()
    build_report = build_marts(settings, as_of)
    timings["build"] = time.perf_counter() - started
    return batches, load_report, build_report, timings


@_background.prestart("demo_warehouse")
def _shared_build(_param=None) -> BuiltWarehouse:
    """The shared warehouse's build: in a background process that tests/conftest.py starts at
    collection (tests/_background.py), so the pytest process never spends its ~25 s."""
    return new_warehouse(_background.workdir("cxloop-serving"))


def built_warehouse() -> BuiltWarehouse:
    """The session's shared warehouse (the same object for every caller). Treat it as read-only:
    tests that change the warehouse build their own with :func:`new_warehouse`. Ask for it
    through the ``demo_warehouse`` fixture, so that conftest knows the test waits on it."""
    return _background.result("demo_warehouse")


def warehouse_copy(wh: BuiltWarehouse, var: Path) -> Settings:
    """Settings whose warehouse is a private copy of ``wh``'s (checkpointed first, so the copy
    holds every committed row), every other writable folder under ``var``. For tests that
    change the warehouse, or open it read-only: dbt, run in this process, may still hold the
    shared file with another configuration."""
    import shutil
    from dataclasses import replace

    import duckdb

    settings = replace(
        wh.settings,
        var_dir=var,
        warehouse_path=var / "warehouse" / "cx.duckdb",
        landing_dir=var / "landing",
        quarantine_dir=var / "quarantine",
        exports_dir=var / "exports",
        logs_dir=var / "logs",
    )
    settings.ensure_dirs()
    con = duckdb.connect(str(wh.settings.warehouse_path))  # the pipeline's configuration
    try:
        con.execute("checkpoint")
    finally:
        con.close()
    shutil.copy2(wh.settings.warehouse_path, settings.warehouse_path)
    return settings


def new_warehouse(var: Path) -> BuiltWarehouse:
    import os

    from cxloop.demo.generator import generate

    truth = generate(var / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    env = {"CXLOOP_VAR": str(var)}
    for name in ("CXLOOP_DBT_PROJECT", "CXLOOP_EXPECTATIONS"):  # e.g. to try another checkout of either
        if os.environ.get(name):
            env[name] = os.environ[name]
    settings = Settings.from_env(env)
    token = secrets.token_urlsafe(16)
    source_dir = var / "demo" / "source"
    batches, load_report, build_report, timings = _run_pipeline(settings, source_dir, token, AS_OF)
    return BuiltWarehouse(settings, AS_OF, truth, load_report, build_report, source_dir, token, batches, timings)


# -- readers of the published snapshot (run in child processes by test_publish) -----------------


def poll_published(
    path: str, stop, results, reader_no: int, progress=None, hold_every: int = 4, hold_s: float = 0.15
) -> None:
    """Poll the published snapshot until ``stop`` is set: open read-only, check every mart's
    row count against the snapshot's own published_marts, close. Every ``hold_every``-th poll
    keeps its connection open for ``hold_s`` between reading the bookkeeping and counting, so
    swaps happen while readers hold the old file. Puts one summary dict on ``results``, and
    ``(reader_no, run_id)`` on ``progress`` (when given) the first time it sees a run."""
    import time

    import duckdb
    from cxloop.serve.exports import MARTS
    from cxloop.serve.publish import check_snapshot

    polls, errors, incomplete, seen = 0, [], [], {}
    while not stop.is_set():
        polls += 1
        try:
            if polls % hold_every == 0:
                con = duckdb.connect(path, read_only=True)
                try:
                    run_id = con.execute("select run_id from main.published").fetchone()[0]
                    recorded = dict(con.execute('select mart, "rows" from main.published_marts').fetchall())
                    time.sleep(hold_s)
                    counts = {m: con.execute(f"select count(*) from marts.{m}").fetchone()[0] for m in recorded}
                finally:
                    con.close()
                problems = [m for m in MARTS if m not in recorded] + [m for m in recorded if counts[m] != recorded[m]]
            else:
                check = check_snapshot(path)
                run_id, problems = check["run_id"], check["problems"]
            if run_id not in seen and progress is not None:
                progress.put((reader_no, run_id))
            seen[run_id] = seen.get(run_id, 0) + 1
            if problems:
                incomplete.append(f"{run_id}: {problems}")
        except Exception as exc:  # every error is a finding: lock, missing table, torn file
            errors.append(f"{type(exc).__name__}: {exc}")
        # a pause between polls: readers spinning at 5 ms took most of both cores from the
        # writer's dbt build they are meant to race
        time.sleep(0.05)
    results.put({"reader": reader_no, "polls": polls, "errors": errors, "incomplete": incomplete, "seen": seen})


# -- PII needles: what must never appear in an export, the report or the snapshot ----------------


def pii_needles(source_dir: Path, warehouse_path: Path) -> dict[str, set[str]]:
    """Personal data of the demo sources: e-mail addresses and contact names (as served by the
    demo Salesforce and Qualtrics), contact ids, Qualtrics contact ids, e-mail hashes and owner
    names (from the raw layer)."""
    import json

    import duckdb

    contacts = json.loads((source_dir / "qualtrics" / "directory_contacts.json").read_text())
    sf_contacts = json.loads((source_dir / "salesforce" / "Contact.json").read_text())
    needles: dict[str, set[str]] = {
        "email": {c["email"].lower() for c in contacts if c.get("email")}
        | {c["Email"].lower() for c in sf_contacts if c.get("Email")},
        "contact name": {
            f"{c['firstName']} {c['lastName']}".lower() for c in contacts if c.get("firstName") and c.get("lastName")
        },
        "contact id": {c["Id"].lower() for c in sf_contacts} | {c["contactId"].lower() for c in contacts},
    }
    # the pipeline's connection config: dbt, run in this process, may still hold the file
    con = duckdb.connect(str(warehouse_path))
    try:

        def column(sql: str) -> set[str]:
            return {r[0].lower() for r in con.execute(sql).fetchall() if r[0]}

        needles["email hash"] = column("select email_hash from raw.contacts")
        needles["owner name"] = column("select owner_name from raw.owners")
        needles["response id"] = column("select response_id from raw.responses")
    finally:
        con.close()
    return needles


EMAIL_PATTERN = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"


def find_pii(text: str, needles: dict[str, set[str]]) -> list[str]:
    """Every e-mail address and every needle found in ``text`` (case-insensitive, as whole
    tokens or, for multi-word needles such as names, as consecutive words)."""
    import re

    found = [f"e-mail address {m!r}" for m in re.findall(EMAIL_PATTERN, text)]
    low = text.lower()
    tokens = set(re.findall(r"[a-z0-9_]+", low))
    words = re.findall(r"[a-z0-9_'-]+", low)
    grams = {" ".join(words[i : i + k]) for k in (2, 3, 4) for i in range(len(words) - k + 1)}
    for kind, values in needles.items():
        found += [f"{kind} {v!r}" for v in values if v and (v in tokens or v in grams)]
    return found
