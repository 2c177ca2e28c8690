"""Where things live and how the sources are reached: one Settings object from the environment.

Every path defaults to a folder inside the project (``var/``), so the embedded default
needs no configuration at all. Each setting can be overridden by an environment variable
(``CXLOOP_*``); credentials are only ever read from the environment or from Airflow
connections resolved by the DAG, never from code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# The project folder: the dbt project, the expectation suites and config/ live there, and var/
# by default. One setting, CXLOOP_HOME; without it, the checkout the package was installed from
# (an editable install or plugins/ on sys.path), else the current directory when it holds a
# project (a non-editable `pip install .` run from the project folder).
_CHECKOUT = Path(__file__).resolve().parents[2]
HOME_MARKERS = ("dbt_project/dbt_project.yml", "expectations")


def _is_project(path: Path) -> bool:
    return all((path / marker).exists() for marker in HOME_MARKERS)


def project_home(env: Mapping[str, str] | None = None) -> Path:
    """CXLOOP_HOME, else the checkout holding this package, else the current directory if it is a
    project folder. Nothing is checked beyond that here: a command that needs the dbt project and
    finds none says so with the folder it looked in."""
    value = (os.environ if env is None else env).get("CXLOOP_HOME")
    if value:
        return Path(value).expanduser().resolve()
    if _is_project(_CHECKOUT):
        return _CHECKOUT
    cwd = Path.cwd()
    return cwd if _is_project(cwd) else _CHECKOUT


PROJECT_ROOT = project_home()
TARGETS = ("duckdb", "postgres")
LOCAL_SOURCES = ("files", "landed")  # no base URL; landed: a database option


def _env_path(name: str, default: Path, env: Mapping[str, str] | None = None) -> Path:
    value = (os.environ if env is None else env).get(name)
    return Path(value).expanduser().resolve() if value else default


@dataclass(frozen=True)
class SourceSettings:
    """How to reach one source. ``token`` is a bearer token (Salesforce: OAuth access token;
    Qualtrics: OAuth client-credentials token)."""

    name: str
    base_url: str
    token: str = field(repr=False)
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name in LOCAL_SOURCES:
            return  # read from a folder: no URL, no credentials
        if not self.base_url:
            raise ValueError(f"source {self.name}: base URL is not configured")
        if not self.token:
            raise ValueError(f"source {self.name}: credentials are not configured")


@dataclass(frozen=True)
class Settings:
    home: Path
    var_dir: Path
    warehouse_path: Path
    landing_dir: Path
    quarantine_dir: Path
    exports_dir: Path
    logs_dir: Path
    demo_dir: Path
    dbt_project_dir: Path
    expectations_dir: Path
    target: str = "duckdb"  # the warehouse engine and dbt target: duckdb | postgres
    pg: dict[str, str] = field(default_factory=dict, repr=False)
    # days raw pages (landing/source=*/raw/<batch>, personal data) are kept: `cxloop prune`
    raw_retention_days: int = 30

    @property
    def dbt_target(self) -> str:
        return self.target

    def pg_dsn(self) -> str:
        """libpq connection string of the Postgres warehouse (CXLOOP_PG_* variables)."""
        parts = {
            "host": self.pg.get("host", "127.0.0.1"),
            "port": self.pg.get("port", "5432"),
            "user": self.pg.get("user", "postgres"),
            "dbname": self.pg.get("dbname", "cxloop"),
        }
        if self.pg.get("password"):
            parts["password"] = self.pg["password"]
        return " ".join(f"{k}={v}" for k, v in parts.items())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = project_home(env)
        var = _env_path("CXLOOP_VAR", home / "var", env)
        return cls(
            home=home,
            var_dir=var,
            warehouse_path=_env_path("CXLOOP_WAREHOUSE", var / "warehouse" / "cx.duckdb", env),
            landing_dir=_env_path("CXLOOP_LANDING", var / "landing", env),
            quarantine_dir=_env_path("CXLOOP_QUARANTINE", var / "quarantine", env),
            exports_dir=_env_path("CXLOOP_EXPORTS", var / "exports", env),
            logs_dir=_env_path("CXLOOP_LOGS", var / "logs", env),
            demo_dir=_env_path("CXLOOP_DEMO_DATA", var / "demo", env),
            dbt_project_dir=_env_path("CXLOOP_DBT_PROJECT", home / "dbt_project", env),
            expectations_dir=_env_path("CXLOOP_EXPECTATIONS", home / "expectations", env),
            target=_target(env.get("CXLOOP_TARGET", "duckdb")),
            pg={
                key: env[f"CXLOOP_PG_{key.upper()}"]
                for key in ("host", "port", "user", "password", "dbname")
                if env.get(f"CXLOOP_PG_{key.upper()}")
            },
            raw_retention_days=_retention_days(env.get("CXLOOP_RAW_RETENTION_DAYS", "30")),
        )

    def ensure_dirs(self) -> None:
        for path in (
            self.var_dir,
            self.warehouse_path.parent,
            self.landing_dir,
            self.quarantine_dir,
            self.exports_dir,
            self.logs_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)


def _retention_days(value: str) -> int:
    """CXLOOP_RAW_RETENTION_DAYS: whole days, at least 1 (a run still reads its own raw folder)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"CXLOOP_RAW_RETENTION_DAYS={value!r} is not a whole number of days >= 1")
    return int(text)


def _target(value: str) -> str:
    if value not in TARGETS:
        raise ValueError(f"CXLOOP_TARGET={value!r} is not one of {', '.join(TARGETS)}")
    return value


def source_from_env(name: str) -> SourceSettings:
    """Read ``CXLOOP_<NAME>_BASE_URL`` / ``CXLOOP_<NAME>_TOKEN`` and any
    ``CXLOOP_<NAME>_OPT_<KEY>`` options (e.g. CXLOOP_QUALTRICS_OPT_DIRECTORY_ID)."""
    prefix = f"CXLOOP_{name.upper()}_"
    options = {
        key[len(prefix) + 4 :].lower(): value
        for key, value in os.environ.items()
        if key.startswith(prefix + "OPT_")
    }
    return SourceSettings(
        name=name,
        base_url=os.environ.get(prefix + "BASE_URL", ""),
        token=os.environ.get(prefix + "TOKEN", ""),
        options=options,
    )


def parse_as_of(value: str | datetime | None) -> datetime:
    """The run's as-of time (end of its data window, exclusive) as a naive UTC datetime."""
    if value is None or value == "":
        raise ValueError("as_of is required: the end of the run's data window (ISO timestamp)")
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"as_of {value!r} is not an ISO timestamp (e.g. 2026-10-01T00:00:00)") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<secret>[^@/\s]*)@")
_KEY_VALUE_SECRET = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?token|pii[_-]?key)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^\s&;,]+)"
)


def redact(text: object) -> str:
    """``text`` with every credential replaced by ``***``: the password of a URL's
    ``user:password@`` and the value of ``password=`` / ``token=`` / ``secret=`` style pairs
    (libpq DSNs, query strings). Use it on anything written to a log, a summary or a file
    that names a connection (e.g. ``redact(settings.pg_dsn())``)."""
    out = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m['key']}***", out)
