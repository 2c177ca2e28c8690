"""The connector interface (cxloop.extract.registry) and HubSpot's streaming landing.

Every source lands through one path: its connector's ``land(ctx, sink)`` streams chunks into
the BatchWriter. HubSpot used to build whole-entity frames and land them in one go; these
tests show its streamed batch holds exactly what that whole-frame path landed, and that its
memory stays flat as the demo world grows (the demo server runs in another process, so only
the extraction's own allocations are traced)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import tracemalloc
from datetime import datetime
from pathlib import Path

import _background
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cxloop.config import Settings, SourceSettings
from cxloop.demo.file_drops import write_file_drops
from cxloop.demo.generator import generate
from cxloop.demo.hubspot_api import configure
from cxloop.demo.server import DemoServer
from cxloop.extract import hubspot, qualtrics, registry, salesforce
from cxloop.extract.files import FileDropRejected, extract_files
from cxloop.extract.hubspot import extract_hubspot
from cxloop.extract.landing import BatchWriter, frame_as_text
from cxloop.extract.run import SOURCES, extract

TOKEN = "pat-na1-connectors-0000-1111-2222-333344445555"
AS_OF = datetime(2026, 10, 1)
FAST = {"search_rate": None, "request_rate": None}


def table_digest(table) -> tuple[int, str]:
    """(rows, sha256 of the rows in order with their column names): a content hash."""
    rows = table.to_pylist()
    return len(rows), hashlib.sha256(json.dumps([table.column_names, rows]).encode()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("connectors-world")
    generate(out, seed=9, scale=0.3)
    return out


@pytest.fixture
def server(world):
    srv = DemoServer(world, TOKEN)
    srv.start()
    configure(srv, search_rate=0)
    try:
        yield srv
    finally:
        srv.stop()


def test_registry_names_every_source_and_its_entities():
    assert SOURCES == ("salesforce", "hubspot", "qualtrics", "files", "landed")
    assert registry.connector("salesforce").entities == salesforce.ENTITIES
    assert registry.connector("qualtrics").entities == qualtrics.ENTITIES
    assert registry.connector("hubspot").entities == hubspot.ENTITIES
    assert registry.connector("files").every_entity is False  # a drop lands only what it holds


def test_an_unknown_source_fails_in_one_line_naming_the_known_ones(tmp_path):
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    known = "salesforce, hubspot, qualtrics, files, landed"
    with pytest.raises(ValueError, match=rf"^unknown source 'sap'; known: {known}$"):
        extract(SourceSettings("sap", "http://127.0.0.1:9", "t0ken"), settings, AS_OF)
    assert not (tmp_path / "var").exists()  # failed before making anything


def test_hubspot_streamed_batch_equals_the_whole_frame_landing(server, tmp_path):
    """The pipeline's batch (connector -> BatchWriter, default limits) holds, entity by entity,
    the rows the whole-frame path landed (frames -> text, as land_frames wrote them): same
    counts, same content in the same order. Small chunks land the same content too."""
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    batch = extract(SourceSettings("hubspot", server.base_url, TOKEN), settings, AS_OF)
    frames = extract_hubspot(server.base_url, TOKEN, end=AS_OF, **FAST)
    assert set(batch["files"]) == set(frames) == set(hubspot.ENTITIES)
    whole = {e: table_digest(frame_as_text(f)) for e, f in frames.items()}
    streamed = {e: table_digest(pq.read_table(p)) for e, p in batch["files"].items()}
    assert streamed == whole
    assert batch["rows"] == {e: n for e, (n, _) in whole.items()}
    assert all(n > 0 for n in batch["rows"].values())

    with BatchWriter(
        landing_dir=tmp_path / "small",
        source="hubspot",
        batch_id="small",
        extracted_at=AS_OF,
        as_of=AS_OF,
        entities=hubspot.ENTITIES,
        cursor_columns=registry.CURSOR_COLUMNS,
    ) as writer:
        chunks: list[str] = []

        def sink(entity, table, maxima):
            chunks.append(entity)
            writer.write(entity, table, maxima)

        hubspot.land_hubspot(server.base_url, TOKEN, sink, end=AS_OF, chunk_rows=37, spool_dir=tmp_path, **FAST)
        small = writer.finish()
    assert chunks.count("contacts") > 1  # really chunked
    assert {e: table_digest(pq.read_table(p)) for e, p in small.files.items()} == whole
    assert small.cursors == batch["cursors"]
    assert not list(tmp_path.glob("cxloop-hubspot-*"))  # the search spool is gone


def test_a_file_drop_may_hold_renewals_or_not(world, tmp_path):
    """renewals.<ext> is one more optional entity of a drop: with it the renewals land (their
    cursor from updated_at); a drop folder from before renewals existed lands as it did."""
    drop = tmp_path / "drop"
    written = write_file_drops(world, drop, formats=("csv",))
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    files = SourceSettings("files", "", "", {"drop_dir": str(drop)})
    with_renewals = extract(files, settings, AS_OF)
    assert written["renewals"] == ["renewals.csv"] and with_renewals["rows"]["renewals"] > 0
    assert with_renewals["cursors"]["renewals"]
    (drop / "renewals.csv").unlink()
    without = extract(files, settings, AS_OF)
    assert "renewals" not in without["files"] and "accounts" in without["files"]


def test_a_file_drop_lands_through_the_same_writer(world, tmp_path):
    """The file-drop adapter: the entities asked for, only those the drop holds, the contents
    the reader returned; in several chunks the same; a broken file lands nothing."""
    drop = tmp_path / "drop"
    write_file_drops(world, drop, formats=("csv",))
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    files = SourceSettings("files", "", "", {"drop_dir": str(drop)})
    batch = extract(files, settings, AS_OF, entities=("accounts", "responses", "follow_ups"))
    read = extract_files(drop)
    expected = {e: table_digest(frame_as_text(read.frames[e])) for e in ("accounts", "responses", "follow_ups")}
    assert {e: table_digest(pq.read_table(p)) for e, p in batch["files"].items()} == expected
    assert list(batch["windows"]) == ["accounts", "responses", "follow_ups"]
    assert batch["cursors"]["responses"] and batch["cursors"]["accounts"]
    raw = settings.landing_dir / "source=files" / "raw" / batch["batch_id"] / "_files.json"
    assert raw.exists()  # the manifest that maps landed rows back to file and line

    got: dict[str, list] = {}
    ctx = registry.ExtractContext(
        source="files", base_url="", token="", options={"drop_dir": str(drop)}, raw_dir=tmp_path / "raw2",
        since={}, as_of=AS_OF, home=tmp_path, chunk_rows=50,
    )  # fmt: skip
    registry.connector("files").land(ctx, lambda e, table, maxima: got.setdefault(e, []).append(table))
    assert len(got["responses"]) > 1
    assert {e: table_digest(pa.concat_tables(t)) for e, t in got.items()} == {
        e: table_digest(frame_as_text(f)) for e, f in read.frames.items()
    }

    (drop / "owners.csv").write_bytes(b"\xff\xfe\x00garbage")
    before = sorted(str(p) for p in settings.landing_dir.rglob("*.parquet"))
    with pytest.raises(FileDropRejected, match="owners.csv"):
        extract(files, settings, AS_OF)
    assert sorted(str(p) for p in settings.landing_dir.rglob("*.parquet")) == before
    assert not list(settings.landing_dir.rglob(".partial-*"))


SERVE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cxloop.demo.generator import generate
    from cxloop.demo.hubspot_api import configure
    from cxloop.demo.server import DemoServer
    world, scale, token = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    generate(world, seed=3, scale=scale)
    srv = DemoServer(world, token)
    srv.start()
    configure(srv, search_rate=0)
    print(srv.base_url, flush=True)
    sys.stdin.read()  # until the test closes it
    """
)


def traced_peak(url: str, tmp_path: Path, name: str, *, stream: bool) -> tuple[int, int]:
    """(peak traced bytes, rows) of one HubSpot extraction: streamed into a BatchWriter in small
    chunks, or the whole-frame path."""
    tracemalloc.start()
    try:
        if stream:
            with BatchWriter(
                landing_dir=tmp_path / name,
                source="hubspot",
                batch_id=name,
                extracted_at=AS_OF,
                as_of=AS_OF,
                entities=hubspot.ENTITIES,
            ) as writer:
                hubspot.land_hubspot(url, TOKEN, writer.write, end=AS_OF, chunk_rows=500, **FAST)
                rows = sum(writer.finish().rows.values())
        else:
            frames = extract_hubspot(url, TOKEN, end=AS_OF, **FAST)
            rows = sum(len(f) for f in frames.values())
            del frames
        return tracemalloc.get_traced_memory()[1], rows
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def hubspot_peaks():
    return _background.result("hubspot_peaks")


@_background.prestart("hubspot_peaks")
def _hubspot_peaks(_param=None) -> tuple[int, int, int, int, int, int]:
    """(peak, rows) of the streamed extraction at scale 1 and 3, then of the whole-frame path at
    scale 3: measured in a background process while other tests run (tests/_background.py);
    each demo server in a process of its own, so only the extraction's allocations are traced."""
    tmp_path = _background.workdir("hubspot-memory")
    servers, urls = [], {}
    try:
        for scale in (1, 3):
            p = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(tmp_path / f"world-{scale}"), str(scale), TOKEN],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=dict(_background.ENV) or None,
            )
            servers.append(p)
            urls[scale] = p.stdout.readline().strip()
            assert urls[scale].startswith("http://127.0.0.1:"), "demo server did not start"
        traced_peak(urls[1], tmp_path, "warm", stream=True)  # first-use allocations (imports, caches)
        peak1, rows1 = traced_peak(urls[1], tmp_path, "s1", stream=True)
        peak3, rows3 = traced_peak(urls[3], tmp_path, "s3", stream=True)
        whole3, whole_rows3 = traced_peak(urls[3], tmp_path, "w3", stream=False)
    finally:
        for p in servers:
            p.stdin.close()
            p.kill()
            p.wait()
    return peak1, rows1, peak3, rows3, whole3, whole_rows3


def test_hubspot_extraction_memory_stays_flat_as_the_world_grows(hubspot_peaks):
    """Three times the records: the streamed extraction's peak grows far less than the data
    (the whole-frame path grows with it). Memory, unlike time, does not depend on the load.
    What still grows is small: the ids and versions seen (for the latest-version rule), and a
    window's ids (at most the search API's 10,000) for its consistency check. Measured: 3.7 MB
    at scale 1, 5.3 MB at scale 3 (the whole-frame path: 8.9 MB at scale 3; before streaming,
    5.3 and 14.1 MB)."""
    peak1, rows1, peak3, rows3, whole3, whole_rows3 = hubspot_peaks
    assert rows3 == whole_rows3 and rows3 > 2.5 * rows1
    print(f"streamed peak: scale 1 {peak1 / 1e6:.2f} MB, 3 {peak3 / 1e6:.2f} MB; whole frames {whole3 / 1e6:.2f} MB")
    assert peak3 < 2 * peak1, (peak1, peak3)
    assert peak3 < 0.75 * whole3, (peak3, whole3)
