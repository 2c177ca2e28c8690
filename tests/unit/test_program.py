"""Program settings (cxloop.program): validation in one line, environment overrides, the vars
dbt gets, and the defaults agreeing with dbt_project.yml's fallbacks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from cxloop.program import SETTINGS, load_program
from cxloop.transform.dbt import dbt_vars

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_agree_with_the_dbt_project_fallbacks_and_the_shipped_config():
    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    assert {k: project[k] for k in SETTINGS} == {k: s.default for k, s in SETTINGS.items()}
    assert set(project) - set(SETTINGS) == set(), "a dbt var without a program setting"
    shipped = yaml.safe_load((ROOT / "config" / "sources.yml").read_text())
    assert load_program(shipped, env={}).dbt_vars() == {k: s.default for k, s in SETTINGS.items()}


def test_bad_grain_is_one_line_naming_the_key_and_the_allowed_values():
    with pytest.raises(ValueError) as err:
        load_program({"program": {"period_grain": "week"}}, env={})
    message = str(err.value)
    assert "\n" not in message
    assert "period_grain" in message and "quarter | month" in message and "'week'" in message


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("sla_clock", "wall", "calendar | business"),
        ("min_n_group", 0, "whole number"),
        ("min_n_group", 2.5, "whole number"),
        ("response_rate_target", 1.5, "at most 1"),
        ("follow_up_passives", "maybe", "true | false"),
        ("sla_first_contact_business_hours", -1, "above 0"),
        ("default_coverage_tier", "Z", "A | B | C"),
        ("close_out_days", True, "whole number"),
    ],
)
def test_each_kind_of_bad_value_names_key_and_allowed(key, value, allowed):
    with pytest.raises(ValueError, match=f"{key}.*{allowed}"):
        load_program({"program": {key: value}}, env={})


def test_unknown_key_is_named_in_the_file_and_in_the_environment():
    with pytest.raises(ValueError, match="unknown program setting.*period_grian"):
        load_program({"program": {"period_grian": "month"}}, env={})
    with pytest.raises(ValueError, match="CXLOOP_PROGRAM_MIN_N_GRUOP"):
        load_program({}, env={"CXLOOP_PROGRAM_MIN_N_GRUOP": "4"})
    with pytest.raises(ValueError, match="program must be a mapping"):
        load_program({"program": ["period_grain"]}, env={})


def test_environment_override_wins_over_the_file_and_says_where_it_came_from():
    raw = {"program": {"period_grain": "quarter", "min_n_group": 7, "sla_clock": "business"}}
    env = {"CXLOOP_PROGRAM_PERIOD_GRAIN": "Month", "CXLOOP_PROGRAM_FOLLOW_UP_PASSIVES": "yes"}
    program = load_program(raw, env=env)
    assert program.period_grain == "month" and program.min_n_group == 7 and program.sla_clock == "business"
    assert program.follow_up_passives is True
    assert program.sources["period_grain"] == "CXLOOP_PROGRAM_PERIOD_GRAIN"
    assert program.sources["min_n_group"] == "config: program.min_n_group"
    assert program.sources["coverage_target"] == "default"
    assert "period_grain = month  (CXLOOP_PROGRAM_PERIOD_GRAIN)" in program.describe()
    with pytest.raises(ValueError, match="CXLOOP_PROGRAM_PERIOD_GRAIN: 'year'"):
        load_program(raw, env={"CXLOOP_PROGRAM_PERIOD_GRAIN": "year"})


def test_the_configured_file_is_read_when_no_section_is_given(tmp_path):
    config = tmp_path / "sources.yml"
    config.write_text("crm: salesforce\nprogram:\n  sla_clock: business\n  coverage_target: 0.9\n")
    env = {"CXLOOP_SOURCES_CONFIG": str(config)}
    program = load_program(env=env)
    assert program.sla_clock == "business" and program.coverage_target == 0.9
    assert program.sources["sla_clock"] == f"{config}: program.sla_clock"
    assert load_program(env).sla_clock == "business"  # an environment passed alone (cxloop check)
    config.write_text("program:\n  sla_clock: sundial\n")
    with pytest.raises(ValueError, match=f"{config}: program.sla_clock: 'sundial'.*calendar | business"):
        load_program(env=env)
    assert load_program(env={"CXLOOP_SOURCES_CONFIG": str(tmp_path / "none.yml")}).sla_clock == "calendar"


def test_dbt_vars_hold_every_setting_and_explicit_extras_on_top_but_not_the_as_of():
    program = load_program({"program": {"period_grain": "month", "min_n_group": 9}}, env={})
    out = dbt_vars(datetime(2026, 10, 1), {"sla_clock": "business"}, program)
    assert out["period_grain"] == "month" and out["min_n_group"] == 9 and out["sla_clock"] == "business"
    # the as_of goes to raw.cx_run_control: vars that change with every run would cost dbt a
    # whole-project re-parse each time
    assert set(out) == set(SETTINGS)
    assert out["follow_up_passives"] is False and out["response_rate_target"] == 0.70
    assert dbt_vars(datetime(2026, 10, 1), program=program) == dbt_vars(datetime(2027, 1, 1), program=program)


def test_dbt_vars_read_the_environment_when_no_program_is_given(monkeypatch):
    monkeypatch.setenv("CXLOOP_PROGRAM_PERIOD_GRAIN", "month")
    monkeypatch.setenv("CXLOOP_PROGRAM_SLA_CLOCK", "business")
    out = dbt_vars(datetime(2026, 10, 1))
    assert out["period_grain"] == "month" and out["sla_clock"] == "business"


def test_report_period_labels_follow_the_grain(monkeypatch):
    import pandas as pd
    from cxloop.serve.report import _period_label

    periods = pd.Series(pd.to_datetime(["2026-07-01", "2026-08-01"]))
    monkeypatch.setenv("CXLOOP_SOURCES_CONFIG", "/nonexistent/sources.yml")
    assert _period_label(periods) == ["2026-Q3", "2026-08"]
    monkeypatch.setenv("CXLOOP_PROGRAM_PERIOD_GRAIN", "month")
    assert _period_label(periods) == ["2026-07", "2026-08"]  # a month that starts a quarter is a month


def test_freshness_thresholds_come_from_the_file_or_the_environment_and_error_must_exceed_warn():
    env = {"CXLOOP_PROGRAM_FRESHNESS_ERROR_HOURS": "36"}
    program = load_program({"program": {"freshness_warn_hours": 12}}, env=env)
    assert (program.freshness_warn_hours, program.freshness_error_hours) == (12, 36)
    assert program.sources["freshness_warn_hours"] == "config: program.freshness_warn_hours"
    assert program.dbt_vars()["freshness_error_hours"] == 36  # the sources' yml reads the var
    with pytest.raises(ValueError, match=r"^freshness_error_hours = 24 \(CXLOOP_PROGRAM_FRESHNESS_ERROR_HOURS\) must "):
        load_program({"program": {"freshness_warn_hours": 48}}, env={"CXLOOP_PROGRAM_FRESHNESS_ERROR_HOURS": "24"})
    with pytest.raises(ValueError, match="freshness_warn_hours.*a whole number"):
        load_program({"program": {"freshness_warn_hours": 1.5}}, env={})
