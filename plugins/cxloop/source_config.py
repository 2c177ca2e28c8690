"""Which source feeds which domain: read from ``config/sources.yml`` plus environment overrides.

The CRM domain (owners, accounts, contacts, follow-ups, renewals) and the survey domain
(surveys, invitations, responses) each name one source; which entity belongs to which domain is
the landing contract's (:mod:`cxloop.contract`). Switching the demo from Salesforce to HubSpot
or to file drops is a one-line change here, or ``CXLOOP_CRM_SOURCE=hubspot``.

The ``limits:`` section bounds what one source may hand the extraction (see
``docs/file-drops.md``): each key has a safe default (:data:`LIMIT_DEFAULTS`) and an environment
override ``CXLOOP_LIMIT_<KEY>`` (``CXLOOP_LIMIT_FILE_ROWS=500000``). The ``retry:`` section is
how the HTTP connectors retry a 5xx, a 429 or a dropped connection (:data:`RETRY_DEFAULTS`;
override ``CXLOOP_RETRY_<KEY>``, e.g. ``CXLOOP_RETRY_MAX_RETRIES=8`` behind a flaky proxy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxloop.config import project_home
from cxloop.contract import ENTITIES, ENTITY_ORDER

CRM_SOURCES = ("salesforce", "hubspot", "files", "landed")
SURVEY_SOURCES = ("qualtrics", "files", "landed")
# in load order, from the contract: a new entity there is extracted by the DAGs without a
# second list to forget (renewals once were: landed by the connectors, never asked for)
CRM_ENTITIES = tuple(e for e in ENTITY_ORDER if ENTITIES[e].domain == "crm")
SURVEY_ENTITIES = tuple(e for e in ENTITY_ORDER if ENTITIES[e].domain == "survey")
DOMAINS = {"crm": CRM_ENTITIES, "survey": SURVEY_ENTITIES}


#: name -> (default, what it bounds). Integers; a breach is a clear rejection naming the limit.
LIMIT_DEFAULTS: dict[str, tuple[int, str]] = {
    "response_bytes": (256 * 1024**2, "bytes of one HTTP response body (after content decoding)"),
    "uncompressed_bytes": (4 * 1024**3, "bytes of one export member once inflated / one Parquet file uncompressed"),
    "compression_ratio": (200, "uncompressed / compressed size of one export member"),
    "file_rows": (1_000_000, "rows (records) of one drop file"),
    "field_chars": (8 * 1024**2, "characters of one value"),
    "line_bytes": (32 * 1024**2, "bytes of one physical line of a CSV or JSONL drop file"),
    "file_bytes": (2 * 1024**3, "bytes of one drop file"),
    "record_bytes": (32 * 1024**2, "bytes of one response of an export (held whole while it is decoded)"),
}


#: name -> (default, what it sets) of the HTTP connectors' retry policy (extract.http_client).
RETRY_DEFAULTS: dict[str, tuple[float, str]] = {
    "max_retries": (5, "retries of one request after its first attempt (0: never retry)"),
    "backoff_base_seconds": (0.5, "first backoff; retry n waits base x 2^n, jittered down by up to half"),
    "backoff_max_seconds": (30.0, "the longest backoff between two attempts"),
    "retry_after_cap_seconds": (60.0, "the longest wait a server's Retry-After header may ask for"),
}


class SourceConfigError(ValueError):
    pass


#: The top-level keys of the configuration file. ``mappings`` and ``program`` are read and
#: validated by their own loaders; this module only lets them through.
TOP_LEVEL_KEYS = (
    "crm",
    "survey",
    "lookback_hours",
    "invitation_lookback_days",
    "options",
    "limits",
    "retry",
    "mappings",
    "program",
)
#: The options each source reads (``options.<source>.<key>``; CXLOOP_<SOURCE>_OPT_<KEY>).
KNOWN_OPTIONS: dict[str, tuple[str, ...]] = {
    "salesforce": ("api_version", "buying_role_field", "renewal_types", "bulk_threshold"),
    "qualtrics": (
        "directory_id", "nps_question_id", "comment_question_id", "relationship_pattern", "export_windows",
    ),
    "hubspot": (),
    "files": ("drop_dir",),
    "landed": (  # docs/landed-sources.md
        "database", "crm_schema", "crm_flavour", "survey_schema", "survey_flavour", "buying_role_field",
        "renewal_types", "renewal_dealtypes", "nps_question_id", "nps_question_type", "comment_question_id",
        "relationship_pattern", "directory_id",
    ),
}


def unknown_keys(path: Path | str) -> list[str]:
    """Every key of the configuration file at ``path`` that nothing reads, as a dotted name
    (``options.salesforce.api_versoin``, ``limits.file_row``, ``lookbak_hours``): a misspelt key
    would otherwise leave its default in place without a word. [] for a file that is not a
    mapping (``load_source_config`` names that)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    found = [str(k) for k in data if k not in TOP_LEVEL_KEYS]
    options = data.get("options")
    if isinstance(options, dict):
        for source, values in options.items():
            if source not in KNOWN_OPTIONS:
                found.append(f"options.{source}")
            elif isinstance(values, dict):
                found += [f"options.{source}.{k}" for k in values if k not in KNOWN_OPTIONS[source]]
    limits = data.get("limits")
    if isinstance(limits, dict):
        found += [f"limits.{k}" for k in limits if k not in LIMIT_DEFAULTS]
    retry = data.get("retry")
    if isinstance(retry, dict):
        found += [f"retry.{k}" for k in retry if k not in RETRY_DEFAULTS]
    return found


@dataclass(frozen=True)
class Limits:
    """Resource limits at the door (defaults :data:`LIMIT_DEFAULTS`)."""

    response_bytes: int = LIMIT_DEFAULTS["response_bytes"][0]
    uncompressed_bytes: int = LIMIT_DEFAULTS["uncompressed_bytes"][0]
    compression_ratio: int = LIMIT_DEFAULTS["compression_ratio"][0]
    file_rows: int = LIMIT_DEFAULTS["file_rows"][0]
    field_chars: int = LIMIT_DEFAULTS["field_chars"][0]
    line_bytes: int = LIMIT_DEFAULTS["line_bytes"][0]
    file_bytes: int = LIMIT_DEFAULTS["file_bytes"][0]
    record_bytes: int = LIMIT_DEFAULTS["record_bytes"][0]


def _section(
    section: str, data: object, env: Mapping[str, str], path: Path, defaults: Mapping[str, tuple[float, str]], *,
    prefix: str, whole: Callable[[str], bool], minimum: float,
) -> dict[str, float]:
    """The numbers of one section of the file (``limits:``, ``retry:``): each from its environment
    override ``<prefix><NAME>``, else the file, else its default. Whole numbers where
    ``whole(name)``, else finite decimals, at least ``minimum``; an unknown key, a wrong type or a
    value out of range is one line naming the key (or the variable) and the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceConfigError(f"{path}: {section} must be a mapping of setting name to a number")
    unknown = set(data) - set(defaults)
    if unknown:
        raise SourceConfigError(
            f"{path}: unknown {section} setting(s) {', '.join(sorted(map(str, unknown)))}; "
            f"known: {', '.join(defaults)}"
        )
    values: dict[str, float] = {}
    for name, (default, _) in defaults.items():
        var = f"{prefix}{name.upper()}"
        raw = env.get(var)
        where = var if raw else f"{path}: {section}.{name}"
        if not raw:
            raw = data.get(name, default)
        try:
            value = int(str(raw).replace("_", "")) if whole(name) else float(str(raw))
        except ValueError:
            kind = "a whole number" if whole(name) else "a number"
            raise SourceConfigError(f"{where}: {raw!r} is not {kind}") from None
        if not minimum <= value < float("inf"):
            raise SourceConfigError(f"{where}: must be a finite number, at least {minimum:g} (got {raw!r})")
        values[name] = value
    return values


def _limits(data: object, env: Mapping[str, str], path: Path) -> Limits:
    return Limits(
        **_section("limits", data, env, path, LIMIT_DEFAULTS, prefix="CXLOOP_LIMIT_", whole=lambda _: True, minimum=1)
    )


@dataclass(frozen=True)
class RetrySettings:
    """The HTTP connectors' retry policy as configured (defaults :data:`RETRY_DEFAULTS`)."""

    max_retries: int = int(RETRY_DEFAULTS["max_retries"][0])
    backoff_base_seconds: float = RETRY_DEFAULTS["backoff_base_seconds"][0]
    backoff_max_seconds: float = RETRY_DEFAULTS["backoff_max_seconds"][0]
    retry_after_cap_seconds: float = RETRY_DEFAULTS["retry_after_cap_seconds"][0]


def _retry(data: object, env: Mapping[str, str], path: Path) -> RetrySettings:
    return RetrySettings(
        **_section(
            "retry", data, env, path, RETRY_DEFAULTS, prefix="CXLOOP_RETRY_", whole=lambda n: n == "max_retries",
            minimum=0,
        )
    )


def load_retry(env: Mapping[str, str] | None = None) -> RetrySettings:
    """Only the ``retry:`` section (what the HTTP client needs)."""
    return load_source_config(env).retry


def load_limits(env: Mapping[str, str] | None = None) -> Limits:
    """Only the ``limits:`` section (what the connectors and the file reader need)."""
    return load_source_config(env).limits


@dataclass(frozen=True)
class SourceConfig:
    crm: str = "salesforce"
    survey: str = "qualtrics"
    lookback_hours: float = 24.0
    invitation_lookback_days: float = 45.0
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None
    limits: Limits = field(default_factory=Limits)
    retry: RetrySettings = field(default_factory=RetrySettings)

    def source_for(self, domain: str) -> str:
        if domain not in DOMAINS:
            raise SourceConfigError(f"unknown domain {domain!r}; known: crm, survey")
        return self.crm if domain == "crm" else self.survey

    def options_for(self, source: str) -> dict[str, str]:
        return dict(self.options.get(source) or {})


def load_source_config(env: Mapping[str, str] | None = None) -> SourceConfig:
    env = os.environ if env is None else env
    path = Path(env.get("CXLOOP_SOURCES_CONFIG") or project_home(env) / "config" / "sources.yml")
    data: dict = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SourceConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise SourceConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise SourceConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(TOP_LEVEL_KEYS)}"
        )
    crm = env.get("CXLOOP_CRM_SOURCE") or data.get("crm", "salesforce")
    survey = env.get("CXLOOP_SURVEY_SOURCE") or data.get("survey", "qualtrics")
    if crm not in CRM_SOURCES:
        raise SourceConfigError(f"{path}: crm source {crm!r} is not one of {', '.join(CRM_SOURCES)}")
    if survey not in SURVEY_SOURCES:
        raise SourceConfigError(f"{path}: survey source {survey!r} is not one of {', '.join(SURVEY_SOURCES)}")
    options = data.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict | type(None)) for v in options.values()):
        raise SourceConfigError(f"{path}: options must map each source name to a mapping")
    return SourceConfig(
        crm=crm,
        survey=survey,
        lookback_hours=float(env.get("CXLOOP_LOOKBACK_HOURS") or data.get("lookback_hours", 24)),
        invitation_lookback_days=float(
            env.get("CXLOOP_INVITATION_LOOKBACK_DAYS") or data.get("invitation_lookback_days", 45)
        ),
        options={k: {kk: str(vv) for kk, vv in (v or {}).items()} for k, v in options.items()},
        path=path,
        limits=_limits(data.get("limits"), env, path),
        retry=_retry(data.get("retry"), env, path),
    )
