"""The ``cxloop`` command line (click): ``cxloop --help`` lists the commands, ``cxloop COMMAND
--help`` their options with defaults; ``cxloop completion bash|zsh|fish`` prints the shell
completion script. An argument or configuration error is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cxloop.config import Settings, parse_as_of

DEMO_AS_OF = "2026-10-01T00:00:00"
DEMO_DIRECTORY_ID = "POOL_cxloopdemo"


class Progress:
    """One line per step with its elapsed time: long steps are visible, not silent."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


def ensure_pii_key(settings: Settings) -> None:
    """The demo's HMAC key lives in var/secrets (never in the repo); real deployments set
    CXLOOP_PII_KEY from their secret store."""
    if os.environ.get("CXLOOP_PII_KEY"):
        return
    path = settings.var_dir / "secrets" / "pii.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    os.environ["CXLOOP_PII_KEY"] = path.read_text().strip()


# The DAGs of one pipeline pass, in the order the assets chain them.
PIPELINE_DAGS = ("cx_ingest_crm", "cx_ingest_survey", "cx_transform", "cx_publish")
WAREHOUSE_POOL = "warehouse_writer"
# what cxloop_airflow.run_dags prints before and after each DAG (its MARKER; the core imports
# no Airflow, so it is not imported from there: tests/integration/test_run_dags.py checks they agree)
DAG_MARKER = "[cxloop] dag "


def prepare_airflow(env: dict[str, str], log_dir: Path) -> None:
    """Migrate the metadata database and create the pool that serialises warehouse writers."""
    from cxloop.airflow_home import airflow_bin

    airflow = str(airflow_bin())
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "airflow-db-migrate.log", "w") as fh:
        for cmd in (
            [airflow, "db", "migrate"],
            [airflow, "pools", "set", WAREHOUSE_POOL, "1", "DuckDB allows one writer process at a time"],
        ):
            rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise RuntimeError(f"{' '.join(cmd[1:3])} failed (exit {rc}); see {log_dir / 'airflow-db-migrate.log'}")


def run_dags(
    settings: Settings, env: dict[str, str], as_of: str, progress: Progress | None = None,
    dag_ids: tuple[str, ...] = PIPELINE_DAGS,
) -> int:
    """Run the pipeline's DAGs once each through Airflow (`airflow dags test`), in asset order.

    One process does it all (cxloop_airflow.run_dags): the metadata migration, the pool and
    every DAG, so Airflow's start-up is paid once per pass, not once per DAG."""
    log_dir = settings.logs_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    if progress:
        progress.step("initialising the Airflow metadata database (SQLite) ...")
    log_path = log_dir / "airflow-dags-test.log"
    pool = f"{WAREHOUSE_POOL}:1:DuckDB allows one writer process at a time"
    cmd = [sys.executable, "-m", "cxloop_airflow.run_dags", "--conf", json.dumps({"as_of": as_of}), "--pool", pool]
    cmd += list(dag_ids)
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if not progress:
                continue
            if line.startswith(DAG_MARKER) and line.rstrip().endswith(" starting"):
                dag_id = line[len(DAG_MARKER):].split()[0]
                progress.step(f"running DAG {dag_id} through Airflow (airflow dags test) ...")
            elif marker := _task_marker(line):
                progress.step(marker)
        rc = proc.wait()
    if rc != 0 and progress:
        progress.step(f"a DAG failed (exit {rc}); the last lines of {log_path}:")
        print("".join(log_path.read_text().splitlines(keepends=True)[-40:]))
    return rc


_STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\w+)")
_NEW_STATE = re.compile(r"new_state=(\w+)")


def _task_marker(line: str) -> str | None:
    """A short progress line from Airflow's `dags test` log: each task as it starts, and any
    state other than success (a retry or a failure) as it happens."""
    m = _STARTING.search(line)
    if m:
        return f"  task {m.group(1)} ..."
    m = _NEW_STATE.search(line)
    if m and m.group(1) not in {"success", "running"}:
        return f"  a task moved to state {m.group(1)}"
    return None


def demo_source_env(
    settings: Settings, base_url: str, token: str, crm: str, survey: str, progress: Progress | None = None, **kw
) -> dict[str, str]:
    """The demo's source environment (cxloop.demo.run.demo_source_env; kept here for callers)."""
    from cxloop.demo.run import demo_source_env as env

    return env(settings, base_url, token, crm, survey, progress, **kw)


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo (cxloop.demo.run): one demo world per warehouse, written only under var/demo."""
    from cxloop.demo.run import DemoOptions, run_demo
    from cxloop.source_config import load_source_config

    configured = load_source_config()
    options = DemoOptions(
        seed=args.seed,
        scale=args.scale,
        as_of=args.as_of,
        keep=args.keep,
        crm=args.crm or configured.crm,
        survey=args.survey or configured.survey,
        program=args.program,
        landed_crm_flavour=getattr(args, "landed_crm_flavour", None) or "fivetran_salesforce",
    )
    return run_demo(Settings.from_env(), options, Progress())


class UsageError(ValueError):
    """A command-line or configuration error: one line on stderr, exit 2."""


INIT_FILE = "sources.yml"


def cmd_init(args: argparse.Namespace) -> int:
    from cxloop.init_template import TEMPLATE

    folder = Path(args.dir).expanduser()
    path = folder / INIT_FILE
    if path.exists() or path.is_symlink():
        print(f"cxloop init: {path} already exists; not overwritten (edit it, or pass another --dir)", file=sys.stderr)
        return 1
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as fh:  # "x": never over a file that appeared meanwhile
        fh.write(TEMPLATE)
    print(f"wrote {path}")
    print(f"next: edit it (sources, drop_dir, options), then `cxloop check --config {path}`")
    print(f"      and `cxloop run --config {path}`")
    return 0


def _use_config(value: str | None) -> str | None:
    """--config FILE: the configuration for this command (CXLOOP_SOURCES_CONFIG)."""
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"--config {value}: no such file (`cxloop init` writes one)")
    os.environ["CXLOOP_SOURCES_CONFIG"] = str(path)
    return str(path)


def cmd_check(args: argparse.Namespace) -> int:
    from cxloop.check import main_check

    _use_config(args.config)
    return main_check()


def default_as_of(now: datetime | None = None) -> str:
    """The start of the current UTC day: a daily run covers every finished day."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None).isoformat()


def run_as_of(value: str | None) -> str:
    """``--as-of`` for a run on real sources: ISO, not further in the future than the allowed
    skew (CXLOOP_MAX_AS_OF_SKEW_HOURS); UsageError in one line otherwise."""
    from cxloop.check import refuse_future_as_of

    try:
        return refuse_future_as_of(parse_as_of(value or default_as_of())).isoformat()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _require_credentials(configured, settings: Settings) -> None:
    """A configured HTTP source without credentials (neither the variables nor the Airflow
    connection's AIRFLOW_CONN_CX_<SOURCE>) stops the run in one line, when the embedded Airflow
    home has no metadata database yet (so no connection can be stored there either)."""
    from cxloop.check import HTTP_SOURCES

    if (settings.var_dir / "airflow" / "airflow.db").exists():
        return  # a connection may live there; the DAG's extract task fails fast without one
    for source in dict.fromkeys((configured.crm, configured.survey)):
        if source not in HTTP_SOURCES:
            continue
        var = f"CXLOOP_{source.upper()}"
        missing = [v for v in (f"{var}_BASE_URL", f"{var}_TOKEN") if not os.environ.get(v)]
        if missing and not os.environ.get(f"AIRFLOW_CONN_CX_{source.upper()}"):
            raise UsageError(
                f"{source}: {' and '.join(missing)} not set (nor the Airflow connection cx_{source}); "
                "`cxloop check` lists everything still missing"
            )


def cmd_run(args: argparse.Namespace) -> int:
    """The four DAGs through Airflow on the configured sources: no demo server, no demo data."""
    from cxloop.airflow_home import airflow_env
    from cxloop.source_config import load_source_config

    as_of = run_as_of(args.as_of)
    config_path = _use_config(args.config)
    progress = Progress()
    settings = Settings.from_env()
    configured = load_source_config()  # a rejected configuration stops here, in one line
    _require_credentials(configured, settings)  # before Airflow starts, not in its first task
    settings.ensure_dirs()
    ensure_pii_key(settings)
    env = airflow_env(settings)
    if config_path:
        env["CXLOOP_SOURCES_CONFIG"] = config_path
    progress.step(f"sources: CRM from {configured.crm}, surveys from {configured.survey} ({configured.path})")
    progress.step(f"as_of {as_of}; warehouse in {settings.var_dir}")
    rc = run_dags(settings, env, as_of, progress)
    if rc != 0:
        return rc
    summary_path = settings.logs_dir / "last_run_summary.txt"
    if not summary_path.exists():
        progress.step(f"the DAGs finished but wrote no summary at {summary_path}")
        return 1
    progress.step("done")
    print(summary_path.read_text())
    print(f"  {'airflow log':<13}{settings.logs_dir / 'airflow-dags-test.log'}")
    return 0


def airflow_ui_env(settings: Settings, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The environment of `cxloop airflow`: the demo home, its port, and the address its API
    server binds. Airflow's own default is 0.0.0.0, every interface; the demo's UI listens on
    the loopback unless told otherwise (``--host 0.0.0.0``)."""
    from cxloop.airflow_home import airflow_env

    env = airflow_env(settings)
    env["AIRFLOW__API__HOST"] = host
    env["AIRFLOW__API__PORT"] = str(port)
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    return env


def cmd_airflow(args: argparse.Namespace) -> int:
    """Airflow's UI on the embedded demo home (SQLite, standalone: every component in one go)."""
    from cxloop.airflow_home import airflow_bin

    settings = Settings.from_env()
    settings.ensure_dirs()
    ensure_pii_key(settings)
    env = airflow_ui_env(settings, args.port, args.host)
    password_file = settings.var_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
    shown = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
    print(
        f"Airflow UI: http://{shown}:{args.port}  (listening on {args.host}; user admin; password in {password_file}, "
        "written on first start). Ctrl-C stops.",
        flush=True,
    )
    os.execve(str(airflow_bin()), [str(airflow_bin()), "standalone"], env)
    return 0  # not reached


def cmd_docs(args: argparse.Namespace) -> int:
    """dbt docs of the configured warehouse, generated under var/dbt/target; --serve serves them."""
    from cxloop.pipeline import data_as_of
    from cxloop.program import load_program
    from cxloop.transform.dbt import generate_docs

    settings = Settings.from_env()
    settings.ensure_dirs()
    as_of = parse_as_of(args.as_of) if args.as_of else data_as_of(settings)
    if as_of is None:
        print("cxloop docs: no run has loaded this warehouse yet; run `make run` or `cxloop run` first",
              file=sys.stderr)
        return 2
    index = generate_docs(settings, as_of, load_program())
    print(f"dbt docs of the warehouse as of {as_of.isoformat()}: {index}", flush=True)
    if not args.serve:
        return 0
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(index.parent))
    with ThreadingHTTPServer((args.host, args.port), handler) as httpd:
        host, port = httpd.server_address[:2]
        print(f"serving them on http://{host}:{port}/ ; Ctrl-C stops", flush=True)
        try:
            httpd.serve_forever(poll_interval=0.05)
        except KeyboardInterrupt:
            return 0
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from cxloop.demo.generator import generate

    truth = generate(Path(args.out), seed=args.seed, scale=args.scale, as_of=parse_as_of(args.as_of))
    print(json.dumps(truth.get("counts", truth), indent=2, default=str))
    if args.program == "response-only":
        from cxloop.demo.response_only import write_response_only_drop

        drop = Path(args.out) / "drop"
        write_response_only_drop(Path(args.out), drop)
        print(f"response-only file drop (no invitations) in {drop}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cxloop.demo.server import DemoServer

    token = args.token or secrets.token_urlsafe(24)
    with DemoServer(Path(args.data), token=token, port=args.port) as base_url:
        print(f"serving {args.data} on {base_url} (bearer token: {token}); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cxloop.pipeline import read_summary

    text = read_summary(Settings.from_env())
    if not text:
        print("no run summary yet: run `make run` first", file=sys.stderr)
        return 1
    print(text)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from cxloop.extract.retention import prune_raw, report_lines

    try:
        settings = Settings.from_env()
        days = settings.raw_retention_days if args.days is None else args.days
        result = prune_raw(settings.landing_dir, days, dry_run=args.dry_run)
    except (ValueError, OSError) as exc:
        print(f"cxloop prune: {exc}", file=sys.stderr)
        return 2
    for line in report_lines(result):
        print(line)
    return 0


# The commands that read the project folder (dbt project, expectation suites, config/, dags/).
NEEDS_PROJECT = ("demo", "airflow", "run", "docs")


def project_problem() -> str | None:
    """One line saying why the project folder was not found (CXLOOP_HOME), or None."""
    from cxloop.config import HOME_MARKERS, project_home

    home = project_home()
    if all((home / marker).exists() for marker in HOME_MARKERS):
        return None
    needs = " and ".join(HOME_MARKERS)
    if os.environ.get("CXLOOP_HOME"):
        return f"cxloop: CXLOOP_HOME={home} is not a cxloop project folder (it needs {needs})"
    return f"cxloop: no project folder: set CXLOOP_HOME to the folder holding {needs} ({Path.cwd()} has none)"


def main(argv: list[str] | None = None) -> int:
    """The command line; an argument or configuration error is one line on stderr and exit 2,
    any other error one line and exit 1: never a traceback (CXLOOP_LOG_LEVEL=DEBUG shows it)."""
    try:
        return _main(argv)
    except UsageError as exc:
        print(_one_line(str(exc) if str(exc).startswith("cxloop") else f"cxloop: {exc}"), file=sys.stderr)
        return 2
    except ValueError as exc:  # SourceConfigError and the settings' own checks
        print(_one_line(f"cxloop: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cxloop: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        print(_one_line(f"cxloop: {type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    from cxloop.config import redact

    return " ".join(redact(text).split())


CLI_HELP = (
    "cxloop: the open-source B2B Net Promoter warehouse. Extract survey and CRM data, validate "
    "every batch, build the marts with dbt, publish the governance pack (README.md)."
)


def _option(name: str, help: str, default=None, **kw):
    import click

    return click.Option([name], default=default, help=help, show_default=default not in (None, False), **kw)


def _flag(name: str, help: str):
    import click

    return click.Option([name], is_flag=True, default=False, help=help)


def _commands() -> list[tuple[str, object, str, list]]:
    """(name, function, help, options) of every command: what `cxloop --help` lists."""
    import click

    scale = _option("--scale", "size of the demo world (1.0: 200 accounts)", 1.0, type=float)
    seed = _option("--seed", "seed of the demo world (same seed, same data)", 42, type=int)
    demo_as_of = _option("--as-of", "the demo's as_of: end of the data window (ISO)", DEMO_AS_OF)
    config = _option("--config", "the configuration file  [default: CXLOOP_SOURCES_CONFIG or config/sources.yml]")
    programs = click.Choice(("standard", "response-only"))
    return [
        ("demo", cmd_demo, "Run the whole pipeline on demo data through Airflow and print the summary.", [
            scale, seed, demo_as_of,
            _flag("--keep", "keep the existing warehouse instead of starting fresh"),
            _option("--crm", "CRM source  [default: config/sources.yml]",
                    type=click.Choice(("salesforce", "hubspot", "files", "landed"))),
            _option("--survey", "survey source  [default: config/sources.yml]",
                    type=click.Choice(("qualtrics", "files", "landed"))),
            _option("--landed-crm-flavour", "with --crm landed: the connector whose landed tables the CRM is read from",
                    "fivetran_salesforce", type=click.Choice(("fivetran_salesforce", "fivetran_hubspot",
                                                              "airbyte_salesforce", "airbyte_hubspot"))),
            _option("--program", "response-only: responses recorded without invitations, from a file drop",
                    "standard", type=programs),
        ]),
        ("generate", cmd_generate, "Write demo source data.", [
            _option("--out", "the folder to write into", required=True), scale, seed, demo_as_of,
            _option("--program", "response-only: also write OUT/drop, a file drop with responses and no invitations",
                    "standard", type=programs),
        ]),
        ("serve", cmd_serve, "Serve demo data over the Qualtrics, Salesforce and HubSpot protocols.", [
            _option("--data", "the generator's source/ folder", required=True),
            _option("--port", "the port to listen on (0: any free port)", 0, type=int),
            _option("--token", "the bearer token clients must send  [default: a new random one]"),
        ]),
        ("airflow", cmd_airflow, "Start the Airflow UI on the demo home (standalone).", [
            _option("--port", "the UI's port", 8080, type=int),
            _option("--host", "the address the UI binds (127.0.0.1: this machine only; 0.0.0.0: every interface)",
                    "127.0.0.1"),
        ]),
        ("docs", cmd_docs, "Generate dbt's documentation of the warehouse (models, columns, lineage).", [
            _option("--as-of", "the window's end (ISO)  [default: the warehouse's complete window]"),
            _flag("--serve", "serve the site after generating it (Ctrl-C stops)"),
            _option("--host", "the address --serve binds", "127.0.0.1"),
            _option("--port", "the port --serve listens on (0: any free)", 8081, type=int),
        ]),
        ("init", cmd_init, "Write a commented configuration skeleton for your own sources.", [
            _option("--dir", "the folder to write sources.yml into", "."),
        ]),
        ("check", cmd_check, "Check the configuration, credentials, sources, warehouse and PII key.", [config]),
        ("run", cmd_run, "Run the pipeline through Airflow on your own sources.", [
            _option("--as-of", "end of the data window (ISO)  [default: today 00:00 UTC]"), config,
        ]),
        ("summary", cmd_summary, "Print the last run's summary.", []),
        ("prune", cmd_prune, "Delete raw pages (personal data) older than the retention.", [
            _flag("--dry-run", "print what would be deleted, delete nothing"),
            _option("--days", "retention in days  [default: CXLOOP_RAW_RETENTION_DAYS or 30]", type=int),
        ]),
        ("completion", cmd_completion, "Print the shell completion script (eval \"$(cxloop completion bash)\").", [
            click.Argument(["shell"], type=click.Choice(("bash", "zsh", "fish"))),
        ]),
    ]


def build_cli():
    """The click group of every command. A command's callback returns its arguments as a
    Namespace (``command``, ``func`` and one attribute per option); :func:`_main` runs it."""
    import click

    def command(name: str, func, help_text: str, params: list):
        def callback(**values) -> argparse.Namespace:
            return argparse.Namespace(command=name, func=func, **values)

        return click.Command(name, callback=callback, params=params, help=help_text, short_help=help_text)

    group = click.Group(
        "cxloop",
        help=CLI_HELP,
        epilog="`cxloop COMMAND --help` shows a command's options and their defaults.",
        commands=[command(*spec) for spec in _commands()],
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    )
    return group


def parse_args(argv: list[str] | None = None) -> argparse.Namespace | int:
    """The command and its options, or the exit code when there is nothing to run (--help).
    A usage error raises UsageError with one line naming the command's --help."""
    import click

    group = build_cli()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parsed = group.main(args=argv, prog_name="cxloop", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else CLI_HELP)
        return 2
    except click.UsageError as exc:
        named = next((a for a in argv if not a.startswith("-")), None)
        where = f"cxloop {named}" if named in group.commands else "cxloop"
        raise UsageError(f"{where}: {exc.format_message()} (see `{where} --help`)") from None
    except click.Abort:
        raise KeyboardInterrupt from None
    return parsed if isinstance(parsed, argparse.Namespace) else int(parsed or 0)


def cmd_completion(args: argparse.Namespace) -> int:
    """The completion script click generates for this command line (bash, zsh or fish)."""
    from click.shell_completion import get_completion_class

    complete = get_completion_class(args.shell)(build_cli(), {}, "cxloop", "_CXLOOP_COMPLETE")
    print(complete.source())
    return 0


def _main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("CXLOOP_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    if isinstance(args, int):  # --help, or no command: click printed what there is
        return args
    if args.command in NEEDS_PROJECT and (problem := project_problem()):
        print(problem, file=sys.stderr)
        return 2
    started = datetime.now()
    rc = args.func(args)
    logging.getLogger(__name__).info("%s finished in %s", args.command, datetime.now() - started)
    return rc


if __name__ == "__main__":
    sys.exit(main())
