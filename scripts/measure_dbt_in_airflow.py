"""Measure the two ways of running dbt inside Airflow (issue 7) and write the figures down.

    .venv/bin/python scripts/measure_dbt_in_airflow.py [--scale 0.2] [--repeats 5]
                                                       [--work DIR] [--skip-run]
                                                       [--out bench/results/dbt-in-airflow.md]

1. Builds a small demo warehouse in a scratch ``CXLOOP_VAR`` (generated demo data served by the
   demo Qualtrics/Salesforce server, extracted, gated and loaded, then one ``dbt build``), which
   also writes dbt's ``manifest.json``.
2. Writes a temporary astronomer-cosmos DAG file into a scratch dags folder (never into
   ``dags/``): the same dbt project rendered from that manifest (``LoadMode.DBT_MANIFEST``),
   seeds, snapshots, models and their tests as tasks, the ``duckdb`` target of
   ``dbt_project/profiles.yml`` and the same ``--vars`` (``as_of``) as ``cx_transform``.
3. Parse time: every DAG file of ``dags/`` and the cosmos file, each in a fresh Python process
   that imports ``airflow`` and ``airflow.sdk`` first (a DAG processor has both loaded) and then
   times only the execution of the DAG file; ``--repeats`` times each, median reported. The
   task count of every DAG comes from the same processes (outside the timed part).
4. Run time (wall clock, whole ``airflow dags test`` process): the single-task ``cx_transform``
   (``--conf '{"as_of": ...}'``) and then the cosmos DAG, both on the same warehouse.

Writes ``bench/results/dbt-in-airflow.md`` and prints it. Logs stay in ``<work>/logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

AS_OF = datetime(2026, 10, 1)
COSMOS_DAG_ID = "cx_transform_cosmos"

# The cosmos DAG file written into the scratch dags folder. Placeholders are filled with
# repr()s of absolute paths and the as_of string.
COSMOS_DAG_TEMPLATE = '''"""
### {dag_id}: the cxloop dbt project rendered by astronomer-cosmos (measurement only)

Written by scripts/measure_dbt_in_airflow.py into a scratch dags folder. Every seed, snapshot,
model and test of the dbt project is its own task, rendered from dbt's manifest.json.
"""

from datetime import datetime

from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, LoadMode, TestBehavior

{dag_id} = DbtDag(
    dag_id="{dag_id}",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["cx", "dbt", "cosmos", "measurement"],
    doc_md=__doc__,
    default_args={{"owner": "cx-data", "retries": 0}},
    project_config=ProjectConfig(
        dbt_project_path={project!r},
        manifest_path={manifest!r},
        dbt_vars={{"as_of": {as_of!r}}},
        install_dbt_deps=False,
    ),
    profile_config=ProfileConfig(
        profile_name="cxloop",
        target_name="duckdb",
        profiles_yml_filepath={profiles!r},
    ),
    render_config=RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        test_behavior=TestBehavior.AFTER_EACH,
        emit_datasets=False,
    ),
    execution_config=ExecutionConfig(
        execution_mode=ExecutionMode.LOCAL,
        dbt_executable_path={dbt!r},
    ),
)
'''

# Runs in a fresh interpreter: import Airflow first, then time only the DAG file.
PARSE_PROBE = r"""
import gc, json, runpy, sys, time
import airflow, airflow.sdk
path = sys.argv[1]
started = time.perf_counter()
ns = runpy.run_path(path)
elapsed = time.perf_counter() - started
from airflow.sdk import DAG
found = [v for v in gc.get_objects() if issubclass(type(v), DAG)]
dags = {v.dag_id: len(v.tasks) for v in found}
kinds = {}
for t in (t for v in found for t in v.tasks):
    kinds[type(t).__name__] = kinds.get(type(t).__name__, 0) + 1
print("PARSE_RESULT " + json.dumps({"seconds": elapsed, "tasks": dags, "kinds": kinds}))
"""


def log(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def build_warehouse(var: Path, scale: float, seed: int) -> dict:
    """Demo data -> demo server -> extract, gate, load (crm then survey) -> dbt build."""
    from cxloop.cli import demo_source_env
    from cxloop.config import Settings, source_from_env
    from cxloop.demo.generator import generate
    from cxloop.demo.server import DemoServer
    from cxloop.pipeline import build, extract, validate_and_load
    from cxloop.source_config import DOMAINS, load_source_config

    os.environ["CXLOOP_VAR"] = str(var)
    os.environ.setdefault("CXLOOP_PII_KEY", secrets.token_hex(32))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    settings = Settings.from_env()
    settings.ensure_dirs()
    started = time.perf_counter()
    generate(settings.demo_dir, seed=seed, scale=scale, as_of=AS_OF)
    log(f"demo data generated (scale {scale}) in {time.perf_counter() - started:.1f}s")
    token = secrets.token_urlsafe(16)
    config = load_source_config()
    with DemoServer(settings.demo_dir / "source", token=token) as base_url:
        os.environ.update(demo_source_env(settings, base_url, token, config.crm, config.survey))
        for domain in ("crm", "survey"):
            t = time.perf_counter()
            source = source_from_env(config.source_for(domain))
            batch = extract(source, settings, AS_OF, entities=DOMAINS[domain], config=config)
            validate_and_load([batch], settings, AS_OF)
            log(f"ingested {domain} from {source.name} in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    result = build(settings, AS_OF)
    log(f"dbt build (in-process) in {time.perf_counter() - t:.1f}s: {result['counts']}")
    return result


def write_cosmos_dag(dags_dir: Path, settings) -> Path:
    from cxloop.transform.dbt import dbt_vars, manifest_path

    dags_dir.mkdir(parents=True, exist_ok=True)
    path = dags_dir / f"{COSMOS_DAG_ID}.py"
    path.write_text(
        COSMOS_DAG_TEMPLATE.format(
            dag_id=COSMOS_DAG_ID,
            project=str(settings.dbt_project_dir),
            manifest=str(manifest_path(settings)),
            as_of=dbt_vars(AS_OF)["as_of"],
            profiles=str(settings.dbt_project_dir / "profiles.yml"),
            dbt=str(Path(sys.executable).with_name("dbt")),
        )
    )
    return path


def manifest_nodes(settings) -> dict[str, int]:
    from cxloop.transform.dbt import manifest_path

    manifest = json.loads(manifest_path(settings).read_text())
    counts: dict[str, int] = {}
    for node in manifest["nodes"].values():
        if node.get("package_name") == "cxloop":
            counts[node["resource_type"]] = counts.get(node["resource_type"], 0) + 1
    counts["unit_test"] = sum(1 for n in manifest.get("unit_tests", {}).values() if n.get("package_name") == "cxloop")
    return counts


def measure_parse(files: list[Path], env: dict[str, str], repeats: int, log_dir: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    with open(log_dir / "parse.log", "w") as fh:
        for path in files:
            times, tasks = [], {}
            for _ in range(repeats):
                proc = subprocess.run(
                    [sys.executable, "-c", PARSE_PROBE, str(path)], env=env, capture_output=True, text=True
                )
                fh.write(f"== {path} (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr[-4000:]}\n")
                line = next((x for x in proc.stdout.splitlines() if x.startswith("PARSE_RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    raise RuntimeError(f"parsing {path} failed; see {log_dir / 'parse.log'}")
                result = json.loads(line.split(" ", 1)[1])
                times.append(result["seconds"])
                tasks, kinds = result["tasks"], result["kinds"]
            out[path.name] = {"median_s": statistics.median(times), "runs_s": times, "tasks": tasks, "kinds": kinds}
            log(f"parse {path.name}: median {statistics.median(times):.3f}s over {repeats} ({tasks})")
    return out


def dags_test(dag_id: str, env: dict[str, str], log_path: Path, conf: dict | None, timeout: int) -> dict:
    cmd = [str(Path(sys.executable).with_name("airflow")), "dags", "test", dag_id]
    if conf is not None:
        cmd += ["--conf", json.dumps(conf)]
    started = time.perf_counter()
    with open(log_path, "w") as fh:
        try:
            rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    states: dict[str, int] = {}
    for state in re.findall(r"new_state=(\w+)", text):
        if state.lower() != "running":
            states[state.lower()] = states.get(state.lower(), 0) + 1
    started_tasks = text.count("[DAG TEST] starting task_id=")
    return {
        "dag_id": dag_id,
        "exit": rc,
        "wall_s": wall,
        "tasks_started": started_tasks,
        "states": states,
        "failed": rc != 0,
        "log": str(log_path),
    }


def render_markdown(info: dict) -> str:
    m = info["machine"]
    lines = [
        "# dbt inside Airflow: cosmos (one task per dbt node) vs one `dbt build` task",
        "",
        f"Measured {info['when']} by `scripts/measure_dbt_in_airflow.py` "
        f"(demo data scale {info['scale']}, as_of {AS_OF:%Y-%m-%d}).",
        "",
        f"Machine: {m['cores']} cores, load average {m['load_before']} before and {m['load_after']} after "
        f"(1/5/15 min; other work was running), {m['platform']}, Python {m['python']}; "
        f"Airflow {m['airflow']}, astronomer-cosmos {m['cosmos']}, dbt-core {m['dbt']}.",
        "",
        "dbt project (manifest): " + ", ".join(f"{v} {k}s" for k, v in sorted(info["nodes"].items())) + ".",
        "",
        f"## Parse time per DAG file (fresh process each, `airflow` + `airflow.sdk` imported first, "
        f"only the DAG file timed; median of {info['repeats']})",
        "",
        "| DAG file | DAGs (tasks) | median | all runs |",
        "|---|---|---|---|",
    ]
    for name, p in info["parse"].items():
        dags = ", ".join(f"{d} ({n})" for d, n in p["tasks"].items()) or "none: only imports cosmos"
        if name == f"{COSMOS_DAG_ID}.py":
            dags += ": " + ", ".join(f"{n} {k}" for k, n in sorted(p["kinds"].items()))
        runs = ", ".join(f"{x:.3f}" for x in p["runs_s"])
        lines.append(f"| `{name}` | {dags} | **{p['median_s']:.3f} s** | {runs} |")
    lines += ["", "## Run time (`airflow dags test`, wall clock of the whole process, same warehouse)", ""]
    if not info["runs"]:
        lines.append("Not measured (`--skip-run`).")
    else:
        lines += ["| DAG | tasks started | result | wall time |", "|---|---|---|---|"]
        for r in info["runs"]:
            if r["exit"] == 0:
                result = "success"
            else:
                result = "timed out" if r["exit"] is None else f"failed (exit {r['exit']})"
            states = ", ".join(f"{k} {v}" for k, v in sorted(r["states"].items()))
            lines.append(
                f"| `{r['dag_id']}` | {r['tasks_started']} | {result}{' (' + states + ')' if states else ''} "
                f"| **{r['wall_s']:.1f} s** |"
            )
    lines += ["", "Logs of this measurement: `" + info["log_dir"] + "` (a scratch folder outside the repository).", ""]
    if info.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in info["notes"]] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--skip-run", action="store_true", help="parse times only")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-timeout", type=int, default=1800, help="seconds per `airflow dags test`")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "dbt-in-airflow.md"))
    args = parser.parse_args(argv)

    import importlib.metadata as md

    work = Path(args.work or tempfile.mkdtemp(prefix="cxloop-dbt-in-airflow-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"work folder {work}")
    load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.build_only:
        build_warehouse(work / "var", args.scale, args.seed)
        return 0
    os.environ.setdefault("CXLOOP_PII_KEY", secrets.token_hex(32))  # the child inherits it
    built = [work / "var" / "warehouse" / "cx.duckdb", work / "var" / "dbt" / "target" / "manifest.json"]
    if all(p.exists() for p in built):
        log(f"reusing the warehouse and manifest already built in {work / 'var'}")
    else:
        # dbt-duckdb keeps the warehouse file open (and locked) in the process that ran dbt:
        # build it in a child process, so the `airflow dags test` processes can open it.
        cmd = [sys.executable, __file__, "--build-only", "--work", str(work)]
        subprocess.run(cmd + ["--scale", str(args.scale), "--seed", str(args.seed)], check=True)
    os.environ["CXLOOP_VAR"] = str(work / "var")
    from cxloop.config import Settings

    settings = Settings.from_env()

    from cxloop.airflow_home import airflow_env
    from cxloop.cli import prepare_airflow

    cosmos_file = write_cosmos_dag(work / "dags", settings)
    log(f"cosmos DAG file written to {cosmos_file}")
    log_dir = work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings)
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    env.update({"DO_NOT_TRACK": "1", "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False"})  # no usage metrics
    # what part of the cosmos file's parse is only importing cosmos (scratch file, not a DAG)
    import_only = work / "probe" / "import_cosmos_only.py"
    import_only.parent.mkdir(parents=True, exist_ok=True)
    import_only.write_text("from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig\n")
    files = sorted((ROOT / "dags").glob("*.py")) + [cosmos_file, import_only]
    parse = measure_parse(files, env, args.repeats, log_dir)

    runs, notes = [], []
    if not args.skip_run:
        log("migrating the scratch Airflow metadata database ...")
        prepare_airflow(env, log_dir)
        as_of = AS_OF.isoformat()
        project_env = dict(env, AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"))
        log("airflow dags test cx_transform ...")
        conf = {"as_of": as_of}
        runs.append(dags_test("cx_transform", project_env, log_dir / "cx_transform.log", conf, args.run_timeout))
        log(f"  {runs[-1]['wall_s']:.1f}s, exit {runs[-1]['exit']}")
        cosmos_env = dict(env, AIRFLOW__CORE__DAGS_FOLDER=str(cosmos_file.parent))
        log(f"airflow dags test {COSMOS_DAG_ID} ...")
        runs.append(dags_test(COSMOS_DAG_ID, cosmos_env, log_dir / "cosmos.log", None, args.run_timeout))
        log(f"  {runs[-1]['wall_s']:.1f}s, exit {runs[-1]['exit']}")
        for r in runs:
            if r["exit"] != 0:
                notes.append(f"`{r['dag_id']}` did not succeed (exit {r['exit']}); see its log `{r['log']}`.")

    info = {
        "when": f"{datetime.now():%Y-%m-%d %H:%M}",
        "scale": args.scale,
        "repeats": args.repeats,
        "machine": {
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
            "airflow": md.version("apache-airflow"),
            "cosmos": md.version("astronomer-cosmos"),
            "dbt": md.version("dbt-core"),
        },
        "nodes": manifest_nodes(settings),
        "parse": parse,
        "runs": runs,
        "log_dir": str(log_dir),
        "notes": notes,
    }
    text = render_markdown(info)
    (work / "result.json").write_text(json.dumps(info, indent=2, default=str))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    log(f"written to {out}")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
