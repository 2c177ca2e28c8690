"""The ``cxloop demo`` command: one demo world per warehouse, written only under the demo folder.

What the command does before Airflow runs (:func:`prepare` and :func:`demo_source_env`), then
:func:`run_demo` for the whole of it:

- **The world.** The demo world is generated once, at a horizon (:data:`DEMO_HORIZON`, or the
  day after an ``as_of`` asked for that is later), into ``settings.demo_dir``. A run at an earlier
  ``as_of`` sees that world cut at its ``as_of``: the HTTP sources are read through windows
  that end at ``as_of``, the demo file drop leaves out rows changed at or after it. So
  successive ``--keep`` runs at later dates replay one history, as a real source would serve
  it, and end where one fresh run at the last date ends.
- **The warehouse's record.** Next to the warehouse, ``<warehouse>.demo-world.json`` names the
  world it holds (seed, scale, start, horizon) and the ``as_of`` of every demo run into it.
  With ``--keep`` the demo serves that world again; a different seed or scale, an ``as_of``
  past the horizon, or a kept warehouse with no record is refused with one line. Without
  ``--keep`` the warehouse (and its record) start fresh.
- **Files.** Everything is written under ``settings.demo_dir``: the generator's ``source/``,
  ``truth/`` and ``ground_truth.json``; the file drop in ``drop/`` (whatever the configured
  ``drop_dir`` of the files source is: the demo's environment points the files source at its
  own folder), with the names it wrote kept in ``drop.written.json``. Only files the demo
  wrote are ever removed: the generator's outputs by their known names, the drop's by that
  record. Symbolic links are never followed or removed.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxloop.config import Settings, parse_as_of

DEMO_AS_OF = "2026-10-01T00:00:00"
#: The demo world is generated up to here (exclusive), or up to a later ``as_of`` asked for.
DEMO_HORIZON = parse_as_of(DEMO_AS_OF)
DEMO_DIRECTORY_ID = "POOL_cxloopdemo"
PROGRAMS = ("standard", "response-only")
WORLD_RECORD_SUFFIX = ".demo-world.json"
DROP_FOLDER = "drop"
DROP_RECORD = "drop.written.json"

# what the generator writes under its folder, besides source/qualtrics/responses/<survey>.json
_GENERATED = (
    "ground_truth.json",
    "landed.duckdb",  # cxloop.demo.landed, for --crm landed / --survey landed
    "source/salesforce/User.json",
    "source/salesforce/Account.json",
    "source/salesforce/Contact.json",
    "source/salesforce/Task.json",
    "source/salesforce/Opportunity.json",
    "source/qualtrics/surveys.json",
    "source/qualtrics/directory_contacts.json",
    "source/qualtrics/distributions.json",
    "source/qualtrics/distribution_history.json",
    "truth/faults.parquet",
)


class DemoRefused(Exception):
    """The demo cannot run as asked; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class DemoOptions:
    seed: int = 42
    scale: float = 1.0
    as_of: str = DEMO_AS_OF
    keep: bool = False
    crm: str = "salesforce"
    survey: str = "qualtrics"
    program: str = "standard"
    landed_crm_flavour: str = "fivetran_salesforce"  # with crm landed: cxloop.demo.landed.CRM_FLAVOURS


@dataclass(frozen=True)
class DemoPlan:
    """What :func:`prepare` settled: the world served and the run's sources."""

    options: DemoOptions
    as_of: datetime
    horizon: datetime
    truth: dict[str, Any]
    crm: str
    survey: str


def _say(progress: Any, text: str) -> None:
    if progress is not None:
        progress.step(text)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


# -- the warehouse's record of its world -----------------------------------------------------------


def world_record_path(settings: Settings) -> Path:
    return settings.warehouse_path.with_name(settings.warehouse_path.name + WORLD_RECORD_SUFFIX)


def read_world_record(settings: Settings) -> dict[str, Any] | None:
    path = world_record_path(settings)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DemoRefused(f"cxloop demo: {path} is not readable JSON; run without --keep to start fresh") from None


def _write_world_record(settings: Settings, record: dict[str, Any]) -> None:
    path = world_record_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _warehouse_exists(settings: Settings) -> bool:
    return settings.target != "duckdb" or settings.warehouse_path.exists()


def choose_horizon(settings: Settings, options: DemoOptions, as_of: datetime) -> datetime:
    """The horizon of the world this run serves; refuses (one line) what ``--keep`` cannot do."""
    day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    fresh = max(DEMO_HORIZON, day if day == as_of else day + timedelta(days=1))  # whole days
    if not options.keep:
        return fresh
    record = read_world_record(settings)
    if record is None:
        if _warehouse_exists(settings):
            raise DemoRefused(
                f"cxloop demo --keep: the warehouse has no record of the demo world it holds "
                f"({world_record_path(settings).name} is missing: not made by `cxloop demo`, or by an "
                "older version); run without --keep to start fresh"
            )
        return fresh
    held = (record.get("seed"), float(record.get("scale", "nan")))
    if held != (options.seed, float(options.scale)):
        raise DemoRefused(
            f"cxloop demo --keep: the warehouse holds the demo world of seed {held[0]}, scale {held[1]:g}; "
            f"asked for seed {options.seed}, scale {options.scale:g}: use those, or run without --keep"
        )
    horizon = parse_as_of(record["horizon"])
    if as_of > horizon:
        raise DemoRefused(
            f"cxloop demo --keep: as of {_iso(as_of)} is past {_iso(horizon)}, the end of the demo world the "
            "warehouse holds; run without --keep for a world up to that date"
        )
    return horizon


def start_fresh(settings: Settings) -> None:
    """Without ``--keep``: the DuckDB warehouse, its write-ahead log and its world record go.

    Only a warehouse the demo made (it has a world record) is removed: one without a record
    was made by ``cxloop run`` on someone's own data, or by hand, and is refused in one line."""
    if settings.target == "duckdb":
        if settings.warehouse_path.exists() and read_world_record(settings) is None:
            raise DemoRefused(
                f"cxloop demo: {settings.warehouse_path} holds a warehouse the demo did not make (no "
                f"{world_record_path(settings).name} beside it); the demo never deletes it: point "
                "CXLOOP_WAREHOUSE (or CXLOOP_VAR) elsewhere for the demo, or move the file yourself"
            )
        for path in (settings.warehouse_path, settings.warehouse_path.with_suffix(".duckdb.wal")):
            if path.is_symlink():
                raise DemoRefused(f"cxloop demo: {path} is a symbolic link; the demo never removes links")
            path.unlink(missing_ok=True)
    world_record_path(settings).unlink(missing_ok=True)


# -- the demo folder ------------------------------------------------------------------------------


def generated_files(demo_dir: Path) -> list[Path]:
    """The generator's outputs present under ``demo_dir`` (its fixed names, and one responses
    file per survey of ``source/qualtrics/surveys.json``): what a new world may replace."""
    out = [demo_dir / rel for rel in _GENERATED]
    out += [demo_dir / "truth" / f"{e}.parquet" for e in _entity_order()]
    surveys = demo_dir / "source" / "qualtrics" / "surveys.json"
    if surveys.is_file() and not surveys.is_symlink():
        try:
            ids = [s.get("id") for s in json.loads(surveys.read_text(encoding="utf-8"))]
        except (OSError, ValueError, AttributeError):
            ids = []
        out += [
            demo_dir / "source" / "qualtrics" / "responses" / f"{sid}.json"
            for sid in ids
            if isinstance(sid, str) and sid and Path(sid).name == sid and sid not in (".", "..")
        ]
    return [p for p in out if p.is_file() and not p.is_symlink()]


def _entity_order() -> tuple[str, ...]:
    from cxloop.contract import ENTITY_ORDER

    return ENTITY_ORDER


def _inside(root: Path, path: Path) -> bool:
    """``path`` lies in ``root`` with no symbolic link on the way."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return False
    here = root
    for part in rel.parts[:-1]:
        here = here / part
        if here.is_symlink():
            return False
    return True


def remove_generated(demo_dir: Path) -> int:
    """Remove the generator's outputs from ``demo_dir`` (nothing else), then the folders this
    left empty; returns the number of files removed."""
    if demo_dir.is_symlink():
        raise DemoRefused(f"cxloop demo: the demo folder {demo_dir} is a symbolic link; the demo never follows links")
    removed = 0
    for path in generated_files(demo_dir):
        if _inside(demo_dir, path):
            path.unlink()
            removed += 1
    for sub in ("source/qualtrics/responses", "source/qualtrics", "source/salesforce", "source", "truth"):
        folder = demo_dir / sub
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _world_of(truth: dict[str, Any]) -> tuple:
    return (truth.get("seed"), float(truth.get("scale", "nan")), str(truth.get("as_of", ""))[:19], truth.get("start"))


def demo_data(settings: Settings, seed: int, scale: float, horizon: datetime, progress: Any = None) -> dict:
    """The world (seed, scale, horizon) in ``settings.demo_dir``: reused when it is already
    there, else generated (after removing the generator's outputs of another world)."""
    from cxloop.demo.generator import DEFAULT_START, generate

    demo_dir = settings.demo_dir
    wanted = (seed, float(scale), _iso(horizon), DEFAULT_START.isoformat())
    truth_file = demo_dir / "ground_truth.json"
    if truth_file.is_file() and not truth_file.is_symlink():
        try:
            truth = json.loads(truth_file.read_text(encoding="utf-8"))
        except ValueError:
            truth = {}
        if _world_of(truth) == wanted:
            _say(progress, f"demo data (seed {seed}, scale {scale:g}, up to {_iso(horizon)}) already in {demo_dir}")
            return truth
        remove_generated(demo_dir)
    elif demo_dir.is_symlink():
        raise DemoRefused(f"cxloop demo: the demo folder {demo_dir} is a symbolic link; the demo never follows links")
    _say(progress, f"generating demo data: seed {seed}, scale {scale:g}, up to {_iso(horizon)} ...")
    truth = generate(demo_dir, seed=seed, scale=scale, as_of=horizon.replace(tzinfo=UTC), start=DEFAULT_START)
    served = truth.get("counts", {})
    _say(progress, "generated " + ", ".join(f"{e} {c.get('served')}" for e, c in served.items() if isinstance(c, dict)))
    return truth


def demo_drop_dir(settings: Settings) -> Path:
    return settings.demo_dir / DROP_FOLDER


def write_demo_drop(settings: Settings, as_of: datetime | None, program: str = "standard") -> Path:
    """The demo world as a file drop in ``demo_dir/drop``, cut at ``as_of``: the files an earlier
    demo wrote there (by its record) are removed first, nothing else is."""
    from cxloop.demo import file_drops

    drop = demo_drop_dir(settings)
    record = settings.demo_dir / DROP_RECORD
    if drop.is_symlink():
        raise DemoRefused(f"cxloop demo: the demo drop folder {drop} is a symbolic link; the demo never follows links")
    file_drops.remove_written(record, drop)
    others = file_drops.data_files(drop)
    if others:
        raise DemoRefused(
            f"cxloop demo: the demo drop folder {drop} holds {others[0]}, which the demo did not write; "
            "move it away (the demo never removes a file it did not write)"
        )
    if program == "response-only":
        writer = _response_only_writer()
        written = writer(settings.demo_dir, drop)
    else:
        written = file_drops.write_file_drops(settings.demo_dir, drop)
    file_drops.record_written(record, drop, written)
    if as_of is not None:
        file_drops.cut_at(drop, written, as_of.replace(tzinfo=UTC))
    return drop


def _response_only_writer():
    try:
        from cxloop.demo.response_only import write_response_only_drop
    except ImportError:
        raise DemoRefused("cxloop demo: --program response-only needs cxloop.demo.response_only") from None
    return write_response_only_drop


def demo_source_env(
    settings: Settings,
    base_url: str,
    token: str,
    crm: str,
    survey: str,
    progress: Any = None,
    *,
    as_of: datetime | str | None = None,
    program: str = "standard",
    landed_crm_flavour: str = "fivetran_salesforce",
) -> dict[str, str]:
    """Environment that points every source at the demo: the HTTP sources at the demo server,
    the file-drop source at the demo's own drop folder (``demo_dir/drop``), written from the
    same demo data and cut at ``as_of``. The configured drop folder is never read or written."""
    env = {
        "CXLOOP_CRM_SOURCE": crm,
        "CXLOOP_SURVEY_SOURCE": survey,
        "CXLOOP_PII_KEY": os.environ["CXLOOP_PII_KEY"],
        "CXLOOP_QUALTRICS_OPT_DIRECTORY_ID": DEMO_DIRECTORY_ID,
    }
    for name in ("salesforce", "hubspot", "qualtrics"):
        env[f"CXLOOP_{name.upper()}_BASE_URL"] = base_url
        env[f"CXLOOP_{name.upper()}_TOKEN"] = token
    if "files" in (crm, survey):
        cut = parse_as_of(as_of) if as_of is not None else None
        drop = write_demo_drop(settings, cut, program)
        env["CXLOOP_FILES_OPT_DROP_DIR"] = str(drop)
        _say(progress, f"demo data also written as a file drop in {drop}" + (f" (as of {_iso(cut)})" if cut else ""))
    if "landed" in (crm, survey):
        from cxloop.demo.landed import CRM_SCHEMAS, DEMO_LANDED_FILE, SURVEY_SCHEMA, write_landed

        landed = write_landed(settings.demo_dir, settings.demo_dir / DEMO_LANDED_FILE)
        env.update(
            {
                "CXLOOP_LANDED_OPT_DATABASE": str(landed),
                "CXLOOP_LANDED_OPT_CRM_SCHEMA": CRM_SCHEMAS[landed_crm_flavour],
                "CXLOOP_LANDED_OPT_CRM_FLAVOUR": landed_crm_flavour,
                "CXLOOP_LANDED_OPT_SURVEY_SCHEMA": SURVEY_SCHEMA,
                "CXLOOP_LANDED_OPT_SURVEY_FLAVOUR": "fivetran_qualtrics",
                "CXLOOP_LANDED_OPT_DIRECTORY_ID": DEMO_DIRECTORY_ID,
            }
        )
        crm_note = f", CRM read as {landed_crm_flavour}" if crm == "landed" else ""
        _say(progress, f"demo data also written as Fivetran- and Airbyte-landed tables in {landed}{crm_note}")
    program_note = ", response-only program" if program != "standard" else ""
    _say(progress, f"sources: CRM from {crm}, surveys from {survey}{program_note}")
    return env


def prepare(settings: Settings, options: DemoOptions, progress: Any = None) -> DemoPlan:
    """Everything before the demo server starts: the sources, the world (generated or reused),
    the warehouse started fresh (without ``--keep``) and its world record."""
    from cxloop.demo.generator import DEFAULT_START

    if options.program not in PROGRAMS:
        raise DemoRefused(f"cxloop demo: unknown program {options.program!r}; known: {', '.join(PROGRAMS)}")
    survey = options.survey
    if options.program == "response-only":
        _response_only_writer()  # refuse before anything is generated
        if survey != "files":
            _say(progress, "a response-only program records its responses in files: surveys from files")
            survey = "files"
    as_of = parse_as_of(options.as_of)
    horizon = choose_horizon(settings, options, as_of)
    truth = demo_data(settings, options.seed, options.scale, horizon, progress)
    record = read_world_record(settings) if options.keep else None
    if not options.keep:
        start_fresh(settings)
    runs = list((record or {}).get("runs", []))
    runs.append({"as_of": _iso(as_of), "crm": options.crm, "survey": survey, "program": options.program})
    _write_world_record(
        settings,
        {
            "seed": options.seed,
            "scale": float(options.scale),
            "start": DEFAULT_START.isoformat(),
            "horizon": _iso(horizon),
            "runs": runs,
        },
    )
    return DemoPlan(options, as_of, horizon, truth, options.crm, survey)


def run_demo(settings: Settings, options: DemoOptions, progress: Any) -> int:
    """The whole demo: prepare, serve, run the DAGs through Airflow, print the summary."""
    from cxloop.airflow_home import airflow_env
    from cxloop.cli import ensure_pii_key, run_dags
    from cxloop.demo.server import DemoServer

    settings.ensure_dirs()
    ensure_pii_key(settings)
    try:
        plan = prepare(settings, options, progress)
        token = secrets.token_urlsafe(24)
        with DemoServer(settings.demo_dir / "source", token=token) as base_url:
            _say(progress, f"demo Qualtrics + Salesforce server listening on {base_url}")
            env = airflow_env(settings)
            env.update(
                demo_source_env(
                    settings, base_url, token, plan.crm, plan.survey, progress,
                    as_of=plan.as_of, program=options.program, landed_crm_flavour=options.landed_crm_flavour,
                )
            )  # fmt: skip
            rc = run_dags(settings, env, options.as_of, progress)
    except DemoRefused as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 2
    if rc != 0:
        return rc
    summary_path = settings.logs_dir / "last_run_summary.txt"
    if not summary_path.exists():
        _say(progress, f"the DAG finished but wrote no summary at {summary_path}")
        return 1
    _say(progress, "done")
    print(summary_path.read_text())
    print(f"  {'airflow log':<13}{settings.logs_dir / 'airflow-dags-test.log'}")
    return 0


__all__ = [
    "DEMO_AS_OF",
    "DEMO_DIRECTORY_ID",
    "DEMO_HORIZON",
    "PROGRAMS",
    "DemoOptions",
    "DemoPlan",
    "DemoRefused",
    "demo_data",
    "demo_source_env",
    "prepare",
    "run_demo",
]
