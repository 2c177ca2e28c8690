"""Choosing sources is configuration: config/sources.yml plus environment overrides."""

from __future__ import annotations

import pytest
from cxloop.source_config import SourceConfigError, load_source_config


def test_the_shipped_config_names_the_demo_sources():
    config = load_source_config({})
    assert (config.crm, config.survey) == ("salesforce", "qualtrics")
    assert config.options_for("qualtrics")["nps_question_id"] == "QID1"
    assert config.invitation_lookback_days > config.lookback_hours / 24


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "sources.yml"
    path.write_text("crm: salesforce\nsurvey: qualtrics\n")
    config = load_source_config({"CXLOOP_SOURCES_CONFIG": str(path), "CXLOOP_CRM_SOURCE": "hubspot"})
    assert config.source_for("crm") == "hubspot"
    assert config.source_for("survey") == "qualtrics"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("crm: dynamics\n", "crm source 'dynamics' is not one of"),
        ("survey: hubspot\n", "survey source 'hubspot' is not one of"),
        ("crm: [unclosed\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("crm: salesforce\nsurvy: qualtrics\n", "unknown key(s) survy"),
        ("options:\n  qualtrics: QID1\n", "options must map each source name to a mapping"),
    ],
)
def test_bad_config_is_a_clear_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "sources.yml"
    path.write_text(text)
    with pytest.raises(SourceConfigError, match=r"sources\.yml") as err:
        load_source_config({"CXLOOP_SOURCES_CONFIG": str(path)})
    assert message in str(err.value)


def test_the_two_domains_cover_every_contract_entity_once_in_load_order():
    # the DAGs extract DOMAINS[domain]: an entity missing here is landed by no run
    from cxloop.contract import ENTITIES, ENTITY_ORDER
    from cxloop.source_config import DOMAINS

    listed = [e for entities in DOMAINS.values() for e in entities]
    assert sorted(listed) == sorted(ENTITIES) and len(listed) == len(set(listed))
    for domain, entities in DOMAINS.items():
        assert all(ENTITIES[e].domain == domain for e in entities)
        assert list(entities) == [e for e in ENTITY_ORDER if e in entities]
    assert "renewals" in DOMAINS["crm"]


def test_the_retry_policy_comes_from_the_file_and_the_environment(tmp_path):
    from cxloop.source_config import RETRY_DEFAULTS, RetrySettings, unknown_keys

    shipped = load_source_config({}).retry
    assert shipped == RetrySettings() and shipped.max_retries == RETRY_DEFAULTS["max_retries"][0] == 5
    path = tmp_path / "sources.yml"
    path.write_text("retry:\n  max_retries: 2\n  backoff_base_seconds: 0.25\n")
    env = {"CXLOOP_SOURCES_CONFIG": str(path), "CXLOOP_RETRY_BACKOFF_MAX_SECONDS": "4"}
    assert load_source_config(env).retry == RetrySettings(2, 0.25, 4.0, 60.0)
    path.write_text("retry:\n  max_retrys: 2\n")
    assert unknown_keys(path) == ["retry.max_retrys"]


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("retry: 3\n", {}, "retry must be a mapping"),
        ("retry:\n  max_retrys: 2\n", {}, "unknown retry setting(s) max_retrys"),
        ("retry:\n  max_retries: 2.5\n", {}, "retry.max_retries: 2.5 is not a whole number"),
        ("retry:\n  backoff_base_seconds: -1\n", {}, "retry.backoff_base_seconds: must be a finite number"),
        ("", {"CXLOOP_RETRY_BACKOFF_MAX_SECONDS": "nan"}, "CXLOOP_RETRY_BACKOFF_MAX_SECONDS: must be a finite"),
        ("", {"CXLOOP_RETRY_MAX_RETRIES": "lots"}, "CXLOOP_RETRY_MAX_RETRIES: 'lots' is not a whole number"),
    ],
)
def test_a_bad_retry_setting_is_one_clear_line(tmp_path, text, env, message):
    path = tmp_path / "sources.yml"
    path.write_text(text)
    with pytest.raises(SourceConfigError) as err:
        load_source_config({"CXLOOP_SOURCES_CONFIG": str(path), **env})
    assert message in str(err.value) and "\n" not in str(err.value)
