"""The distributed deployment, proven on one machine without Docker (`make celery`).

Starts Airflow with the CeleryExecutor against the local PostgreSQL (a fresh metadata
database) and Redis (a broker database of its own): api-server (it also serves the execution
API the workers report to), scheduler, dag-processor, triggerer and two Celery workers with
distinct hostnames. It generates demo data, serves it through the demo Qualtrics/Salesforce
server, triggers the ingestion DAG(s), waits for the downstream DAG, and asserts that

  * every DAG run in the metadata database succeeded,
  * task instances ran on both workers (``task_instance.hostname``, cross-checked against the
    Celery task ids each worker's own log says it received),
  * the Postgres warehouse's ``marts`` schema has rows.

Every process it starts is stopped again (process groups, on success, failure, Ctrl-C or
SIGTERM); the logs stay in ``var/celery/logs``. Exit code 0 only on success.

Both workers run on this machine, so their fully qualified host names would be the same.
Each worker therefore gets its own name through Airflow's ``[core] hostname_callable``
(``worker_hostname`` below reads it from the worker's environment): the name Airflow records
in ``task_instance.hostname`` is the worker that ran the task, as on separate machines.

A triggered DAG on a time schedule (the ingestion DAGs are @daily) is triggered for its next
logical date before it is unpaused, so the scheduler adds no scheduled run of its own; DAGs on
asset (or no) schedules are unpaused first; other time-scheduled DAGs stay paused.

    .venv/bin/python scripts/celery_run.py [--trigger cx_ingest_crm,cx_ingest_survey]
                                           [--wait-for cx_publish] [--timeout 900] ...
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER_NAME_ENV = "CXLOOP_CELERY_WORKER_NAME"
DEFAULT_TRIGGER = "cx_ingest_crm,cx_ingest_survey"
DEFAULT_WAIT_FOR = "cx_publish"
DEFAULT_AS_OF = "2026-10-01T00:00:00"
ACTIVE = ("queued", "running")
REPORTED_TI_STATES = ("running", "success", "failed", "up_for_retry", "upstream_failed")


def worker_hostname() -> str:
    """Airflow ``[core] hostname_callable`` of the workers this script starts: the worker's own
    name (set in its environment), so two workers on one machine are told apart."""
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


class RunError(Exception):
    """The run failed; the message says why (and where to look)."""


def log(text: str, started: float = time.monotonic()) -> None:  # noqa: B008 - the script's start time
    print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------- processes


def _die_with_parent(argv: list[str]) -> list[str]:
    """The command, run so that it gets SIGTERM should this script die without cleaning up
    (SIGKILL): util-linux ``setpriv --pdeathsig``, where available (no preexec_fn in a process
    that may have threads)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


@dataclass
class Component:
    name: str
    proc: subprocess.Popen
    log_path: Path


class Processes:
    """Every long-running process of the deployment, each in its own process group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.components: list[Component] = []
        self.stopped = False

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Component:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "w") as fh:
            proc = subprocess.Popen(
                _die_with_parent(argv),
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        component = Component(name, proc, log_path)
        self.components.append(component)
        log(f"started {name} (pid {proc.pid}), log {log_path.relative_to(ROOT)}")
        return component

    def check_alive(self) -> None:
        for c in self.components:
            rc = c.proc.poll()
            if rc is not None:
                raise RunError(f"{c.name} exited (code {rc}); the end of {c.log_path}:\n{tail(c.log_path)}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to every process group (workers first), then SIGKILL to whatever is left."""
        if self.stopped:
            return
        self.stopped = True
        if not self.components:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not cut this short
            signal.signal(sig, signal.SIG_IGN)
        log(f"stopping {len(self.components)} processes ...")
        for c in sorted(self.components, key=lambda c: not c.name.startswith("worker")):
            _signal_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.components:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{c.name} did not stop within {grace:.0f}s: killing it")
        for c in self.components:  # the leader may be gone while its children are not
            _signal_group(c.proc.pid, signal.SIGKILL)
            try:
                c.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log(f"{c.name} (pid {c.proc.pid}) is still there after SIGKILL")
        log("all processes stopped")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- HTTP (REST API v2)


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None
        # never through a proxy: everything is on 127.0.0.1
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:800]
            raise RunError(f"{method} {path}: HTTP {exc.code} {detail}") from None
        return json.loads(raw) if raw else None

    def login(self, username: str, password: str) -> None:
        answer = self.call("POST", "/auth/token", {"username": username, "password": password}, auth=False)
        self.token = answer["access_token"]


# --------------------------------------------------------------------------- databases


def recreate_database(admin_dsn: str, dbname: str) -> None:
    import psycopg2
    from psycopg2 import sql

    con = psycopg2.connect(admin_dsn)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    finally:
        con.close()


def query(dsn: str, text: str, params: Any = None) -> list[tuple]:
    import psycopg2

    con = psycopg2.connect(dsn)
    try:
        with con.cursor() as cur:
            cur.execute(text, params)
            return cur.fetchall() if cur.description else []
    finally:
        con.close()


def libpq_dsn(pg: dict[str, str], dbname: str) -> str:
    parts = {"host": pg["host"], "port": pg["port"], "user": pg["user"], "dbname": dbname}
    if pg.get("password"):
        parts["password"] = pg["password"]
    return " ".join(f"{k}={v}" for k, v in parts.items())


def sqlalchemy_url(pg: dict[str, str], dbname: str, scheme: str) -> str:
    from urllib.parse import quote

    auth = quote(pg["user"], safe="")
    if pg.get("password"):
        auth += ":" + quote(pg["password"], safe="")
    return f"{scheme}://{auth}@{pg['host']}:{pg['port']}/{dbname}"


# --------------------------------------------------------------------------- the run


@dataclass
class Layout:
    base: Path

    @property
    def airflow_home(self) -> Path:
        return self.base / "airflow"

    @property
    def logs(self) -> Path:
        return self.base / "logs"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--trigger", default=DEFAULT_TRIGGER, help="comma-separated DAG ids to trigger (default %(default)s)"
    )
    p.add_argument("--wait-for", default=DEFAULT_WAIT_FOR, help="the downstream DAG to wait for (default %(default)s)")
    p.add_argument("--as-of", default=DEFAULT_AS_OF, help="the run parameter as_of (default %(default)s)")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the pipeline (default %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="number of Celery workers (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=2, help="task slots per worker (default %(default)s)")
    p.add_argument("--pool", default="warehouse_writer:1", help="pool NAME:SLOTS to create (default %(default)s)")
    p.add_argument("--scale", type=float, default=0.2, help="demo data scale (default %(default)s)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--var", default=str(ROOT / "var" / "celery"), help="the run's folder (wiped first)")
    p.add_argument("--meta-db", default="cxloop_airflow_meta", help="metadata database (dropped and recreated)")
    p.add_argument("--warehouse-db", default="cxloop_celery_wh", help="warehouse database (dropped and recreated)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="Celery broker (this Redis db is flushed)")
    p.add_argument("--pg-host", default=os.environ.get("CXLOOP_PG_HOST", "127.0.0.1"))
    p.add_argument("--pg-port", default=os.environ.get("CXLOOP_PG_PORT", "5432"))
    p.add_argument("--pg-user", default=os.environ.get("CXLOOP_PG_USER", "postgres"))
    p.add_argument("--api-port", type=int, default=0, help="api-server port (default: a free one)")
    args = p.parse_args(argv)
    args.trigger_ids = [d.strip() for d in args.trigger.split(",") if d.strip()]
    if not args.trigger_ids:
        p.error("--trigger names no DAG")
    if args.workers < 2:
        p.error("--workers must be at least 2: the point is to spread tasks across workers")
    name, _, slots = args.pool.partition(":")
    args.pool_name, args.pool_slots = name, int(slots or 1)
    return args


def build_env(args: argparse.Namespace, layout: Layout, api_port: int) -> tuple[dict[str, str], dict[str, str]]:
    """The environment every component shares, and the Postgres settings."""
    from cryptography.fernet import Fernet
    from cxloop.airflow_home import airflow_env
    from cxloop.config import Settings

    pg = {"host": args.pg_host, "port": str(args.pg_port), "user": args.pg_user}
    if os.environ.get("CXLOOP_PG_PASSWORD"):
        pg["password"] = os.environ["CXLOOP_PG_PASSWORD"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != "AIRFLOW_HOME"}
    base["CXLOOP_VAR"] = str(layout.base)
    settings = Settings.from_env(base)
    env = airflow_env(settings, base)  # PATH, PYTHONPATH, CXLOOP_HOME/VAR, DAG and plugin folders
    meta_url = sqlalchemy_url(pg, args.meta_db, "postgresql+psycopg2")
    api_url = f"http://127.0.0.1:{api_port}"
    passwords = layout.airflow_home / "simple_auth_manager_passwords.json"
    env.update(
        {
            "AIRFLOW_HOME": str(layout.airflow_home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": args.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sqlalchemy_url(pg, args.meta_db, "postgresql+psycopg2"),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(args.concurrency),
            # secrets every component must share (one machine here, one .env in docker-compose)
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__BASE_URL": api_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "cxloop:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(layout.logs / "tasks"),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # lean on a small machine
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__API__WORKERS": "1",
            # the run's own Postgres warehouse
            "CXLOOP_TARGET": "postgres",
            "CXLOOP_PG_HOST": pg["host"],
            "CXLOOP_PG_PORT": pg["port"],
            "CXLOOP_PG_USER": pg["user"],
            "CXLOOP_PG_DBNAME": args.warehouse_db,
        }
    )
    return env, pg


def worker_env(env: dict[str, str], name: str) -> dict[str, str]:
    wenv = dict(env)
    wenv[WORKER_NAME_ENV] = name
    wenv["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "celery_run.worker_hostname"
    wenv["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    scripts = str(ROOT / "scripts")
    wenv["PYTHONPATH"] = scripts + os.pathsep + wenv.get("PYTHONPATH", "")
    return wenv


def wait_until(what: str, check, timeout: float, procs: Processes, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        procs.check_alive()
        try:
            result = check()
        except (OSError, RunError, KeyError, ValueError) as exc:  # not up yet
            result, last_error = None, exc
        if result:
            return result
        time.sleep(interval)
    raise RunError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


def run(args: argparse.Namespace, procs: Processes, timings: dict[str, float]) -> dict:
    import redis
    from cxloop.cli import demo_source_env, ensure_pii_key
    from cxloop.config import Settings, parse_as_of
    from cxloop.demo.generator import generate
    from cxloop.demo.server import DemoServer
    from cxloop.source_config import load_source_config

    t0 = time.monotonic()
    layout = Layout(Path(args.var).resolve())
    if layout.base.exists():
        shutil.rmtree(layout.base)
    layout.logs.mkdir(parents=True)
    layout.airflow_home.mkdir(parents=True)
    api_port = args.api_port or free_port()
    env, pg = build_env(args, layout, api_port)
    airflow = str(Path(sys.executable).with_name("airflow"))

    log(f"fresh metadata database {args.meta_db} and warehouse {args.warehouse_db} on {pg['host']}:{pg['port']}")
    admin_dsn = libpq_dsn(pg, "postgres")
    recreate_database(admin_dsn, args.meta_db)
    recreate_database(admin_dsn, args.warehouse_db)
    redis.Redis.from_url(args.redis_url).flushdb()
    log(f"broker {args.redis_url} flushed")

    password = secrets.token_urlsafe(16)
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({"cxloop": password}))
    passwords.chmod(0o600)

    log("airflow db migrate ...")
    with open(layout.logs / "db-migrate.log", "w") as fh:
        rc = subprocess.run(
            [airflow, "db", "migrate"], env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT
        ).returncode
    if rc != 0:
        raise RunError(f"airflow db migrate failed ({rc}):\n{tail(layout.logs / 'db-migrate.log')}")
    timings["metadata database"] = time.monotonic() - t0

    # sources: the demo server's port is chosen now, so that the components' environment is
    # complete before they start
    settings = Settings.from_env(env)
    os.environ["CXLOOP_VAR"] = str(layout.base)
    ensure_pii_key(settings)
    configured = load_source_config()
    log(f"generating demo data (seed {args.seed}, scale {args.scale}, as of {args.as_of}) ...")
    generate(settings.demo_dir, seed=args.seed, scale=args.scale, as_of=parse_as_of(args.as_of))
    demo_token = secrets.token_urlsafe(24)
    demo_port = free_port()
    env.update(
        demo_source_env(settings, f"http://127.0.0.1:{demo_port}", demo_token, configured.crm, configured.survey)
    )

    t1 = time.monotonic()
    procs.start("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port)], env)
    procs.start("scheduler", [airflow, "scheduler"], env)
    procs.start("dag-processor", [airflow, "dag-processor"], env)
    procs.start("triggerer", [airflow, "triggerer"], env)
    workers = [f"cxloop-worker-{i}" for i in range(1, args.workers + 1)]
    for name in workers:
        procs.start(
            name.replace("cxloop-", ""),
            [
                airflow,
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(args.concurrency),
                "--pid",
                str(layout.airflow_home / f"{name}.pid"),
            ],
            worker_env(env, name),
        )

    with DemoServer(settings.demo_dir / "source", token=demo_token, port=demo_port) as demo_url:
        log(f"demo sources on {demo_url} (CRM {configured.crm}, surveys {configured.survey})")
        api = Api(f"http://127.0.0.1:{api_port}")
        wait_until("the api-server", lambda: api.call("GET", "/api/v2/monitor/health", auth=False), 240, procs)
        api.login("cxloop", password)
        log(f"api-server up on {api.base_url} (user cxloop, password in {passwords.relative_to(ROOT)})")
        api.call(
            "POST",
            "/api/v2/pools",
            {"name": args.pool_name, "slots": args.pool_slots, "description": "tasks that write the warehouse"},
        )
        log(f"pool {args.pool_name} ({args.pool_slots} slot)")
        wait_until("both Celery workers", lambda: _workers_online(args.redis_url, workers), 240, procs, 3)
        log(f"workers online: {', '.join(workers)}")

        required = set(args.trigger_ids) | {args.wait_for}

        def dags_parsed():
            dags = {d["dag_id"]: d for d in api.call("GET", "/api/v2/dags?limit=1000")["dags"]}
            return dags if required <= set(dags) else None

        try:
            wait_until(f"the DAGs {', '.join(sorted(required))}", dags_parsed, 240, procs, 3)
        except RunError:
            errors = api.call("GET", "/api/v2/importErrors")
            raise RunError(
                f"DAGs {sorted(required)} not all parsed; import errors: {json.dumps(errors, indent=1)[:3000]}"
            ) from None
        time.sleep(5)  # the rest of the folder's first parsing pass
        dags = {d["dag_id"]: d for d in api.call("GET", "/api/v2/dags?limit=1000")["dags"]}
        timings["components up"] = time.monotonic() - t1

        # Unpause the DAGs that only run when triggered or on asset events (downstream first,
        # so no asset event is missed). A triggered DAG with a time schedule is triggered for
        # its next logical date (the scheduler then creates no run of its own for it) and
        # unpaused after; DAGs on a time schedule that are not triggered stay paused.
        to_trigger = args.trigger_ids
        downstream = [
            d for d, info in sorted(dags.items()) if d not in to_trigger and not info.get("next_dagrun_logical_date")
        ]
        left_paused = sorted(set(dags) - set(downstream) - set(to_trigger))
        if args.wait_for not in downstream and args.wait_for not in to_trigger:
            raise RunError(f"{args.wait_for} runs on a time schedule and is not triggered: nothing to wait for")
        for dag_id in downstream:
            api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        log(
            f"unpaused {', '.join(downstream) or '(none)'}"
            + (f"; left paused: {', '.join(left_paused)}" if left_paused else "")
        )
        t2 = time.monotonic()
        for dag_id in to_trigger:
            logical_date = dags[dag_id].get("next_dagrun_logical_date")
            body = {"logical_date": logical_date, "conf": {"as_of": args.as_of}, "note": "make celery"}
            answer = api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
            api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
            log(f"triggered {dag_id}: {answer['dag_run_id']} (conf as_of {args.as_of}) and unpaused it")

        meta_dsn = libpq_dsn(pg, args.meta_db)
        watch_pipeline(meta_dsn, args, procs, set(workers))
        timings["pipeline"] = time.monotonic() - t2
    return {
        "meta_dsn": meta_dsn,
        "warehouse_dsn": libpq_dsn(pg, args.warehouse_db),
        "workers": workers,
        "layout": layout,
    }


def _workers_online(redis_url: str, names: list[str]) -> bool:
    from celery import Celery

    app = Celery(broker=redis_url)
    try:
        replies = app.control.ping(timeout=1.5) or []
    finally:
        app.close()
    online = {name for reply in replies for name in reply}
    return all(any(o.startswith(f"{n}@") for o in online) for n in names)


def run_labels(runs: list[tuple]) -> dict[tuple[str, str], str]:
    """``dag_id`` for a DAG's only run, ``dag_id#n`` (in order of creation) when it ran more than once."""
    per_dag: dict[str, list[str]] = {}
    for dag_id, run_id, *_ in runs:
        per_dag.setdefault(dag_id, []).append(run_id)
    return {
        (dag_id, run_id): dag_id if len(ids) == 1 else f"{dag_id}#{n}"
        for dag_id, ids in per_dag.items()
        for n, run_id in enumerate(ids, 1)
    }


def celery_task_workers(log_dir: Path, workers: list[str]) -> dict[str, str]:
    """Celery task id -> the worker whose own log says it received the task (independent of
    ``task_instance.hostname``, which the task process reports itself)."""
    import re

    received = re.compile(r"execute_workload\[([0-9a-f-]{36})\] received")
    found: dict[str, str] = {}
    for name in workers:
        path = log_dir / f"{name.removeprefix('cxloop-')}.log"
        if path.exists():
            for match in received.finditer(path.read_text(errors="replace")):
                found[match.group(1)] = name
    return found


def watch_pipeline(meta_dsn: str, args: argparse.Namespace, procs: Processes, workers: set[str]) -> None:
    """Poll the metadata database until the DAG to wait for has succeeded and nothing is
    active any more; report runs and tasks as they change; fail fast on a failed run."""
    deadline = time.monotonic() + args.timeout
    seen_runs: dict[tuple, str] = {}
    seen_tis: dict[tuple, tuple] = {}
    quiet = 0
    while True:
        procs.check_alive()
        runs = query(meta_dsn, "SELECT dag_id, run_id, state, run_type FROM dag_run ORDER BY id")
        for dag_id, run_id, state, run_type in runs:
            if seen_runs.get((dag_id, run_id)) != state:
                seen_runs[(dag_id, run_id)] = state
                log(f"  run {dag_id} {run_id} ({run_type}): {state}")
        labels = run_labels(runs)
        for dag_id, run_id, task_id, map_index, state, host, try_number in query(
            meta_dsn, "SELECT dag_id, run_id, task_id, map_index, state, hostname, try_number FROM task_instance"
        ):
            key = (dag_id, run_id, task_id, map_index)
            if state in REPORTED_TI_STATES and seen_tis.get(key) != (state, try_number):
                seen_tis[key] = (state, try_number)
                name = f"{labels.get((dag_id, run_id), dag_id)}.{task_id}" + ("" if map_index < 0 else f"[{map_index}]")
                log(f"    task {name}: {state}" + (f" on {host}" if host else ""))
        failed = [(d, r) for d, r, s, _ in runs if s == "failed"]
        if failed:
            raise RunError(f"DAG run(s) failed: {failed}; task logs in {Path(args.var) / 'logs' / 'tasks'}")
        active = [r for r in runs if r[2] in ACTIVE]
        done = any(d == args.wait_for and s == "success" for d, _, s, _ in runs)
        quiet = quiet + 1 if done and not active else 0
        if quiet >= 2:  # twice in a row: no asset-triggered run is about to be created
            return
        if time.monotonic() > deadline:
            states = {f"{d} {r}": s for d, r, s, _ in runs}
            raise RunError(f"timed out after {args.timeout:.0f}s waiting for {args.wait_for}; runs: {states}")
        time.sleep(5)


def verify(result: dict, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Read the run back from the metadata database, the worker logs and the warehouse."""
    meta_dsn, wh_dsn = result["meta_dsn"], result["warehouse_dsn"]
    runs = query(
        meta_dsn,
        "SELECT dag_id, run_id, state, run_type, EXTRACT(EPOCH FROM end_date - start_date) FROM dag_run ORDER BY id",
    )
    tis = query(
        meta_dsn,
        "SELECT dag_id, run_id, task_id, map_index, state, hostname, duration, try_number, pool, "
        "external_executor_id FROM task_instance ORDER BY start_date",
    )
    tables = query(
        wh_dsn,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' AND table_type = 'BASE TABLE' "
        "ORDER BY table_name",
    )
    mart_rows = {t: query(wh_dsn, f'SELECT count(*) FROM marts."{t}"')[0][0] for (t,) in tables}
    celery_map = celery_task_workers(result["layout"].logs, result["workers"])
    required = set(args.trigger_ids) | {args.wait_for}
    return check(runs, tis, result["workers"], celery_map, mart_rows, required)


def check(
    runs: list[tuple],
    tis: list[tuple],
    workers: list[str],
    celery_map: dict[str, str],
    mart_rows: dict[str, int],
    required: set[str],
) -> tuple[list[str], list[str]]:
    """The assertions of the proof: (summary lines, problems); no problem means success.

    runs: (dag_id, run_id, state, run_type, seconds); tis: (dag_id, run_id, task_id, map_index,
    state, hostname, duration, try_number, pool, celery task id)."""
    problems = [f"no run of {dag_id}" for dag_id in sorted(required) if not any(r[0] == dag_id for r in runs)]
    bad_runs = [f"{r[0]} {r[1]}: {r[2]}" for r in runs if r[2] != "success"]
    if bad_runs:
        problems.append("DAG runs not successful: " + "; ".join(bad_runs))
    ran = [t for t in tis if t[4] not in ("skipped", "removed")]
    per_worker: dict[str, list] = {}
    for t in ran:
        per_worker.setdefault(t[5] or "(no hostname)", []).append(t)
    idle = [w for w in workers if w not in per_worker]
    if idle:
        problems.append(f"no task ran on {', '.join(idle)} (hostnames seen: {sorted(per_worker)})")
    strangers = sorted(set(per_worker) - set(workers))
    if strangers:
        problems.append(f"tasks ran on hosts that are not this run's workers: {strangers}")
    # the same from the other side: the worker whose Celery log received the task
    confirmed = [t for t in ran if t[9] in celery_map]
    disagree = [
        f"{t[0]}.{t[2]}: hostname {t[5]}, Celery log of {celery_map[t[9]]}"
        for t in confirmed
        if celery_map[t[9]] != t[5]
    ]
    if disagree:
        problems.append("task_instance.hostname disagrees with the Celery worker logs: " + "; ".join(disagree))
    if not any(mart_rows.values()):
        problems.append("the Postgres warehouse has no rows in schema marts")

    labels = run_labels(runs)
    lines = ["", f"== CeleryExecutor, {len(workers)} workers, Postgres metadata + warehouse, Redis broker =="]
    lines.append("DAG runs:")
    for dag_id, run_id, state, run_type, secs in runs:
        lines.append(f"  {labels[(dag_id, run_id)]:<20} {run_type:<16} {state:<8} {float(secs or 0):6.1f}s  {run_id}")
    lines.append("tasks per worker (task_instance.hostname):")
    for host in sorted(per_worker):
        items = per_worker[host]
        total = sum(float(t[6] or 0) for t in items)
        lines.append(f"  {host}: {len(items)} tasks, {total:.1f}s of task time")
        for dag_id, run_id, task_id, map_index, state, _, duration, tries, pool, _ in items:
            name = f"{labels.get((dag_id, run_id), dag_id)}.{task_id}" + ("" if map_index < 0 else f"[{map_index}]")
            extra = f"  pool={pool}" if pool and pool != "default_pool" else ""
            retry = f"  tries={tries}" if tries and tries > 1 else ""
            lines.append(f"    {name:<42} {state:<8} {float(duration or 0):6.1f}s{extra}{retry}")
    lines.append(
        f"Celery worker logs confirm the worker of {len(confirmed)} of {len(ran)} task instances"
        + (" (all agree)" if confirmed and not disagree else "")
    )
    lines.append("Postgres warehouse marts (rows): " + ", ".join(f"{k}={v}" for k, v in mart_rows.items()))
    return lines, problems


def preflight() -> str | None:
    """What this machine lacks for the run, or None."""
    import importlib.util

    if importlib.util.find_spec("asyncpg") is None:
        return (
            "Airflow 3 with a Postgres metadata database needs the async driver asyncpg (the execution "
            "API opens async sessions); add `asyncpg` to requirements.in and re-lock (make lock)"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = preflight()
    if missing:
        print(f"FAILED: {missing}", file=sys.stderr)
        return 1
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    sys.path.insert(0, str(ROOT / "plugins"))
    import fcntl

    lock_path = Path(args.var).resolve().parent / ".celery_run.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(lock_path, "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another celery_run is using {args.var} (lock {lock_path}); try again later", file=sys.stderr)
        return 2

    procs = Processes(Path(args.var).resolve() / "logs")
    atexit.register(procs.stop)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
    timings: dict[str, float] = {}
    rc = 1
    try:
        result = run(args, procs, timings)
        lines, problems = verify(result, args)
        print("\n".join(lines))
        timings["total"] = time.monotonic() - started
        print("timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
        print(f"logs: {Path(args.var).resolve() / 'logs'} (components *.log, task logs under tasks/)")
        if problems:
            print("FAILED:\n  " + "\n  ".join(problems), flush=True)
        else:
            print("OK: every DAG run succeeded and tasks ran on both workers", flush=True)
            rc = 0
    except RunError as exc:
        print(f"FAILED: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        rc = 130
    finally:
        procs.stop()
        print(f"finished in {time.monotonic() - started:.0f}s ({datetime.now():%H:%M:%S})", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
