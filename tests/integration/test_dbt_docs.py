"""`dbt docs generate` run by hand from dbt_project/ (no CXLOOP_* variable set, as a new user
would): the profile finds the checkout's warehouse (var/warehouse/cx.duckdb beside
dbt_project/), every mart has an owner (its group and meta.owner), every exposure an owner, and
the report exposure's url is the checkout's var/exports/reports/.

No warehouse of its own: a throwaway copy of the dbt project and of the session's demo
warehouse in the layout of a checkout (dbt writes target/ there). The command exactly as the
issue ran it: dbt parses the project from scratch, compiles it (the manifest dbt writes comes
from that step) and reads the catalog: about 25 s on 2 busy cores."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import _background
import pytest
from _warehouse_fixture import warehouse_copy
from cxloop.serve.exports import MARTS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DBT = Path(sys.executable).parent / "dbt"


def test_docs_generate_from_the_project_folder_names_every_owner(demo_warehouse, tmp_path):
    checkout = tmp_path / "checkout"
    project = checkout / "dbt_project"
    shutil.copytree(ROOT / "dbt_project", project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    warehouse_copy(demo_warehouse, checkout / "var")  # var/warehouse/cx.duckdb, as a checkout has it
    env = {
        k: v
        for k, v in (_background.ENV or os.environ).items()
        if not k.startswith(("CXLOOP_", "DBT_"))  # nothing of the pipeline's: as a person would run it
    }
    env.update(PWD=str(project), DBT_SEND_ANONYMOUS_USAGE_STATS="false")
    run = subprocess.run(
        [str(DBT), "docs", "generate"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    manifest = json.loads((project / "target" / "manifest.json").read_text())
    catalog = json.loads((project / "target" / "catalog.json").read_text())
    groups = {g["name"]: g["owner"] for g in manifest["groups"].values()}
    assert groups and all(o.get("name") and o.get("email") for o in groups.values()), groups
    marts = {
        n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model" and n["fqn"][1] == "marts"
    }
    assert {*MARTS, "account_directory", "owner_directory"} <= set(marts)
    unowned = [m for m, n in marts.items() if n.get("group") not in groups or not n["config"]["meta"].get("owner")]
    assert unowned == [], f"marts without a group or meta.owner: {unowned}"
    mismatched = [m for m, n in marts.items() if n["config"]["meta"]["owner"] != groups[n["group"]]["email"]]
    assert mismatched == [], mismatched
    # the catalog was read from the checkout's warehouse (not an empty file made beside the project)
    cataloged = {n["metadata"]["name"] for n in catalog["nodes"].values()}
    assert {"account_directory", "owner_directory"} <= cataloged
    assert not (project / "var").exists()
    exposures = {e["name"]: e for e in manifest["exposures"].values()}
    assert all(e["owner"]["name"] and e["owner"]["email"] for e in exposures.values())
    assert exposures["governance_report"]["url"] == f"file://{checkout}/var/exports/reports/"
    assert exposures["governance_pack"]["url"] == f"file://{checkout}/var/exports/"
