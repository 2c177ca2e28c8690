"""The file-level bad-input corpus: tests/data/bad_files/<case>/ holds a small drop folder and its
expect.json. Every case runs through the file-drop reader and then the validation gate and ends in
a defined outcome: the reader rejects the drop (FileDropRejected naming file and line), the gate
rejects the batch (BatchRejected naming file and columns), or the batch is validated and the
listed rows are quarantined (file, line, field, reason). Together with tests/data/bad_inputs/ (row-level
cases) this is the bad-input corpus of issue 4.

expect.json may also carry: "expand" (a placeholder grown to a big value at test time), "limits"
(a Limits override, so a bomb needs only a small file), "symlinks" (links made at test time:
{"link": name in the drop, "to": a case file starting with "_", copied OUTSIDE the drop; with
"dir_with", "to" is a folder outside holding that file}) and "message_excludes" (text no
message may contain, e.g. a linked secret). Files starting with "_" never go into the drop."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

try:
    import cxloop  # noqa: F401
except ImportError:  # the package is not installed in the venv: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import ENTITIES
from cxloop.extract.files import FileDropRejected, extract_files, relabel_outcome
from cxloop.gate.outcome import BatchRejected
from cxloop.gate.validation import validate_batch
from cxloop.source_config import Limits

BAD_FILES = Path(__file__).resolve().parents[1] / "data" / "bad_files"
CASES = sorted(p.name for p in BAD_FILES.iterdir() if (p / "expect.json").is_file())
AS_OF = dt.datetime(2026, 10, 1)
KEY = b"test-only-key"
# a small consistent set of parents "already in the warehouse"
KNOWN = {
    "owners": {"005A", "005B"},
    "accounts": {"001A", "001B"},
    "contacts": {"003A", "003B"},
    "surveys": {"SV_rel", "SV_tx"},
    "invitations": {"EMD_1:CID_A", "EMD_1:CID_B"},
    "responses": {"R_0"},
    "follow_ups": set(),
}
SENT_AT = {"EMD_1:CID_A": "2026-08-01T09:00:00Z", "EMD_1:CID_B": "2026-08-01T09:00:00Z"}


def make_drop(case: str, expect: dict, tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for link in expect.get("symlinks", []):
        target = outside / link["to"]
        if "dir_with" in link:
            target.mkdir()
            shutil.copy(BAD_FILES / case / link["dir_with"], target / link["dir_with"].lstrip("_"))
        else:
            shutil.copy(BAD_FILES / case / link["to"], target)
        (drop / link["link"]).symlink_to(target, target_is_directory=target.is_dir())
    for f in sorted((BAD_FILES / case).iterdir()):
        if f.name == "expect.json" or f.name.startswith("_"):
            continue
        data = f.read_bytes()
        if "expand" in expect:
            x = expect["expand"]
            data = data.replace(x["placeholder"].encode(), (x["repeat"] * x["times"]).encode())
        (drop / f.name).write_bytes(data)
    return drop


def _where(drop: Path, rows: pd.DataFrame, result) -> set[tuple]:
    out = set()
    for entity, row, fld in zip(rows.entity, rows.row_number, rows.field, strict=True):
        file, line = result.locate(entity, int(row))
        out.add((entity, Path(file).name, line, fld))
    return out


def _match(drop: Path, rows: pd.DataFrame, expected: list[dict], result) -> None:
    want = {(x["entity"], x["file"], x["line"], x["field"]) for x in expected}
    got = _where(drop, rows, result)
    assert got == want, f"unexpected: {sorted(got - want)}; missing: {sorted(want - got)}"
    for x in expected:
        label = f"{drop / x['file']} {'row' if x['file'].endswith('.parquet') else 'line'} {x['line']}"
        hits = [r for r in rows.reason if r.startswith(label + " ") and f"field {x['field']}" in r]
        assert hits, (label, rows.reason.tolist())
        text = x["reason_contains"].replace("{dir}", str(drop))
        assert any(text in h for h in hits), (text, hits)


def test_corpus_is_big_enough():
    row_level = [p for p in (BAD_FILES.parent / "bad_inputs").glob("*.json") if p.stem != "clean_batch"]
    assert len(CASES) >= 15
    assert len(CASES) + len(row_level) >= 45


@pytest.mark.parametrize("case", CASES)
def test_bad_file_case(case, tmp_path):
    expect = json.loads((BAD_FILES / case / "expect.json").read_text(encoding="utf-8"))
    drop = make_drop(case, expect, tmp_path)
    limits = Limits(**expect.get("limits", {}))
    result = extract_files(drop, pii_key=KEY, limits=limits)
    outcome_kind = expect["outcome"]

    if outcome_kind == "reader_rejected":
        assert result.problems and not result.ok
        with pytest.raises(FileDropRejected) as exc:
            result.raise_for_problems()
        msg = str(exc.value)
        for text in expect["message_contains"]:
            assert text.replace("{dir}", str(drop)) in msg, msg
        for text in expect.get("message_excludes", []):
            assert text not in msg and text not in json.dumps(result.manifest()), text
        for p in result.problems:
            assert str(drop) in p.file
        assert len(msg) < 2000, "a rejection is a line or a few, never the file's content"
        return
    assert result.ok, [p.message for p in result.problems]
    kw = dict(
        batch_id=f"files-{case}",
        source="files",
        as_of=AS_OF,
        known_keys=KNOWN,
        known_sent_at=SENT_AT,
        origin=result.origin,
    )
    if outcome_kind == "batch_rejected":
        with pytest.raises(BatchRejected) as exc:
            validate_batch(result.frames, **kw)
        for text in expect["message_contains"]:
            assert text in str(exc.value), str(exc.value)
        assert str(drop) in str(exc.value)
        return
    assert outcome_kind == "validated"
    out = relabel_outcome(validate_batch(result.frames, **kw), result)
    _match(drop, out.quarantine, expect.get("quarantine", []), result)
    if "warnings" in expect:
        _match(drop, out.warnings, expect["warnings"], result)
    # every message names the file, the line (or Parquet row) and the field
    for frame in (out.quarantine, out.warnings):
        for reason, fld in zip(frame.reason, frame.field, strict=True):
            assert reason.startswith(str(drop)) and f"field {fld}" in reason, reason
            assert " line " in reason or " row " in reason, reason
    for c in out.counts.values():
        assert c["received"] == c["loaded"] + c["quarantined"]
    for name, c in expect.get("counts", {}).items():
        assert out.counts[name] == c, (name, out.counts[name])
    for vv in expect.get("valid_values", []):
        df = out.valid[vv["entity"]]
        got = df.loc[df[ENTITIES[vv["entity"]].primary_key] == vv["key"], vv["field"]]
        assert len(got) == 1, vv
        value = got.iloc[0]
        if vv["value"] is None:
            assert pd.isna(value), (vv, value)
        elif isinstance(value, pd.Timestamp):
            assert value == pd.Timestamp(vv["value"]), (vv, value)
        else:
            assert value == vv["value"], (vv, value)
    for r in expect.get("results", []):
        res = out.results
        hit = res[(res.entity == r["entity"]) & (res.expectation == r["expectation"])]
        assert len(hit) == 1
        for k in ("success", "unexpected_count"):
            if k in r:
                assert hit[k].iloc[0] == r[k], k
    if "record_json_max_chars" in expect and len(out.quarantine):
        assert out.quarantine.record_json.str.len().max() <= expect["record_json_max_chars"]


def test_reader_never_raises_on_the_whole_corpus_at_once(tmp_path):
    """All malformed files in one drop: every problem is reported, none raises."""
    drop = tmp_path / "all"
    drop.mkdir()
    for case in CASES:
        for f in (BAD_FILES / case).iterdir():
            if f.name != "expect.json" and not f.name.startswith("_"):
                shutil.copy(f, drop / f"{f.stem.split('-')[0]}-{case}{f.suffix}" if "." in f.name else f.name)
    result = extract_files(drop, pii_key=KEY)
    assert len(result.problems) >= 15
    assert all(p.file.startswith(str(drop)) for p in result.problems)
