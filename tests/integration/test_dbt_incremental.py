"""The incremental dbt build equals a --full-refresh build of the same warehouse, on every mart.

On a private copy of the session's demo warehouse (tests/_warehouse_fixture.py, already built
at AS_OF), three incremental builds over several as_of days, with late and changed rows
written into raw the way the gate writes a re-delivered row (the row replaced, under a new
batch id):

1. as_of moves back three weeks (the window shrinks: the models drop the later rows);
2. as_of one day past AS_OF, after a response was re-delivered with another score and a
   recorded_at in an earlier quarter, a follow-up was closed, and a contact's buying role
   changed in the CRM as of May, delivered late (the snapshot opens a new version, which the
   contact's responses since May read);
3. the next day, with nothing new.

Then a copy of that warehouse is built with --full-refresh at the same as_of, and every mart
of the two is compared row by row on its grain. The incremental models must also have
rebuilt only part of their rows (else the test proves nothing about incrementality).

The copy costs seconds; the four dbt builds (without the data tests, which other tests run) are
most of the test's time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import duckdb
import pytest
from _mart_compare import MART_GRAIN, sorted_rows
from _serve_support import copy_warehouse, sql

AS_OF = datetime(2026, 10, 1)  # the shared demo warehouse's
BATCH = "test-redelivery-0001"
ROLE_CHANGED_AT = datetime(2026, 5, 1)


@pytest.fixture(autouse=True)
def _keep_environment():
    before = os.environ.get("CXLOOP_WAREHOUSE")
    yield
    if before is None:
        os.environ.pop("CXLOOP_WAREHOUSE", None)
    else:
        os.environ["CXLOOP_WAREHOUSE"] = before


def _rows(settings, statement: str) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse_path))  # dbt, in this process, may still hold it
    try:
        return con.execute(statement).fetchall()
    finally:
        con.close()


def _marts(settings) -> dict:
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        return {m: con.execute(f"select * from marts.{m}").df() for m in MART_GRAIN}
    finally:
        con.close()


def _same(a, b) -> bool:
    """Equal, floats within 1e-9 relative (sums may add in another order)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b)) or (a != a and b != b)
    return a == b


def _change_raw_rows(settings) -> dict:
    """A response re-delivered (another score, recorded in the previous quarter), a follow-up
    closed, a contact's role changed: each row replaced under a new batch id."""
    response = _rows(
        settings,
        """select response_id from raw.responses
           where recorded_at >= timestamp '2026-07-01' and recorded_at < timestamp '2026-09-01'
             and nps_score is not null
           order by response_id limit 1""",
    )[0][0]
    # a role change the CRM dates back to May (delivered late), of a contact with responses
    # since then and none before October 2025: it changes the role of its responses since May
    # (their periods are rebuilt) and leaves the older periods alone
    contact = _rows(
        settings,
        f"""select c.contact_id from raw.contacts c
           where c.updated_at < timestamp '{ROLE_CHANGED_AT}'
             and c.buying_role is distinct from 'decision_maker'
             and exists (select 1 from raw.responses r where r.contact_id = c.contact_id
                         and r.recorded_at >= timestamp '{ROLE_CHANGED_AT}' and r.nps_score is not null
                         and r.response_id <> '{response}')
             and not exists (select 1 from raw.responses o
                             where o.contact_id = c.contact_id and o.recorded_at < timestamp '2025-10-01')
           order by c.contact_id limit 1""",
    )[0][0]
    follow_up = _rows(
        settings, "select follow_up_id from raw.follow_ups where closed_at is null order by follow_up_id limit 1"
    )[0][0]
    changed_at = AS_OF + timedelta(hours=6)
    sql(
        settings,
        f"""update raw.responses set nps_score = case when nps_score >= 9 then 0 else 10 end,
                recorded_at = timestamp '2026-06-20 09:00:00', _batch_id = '{BATCH}'
            where response_id = '{response}'""",
        f"""update raw.follow_ups set status = 'completed', closed_at = timestamp '{changed_at}',
                first_contact_at = coalesce(first_contact_at, timestamp '{changed_at}'),
                updated_at = timestamp '{changed_at}', _batch_id = '{BATCH}'
            where follow_up_id = '{follow_up}'""",
        f"""update raw.contacts set buying_role = 'decision_maker', updated_at = timestamp '{ROLE_CHANGED_AT}',
                _batch_id = '{BATCH}'
            where contact_id = '{contact}'""",
    )
    return {"response": response, "contact": contact, "follow_up": follow_up}


def _build(settings, as_of: datetime, *extra: str) -> None:
    """dbt build without the data tests (other tests run them; this one compares the marts)."""
    from cxloop.transform.dbt import _invoke

    res, _, _ = _invoke("build", settings, as_of, extra_args=["--exclude", "resource_type:test", *extra])
    assert res.success, res.exception or [r.message for r in res.result.results if r.status not in ("success",)]


def test_incremental_builds_equal_a_full_refresh_on_every_mart(demo_warehouse, tmp_path):

    inc = copy_warehouse(demo_warehouse.settings, tmp_path / "incremental")
    seq = "select max(build_seq) from intermediate.int_responses_enriched"
    assert _rows(inc, seq) == [(1,)], "the shared warehouse's build was a full one"
    n_responses = _rows(inc, "select count(*) from intermediate.int_responses_enriched")[0][0]

    _build(inc, AS_OF - timedelta(days=21))
    assert _rows(inc, "select count(*) from intermediate.int_responses_enriched where recorded_at >= "
                 f"timestamp '{AS_OF - timedelta(days=21)}'") == [(0,)]

    changed = _change_raw_rows(inc)
    _build(inc, AS_OF + timedelta(days=1))
    latest = _rows(inc, seq)[0][0]
    assert latest > 1
    # the changed response was rebuilt, into its new period, remembering the old one
    assert _rows(
        inc,
        "select period_start, replaced_period_start, build_seq from intermediate.int_responses_enriched "
        f"where response_id = '{changed['response']}'",
    ) == [(datetime(2026, 4, 1).date(), datetime(2026, 7, 1).date(), latest)]
    # the late role change reached the contact's responses since May, and only those
    assert _rows(
        inc,
        "select distinct recorded_at >= timestamp '2026-05-01', buying_role from intermediate.int_responses_enriched "
        f"where contact_id = '{changed['contact']}' order by 1",
    )[-1] == (True, "decision_maker")
    rebuilt = _rows(inc, f"select count(*) from intermediate.int_responses_enriched where build_seq = {latest}")[0][0]
    assert 0 < rebuilt < n_responses / 2, (rebuilt, n_responses)
    # the period models kept the periods nothing touched (built by the first, full build)
    kept = _rows(inc, "select count(distinct period_start) from intermediate.int_responses_counted "
                 "where enriched_build_seq = 1")[0][0]
    assert kept > 0

    final = AS_OF + timedelta(days=2)
    _build(inc, final)
    full = copy_warehouse(inc, tmp_path / "full")
    _build(full, final, "--full-refresh")
    assert _rows(full, seq) == [(1,)]

    got, want = _marts(inc), _marts(full)
    differing = []
    for mart, keys in MART_GRAIN.items():
        assert list(got[mart].columns) == list(want[mart].columns), mart
        a, b = sorted_rows(got[mart], keys), sorted_rows(want[mart], keys)
        bad = [(x, y) for x, y in zip(a, b, strict=False) if not all(_same(x[c], y[c]) for c in x)]
        if len(a) != len(b) or bad:
            differing.append(f"{mart}: {len(a)} rows incremental, {len(b)} full refresh; first difference {bad[:1]}")
    assert not differing, "\n".join(differing)
    assert all(len(want[m]) > 0 for m in MART_GRAIN if m != "account_team_worklist")
