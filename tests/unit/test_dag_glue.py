"""The DAG glue: the one rule for a run's as_of.

``cxloop_airflow.resolve_as_of`` is called by the first task of every DAG; each branch is
exercised here, the warehouse branch against a real DuckDB warehouse with recorded
extraction windows. What importing the DAG files costs is checked by
tests/integration/test_dagbag.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cxloop.config import Settings
from cxloop_airflow import INTERVAL, WAREHOUSE, resolve_as_of


@pytest.fixture
def empty_warehouse(tmp_path) -> Settings:
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    settings.ensure_dirs()
    return settings


def _record_windows(settings: Settings, windows: list[tuple[str, str, datetime]]) -> None:
    """Extraction windows as the ingestion DAGs record them, straight into the DuckDB file."""
    import duckdb
    from cxloop.store.state import Db, ensure_state_tables, record_window

    con = duckdb.connect(str(settings.warehouse_path))
    try:
        db = Db(con)
        ensure_state_tables(db)
        for source, entity, as_of in windows:
            record_window(db, source, [entity], as_of, f"b-{source}-{entity}-{as_of:%Y%m%d}")
    finally:
        con.close()


@pytest.mark.parametrize("fallback", [INTERVAL, WAREHOUSE])
def test_the_param_wins_and_is_normalised_to_naive_utc(fallback, empty_warehouse):
    # the empty warehouse would raise if it were consulted; the interval would give another day
    got = resolve_as_of(
        {"as_of": "2026-10-01T02:00:00+02:00"},
        fallback=fallback,
        data_interval_end=datetime(2026, 3, 1, tzinfo=UTC),
        settings=empty_warehouse,
    )
    assert got == "2026-10-01T00:00:00"


def test_ingestion_takes_the_data_interval_end():
    end = datetime(2026, 9, 30, 22, 0, tzinfo=timezone(timedelta(hours=-2)))
    got = resolve_as_of({"as_of": None}, fallback=INTERVAL, data_interval_end=end, run_after=datetime(2027, 1, 1))
    assert got == "2026-10-01T00:00:00"


def test_ingestion_without_an_interval_takes_run_after():
    got = resolve_as_of({}, fallback=INTERVAL, data_interval_end=None, run_after=datetime(2026, 5, 2, 3, 4, tzinfo=UTC))
    assert got == "2026-05-02T03:04:00"


def test_ingestion_with_nothing_to_go_by_says_so():
    with pytest.raises(ValueError, match="no `as_of` param, no data interval end and no run_after"):
        resolve_as_of(None, fallback=INTERVAL)


def test_an_asset_triggered_run_takes_the_window_the_warehouse_is_complete_up_to(empty_warehouse):
    _record_windows(
        empty_warehouse,
        [
            ("salesforce", "accounts", datetime(2026, 10, 1)),
            ("qualtrics", "responses", datetime(2026, 9, 15)),  # responses lag: the warehouse is complete to here
        ],
    )
    # the data interval is ignored: transform and publish runs are scheduled on assets
    got = resolve_as_of(None, fallback=WAREHOUSE, data_interval_end=datetime(2027, 1, 1), settings=empty_warehouse)
    assert got == "2026-09-15T00:00:00"


def test_an_asset_triggered_run_reads_the_warehouse_of_the_environment(empty_warehouse, monkeypatch):
    _record_windows(empty_warehouse, [("qualtrics", "responses", datetime(2026, 7, 1, 12))])
    monkeypatch.setenv("CXLOOP_VAR", str(empty_warehouse.var_dir))
    monkeypatch.delenv("CXLOOP_WAREHOUSE", raising=False)
    assert resolve_as_of({"as_of": ""}, fallback=WAREHOUSE) == "2026-07-01T12:00:00"


def test_an_asset_triggered_run_on_an_empty_warehouse_fails_with_what_to_do(empty_warehouse):
    with pytest.raises(ValueError, match="no data loaded yet; run the ingestion DAGs first, or pass the `as_of` param"):
        resolve_as_of({}, fallback=WAREHOUSE, settings=empty_warehouse)


def test_an_unknown_fallback_is_refused():
    with pytest.raises(ValueError, match="fallback 'calendar' is not 'interval' or 'warehouse'"):
        resolve_as_of(None, fallback="calendar")
