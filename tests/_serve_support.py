"""Helpers for the serving tests: private copies of a built DuckDB warehouse, a full run of a
small demo world from an empty warehouse, and file checksums. Uses only the public functions
of ``_warehouse_fixture`` and of the pipeline."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cxloop.config import Settings


def private_settings(base: Settings, var: Path) -> Settings:
    """``base`` with every writable folder moved under ``var`` (the dbt project stays)."""
    settings = replace(
        base,
        var_dir=var,
        warehouse_path=var / "warehouse" / "cx.duckdb",
        landing_dir=var / "landing",
        quarantine_dir=var / "quarantine",
        exports_dir=var / "exports",
        logs_dir=var / "logs",
    )
    settings.ensure_dirs()
    return settings


def copy_warehouse(source: Settings, var: Path) -> Settings:
    """A private copy of ``source``'s DuckDB warehouse under ``var`` (checkpointed first)."""
    import duckdb

    settings = private_settings(source, var)
    con = duckdb.connect(str(source.warehouse_path))  # the pipeline's config: dbt may hold it
    con.execute("checkpoint")
    con.close()
    shutil.copy2(source.warehouse_path, settings.warehouse_path)
    return settings


def sql(settings: Settings, *statements: str) -> None:
    import duckdb

    con = duckdb.connect(str(settings.warehouse_path))
    try:
        for statement in statements:
            con.execute(statement)
        con.execute("checkpoint")
    finally:
        con.close()


def full_run(var: Path, source_dir: Path, token: str, as_of: datetime, run_id: str) -> dict:
    """Empty warehouse -> extract -> validate+load -> dbt build -> publish, export, report,
    summarise, all through the pipeline functions. Returns the paths it wrote."""
    from _warehouse_fixture import run_pipeline_once
    from cxloop import pipeline

    settings = Settings.from_env({"CXLOOP_VAR": str(var)})
    run_pipeline_once(settings, source_dir, token, as_of)
    out = {
        "snapshot": pipeline.publish(settings, as_of, run_id, None),
        "exports": pipeline.export(settings, as_of, run_id, None),
        "report": pipeline.report(settings, as_of, run_id, None),
    }
    out["pack"] = pipeline.pack(settings, as_of, run_id, None, out["exports"])
    out["summary"] = pipeline.summarise(settings, as_of, None, out["exports"])["path"]
    out["settings"] = settings
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checksums(folder: Path, skip: tuple[str, ...] = ("manifest.json",)) -> dict[str, str]:
    """sha256 of every file under ``folder`` (worklists/ included), by its path relative to it."""
    root = Path(folder)
    return {
        p.relative_to(root).as_posix(): sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() not in skip
    }
