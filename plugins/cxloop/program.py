"""Program settings: the business rules of one NPS programme, set without editing dbt.

They live in the ``program:`` section of the config file (``config/sources.yml``, or the file
``CXLOOP_SOURCES_CONFIG`` names), and each key has an environment override
``CXLOOP_PROGRAM_<KEY>`` (``CXLOOP_PROGRAM_PERIOD_GRAIN=month``) that wins over the file. The
pipeline hands them to every dbt invocation as vars (:meth:`Program.dbt_vars`), so the marts,
the exports' suppression and the summary all follow the same values.

The defaults are :data:`SETTINGS` below; ``dbt_project/dbt_project.yml`` keeps the same values
under ``vars:`` only as fallbacks for a bare ``dbt build`` (a test checks they agree).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_PREFIX = "CXLOOP_PROGRAM_"


@dataclass(frozen=True)
class Setting:
    default: object
    kind: str  # choice | int | hours | fraction | bool
    help: str
    choices: tuple[str, ...] = ()


#: key -> its default, kind and meaning. Every key is a dbt var of the project.
SETTINGS: dict[str, Setting] = {
    "period_grain": Setting("quarter", "choice", "reporting period of every mart", ("quarter", "month")),
    "sla_clock": Setting(
        "calendar", "choice", "clock of follow_up_sla.sla_status (calendar 48 h, or business hours)",
        ("calendar", "business"),
    ),
    "sla_first_contact_business_hours": Setting(16, "hours", "first-contact target on the business clock, in hours"),
    "response_rate_target": Setting(0.70, "fraction", "target of the response rate"),
    "sla_attainment_target": Setting(0.80, "fraction", "target of the follow-up SLA attainment"),
    "revenue_coverage_target": Setting(0.80, "fraction", "target of the ARR share of accounts that responded"),
    "coverage_target": Setting(0.80, "fraction", "target of account and decision-maker coverage"),
    "min_n_account": Setting(3, "int", "smallest scored n for a reportable account NPS"),
    "min_n_group": Setting(5, "int", "smallest n for a reportable group (and in exports, the report, the summary)"),
    "close_out_days": Setting(30, "int", "days after sent_at in which a response counts for its invitation"),
    "follow_up_passives": Setting(False, "bool", "passives also require a follow-up"),
    "at_risk_renewal_days": Setting(120, "int", "at_risk_accounts: renewal within this many days of as_of"),
    "worklist_promoter_days": Setting(
        365, "int", "account_team_worklist: promoter decision makers who answered within this many days of as_of"
    ),
    "default_coverage_tier": Setting("C", "choice", "coverage tier of an account without one", ("A", "B", "C")),
    "business_calendar_days_after": Setting(120, "int", "days the business calendar extends past as_of"),
    "freshness_warn_hours": Setting(
        48, "int", "dbt source freshness: a source whose data window lags the run's as_of this many hours warns"
    ),
    "freshness_error_hours": Setting(
        168, "int", "... and this many hours is an error (alerted); more than freshness_warn_hours"
    ),
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _allowed(name: str) -> str:
    s = SETTINGS[name]
    return {
        "choice": " | ".join(s.choices),
        "int": "a whole number of at least 1",
        "hours": "a number of hours above 0",
        "fraction": "a number above 0 and at most 1",
        "bool": "true | false",
    }[s.kind]


def _coerce(name: str, value: object, where: str) -> object:
    s = SETTINGS[name]
    bad = ValueError(f"{where}: {value!r} is not allowed for {name}; allowed: {_allowed(name)}")
    if s.kind == "choice":
        text = str(value).strip()
        if name != "default_coverage_tier":
            text = text.lower()
        if text not in s.choices:
            raise bad
        return text
    if s.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad
    if isinstance(value, bool):
        raise bad
    try:
        number = float(str(value).strip().replace("_", ""))
    except ValueError:
        raise bad from None
    if number != number or number in (float("inf"), float("-inf")):
        raise bad
    if s.kind == "int":
        if number != int(number) or number < 1:
            raise bad
        return int(number)
    if s.kind == "hours":
        if number <= 0:
            raise bad
        return int(number) if number == int(number) else number
    if not 0 < number <= 1:  # fraction
        raise bad
    return number


@dataclass(frozen=True)
class Program:
    """The validated program settings (every key of :data:`SETTINGS`)."""

    values: dict[str, object]
    sources: dict[str, str]  # key -> where its value came from: default | <file>: program.<key> | <ENV VAR>

    def __getattr__(self, name: str) -> object:
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def dbt_vars(self) -> dict:
        """The vars every dbt invocation gets (as_of is added by the caller)."""
        return dict(self.values)

    def describe(self) -> list[str]:
        """One line per key: value and where it came from (for ``cxloop check``)."""
        return [f"{k} = {_show(v)}  ({self.sources[k]})" for k, v in self.values.items()]


def _show(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The config file the way :mod:`cxloop.source_config` finds it."""
    from cxloop.config import project_home

    env = os.environ if env is None else env
    return Path(env.get("CXLOOP_SOURCES_CONFIG") or project_home(env) / "config" / "sources.yml")


def _read_section(env: Mapping[str, str]) -> tuple[object, str]:
    import yaml

    path = config_path(env)
    if not path.exists():
        return None, str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise ValueError(f"{path}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data.get("program"), str(path)


def load_program(raw: Mapping | None = None, env: Mapping[str, str] | None = None) -> Program:
    """The program settings: ``raw`` is the parsed config file (its ``program:`` section is
    read; None reads the configured file), then ``CXLOOP_PROGRAM_<KEY>`` overrides. Raises
    ValueError with one line naming the key and its allowed values.

    Called with an environment mapping alone (``load_program(os.environ)``: every key upper
    case, as no config key is), it reads the configured file with that environment."""
    if env is None and raw is not None and raw and all(isinstance(k, str) and k.isupper() for k in raw):
        raw, env = None, raw
    env = os.environ if env is None else env
    if raw is None:
        section, where = _read_section(env)
    else:
        section, where = raw.get("program"), "config"
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{where}: program must be a mapping of setting name to value")
    unknown = sorted(str(k) for k in section if k not in SETTINGS)
    if unknown:
        raise ValueError(f"{where}: unknown program setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    unknown_env = sorted(k for k in env if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX):].lower() not in SETTINGS)
    if unknown_env:
        raise ValueError(f"unknown program setting(s) {', '.join(unknown_env)}; known: {', '.join(SETTINGS)}")
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        var = ENV_PREFIX + name.upper()
        if env.get(var, "").strip():
            values[name], sources[name] = _coerce(name, env[var], var), var
        elif section.get(name) is not None:
            origin = f"{where}: program.{name}"
            values[name], sources[name] = _coerce(name, section[name], origin), origin
        else:
            values[name], sources[name] = setting.default, "default"
    if values["freshness_error_hours"] <= values["freshness_warn_hours"]:
        raise ValueError(
            f"freshness_error_hours = {values['freshness_error_hours']} ({sources['freshness_error_hours']}) must be "
            f"more than freshness_warn_hours = {values['freshness_warn_hours']} ({sources['freshness_warn_hours']})"
        )
    return Program(values=values, sources=sources)
