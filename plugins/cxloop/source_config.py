"""Which source feeds which domain: read from ``config/sources.yml`` plus environment overrides.

The CRM domain (owners, accounts, contacts, follow-ups) and the survey domain (surveys,
invitations, responses) each name one source. Switching the demo from Salesforce to HubSpot
or to file drops is a one-line change here, or ``CXLOOP_CRM_SOURCE=hubspot``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cxloop.config import project_home

CRM_SOURCES = ("salesforce", "hubspot", "files")
SURVEY_SOURCES = ("qualtrics", "files")
CRM_ENTITIES = ("owners", "accounts", "contacts", "follow_ups")
SURVEY_ENTITIES = ("surveys", "invitations", "responses")
DOMAINS = {"crm": CRM_ENTITIES, "survey": SURVEY_ENTITIES}


class SourceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SourceConfig:
    crm: str = "salesforce"
    survey: str = "qualtrics"
    lookback_hours: float = 24.0
    invitation_lookback_days: float = 45.0
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    path: Path | None = None

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
    unknown = set(data) - {"crm", "survey", "lookback_hours", "invitation_lookback_days", "options"}
    if unknown:
        raise SourceConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
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
    )
