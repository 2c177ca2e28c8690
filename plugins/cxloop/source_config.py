"""Which source feeds which domain: read from ``config/sources.yml`` plus environment overrides.

The CRM domain (owners, accounts, contacts, follow-ups, renewals) and the survey domain
(surveys, invitations, responses) each name one source; which entity belongs to which domain is
the landing contract's (:mod:`cxloop.contract`). Switching the demo from Salesforce to HubSpot
or to file drops is a one-line change here, or ``CXLOOP_CRM_SOURCE=hubspot``.

The ``limits:`` section bounds what one source may hand the extraction (see
``docs/file-drops.md``): each key has a safe default (:data:`LIMIT_DEFAULTS`) and an environment
override ``CXLOOP_LIMIT_<KEY>`` (``CXLOOP_LIMIT_FILE_ROWS=500000``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxloop.config import project_home
from cxloop.contract import ENTITIES, ENTITY_ORDER

CRM_SOURCES = ("salesforce", "hubspot", "files")
SURVEY_SOURCES = ("qualtrics", "files")
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
    "mappings",
    "program",
)
#: The options each source reads (``options.<source>.<key>``; CXLOOP_<SOURCE>_OPT_<KEY>).
KNOWN_OPTIONS: dict[str, tuple[str, ...]] = {
    "salesforce": ("api_version", "buying_role_field"),
    "qualtrics": ("directory_id", "nps_question_id", "comment_question_id", "relationship_pattern"),
    "hubspot": (),
    "files": ("drop_dir",),
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


def _limits(data: object, env: Mapping[str, str], path: Path) -> Limits:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SourceConfigError(f"{path}: limits must be a mapping of limit name to a number")
    unknown = set(data) - set(LIMIT_DEFAULTS)
    if unknown:
        raise SourceConfigError(
            f"{path}: unknown limit(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(LIMIT_DEFAULTS)}"
        )
    values = {}
    for name, (default, _) in LIMIT_DEFAULTS.items():
        var = f"CXLOOP_LIMIT_{name.upper()}"
        raw = env.get(var)
        where = var if raw else f"{path}: limits.{name}"
        if not raw:
            raw = data.get(name, default)
        try:
            value = int(str(raw).replace("_", ""))
        except ValueError:
            raise SourceConfigError(f"{where}: {raw!r} is not a whole number") from None
        if value < 1:
            raise SourceConfigError(f"{where}: must be at least 1 (got {value})")
        values[name] = value
    return Limits(**values)


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
    )
