"""Account-team worklists: the account_team_worklist mart on the session's demo warehouse, and
the per-owner CSVs of the export pack (worklists/<owner>.csv) with hostile owner ids, an owner
with nothing to do, and two exports of the same data byte for byte."""

from __future__ import annotations

import subprocess

import duckdb
import pandas as pd
import pytest
from _warehouse_fixture import warehouse_copy
from cxloop.serve.exports import export_marts, worklist_file_names

pytestmark = pytest.mark.e2e

HOSTILE = ["../x", '=HYPERLINK("http://evil.example/","x")', " O1 ", "a/b", "A/B", "con", "_unassigned"]


def test_file_names_are_safe_unique_and_deterministic():
    ids = [*HOSTILE, "O1", "o1", None, "a_b", "x" * 200, "", "..", "\t+cmd"]
    names = worklist_file_names(ids)
    assert names == worklist_file_names(list(reversed(ids)))  # order of arrival does not matter
    assert set(names) == set(ids)
    files = list(names.values())
    assert len({f.lower() for f in files}) == len(files), files  # unique, even case-insensitively
    for file in names.values():
        stem = file.removesuffix(".csv")
        assert file.endswith(".csv") and stem and len(file) <= 80, file
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in stem), file
        assert not stem.startswith(("-", ".")) and stem.lower() != "con", file
    assert names["O1"] == "O1.csv" and names["a_b"] == "a_b.csv"  # plain ids keep their name
    assert names[None] == "_unassigned.csv" and names["_unassigned"] != "_unassigned.csv"
    assert names["../x"].startswith("x-") and names[" O1 "].startswith("O1-")


@pytest.fixture(scope="module")
def worklist(demo_warehouse):
    con = duckdb.connect(str(demo_warehouse.settings.warehouse_path), read_only=True)
    try:
        out = {
            m: con.execute(f"select * from marts.{m}").df()
            for m in ("account_team_worklist", "follow_up_sla", "contact_coverage_by_role")
        }
    finally:
        con.close()
    return out


def test_the_mart_holds_every_item_kind_and_agrees_with_the_marts_it_reads(worklist):
    items = worklist["account_team_worklist"]
    assert set(items.item_kind) == {"coverage_gap", "follow_up", "promoter_activation"}, items.item_kind.value_counts()
    # every open required follow-up is an item, and no closed one
    sla = worklist["follow_up_sla"]
    open_ids = set(sla.loc[sla.closed_at.isna(), "response_id"])
    assert set(items.loc[items.item_kind == "follow_up", "response_id"]) == open_ids
    # coverage gaps: the latest period's roles with fewer responded than required, by role
    roles = worklist["contact_coverage_by_role"]
    latest = roles[roles.period_start == roles.period_start.max()]
    short = latest[(latest.on_file < latest.required) | (latest.invited < latest.required)
                   | (latest.responded < latest.required)]  # fmt: skip
    gaps = items[items.item_kind == "coverage_gap"]
    assert set(zip(gaps.account_id, gaps.role, strict=True)) == set(zip(short.account_id, short.role, strict=True))
    assert (gaps.shortfall > 0).all()
    # ranks are 1..n within each owner
    for _, own in items.groupby(items.owner_id.fillna("(none)")):
        assert sorted(own.item_rank) == list(range(1, len(own) + 1))


@pytest.fixture(scope="module")
def hostile_exports(demo_warehouse, tmp_path_factory):
    """A private copy whose worklist owners are hostile ids, exported twice."""
    settings = warehouse_copy(demo_warehouse, tmp_path_factory.mktemp("worklists"))
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        owners = [r[0] for r in con.execute("select distinct owner_id from marts.account_team_worklist").fetchall()]
        for old, new in zip(sorted(o for o in owners if o is not None), HOSTILE, strict=False):
            con.execute("update marts.account_team_worklist set owner_id = ? where owner_id = ?", [new, old])
        all_owners = {r[0] for r in con.execute("select owner_id from staging.stg_crm__owners").fetchall()}
    finally:
        con.close()
    folders = [
        export_marts(settings, settings.exports_dir / f"e{i}", as_of=demo_warehouse.as_of, run_id=f"wl-{i}")
        for i in range(2)
    ]
    return settings, folders, all_owners


def test_each_owner_gets_one_safe_file_and_an_owner_without_items_a_header_only_one(hostile_exports):
    _, (folder, _), crm_owners = hostile_exports
    files = sorted((folder / "worklists").iterdir())
    assert all(p.parent == folder / "worklists" and p.suffix == ".csv" for p in files)
    assert not (folder.parent / "x.csv").exists() and not any(folder.parent.glob("**/x.csv"))
    frames = {p.name: pd.read_csv(p, dtype=str, keep_default_na=False) for p in files}
    seen = {v for f in frames.values() for v in f.owner_id}
    # the hostile ids are in their files, formula-neutralised, whitespace kept
    assert "'=HYPERLINK(\"http://evil.example/\",\"x\")" in seen and " O1 " in seen and "../x" in seen
    for name, frame in frames.items():
        assert frame.owner_id.nunique() <= 1, name
        assert "response_id" not in frame.columns and {"contact_id", "follow_up_id"} <= set(frame.columns)
        assert list(frame.item_rank.astype(int)) == list(range(1, len(frame) + 1)), name
    idle = [n for n, f in frames.items() if f.empty]
    assert idle, f"an owner of {sorted(crm_owners)} without items should get a header-only file"
    assert all((folder / "worklists" / n).read_text().count("\n") == 1 for n in idle)
    ok = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.count("worklists/") == len(files), ok.stdout + ok.stderr
    assert f"`worklists/*.csv` ({len(files)} owners)" in (folder / "README.md").read_text()


def test_two_exports_of_the_same_data_give_identical_worklists(hostile_exports):
    _, (a, b), _ = hostile_exports
    left = {p.name: p.read_bytes() for p in (a / "worklists").iterdir()}
    right = {p.name: p.read_bytes() for p in (b / "worklists").iterdir()}
    assert left == right and len(left) >= 2


def test_the_mart_equals_the_independent_computation(demo_warehouse, worklist):
    """Against tests/oracle.py (oracle_worklist) computed from the generator's truth tables."""
    import oracle
    from _mart_compare import compare_with_oracle
    from cxloop.contract import ENTITY_ORDER

    truth = demo_warehouse.source_dir.parent / "truth"
    tables = {e: pd.read_parquet(truth / f"{e}.parquet") for e in ENTITY_ORDER}
    wanted = oracle.compute_marts(tables, demo_warehouse.as_of)["account_team_worklist"]
    assert len(wanted) > 0
    compare_with_oracle("account_team_worklist", worklist["account_team_worklist"], wanted)
