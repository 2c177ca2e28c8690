"""``cxloop check``: is this installation ready to run on its own sources? One line per check.

In the spirit of ``dbt debug``: every check prints ``ok``, ``warn`` or ``FAIL`` with what it
found and, when something is wrong, what to change. Nothing here writes data; the only side
effects are the ones a first run would have anyway (the warehouse folder, a Postgres database
the user may create). Secrets are never printed: tokens are sent, not shown, and URLs are shown
without their credentials.

Also the run's guard rail on ``as_of`` (:func:`refuse_future_as_of`), shared by ``cxloop run``
and the DAG glue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

OK, WARN, FAIL = "ok", "warn", "FAIL"
HTTP_SOURCES = ("salesforce", "hubspot", "qualtrics")
PII_KEY_ENV = "CXLOOP_PII_KEY"
PII_KEY_MIN_CHARS = 32
MAX_AS_OF_SKEW_ENV = "CXLOOP_MAX_AS_OF_SKEW_HOURS"
MAX_AS_OF_SKEW_DEFAULT = 24.0
CHECK_TIMEOUT = (5.0, 20.0)  # connect, read: one cheap call, never the retry loop
COUNT_LINES_MAX_BYTES = 64 * 1024**2  # count a CSV / JSONL file's lines only when it is this small
SHOW_NAMES = 5


# ------------------------------------------------------------------------- as_of guard rail


def max_as_of_skew(env: Mapping[str, str] | None = None) -> timedelta:
    """How far in the future a run's as_of may be (CXLOOP_MAX_AS_OF_SKEW_HOURS, default 24)."""
    raw = (os.environ if env is None else env).get(MAX_AS_OF_SKEW_ENV, "")
    if not raw.strip():
        return timedelta(hours=MAX_AS_OF_SKEW_DEFAULT)
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if not hours >= 0 or hours == float("inf"):
        raise ValueError(f"{MAX_AS_OF_SKEW_ENV}={raw!r} is not a number of hours >= 0")
    return timedelta(hours=hours)


def refuse_future_as_of(as_of: datetime, env: Mapping[str, str] | None = None, now: datetime | None = None) -> datetime:
    """``as_of`` (naive UTC), or ValueError in one line when it lies further in the future than
    the allowed skew: a window ending tomorrow would move the watermarks past data that has not
    happened yet, and the next real run would skip it."""
    skew = max_as_of_skew(env)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if as_of - now > skew:
        hours = skew.total_seconds() / 3600
        raise ValueError(
            f"as_of {as_of.isoformat()} is more than {hours:g} h in the future (now {now:%Y-%m-%dT%H:%M:%S} UTC): "
            f"pass a past as_of, or raise {MAX_AS_OF_SKEW_ENV} if the clocks differ"
        )
    return as_of


# ------------------------------------------------------------------------------ the checks


@dataclass(frozen=True)
class Check:
    status: str  # ok | warn | FAIL
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4} {self.name:<24} {' '.join(self.detail.split())}"


def _config(env: Mapping[str, str]) -> tuple[list[Check], object | None]:
    """The configuration file: readable, no unknown keys, the sections other loaders own."""
    from cxloop.config import project_home
    from cxloop.source_config import SourceConfigError, load_source_config, unknown_keys

    path = Path(env.get("CXLOOP_SOURCES_CONFIG") or project_home(env) / "config" / "sources.yml")
    unknown = unknown_keys(path) if path.exists() else []
    checks: list[Check] = []
    if unknown:
        checks.append(
            Check(
                FAIL, "configuration", f"{path}: unknown key(s) {', '.join(unknown)}: fix the spelling or remove them"
            )
        )
    try:
        config = load_source_config(env)
    except (SourceConfigError, ValueError) as exc:
        if not (unknown and "unknown" in str(exc)):  # already named above
            checks.append(Check(FAIL, "configuration", str(exc)))
        return checks, None
    if not path.exists():
        checks.append(
            Check(WARN, "configuration", f"{path} does not exist: the defaults apply; `cxloop init` writes one")
        )
    elif not unknown:
        checks.append(Check(OK, "configuration", f"{path}: CRM from {config.crm}, surveys from {config.survey}"))
    checks += _owned_sections(env, path)
    return checks, config


def _owned_sections(env: Mapping[str, str], path: Path) -> list[Check]:
    """``mappings:`` and ``program:``, each validated by its own loader on the file checked;
    the program's settings are printed, one line each, with where each value came from."""
    import yaml

    from cxloop.extract.mapping import load_mappings
    from cxloop.program import load_program

    try:
        raw = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None) or {}
    except (OSError, yaml.YAMLError):
        return []  # the configuration check above has said why
    if not isinstance(raw, dict):
        return []
    out = []
    try:
        load_mappings(raw)
    except ValueError as exc:
        out.append(Check(FAIL, "mappings", str(exc)))
    else:
        out.append(Check(OK, "mappings", "valid" if raw.get("mappings") else "none configured: the shipped defaults"))
    try:
        program = load_program(raw, env=env)
    except ValueError as exc:
        out.append(Check(FAIL, "program", str(exc)))
    else:
        out += [Check(OK, "program", line) for line in program.describe()]
    return out


def _http_settings(name: str, env: Mapping[str, str]) -> tuple[str, str, dict[str, str]]:
    prefix = f"CXLOOP_{name.upper()}_"
    options = {k[len(prefix) + 4 :].lower(): v for k, v in env.items() if k.startswith(prefix + "OPT_")}
    return env.get(prefix + "BASE_URL", ""), env.get(prefix + "TOKEN", ""), options


def _probe(name: str, base_url: str, token: str, options: dict[str, str]) -> str:
    """One cheap authenticated GET, the way the connector asks; returns the endpoint asked."""
    from cxloop.extract.http_client import HttpClient, RetryPolicy

    common = {
        "source": name,
        "retry": RetryPolicy(max_retries=0),
        "connect_timeout": CHECK_TIMEOUT[0],
        "read_timeout": CHECK_TIMEOUT[1],
        "max_response_bytes": 16 * 1024**2,
    }
    root = base_url.rstrip("/")
    if name == "salesforce":
        from cxloop.extract.salesforce import salesforce_error

        version = options.get("api_version", "v60.0")
        client = HttpClient(f"{root}/services/data/{version}/", token, error_parser=salesforce_error, **common)
        path, params = "query", {"q": "SELECT Id FROM User LIMIT 1"}
    elif name == "qualtrics":
        from cxloop.extract.qualtrics import qualtrics_error

        api = root if root.endswith("/API/v3") else root + "/API/v3"
        client = HttpClient(api + "/", token, error_parser=qualtrics_error, **common)
        path, params = "surveys", {"pageSize": 1}
    else:
        client = HttpClient(root + "/", token, **common)
        path, params = "crm/v3/owners", {"limit": 1}
    with client:
        client.get_json(path, params=params)
        return client.url(path).split("://", 1)[-1].split("/", 1)[-1]


def _http_source(name: str, env: Mapping[str, str], config_options: dict[str, str]) -> list[Check]:
    from cxloop.extract.http_client import SourceHTTPError, as_permanent, permanent_fix, safe_url

    var = f"CXLOOP_{name.upper()}"
    base_url, token, env_options = _http_settings(name, env)
    options = {**config_options, **env_options}
    missing = [v for v, value in ((f"{var}_BASE_URL", base_url), (f"{var}_TOKEN", token)) if not value]
    if missing:
        if env.get(f"AIRFLOW_CONN_CX_{name.upper()}"):
            return [
                Check(
                    WARN,
                    f"{name} credentials",
                    f"from the Airflow connection cx_{name} (AIRFLOW_CONN_CX_{name.upper()}); not tested here: "
                    f"set {' and '.join(missing)} to test it",
                )
            ]
        return [
            Check(
                FAIL,
                f"{name} credentials",
                f"{' and '.join(missing)} not set: set them, or the Airflow connection cx_{name} "
                "(host: the base URL, password: the token)",
            )
        ]
    checks = [Check(OK, f"{name} credentials", f"{var}_BASE_URL and {var}_TOKEN set")]
    if name == "qualtrics" and not options.get("directory_id"):
        checks.append(
            Check(
                FAIL,
                "qualtrics options",
                "directory_id not set: set options.qualtrics.directory_id in the configuration "
                "or CXLOOP_QUALTRICS_OPT_DIRECTORY_ID (the XM Directory pool, POOL_...)",
            )
        )
    shown = safe_url(base_url)
    try:
        endpoint = _probe(name, base_url, token, options)
    except SourceHTTPError as exc:
        permanent = as_permanent(exc, name)
        if permanent is not None and permanent.status in (401, 403):
            detail = f"{permanent.what} (HTTP {permanent.status}) by {shown}: {permanent_fix(name, permanent.status)}"
        elif permanent is not None:
            detail = f"GET {permanent.endpoint} answered HTTP {permanent.status} ({permanent.what}): " + permanent_fix(
                name, permanent.status
            )
        elif exc.status is None:
            detail = f"cannot reach {shown} ({exc.source_message}): check {var}_BASE_URL and that the server is up"
        else:
            detail = f"{shown} answered HTTP {exc.status}: {exc.source_message}; try again later"
        checks.append(Check(FAIL, f"{name} reachable", detail))
    except ValueError as exc:
        checks.append(Check(FAIL, f"{name} reachable", f"{shown}: {exc}"))
    else:
        checks.append(Check(OK, f"{name} reachable", f"{shown}: authenticated GET /{endpoint} answered"))
    return checks


def _count_rows(path: Path, fmt: str, size: int) -> int | None:
    """Rows of a drop file when that is cheap: Parquet from its footer, small text files by lines
    (opened without following links; a CSV value with line breaks makes this an upper bound)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if fmt == "parquet":
            try:
                import pyarrow.parquet as pq

                return pq.ParquetFile(fh).metadata.num_rows
            except Exception:  # noqa: BLE001 - a broken file is the extraction's to name
                return None
        if size > COUNT_LINES_MAX_BYTES:
            return None
        data = fh.read()
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return max(lines - (1 if fmt == "csv" else 0), 0)


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOW_NAMES])
    return shown + (f" and {len(paths) - SHOW_NAMES} more" if len(paths) > SHOW_NAMES else "")


def _drop_folder(env: Mapping[str, str], config, wanted: tuple[str, ...]) -> list[Check]:
    from cxloop.config import project_home
    from cxloop.extract.files import classify

    name = "drop folder"
    options = {**config.options_for("files"), **_http_settings("files", env)[2]}
    raw = options.get("drop_dir")
    if not raw:
        return [
            Check(
                FAIL,
                name,
                "options.files.drop_dir is not set: set it in the configuration or CXLOOP_FILES_OPT_DROP_DIR",
            )
        ]
    drop = Path(raw).expanduser()
    drop = drop if drop.is_absolute() else project_home(env) / drop
    checks: list[Check] = []
    if drop.is_symlink():
        checks.append(
            Check(WARN, name, f"{drop} is a symbolic link to {os.path.realpath(drop)}: the drop is read there")
        )
    if not drop.exists():
        return [
            *checks,
            Check(FAIL, name, f"{drop} does not exist: create it and put the export files in it, or fix drop_dir"),
        ]
    if not drop.is_dir():
        return [*checks, Check(FAIL, name, f"{drop} is not a folder: point drop_dir at the folder holding the files")]
    files: dict[str, list[tuple[Path, str, int]]] = {}
    problems, ignored = [], []
    try:
        entries = sorted(os.scandir(drop), key=lambda e: e.name)
    except OSError as exc:
        return [*checks, Check(FAIL, name, f"{drop} cannot be listed ({type(exc).__name__}): check its permissions")]
    for entry in entries:
        if entry.is_symlink():
            problems.append(f"{entry.name} (a symbolic link: links are never followed; copy the file in)")
            continue
        if entry.is_dir(follow_symlinks=False):
            ignored.append(entry.name + "/")
            continue
        entity, fmt, problem = classify(Path(entry.path), is_file=entry.is_file(follow_symlinks=False))
        if problem:
            problems.append(f"{entry.name} ({problem})")
        elif entity is None:
            if not entry.name.startswith((".", "_", "~")):
                ignored.append(entry.name)
        else:
            files.setdefault(entity, []).append((Path(entry.path), fmt, entry.stat(follow_symlinks=False).st_size))
    if problems:
        checks.append(
            Check(FAIL, name, f"{drop}: the extraction rejects {_names(problems)}: rename, convert or remove them")
        )
    if ignored:
        checks.append(Check(WARN, name, f"{drop}: ignored (not <entity>.csv/.jsonl/.parquet): {_names(ignored)}"))
    if not files:
        checks.append(
            Check(
                FAIL,
                name,
                f"{drop} holds no data files: drop <entity>.csv, .jsonl or .parquet files "
                f"(entities: {', '.join(wanted)}); see docs/file-drops.md",
            )
        )
        return checks
    if not problems:
        checks.append(Check(OK, name, f"{drop}: {sum(len(v) for v in files.values())} data file(s)"))
    for entity in wanted:
        found = files.get(entity)
        if not found:
            checks.append(Check(WARN, f"drop {entity}", "no file: nothing lands for it this run"))
            continue
        rows = [_count_rows(p, fmt, size) for p, fmt, size in found]
        counted = "" if None in rows else f", {sum(rows):,} row(s)"  # type: ignore[arg-type]
        checks.append(
            Check(OK, f"drop {entity}", f"{len(found)} file(s), {sum(s for *_, s in found):,} bytes{counted}")
        )
    extra = sorted(set(files) - set(wanted))
    if extra:
        checks.append(
            Check(WARN, name, f"files for {', '.join(extra)} are not read: that domain comes from another source")
        )
    return checks


def _warehouse(env: Mapping[str, str]) -> list[Check]:
    from cxloop.config import Settings, redact

    try:
        settings = Settings.from_env(env)
    except ValueError as exc:
        return [Check(FAIL, "warehouse", str(exc))]
    if settings.target == "duckdb":
        path = settings.warehouse_path
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return [
                Check(
                    FAIL,
                    "warehouse",
                    f"DuckDB folder {folder} cannot be created ({type(exc).__name__}): "
                    "set CXLOOP_WAREHOUSE or CXLOOP_VAR",
                )
            ]
        target = path if path.exists() else folder
        if not os.access(target, os.W_OK):
            return [
                Check(
                    FAIL, "warehouse", f"DuckDB {target} is not writable: fix its permissions or set CXLOOP_WAREHOUSE"
                )
            ]
        state = "exists" if path.exists() else "will be created on the first run"
        return [Check(OK, "warehouse", f"DuckDB {path} ({state}, writable)")]
    import psycopg2

    from cxloop.store.postgres_store import DatabaseMissing, connect

    dsn = settings.pg_dsn()
    shown = redact(dsn)
    created = ""
    try:
        try:
            con = connect(dsn, create_database=False)
        except psycopg2.OperationalError as exc:
            if "does not exist" not in str(exc):
                raise
            con = connect(dsn)
            created = ", database created"
    except DatabaseMissing as exc:
        return [Check(FAIL, "warehouse", str(exc))]
    except psycopg2.Error as exc:
        first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return [
            Check(
                FAIL, "warehouse", f"Postgres {shown} not reachable ({first}): check CXLOOP_PG_HOST/PORT/USER/PASSWORD"
            )
        ]
    try:
        with con.cursor() as cur:
            cur.execute("SELECT current_setting('server_version')")
            version = cur.fetchone()[0]
    finally:
        con.close()
    return [Check(OK, "warehouse", f"Postgres {shown} (server {version}{created})")]


def _pii_key(env: Mapping[str, str]) -> list[Check]:
    from cxloop.config import Settings

    key = env.get(PII_KEY_ENV, "")
    name = "PII key"
    if key:
        if len(key) < PII_KEY_MIN_CHARS:
            return [
                Check(
                    FAIL,
                    name,
                    f"{PII_KEY_ENV} has {len(key)} characters, fewer than {PII_KEY_MIN_CHARS}: "
                    "use a long random secret (e.g. `openssl rand -hex 32`), and keep it: "
                    "changing it changes every e-mail hash",
                )
            ]
        return [Check(OK, name, f"{PII_KEY_ENV} set ({len(key)} characters)")]
    try:
        path = Settings.from_env(env).var_dir / "secrets" / "pii.key"
    except ValueError:
        path = Path("var/secrets/pii.key")
    if path.exists():
        return [
            Check(OK, name, f"from {path} (cxloop run reads it; in production set {PII_KEY_ENV} from a secret store)")
        ]
    return [
        Check(
            WARN,
            name,
            f"{PII_KEY_ENV} not set: `cxloop run` creates one in {path}; in production set it from a secret store "
            "(the same key on every run: it pseudonymises e-mail addresses)",
        )
    ]


#: the tables a landed flavour cannot do without (docs/landed-sources.md)
LANDED_REQUIRED = {
    "fivetran_salesforce": ("user", "account", "contact"),
    "fivetran_hubspot": ("owner", "company", "contact"),
    "airbyte_salesforce": ("User", "Account", "Contact"),
    "airbyte_hubspot": ("owners", "companies", "contacts"),
    "fivetran_qualtrics": (
        "survey", "distribution", "distribution_contact", "directory_contact", "survey_response", "question_response",
    ),
}  # fmt: skip


def _landed_source(env: Mapping[str, str], config: object, entities: tuple[str, ...]) -> list[Check]:
    """The landed source: its options, its database reachable, the flavour's required tables."""
    from cxloop.config import project_home, redact
    from cxloop.contract import ENTITIES
    from cxloop.extract.landed_tables import Db, domain_config

    name = "source landed"
    options = {**config.options_for("landed"), **_http_settings("landed", env)[2]}  # type: ignore[attr-defined]
    try:
        domains = [domain_config(options, d) for d in sorted({ENTITIES[e].domain for e in entities})]
        db = Db(str(options.get("database") or ""), project_home(env), _http_settings("landed", env)[1])
    except Exception as exc:  # noqa: BLE001 - one line naming what to fix
        return [Check(FAIL, name, redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))]
    checks = []
    try:
        for d in domains:
            missing = [t for t in LANDED_REQUIRED[d.flavour] if db.columns(d.schema, t) is None]
            if missing:
                tables = ", ".join(f"{d.schema}.{t}" for t in missing)
                checks.append(Check(FAIL, name, f"{d.flavour}: {tables} not in {db.label}"))
            else:
                checks.append(Check(OK, name, f"{d.domain} from {d.flavour} tables in {d.schema} ({db.label})"))
    finally:
        db.close()
    return checks


def run_checks(env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in order; a broken configuration stops at the checks that need it."""
    from cxloop.source_config import DOMAINS

    env = dict(os.environ if env is None else env)
    checks, config = _config(env)
    if config is not None:
        sources = {config.crm: [], config.survey: []}
        sources[config.crm] += list(DOMAINS["crm"])
        sources[config.survey] += list(DOMAINS["survey"])
        for source, entities in sources.items():
            if source in HTTP_SOURCES:
                checks += _http_source(source, env, config.options_for(source))
            elif source == "landed":
                checks += _landed_source(env, config, tuple(entities))
            else:
                checks += _drop_folder(env, config, tuple(entities))
    checks += _warehouse(env)
    checks += _pii_key(env)
    return checks


def main_check(env: Mapping[str, str] | None = None, out: Callable[[str], None] = print) -> int:
    checks = run_checks(env)
    for check in checks:
        out(check.line())
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    if failed:
        out(f"{failed} check(s) failed, {warned} warning(s): fix the FAIL lines, then run `cxloop check` again")
        return 1
    out(f"all checks passed ({warned} warning(s)): `cxloop run` is ready")
    return 0
