"""Unit tests of the small core modules: configuration, pseudonymisation, landing, exports."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime

import pandas as pd
import pytest
from cxloop.config import Settings, SourceSettings, parse_as_of, source_from_env
from cxloop.contract import ENTITIES, ENTITY_ORDER, Column
from cxloop.extract.landing import BatchWriter, frame_as_text
from cxloop.extract.pseudonymise import MissingKeyError, email_hash, is_valid_email
from cxloop.gate.landed import read_landed
from cxloop.serve.summary import latest_period, period_start


def test_parse_as_of_normalises_to_naive_utc():
    assert parse_as_of("2026-10-01T02:00:00+02:00") == datetime(2026, 10, 1, 0, 0)
    assert parse_as_of("2026-10-01T00:00:00Z") == datetime(2026, 10, 1)
    assert parse_as_of("2026-10-01") == datetime(2026, 10, 1)


@pytest.mark.parametrize("bad", [None, "", "yesterday", "2026-13-01"])
def test_parse_as_of_rejects_missing_or_malformed(bad):
    with pytest.raises(ValueError, match="as_of"):
        parse_as_of(bad)


def test_settings_paths_follow_var(tmp_path):
    s = Settings.from_env({"CXLOOP_VAR": str(tmp_path)})
    assert s.warehouse_path == tmp_path / "warehouse" / "cx.duckdb"
    assert s.exports_dir == tmp_path / "exports"
    assert s.dbt_project_dir.name == "dbt_project"
    s2 = Settings.from_env({"CXLOOP_VAR": str(tmp_path), "CXLOOP_WAREHOUSE": str(tmp_path / "w.duckdb")})
    assert s2.warehouse_path == tmp_path / "w.duckdb"


def test_source_settings_from_env(monkeypatch):
    monkeypatch.setenv("CXLOOP_QUALTRICS_BASE_URL", "https://iad1.qualtrics.com")
    monkeypatch.setenv("CXLOOP_QUALTRICS_TOKEN", "tok-123")
    monkeypatch.setenv("CXLOOP_QUALTRICS_OPT_DIRECTORY_ID", "POOL_1")
    src = source_from_env("qualtrics")
    assert src.base_url == "https://iad1.qualtrics.com"
    assert src.options == {"directory_id": "POOL_1"}
    assert "tok-123" not in repr(src), "tokens must not appear in reprs (and so in logs)"


def test_source_settings_demand_credentials():
    with pytest.raises(ValueError, match="credentials are not configured"):
        SourceSettings(name="salesforce", base_url="https://x", token="")
    with pytest.raises(ValueError, match="base URL is not configured"):
        SourceSettings(name="salesforce", base_url="", token="t")


def test_email_hash_is_keyed_hmac_of_normalised_address():
    key = b"k1"
    expected = hmac.new(key, b"ana@example.com", hashlib.sha256).hexdigest()
    assert email_hash("  Ana@Example.com ", key) == expected
    assert email_hash("ana@example.com", b"k2") != expected
    assert email_hash(None, key) is None
    assert email_hash("", key) is None


def test_email_hash_without_key_is_an_error(monkeypatch):
    monkeypatch.delenv("CXLOOP_PII_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="CXLOOP_PII_KEY"):
        email_hash("a@b.co")


@pytest.mark.parametrize(
    ("email", "ok"),
    [("ana@example.com", True), ("o'neil@acme.co.uk", True), ("ana@", False), ("no-at-sign", False), (None, False)],
)
def test_email_validity(email, ok):
    assert is_valid_email(email) is ok


def test_contract_is_consistent():
    assert list(ENTITIES) and set(ENTITY_ORDER) == set(ENTITIES)
    for name, ent in ENTITIES.items():
        assert ent.primary_key in ent.column_names, name
        assert ent.column(ent.primary_key).required, name
        for col, parent in ent.references.items():
            assert col in ent.column_names and parent in ENTITIES, (name, col)
            assert ENTITY_ORDER.index(parent) < ENTITY_ORDER.index(name) or name == "follow_ups"
    with pytest.raises(ValueError, match="unknown logical type"):
        Column("x", "money")


def test_landing_keeps_values_as_received(tmp_path):
    frame = pd.DataFrame(
        {
            "response_id": ["R_1", "R_2", "R_3", "R_4"],
            "nps_score": [9, "7.5", None, pd.NA],
            "is_finished": [True, False, None, float("nan")],
        },
        dtype=object,
    )

    def land():
        with BatchWriter(
            landing_dir=tmp_path,
            source="qualtrics",
            batch_id="b1",
            extracted_at=datetime(2026, 10, 1, 12),
            as_of=datetime(2026, 10, 1),
            entities=["surveys", "responses"],
            every_entity=False,
        ) as writer:
            writer.write("responses", frame_as_text(frame.iloc[:3]))  # two chunks, one file
            writer.write("responses", frame_as_text(frame.iloc[3:]))
            return writer.finish({"responses": [None, "2026-10-01T00:00:00"], "surveys": [None, None]})

    batch = land()
    assert batch.rows == {"responses": 4}  # surveys got no chunk: not landed
    assert list(batch.files) == ["responses"] and list(batch.windows) == ["responses"]
    back = read_landed(batch.files["responses"])
    assert back["nps_score"].tolist() == ["9", "7.5", None, None]
    assert back["is_finished"].tolist() == ["true", "false", None, None]
    with pytest.raises(FileExistsError, match="immutable"):
        land()


@pytest.mark.parametrize(
    ("ts", "grain", "start"),
    [
        (datetime(2026, 9, 30, 23), "quarter", date(2026, 7, 1)),
        (datetime(2026, 1, 1), "quarter", date(2026, 1, 1)),
        (datetime(2026, 12, 31), "quarter", date(2026, 10, 1)),
        (datetime(2026, 5, 17), "month", date(2026, 5, 1)),
    ],
)
def test_period_start(ts, grain, start):
    assert period_start(ts, grain) == start


def test_latest_period_excludes_the_as_of_instant():
    assert latest_period(datetime(2026, 10, 1)) == date(2026, 7, 1)
    assert latest_period(datetime(2026, 10, 1, 0, 0, 1)) == date(2026, 10, 1)


def test_raw_retention_setting_from_the_environment():
    assert Settings.from_env({}).raw_retention_days == 30
    assert Settings.from_env({"CXLOOP_RAW_RETENTION_DAYS": "7"}).raw_retention_days == 7
    for bad in ("0", "-3", "a week", "1.5"):
        with pytest.raises(ValueError, match=r"CXLOOP_RAW_RETENTION_DAYS=.* is not a whole number of days >= 1"):
            Settings.from_env({"CXLOOP_RAW_RETENTION_DAYS": bad})
