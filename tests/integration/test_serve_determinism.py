"""Governance review: two runs on identical data must agree byte for byte.

Three full runs of one small demo world at the same as_of, each from an empty warehouse of
its own (extract over HTTP from the demo server, validate and load, dbt build, then publish,
export, report and summarise through the pipeline functions). Every export file except the
manifest has the same SHA-256 in all three; the report and every governance pack page are
identical outside their marked run block; the manifests differ only in run-dependent values."""

from __future__ import annotations

import json
import re
import secrets
import time
from datetime import datetime
from pathlib import Path

import _background
import pytest
from _serve_support import checksums, full_run, sha256
from cxloop.demo.generator import generate
from cxloop.serve.report import RUN_BLOCK_END, RUN_BLOCK_START

pytestmark = pytest.mark.e2e

AS_OF = datetime(2026, 10, 1)
SCALE = 0.1
SEED = 23
RUNS = 3


@pytest.fixture(scope="module")
def three_runs():
    return _background.result("three_runs")


@_background.prestart("three_runs")
def _three_runs(_param=None):
    """(in a background process while other tests run: tests/_background.py)"""
    root = _background.workdir("determinism")
    generate(root / "demo", seed=SEED, scale=SCALE, as_of=AS_OF)
    token = secrets.token_urlsafe(16)
    runs, seconds = [], []
    for i in range(RUNS):
        started = time.perf_counter()
        runs.append(full_run(root / f"run{i}", root / "demo" / "source", token, AS_OF, f"manual__run-{i}"))
        seconds.append(round(time.perf_counter() - started, 1))
    print(f"determinism: {RUNS} full runs at scale {SCALE}: {seconds} s")  # noqa: T201 - the measured cost
    return runs


def test_every_export_file_but_the_manifest_is_byte_identical_across_three_runs(three_runs):
    # pack/ aside: its pages carry the run id in their run block (compared outside it below)
    sums = [
        {name: digest for name, digest in checksums(Path(r["exports"])).items() if not name.startswith("pack/")}
        for r in three_runs
    ]
    top = [name for name in sums[0] if "/" not in name]
    assert len(top) == 24, sorted(top)  # 11 marts x (parquet, csv), README.md, SHA256SUMS
    worklists = [name for name in sums[0] if name.startswith("worklists/")]
    assert len(worklists) >= 2 and len(sums[0]) == 24 + len(worklists), sorted(sums[0])  # one CSV per owner
    for i, other in enumerate(sums[1:], start=1):
        differ = sorted(name for name in sums[0] if sums[0][name] != other.get(name))
        assert other.keys() == sums[0].keys() and not differ, f"run {i} differs from run 0 in {differ}"


def test_manifests_differ_only_in_run_dependent_values_and_their_checksums_agree(three_runs):
    manifests = [json.loads((Path(r["exports"]) / "manifest.json").read_text()) for r in three_runs]
    assert [m["run_id"] for m in manifests] == [f"manual__run-{i}" for i in range(RUNS)]
    batch_ids = [{v["batch_id"] for v in m["data_quality_batches"].values()} for m in manifests]
    assert not batch_ids[0] & batch_ids[1], "each run loads batches of its own"
    assert [sorted(m["data_quality_batches"]) for m in manifests] == [sorted(manifests[0]["data_quality_batches"])] * 3
    # the pack's pages and the report carry the run id in their run block, so their checksums
    # differ per run (each is compared outside its run block below)
    run_dependent = {
        "run_id", "exported_at", "dbt_invocation_id", "data_quality_batches", "source_watermarks", "pack", "report",
    }  # fmt: skip
    stable = [{k: v for k, v in m.items() if k not in run_dependent} for m in manifests]
    assert stable[1] == stable[0] and stable[2] == stable[0]
    # the report is listed in its run's manifest, by a path relative to the export folder
    for run, m in zip(three_runs, manifests, strict=True):
        listed = (Path(run["exports"]) / m["report"]["file"]).resolve()
        assert listed == Path(run["report"]).resolve() and m["report"]["sha256"] == sha256(run["report"])


def test_the_report_is_identical_outside_its_run_block(three_runs):
    block = re.compile(re.escape(RUN_BLOCK_START) + ".*?" + re.escape(RUN_BLOCK_END), re.S)
    texts = [Path(r["report"]).read_text(encoding="utf-8") for r in three_runs]
    assert all(len(block.findall(t)) == 1 for t in texts)
    assert "manual__run-1" in block.search(texts[1]).group(0)
    stripped = [block.sub("", t) for t in texts]
    assert "manual__run" not in stripped[0], "the run id belongs in the run block only"
    assert stripped[1] == stripped[0] and stripped[2] == stripped[0]


def test_the_summary_headline_is_identical(three_runs):
    heads = [json.loads(Path(r["summary"]).with_suffix(".json").read_text())["headline"] for r in three_runs]
    assert heads[0]["nps_respondent"]["n"] > 0
    assert heads[1] == heads[0] and heads[2] == heads[0]


def test_the_governance_pack_pages_are_identical_outside_their_run_block(three_runs):
    block = re.compile(re.escape(RUN_BLOCK_START) + ".*?" + re.escape(RUN_BLOCK_END), re.S)
    folders = [Path(r["pack"]) for r in three_runs]
    names = [sorted(p.name for p in f.iterdir()) for f in folders]
    assert names[0] == names[1] == names[2] and "index.html" in names[0] and "plotly.min.js" in names[0]
    for name in names[0]:
        texts = [(f / name).read_text(encoding="utf-8") for f in folders]
        if name.endswith(".html"):
            assert all(len(block.findall(t)) == 1 for t in texts), name
            assert "manual__run-2" in block.search(texts[2]).group(0)
            texts = [block.sub("", t) for t in texts]
            assert "manual__run" not in texts[0], f"{name}: the run id belongs in the run block only"
        assert texts[1] == texts[0] and texts[2] == texts[0], f"{name} differs between runs"
    manifest = json.loads((folders[0].parent / "manifest.json").read_text())
    listed = {f["file"] for f in manifest["pack"]["files"]}
    assert listed == {f"pack/{n}" for n in names[0]}
