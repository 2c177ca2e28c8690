"""Governance exports from a real demo warehouse: every mart as Parquet and CSV, a manifest
whose checksums verify, no personal data, groups with n < 5 suppressed."""

from __future__ import annotations

import json
from datetime import datetime

import pandas as pd
import pytest
from cxloop.serve.exports import (
    GOVERNANCE,
    MARTS,
    PII_COLUMNS,
    WORKLIST_CRM_IDS,
    export_marts,
    govern,
    min_n_group,
    sha256_file,
    verify_manifest,
)

pytestmark = pytest.mark.e2e

WATERMARKS = {"salesforce": {"contacts": "2026-09-30T23:00:00"}, "qualtrics": {"responses": "2026-09-30T22:00:00"}}


@pytest.fixture(scope="module")
def pack(demo_warehouse, tmp_path_factory):
    wh = demo_warehouse
    folder = export_marts(
        wh.settings,
        tmp_path_factory.mktemp("exports"),
        as_of=wh.as_of,
        run_id="scheduled__2026-10-01T00:00:00+00:00",
        dbt_invocation_id=wh.build_report["invocation_id"],
        watermarks=WATERMARKS,
    )
    return wh, folder, json.loads((folder / "manifest.json").read_text())


def test_folder_is_dated_and_holds_every_mart_in_both_formats(pack):
    wh, folder, manifest = pack
    assert folder.parent.name == "2026-10-01"
    assert folder.name == "scheduled__2026-10-01T00_00_00_00_00"
    names = {f["file"] for f in manifest["files"] if not f["file"].startswith("worklists/")}
    assert names == {f"{m}.{ext}" for m in MARTS for ext in ("parquet", "csv")}
    assert {p.name for p in folder.iterdir()} == names | {"manifest.json", "README.md", "SHA256SUMS", "worklists"}


def test_sha256sum_accepts_the_folder_and_catches_a_changed_or_missing_file(pack, tmp_path):
    """What a reviewer runs: coreutils' sha256sum -c, in the folder, on every data file and the README."""
    import shutil
    import subprocess

    _, folder, manifest = pack
    listed = [line.split("  ", 1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()]
    assert sorted(listed) == sorted([f["file"] for f in manifest["files"]] + ["README.md"])
    ok = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(listed)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    target = copy / "account_nps.csv"
    target.write_bytes(target.read_bytes() + b"x")
    (copy / "README.md").unlink()
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=copy, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "account_nps.csv: FAILED" in bad.stdout and "README.md: FAILED open or read" in bad.stdout


def test_the_readme_names_every_file_with_its_grain_rows_and_rule(pack):
    _, folder, manifest = pack
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("# cxloop governance export, as of 2026-10-01\n")
    for mart, info in manifest["marts"].items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {mart} |"))
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[1].startswith(f"`{mart}.parquet` `{mart}.csv`") and cells[2] == str(info["rows"]), row
        assert cells[3] == ", ".join(GOVERNANCE[mart].keys)
    assert f"below {manifest['suppression']['min_n']} (the program setting `min_n_group`)" in text
    assert "sha256sum -c SHA256SUMS" in text
    assert manifest["run_id"] not in text, "the README must not change from run to run"


def test_manifest_carries_contract_version_invocation_watermarks_and_rule(pack):
    wh, _, manifest = pack
    assert manifest["metric_contract_version"] == "v1"
    assert manifest["dbt_invocation_id"] == wh.build_report["invocation_id"]
    assert manifest["source_watermarks"] == WATERMARKS
    assert manifest["as_of"] == "2026-10-01T00:00:00"
    assert manifest["suppression"]["min_n"] == min_n_group(wh.settings) == 5  # the dbt var min_n_group
    assert set(manifest["marts"]) == set(MARTS)


def test_checksums_and_row_counts_verify_and_tampering_is_detected(pack, tmp_path):
    _, folder, manifest = pack
    assert verify_manifest(folder) == []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        assert sha256_file(path) == entry["sha256"]
        rows = len(pd.read_parquet(path)) if entry["format"] == "parquet" else len(pd.read_csv(path))
        if entry["file"].startswith("worklists/"):  # one owner's share of the mart
            assert rows == entry["rows"], entry["file"]
        else:
            assert rows == entry["rows"] == manifest["marts"][entry["mart"]]["rows"], entry["file"]
    # a tampered copy fails verification
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    target = copy / "portfolio_nps.csv"
    target.write_text(target.read_text().replace("relationship", "transactional", 1))
    (copy / "data_quality.parquet").unlink()
    assert verify_manifest(copy) == [
        f"{copy / 'portfolio_nps.csv'}: checksum differs from manifest",
        f"{copy / 'data_quality.parquet'}: missing",
    ]


def test_no_identifier_of_a_person_or_response_in_any_file(pack):
    _, folder, manifest = pack
    for entry in manifest["files"]:
        frame = pd.read_parquet(folder / entry["file"]) if entry["format"] == "parquet" else pd.read_csv(
            folder / entry["file"]
        )
        allowed = WORKLIST_CRM_IDS if entry["file"].startswith("worklists/") else frozenset()
        assert not set(frame.columns) & (PII_COLUMNS - allowed), entry["file"]
    sla = pd.read_parquet(folder / "follow_up_sla.parquet")
    assert list(sla.columns[:5]) == ["period_start", "survey_type", "owner_id", "team", "follow_ups_required"]
    assert manifest["marts"]["follow_up_sla"]["dropped_columns"] == ["contact_id", "follow_up_id", "response_id"]


def test_the_sla_aggregate_adds_up_to_the_row_level_mart(pack):
    wh, folder, manifest = pack
    sla = pd.read_parquet(folder / "follow_up_sla.parquet")
    assert sla.follow_ups_required.sum() == manifest["marts"]["follow_up_sla"]["mart_rows"]
    shown = sla[~sla.suppressed]
    decided = shown.met + shown.breached + shown.missing
    assert ((shown.met / decided - shown.sla_attainment).abs() <= 1e-9).all()  # rounded to 9 decimals
    assert (shown.met + shown.breached + shown.missing + shown.active == shown.follow_ups_required).all()


# nps_renewal_outcomes has no class below 5 renewals in the demo: its rule is tested on its own below
@pytest.mark.parametrize("mart", [m for m in MARTS if GOVERNANCE[m].n and m != "nps_renewal_outcomes"])
def test_groups_below_five_are_suppressed(pack, mart):
    _, folder, manifest = pack
    frame = pd.read_parquet(folder / f"{mart}.parquet")
    rule = GOVERNANCE[mart]
    min_n = manifest["suppression"]["min_n"]
    small = frame[rule.n] < min_n
    if mart == "portfolio_nps":
        small |= (frame.method != "respondent") & (frame.n_accounts < min_n)
    assert small.any(), f"the demo data should have small {mart} groups to suppress"
    assert (frame.suppressed == small).all()
    assert frame.loc[small, list(rule.metrics)].isna().all().all(), "suppressed rows must carry no metric"
    assert manifest["marts"][mart]["suppressed_rows"] == int(small.sum())
    big = frame[~small]
    assert len(big) > 0
    headline = {"account_nps": "nps", "portfolio_nps": "nps", "response_rate": "response_rate",
                "governance_kpis": "value", "follow_up_sla": "follow_ups_required"}[mart]
    assert big[headline].notna().any()


def test_renewal_outcomes_small_classes_and_their_difference_are_suppressed(pack):
    """A class with fewer than min_n renewals is suppressed, and so is the promoter-minus-detractor
    row (with the detractors' rate public it would give the promoters' away); the demo's own
    rows all have enough renewals and are exported as they are."""
    _, folder, _ = pack
    demo = pd.read_parquet(folder / "nps_renewal_outcomes.parquet")
    assert not demo.suppressed.any() and demo.renewal_rate.notna().all()
    frame = pd.DataFrame(
        {
            "account_class": ["promoter", "detractor", "all", "promoter_minus_detractor"],
            "n_renewals": [3, 10, 13, 13],
            "n_won": [3, 2, 5, 5],
            "renewal_rate": [1.0, 0.2, 5 / 13, 0.8],
            "renewal_rate_ci_low": [0.4, 0.06, 0.17, 0.3],
            "renewal_rate_ci_high": [1.0, 0.5, 0.64, 0.95],
            "n_with_revenue": [3, 10, 13, 13],
            "previous_arr": [300.0, 1000.0, 1300.0, None],
            "renewed_arr": [330.0, 200.0, 530.0, None],
            "net_revenue_retention": [1.1, 0.2, 530 / 1300, 0.9],
            "is_reportable": [False, True, True, False],
        }
    )
    out = govern("nps_renewal_outcomes", frame, min_n=5).set_index("account_class")
    assert out.suppressed.to_dict() == {
        "all": False, "detractor": False, "promoter": True, "promoter_minus_detractor": True,
    }  # fmt: skip
    hidden = out.loc[["promoter", "promoter_minus_detractor"], list(GOVERNANCE["nps_renewal_outcomes"].metrics)]
    assert hidden.isna().all().all() and out.loc["detractor", "renewal_rate"] == 0.2


def test_previous_period_values_do_not_leak_a_suppressed_row():
    periods = pd.to_datetime(["2026-01-01", "2026-04-01", "2026-07-01"])
    frame = pd.DataFrame(
        {
            "period_start": periods,
            "survey_type": "relationship",
            "account_id": "A1",
            "method": "pooled",
            "waterfall_role": None,
            "n_scored": [3, 8, 9],
            "n_eligible": 10,
            "promoters": [3, 4, 5],
            "passives": [0, 2, 2],
            "detractors": [0, 2, 2],
            "nps": [100.0, 25.0, 33.3],
            "var_pts": 1.0,
            "ci_low": 0.0,
            "ci_high": 1.0,
            "is_reportable": True,
            "nps_prev": [None, 100.0, 25.0],
            "var_pts_prev": [None, 1.0, 1.0],
            "is_significant_change": [None, True, False],
        }
    )
    out = govern("account_nps", frame, 5)
    assert out.suppressed.tolist() == [True, False, False]
    assert out.nps.isna().tolist() == [True, False, False]
    assert out.nps_prev.isna().tolist() == [True, True, False], "Q2's nps_prev would reveal suppressed Q1"
    assert out.is_significant_change.isna().tolist() == [True, True, False]


def test_exports_from_a_path_equal_exports_from_settings(pack, tmp_path):
    wh, folder, manifest = pack
    again = export_marts(
        wh.settings.warehouse_path, tmp_path, as_of=datetime(2026, 10, 1), run_id="scheduled__2026-10-01T00:00:00+00:00"
    )
    other = json.loads((again / "manifest.json").read_text())
    assert {f["file"]: f["sha256"] for f in other["files"]} == {f["file"]: f["sha256"] for f in manifest["files"]}


def test_previous_period_check_handles_no_rows_and_a_single_period():
    columns = ["period_start", "survey_type", "account_id", "method", "waterfall_role", "n_scored", "promoters",
               "passives", "detractors", "nps", "var_pts", "ci_low", "ci_high", "nps_prev", "var_pts_prev",
               "is_significant_change"]
    empty = pd.DataFrame({c: pd.Series(dtype="datetime64[us]" if c == "period_start" else object) for c in columns})
    assert len(govern("account_nps", empty, 5)) == 0
    one = pd.DataFrame(
        {
            "period_start": pd.to_datetime(["2026-07-01", "2026-07-01"]),
            "survey_type": "relationship", "account_id": ["A2", "A1"], "method": "pooled", "waterfall_role": None,
            "n_scored": [2, 9], "promoters": 1, "passives": 0, "detractors": 1, "nps": [0.0, -12.5], "var_pts": 1.0,
            "ci_low": 0.0, "ci_high": 1.0, "nps_prev": None, "var_pts_prev": None, "is_significant_change": None,
        }
    )
    out = govern("account_nps", one, 5)
    assert out.account_id.tolist() == ["A1", "A2"] and out.suppressed.tolist() == [False, True]
    assert out.nps.tolist()[0] == -12.5 and pd.isna(out.nps.tolist()[1])


def test_the_report_is_listed_in_the_run_manifest_and_verified_with_it(pack, tmp_path):
    """The single-page report stays in <exports>/reports/ (the dbt exposure's url) and the run's
    manifest lists it with its checksum, relative to the export folder; a changed report fails
    verify_manifest. SHA256SUMS, the data files' byte-identical list, does not name it."""
    import shutil
    from dataclasses import replace

    from cxloop.serve.report import build_report

    wh, folder, _ = pack
    exports = tmp_path / "exports"
    run = exports / folder.parent.name / folder.name
    shutil.copytree(folder, run)
    settings = replace(wh.settings, exports_dir=exports)
    report = build_report(settings, wh.as_of, "scheduled__2026-10-01T00:00:00+00:00")
    assert report.parent == exports / "reports"
    entry = json.loads((run / "manifest.json").read_text())["report"]
    assert entry["file"] == f"../../reports/{report.name}" and (run / entry["file"]).resolve() == report.resolve()
    assert entry["sha256"] == sha256_file(report) and entry["bytes"] == report.stat().st_size
    assert verify_manifest(run) == []
    assert report.name not in (run / "SHA256SUMS").read_text()
    report.write_text(report.read_text(encoding="utf-8") + "<!-- changed -->", encoding="utf-8")
    assert verify_manifest(run) == [f"{run / entry['file']}: checksum differs from manifest"]
