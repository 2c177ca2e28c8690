"""Hostile drop files: what the file-level corpus (tests/data/bad_files) cannot express in one
expect.json. Repeated headers through the real extraction and landing path, values landed as the
exact text they were, no message quoting file content, links and non-regular files refused,
and the resource bombs read in a separate process whose peak memory is measured."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cxloop.config import Settings, SourceSettings
from cxloop.extract.files import FileDropRejected, extract_files
from cxloop.extract.landing import frame_as_text
from cxloop.source_config import Limits

KEY = b"test-only-key"
AS_OF = dt.datetime(2026, 10, 1)
HEADER = "response_id,invitation_id,survey_id,contact_id,account_id,recorded_at,nps_score,is_finished,has_comment"
ROW = "R_{n},EMD_1:CID_A,SV_rel,003A,001A,2026-09-01T10:00:00Z,9,true,false"
CANARY = "CANARY-7f3a9e"
PEAK_MB = 300


def _drop(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    for name, data in files.items():
        (drop / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return drop


# --------------------------------------------------------------------------- repeated header


def test_repeated_header_is_rejected_by_the_extraction_before_anything_lands(tmp_path):
    """The real path (cxloop.pipeline.extract of a files source): the drop is rejected with one
    line naming file and column, and no batch lands (it used to crash in landing: KeyError 0)."""
    from cxloop.pipeline import extract

    drop = _drop(tmp_path, {"responses.csv": f"{HEADER},nps_score\n{ROW.format(n=1)},10\n"})
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path / "var")})
    source = SourceSettings("files", "", "", {"drop_dir": str(drop)})
    with pytest.raises(FileDropRejected, match=r"responses\.csv line 1 field nps_score: the header names column "
                       r"'nps_score' twice") as err:
        extract(source, settings, AS_OF)
    assert str(err.value).count("\n") == 0
    assert not list(settings.landing_dir.rglob("_batch.json")), "a rejected drop landed a batch"
    assert not list(settings.landing_dir.rglob("*.parquet"))


def test_landing_refuses_a_frame_with_a_repeated_column():
    frame = pd.DataFrame([["R_1", "9", "10"]], columns=["response_id", "nps_score", "nps_score"])
    with pytest.raises(ValueError, match=r"names column\(s\) nps_score more than once"):
        frame_as_text(frame)


# --------------------------------------------------------------------------- values as text


def test_values_land_as_the_exact_text_they_were(tmp_path):
    """JSON numbers keep their literal (no float/int round trip), NaN/Infinity are text, Parquet
    NaN is the text NaN (null stays null); the landed Parquet holds the same text."""
    literals = ["7.50", "1E5", "-0.0", "12345678901234567890", "1e400", "NaN", "-Infinity", "0.1000000000000000055"]
    lines = [
        '{"response_id": "R_' + str(i) + '", "nps_score": ' + lit + ', "is_finished": true, "has_comment": null}'
        for i, lit in enumerate(literals)
    ]
    table = pa.table({
        "response_id": ["P_1", "P_2", "P_3", "P_4"],
        "nps_score": pa.array([float("nan"), float("inf"), None, 9.0], type=pa.float64()),
    })
    drop = _drop(tmp_path, {"responses.jsonl": "\n".join(lines) + "\n"})
    pq.write_table(table, drop / "surveys.parquet")  # any entity: the reader does not type values
    result = extract_files(drop, pii_key=KEY, limits=Limits())
    assert result.ok, [p.message for p in result.problems]
    assert result.frames["responses"]["nps_score"].tolist() == literals
    assert result.frames["responses"]["is_finished"].tolist() == ["true"] * len(literals)
    assert result.frames["responses"]["has_comment"].tolist() == [None] * len(literals)
    assert result.frames["surveys"]["nps_score"].tolist() == ["NaN", "Infinity", None, "9.0"]
    landed = frame_as_text(result.frames["responses"])
    assert landed.column("nps_score").to_pylist() == literals


# --------------------------------------------------------------------------- no content echo


def test_no_rejection_message_quotes_the_file_content(tmp_path):
    """Every kind of broken file carries a canary next to the fault; no problem message, and
    nothing in the manifest, contains it."""
    c = CANARY
    files = {
        "responses-1.csv": f'{HEADER}\n{ROW.format(n=1)[:-5]}"{c}"x,false\n',  # stray quote
        "responses-2.csv": f"{HEADER}\n{ROW.format(n=2)},{c}\n",  # ragged row
        "responses-3.jsonl": f'{{"response_id": "{c}", "nps_score": {c}}}\n',  # invalid JSON
        "responses-4.jsonl": f'"{c}"\n',  # not an object
        "responses-5.jsonl": f'{{"response_id": "R_1", "nps_score": "{c}", "nps_score ": "{c}"}}\n',
        "responses-6.csv": f"{HEADER}\n{ROW.format(n=6)[:-5]}{c}\xe9,false\n".encode("latin-1"),
        "responses-7.parquet": f"PAR1{c}not parquet{c}".encode(),
        "responses-8.csv": f"{HEADER}\n{ROW.format(n=8)[:-5]}{c * 100},false\n",  # over field_chars
        "responses-9.csv": f"{HEADER}\n{ROW.format(n=9)}{c}",  # no final line break
        "contacts.csv": f"{c}\n{c}\n",  # one column, not a contract: passes to the gate, no echo here
    }
    drop = _drop(tmp_path, files)
    result = extract_files(drop, pii_key=KEY, limits=Limits(field_chars=500))
    messages = [p.message for p in result.problems]
    assert len(messages) >= 9, messages
    for m in messages:
        assert c not in m, m
        assert len(m) < 400, m
    assert c not in json.dumps(result.manifest())
    with pytest.raises(FileDropRejected) as err:
        result.raise_for_problems()
    assert c not in str(err.value)


# --------------------------------------------------------------------------- links and odd files


def test_a_link_inside_the_folder_and_a_hard_link_are_refused_too(tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(f"{HEADER}\n{ROW.format(n=1)}\n")
    drop = _drop(tmp_path, {"responses-a.csv": f"{HEADER}\n{ROW.format(n=2)}\n"})
    (drop / "responses-b.csv").symlink_to(drop / "responses-a.csv")  # relative, stays inside
    os.link(outside, drop / "responses-c.csv")
    result = extract_files(drop, pii_key=KEY)
    by_file = {Path(p.file).name: p.reason for p in result.problems}
    assert by_file["responses-b.csv"].startswith("is a symbolic link: drop folders never follow links")
    assert by_file["responses-c.csv"].startswith("is a hard link")
    assert "responses" not in result.frames  # the entity with a refused file is not loaded at all


def test_a_fifo_named_like_a_data_file_is_a_problem_and_never_opened(tmp_path):
    drop = _drop(tmp_path, {})
    os.mkfifo(drop / "responses.csv")  # opening it for reading would block forever
    result = extract_files(drop, pii_key=KEY)
    assert [(Path(p.file).name, p.reason) for p in result.problems] == [("responses.csv", "is not a regular file")]


def test_the_link_check_uses_the_entry_not_its_target(tmp_path):
    """A dangling link (its target gone) is refused the same way: lstat, never stat."""
    drop = _drop(tmp_path, {})
    (drop / "responses.csv").symlink_to(tmp_path / "gone.csv")
    result = extract_files(drop, pii_key=KEY)
    assert [Path(p.file).name for p in result.problems] == ["responses.csv"]
    assert "symbolic link" in result.problems[0].reason


# --------------------------------------------------------------------------- bombs, measured


def _peak(drop: Path, env: dict[str, str] | None = None) -> dict:
    """Read ``drop`` in a fresh interpreter; its problems, row counts and peak RSS."""
    code = f"DROP = {str(drop)!r}\n" + textwrap.dedent(READ_DROP) + textwrap.dedent(
        """
        import json as _j
        # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
        _hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
        print(_j.dumps({**OUT, "peak_mb": int(_hwm.split()[1]) / 1024}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


READ_DROP = """
    from cxloop.extract.files import extract_files
    r = extract_files(DROP, pii_key=b"k")
    OUT = {"problems": [p.message for p in r.problems], "rows": {e: len(f) for e, f in r.frames.items()}}
"""


def test_parquet_of_three_million_identical_rows_is_refused_from_its_metadata(tmp_path):
    """~80 KB on disk, 3M rows: the default file_rows (1,000,000) refuses it before one row is read
    (the reader used to take 1.4-2.9 GB turning it into Python strings)."""
    drop = _drop(tmp_path, {})
    n = 3_000_000
    cols = HEADER.split(",")
    pq.write_table(pa.table({c: pa.array(["x"] * n) for c in cols}), drop / "responses.parquet", compression="zstd")
    assert (drop / "responses.parquet").stat().st_size < 200_000
    out = _peak(drop)
    assert out["problems"] == [f"{drop}/responses.parquet: 3000000 rows: more than the limit file_rows=1000000"]
    assert out["peak_mb"] < PEAK_MB, out


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_128_mb_value_is_refused_in_bounded_memory(tmp_path, fmt):
    """One 128 MB value: refused at the default line limit (line_bytes = 32 MiB) without reading the
    rest of the line (the reader used to decode the whole file and take 1.25 GB and 8.8 s)."""
    drop = _drop(tmp_path, {})
    with open(drop / f"responses.{fmt}", "w") as f:
        if fmt == "csv":
            f.write(HEADER + "\n" + ROW.format(n=1)[:-5] + "y" * (128 << 20) + "\n")
        else:
            f.write('{"response_id": "R_1", "has_comment": "' + "y" * (128 << 20) + '"}\n')
    out = _peak(drop)
    assert out["problems"] == [f"{drop}/responses.{fmt} line {2 if fmt == 'csv' else 1}: "
                               "line longer than the limit line_bytes=33554432"]
    assert out["peak_mb"] < PEAK_MB, out


def test_rows_are_counted_while_streaming(tmp_path):
    """2M rows under CXLOOP_LIMIT_FILE_ROWS=1000 (the environment override): refused at the
    1001st record, memory far below what 2M rows would take."""
    drop = _drop(tmp_path, {})
    with open(drop / "responses.csv", "w") as f:
        f.write(HEADER + "\n")
        f.writelines(ROW.format(n=i) + "\n" for i in range(2_000_000))
    out = _peak(drop, env={"CXLOOP_LIMIT_FILE_ROWS": "1000"})
    assert out["problems"] == [f"{drop}/responses.csv line 1002: more rows than the limit file_rows=1000"]
    assert out["peak_mb"] < PEAK_MB, out


def test_a_long_field_is_named_without_holding_the_file(tmp_path):
    """A 20 MB quoted value (spanning lines) under field_chars=1 MiB: the record is refused naming
    its line and field."""
    drop = _drop(tmp_path, {})
    with open(drop / "responses.csv", "w") as f:
        f.write(HEADER + "\n" + ROW.format(n=1) + "\n")
        f.write(ROW.format(n=2)[:-10] + '"' + ("z" * 1000 + "\n") * 20_000 + '",false\n')
    out = _peak(drop, env={"CXLOOP_LIMIT_FIELD_CHARS": str(1 << 20)})
    assert out["problems"] == [
        f"{drop}/responses.csv line 3 field is_finished: value longer than the limit field_chars=1048576"
    ]
    assert out["peak_mb"] < PEAK_MB, out
