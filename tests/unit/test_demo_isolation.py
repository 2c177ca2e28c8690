"""The demo writes only under its own folder and serves one world per warehouse.

Everything `cxloop demo` does before Airflow runs (cxloop.demo.run.prepare and
demo_source_env: the world, the warehouse's record, the file drop, the sources' environment),
for every CRM x survey source, on real files in a temporary project folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from itertools import product
from pathlib import Path

import pytest
from cxloop.config import Settings
from cxloop.demo import file_drops
from cxloop.demo.generator import generate
from cxloop.demo.run import (
    DROP_RECORD,
    DemoOptions,
    DemoRefused,
    demo_drop_dir,
    demo_source_env,
    generated_files,
    prepare,
    read_world_record,
    remove_generated,
    world_record_path,
)

SEED, SCALE = 11, 0.1
COMBINATIONS = list(product(("salesforce", "hubspot", "files"), ("qualtrics", "files")))


def tree(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256 (or the link target of a symbolic link) of everything under folder."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A var folder, a user drop folder configured for the files source, and user files in both
    the configured drop folder and var/drop (the demo's drop folder of older versions)."""
    var = tmp_path / "var"
    user_drop = tmp_path / "my-drop"
    user_drop.mkdir()
    (user_drop / "accounts.csv").write_text("account_id,account_name\nA1,Mine\n")
    (user_drop / "responses-2026.jsonl").write_text('{"response_id": "R1"}\n')
    (user_drop / "notes.txt").write_text("keep me\n")
    old_drop = var / "drop"
    old_drop.mkdir(parents=True)
    (old_drop / "contacts.parquet").write_bytes(b"not really parquet, but mine")
    monkeypatch.setenv("CXLOOP_FILES_OPT_DROP_DIR", str(user_drop))
    monkeypatch.setenv("CXLOOP_PII_KEY", "test-only-key-not-a-secret")
    settings = Settings.from_env({"CXLOOP_VAR": str(var)})
    settings.ensure_dirs()
    return settings, [user_drop, old_drop]


def _prepare(settings, crm, survey, **kw):
    options = DemoOptions(seed=SEED, scale=SCALE, crm=crm, survey=survey, **kw)
    plan = prepare(settings, options)
    env = demo_source_env(settings, "http://127.0.0.1:9", "t0ken", plan.crm, plan.survey, as_of=plan.as_of)
    return plan, env


def test_every_source_combination_leaves_user_files_alone(project):
    settings, user_folders = project
    before = {str(f): tree(f) for f in user_folders}
    demo_dir = settings.demo_dir
    for i, (crm, survey) in enumerate(COMBINATIONS):
        as_of = "2026-10-01T00:00:00" if i % 2 == 0 else "2026-04-01T00:00:00"
        plan, env = _prepare(settings, crm, survey, as_of=as_of, keep=i % 3 == 2)
        assert (env["CXLOOP_CRM_SOURCE"], env["CXLOOP_SURVEY_SOURCE"]) == (crm, survey)
        if "files" in (crm, survey):
            drop = Path(env["CXLOOP_FILES_OPT_DROP_DIR"])
            assert drop == demo_drop_dir(settings) and drop.parent == demo_dir
            recorded = json.loads((demo_dir / DROP_RECORD).read_text())["files"]
            assert sorted(p.name for p in drop.iterdir()) == recorded
        else:
            assert "CXLOOP_FILES_OPT_DROP_DIR" not in env
        assert {str(f): tree(f) for f in user_folders} == before, (crm, survey)
    # everything the demo wrote is under its own folder or is the warehouse's record
    assert world_record_path(settings).exists()
    written_outside = [
        p for p in settings.var_dir.rglob("*") if p.is_file() and demo_dir not in p.parents and p.parent.name != "drop"
    ]
    assert {p.name for p in written_outside} <= {world_record_path(settings).name, "pii.key"}


def test_the_drop_is_cut_at_as_of_and_the_world_stays(project):
    settings, _ = project
    _prepare(settings, "files", "files", as_of="2026-10-01T00:00:00")
    world = tree(settings.demo_dir / "source")
    full = {p.name: p.stat().st_size for p in demo_drop_dir(settings).iterdir()}
    plan, _ = _prepare(settings, "files", "files", as_of="2026-03-01T00:00:00", keep=True)
    assert tree(settings.demo_dir / "source") == world  # the same world, not regenerated
    assert plan.horizon.isoformat() == "2026-10-01T00:00:00"
    from cxloop.extract.files import extract_files
    from cxloop.extract.registry import CURSOR_COLUMNS

    result = extract_files(demo_drop_dir(settings))
    assert result.ok, [p.message for p in result.problems]
    for entity, frame in result.frames.items():
        col = CURSOR_COLUMNS.get(entity)
        if col:
            assert (frame[col].dropna() < "2026-03-01").all(), entity  # ISO text sorts as time
    cut = {p.name: p.stat().st_size for p in demo_drop_dir(settings).iterdir()}
    assert set(cut) == set(full) and sum(cut.values()) < sum(full.values())
    runs = read_world_record(settings)["runs"]
    assert [r["as_of"] for r in runs] == ["2026-10-01T00:00:00", "2026-03-01T00:00:00"]


def test_keep_refuses_another_world_in_one_line(project):
    settings, _ = project
    _prepare(settings, "salesforce", "qualtrics", as_of="2026-04-01T00:00:00")
    record = world_record_path(settings).read_bytes()
    refusals = [
        (dict(seed=SEED + 1), "seed 11, scale 0.1"),
        (dict(as_of="2026-12-01T00:00:00"), "past 2026-10-01T00:00:00"),
    ]
    for change, words in refusals:
        options = DemoOptions(**{"seed": SEED, "scale": SCALE, "keep": True, **change})
        with pytest.raises(DemoRefused, match=words) as exc:
            prepare(settings, options)
        assert "\n" not in str(exc.value) and "--keep" in str(exc.value)
    assert world_record_path(settings).read_bytes() == record  # a refusal changes nothing
    # a warehouse the demo did not make (no record) is not kept into
    settings.warehouse_path.write_bytes(b"")
    world_record_path(settings).unlink()
    with pytest.raises(DemoRefused, match="no record of the demo world"):
        prepare(settings, DemoOptions(seed=SEED, scale=SCALE, keep=True))
    assert settings.warehouse_path.exists()
    # without --keep either: a warehouse the demo did not make (`cxloop run` on a team's own
    # data) is never deleted
    settings.warehouse_path.write_bytes(b"their own warehouse")
    with pytest.raises(DemoRefused, match="holds a warehouse the demo did not make") as exc:
        prepare(settings, DemoOptions(seed=SEED + 1, scale=SCALE))
    assert "\n" not in str(exc.value)
    assert settings.warehouse_path.read_bytes() == b"their own warehouse"
    # a warehouse the demo made: a fresh start (it goes) and a new world of the seed asked for
    settings.warehouse_path.unlink()
    _prepare(settings, "salesforce", "qualtrics", as_of="2026-04-01T00:00:00")
    settings.warehouse_path.write_bytes(b"")
    plan = prepare(settings, DemoOptions(seed=SEED + 1, scale=SCALE))
    assert plan.truth["seed"] == SEED + 1 and not settings.warehouse_path.exists()
    assert read_world_record(settings)["seed"] == SEED + 1


def test_the_demo_drop_never_removes_what_it_did_not_write(project, tmp_path):
    settings, _ = project
    _prepare(settings, "files", "qualtrics")
    drop = demo_drop_dir(settings)
    recorded = json.loads((settings.demo_dir / DROP_RECORD).read_text())["files"]
    # a recorded name replaced by a link to a user file: the link is not followed nor removed
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    (drop / recorded[0]).unlink()
    (drop / recorded[0]).symlink_to(victim)
    (drop / "readme.txt").write_text("mine\n")
    with pytest.raises(DemoRefused, match=f"holds {recorded[0]}, which the demo did not write"):
        _prepare(settings, "files", "qualtrics")
    assert victim.read_text() == "precious\n" and (drop / recorded[0]).is_symlink()
    assert (drop / "readme.txt").read_text() == "mine\n"
    # a data file the user put there is never replaced either
    (drop / recorded[0]).unlink()
    (drop / "owners-extra.csv").write_text("owner_id\nX\n")
    with pytest.raises(DemoRefused, match="owners-extra.csv"):
        _prepare(settings, "files", "qualtrics")
    assert (drop / "owners-extra.csv").read_text() == "owner_id\nX\n"
    (drop / "owners-extra.csv").unlink()
    _, env = _prepare(settings, "files", "qualtrics")
    assert (drop / "readme.txt").read_text() == "mine\n"
    # write_file_drops itself refuses a folder holding data files, naming one
    with pytest.raises(FileExistsError, match="already holds"):
        file_drops.write_file_drops(settings.demo_dir, drop)


def test_a_new_world_removes_only_the_generators_files(tmp_path):
    out = tmp_path / "demo"
    generate(out, seed=SEED, scale=SCALE)
    on_disk = sorted(p for p in out.rglob("*") if p.is_file())
    assert sorted(generated_files(out)) == on_disk  # the list follows the generator
    (out / "source" / "mine.txt").write_text("mine\n")
    (out / "truth" / "notes.parquet").write_text("mine\n")
    assert remove_generated(out) == len(on_disk)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "source/mine.txt",
        "truth/notes.parquet",
    ]


def test_response_only_program_writes_a_drop_without_invitations(project):
    settings, user_folders = project
    before = {str(f): tree(f) for f in user_folders}
    options = DemoOptions(seed=SEED, scale=SCALE, crm="salesforce", survey="qualtrics", program="response-only")
    plan = prepare(settings, options)
    assert (plan.crm, plan.survey) == ("salesforce", "files")
    env = demo_source_env(settings, "http://127.0.0.1:9", "t0ken", plan.crm, plan.survey, as_of=plan.as_of,
                          program="response-only")  # fmt: skip
    drop = Path(env["CXLOOP_FILES_OPT_DROP_DIR"])
    names = sorted(p.name for p in drop.iterdir())
    assert names == json.loads((settings.demo_dir / DROP_RECORD).read_text())["files"]
    assert names and not [n for n in names if n.startswith("invitations")]
    assert {str(f): tree(f) for f in user_folders} == before
    with pytest.raises(DemoRefused, match="unknown program"):
        prepare(settings, DemoOptions(seed=SEED, scale=SCALE, program="other"))


def test_generate_writes_a_response_only_drop_on_request(tmp_path):
    import csv

    from cxloop.cli import main

    assert main(["generate", "--out", str(tmp_path / "w"), "--scale", "0.05", "--program", "response-only"]) == 0
    drop = tmp_path / "w" / "drop"
    names = sorted(p.name for p in drop.iterdir())
    assert not [n for n in names if n.startswith("invitations")], names
    assert any(n.startswith("responses") for n in names) and any(n.startswith("contacts") for n in names)
    with open(drop / "responses-01.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(not r["invitation_id"] for r in rows), "responses keep no invitation link"
