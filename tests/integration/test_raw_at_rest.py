"""Personal data at rest: what an extraction writes is private to its user, and raw pages are
kept only as long as the retention says (``cxloop prune``).

Real extractions (Salesforce, HubSpot, Qualtrics) against the demo server under a permissive
umask; then the retention on what they wrote, with a user's file and links planted among it."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cxloop.cli import main as cli
from cxloop.config import Settings, SourceSettings
from cxloop.demo.generator import generate
from cxloop.demo.hubspot_api import configure
from cxloop.demo.server import DemoServer
from cxloop.extract.frames import Landing
from cxloop.extract.registry import connector
from cxloop.extract.retention import batch_time, prune_raw
from cxloop.extract.run import extract, new_batch_id

TOKEN = "at-rest-token-0123456789abcdef"
AS_OF = datetime(2026, 10, 1)


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """(settings, batches) after one real extraction of each API source, umask 022."""
    world = tmp_path_factory.mktemp("at-rest-world")
    generate(world, seed=4, scale=0.2)
    var = tmp_path_factory.mktemp("at-rest-var")
    settings = Settings.from_env({"CXLOOP_VAR": str(var)})
    old = os.umask(0o022)
    srv = DemoServer(world, TOKEN)
    try:
        srv.start()
        configure(srv, search_rate=0)
        url = srv.base_url
        batches = [
            extract(SourceSettings("salesforce", url, TOKEN), settings, AS_OF),
            extract(SourceSettings("hubspot", url, TOKEN), settings, AS_OF),
            extract(SourceSettings("qualtrics", url, TOKEN, {"directory_id": "POOL_cxloopdemo"}), settings, AS_OF),
        ]
    finally:
        srv.stop()
        os.umask(old)
    return settings, batches


def modes(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    dirs, files = {str(root): stat.S_IMODE(os.lstat(root).st_mode)}, {}
    for top, dnames, fnames in os.walk(root):
        for d in dnames:
            dirs[os.path.join(top, d)] = stat.S_IMODE(os.lstat(os.path.join(top, d)).st_mode)
        for f in fnames:
            files[os.path.join(top, f)] = stat.S_IMODE(os.lstat(os.path.join(top, f)).st_mode)
    return dirs, files


def test_raw_pages_and_landed_batches_are_private_whatever_the_umask(landed):
    settings, batches = landed
    dirs, files = modes(settings.landing_dir)
    raw = [f for f in files if "/raw/" in f]
    parquet = [f for f in files if f.endswith(".parquet")]
    # every entity of each connector lands one Parquet file (every_entity: empty ones too)
    expected = sum(len(connector(b["source"]).entities) for b in batches)
    assert all(connector(b["source"]).every_entity for b in batches)
    assert len(raw) > 20 and len(parquet) == expected
    # the raw pages do hold personal data: e-mail addresses
    assert any(b"@" in Path(f).read_bytes() for f in raw if "contacts" in f.lower())
    assert {f: m for f, m in files.items() if m != 0o600} == {}
    assert {d: m for d, m in dirs.items() if m != 0o700} == {}
    assert not [d for d in dirs if ".partial-" in d]


def test_prune_keeps_recent_raw_pages_and_deletes_old_ones(landed, tmp_path):
    settings, batches = landed
    landing = settings.landing_dir
    ids = [b["batch_id"] for b in batches]
    extracted = max(batch_time(i, i.split("-")[0]) for i in ids)
    raw_dirs = [landing / f"source={b['source']}" / "raw" / b["batch_id"] for b in batches]
    assert all(d.is_dir() for d in raw_dirs)

    # a user's file next to the batches, a link posing as a batch, a link inside a batch
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not cxloop's")
    notes = landing / "source=hubspot" / "raw" / "my-notes.txt"
    notes.write_text("mine")
    fake = landing / "source=hubspot" / "raw" / new_batch_id("hubspot", datetime(2020, 1, 1))
    fake.symlink_to(outside, target_is_directory=True)
    link_inside = raw_dirs[0] / "link-out"
    link_inside.symlink_to(outside, target_is_directory=True)

    recent = prune_raw(landing, 30, now=extracted + timedelta(days=29))
    assert recent.pruned == [] and recent.kept == 3
    assert all(d.is_dir() for d in raw_dirs)

    sizes = {str(d): sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
             for d in raw_dirs}  # fmt: skip
    dry = prune_raw(landing, 30, now=extracted + timedelta(days=31), dry_run=True)
    assert {p.path: p.bytes for p in dry.pruned} == sizes
    assert all(d.is_dir() for d in raw_dirs) and dry.files > 20

    done = prune_raw(landing, 30, now=extracted + timedelta(days=31))
    assert {p.path: p.bytes for p in done.pruned} == sizes and done.files == dry.files
    assert not raw_dirs[1].exists() and not raw_dirs[2].exists()
    # the batch holding the planted link stays, with only the link in it; the link is not followed
    assert [p.name for p in raw_dirs[0].iterdir()] == ["link-out"] and link_inside.is_symlink()
    assert (outside / "precious.txt").read_text() == "not cxloop's"
    assert notes.read_text() == "mine" and fake.is_symlink()
    assert any("link-out: a symbolic link" in s for s in done.skipped)
    assert any(fake.name in s and "link is not followed" in s for s in done.skipped)
    # the landed Parquet batches are the record of what loaded: untouched
    assert all(Path(p).exists() for b in batches for p in b["files"].values())


def test_cxloop_prune_command(landed, monkeypatch, capsys):
    settings, _ = landed
    monkeypatch.setenv("CXLOOP_VAR", str(settings.var_dir))
    monkeypatch.setenv("CXLOOP_RAW_RETENTION_DAYS", "10")
    old_id = new_batch_id("salesforce", datetime.now(UTC).replace(tzinfo=None) - timedelta(days=11))
    Landing(settings.landing_dir / "source=salesforce" / "raw" / old_id, "salesforce").write(
        "Contact/page-0001.json", b'{"records": []}'
    )
    old = settings.landing_dir / "source=salesforce" / "raw" / old_id
    recent_id = new_batch_id("salesforce", datetime.now(UTC).replace(tzinfo=None) - timedelta(days=9))
    Landing(settings.landing_dir / "source=salesforce" / "raw" / recent_id, "salesforce").write("x.json", b"{}")

    assert cli(["prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would delete {old} (1 files, 15 bytes)" in out and recent_id not in out
    assert old.is_dir()

    assert cli(["prune"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {old} (1 files, 15 bytes)" in out
    assert "older than 10 days" in out
    assert not old.exists() and (old.parent / recent_id).is_dir()

    monkeypatch.setenv("CXLOOP_RAW_RETENTION_DAYS", "0")
    assert cli(["prune"]) == 2
    assert "CXLOOP_RAW_RETENTION_DAYS='0' is not a whole number of days >= 1" in capsys.readouterr().err


def test_warehouse_and_quarantine_files_are_private(landed):
    """Validating and loading the batches writes the DuckDB warehouse and the quarantine
    Parquet (the demo plants bad rows): both hold personal data, both private."""
    from cxloop.pipeline import validate_and_load

    settings, batches = landed
    old = os.umask(0o022)
    try:
        validate_and_load(batches, settings, AS_OF)
    finally:
        os.umask(old)
    quarantine = sorted(settings.quarantine_dir.glob("*.parquet"))
    assert quarantine, "the demo world plants rows the gate quarantines"
    assert {str(q): stat.S_IMODE(q.stat().st_mode) for q in quarantine} == {str(q): 0o600 for q in quarantine}
    assert stat.S_IMODE(settings.quarantine_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.warehouse_path.stat().st_mode) == 0o600
