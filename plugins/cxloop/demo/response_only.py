"""The demo world as a response-only program: a file drop with no invitations.

Many programs record only responses: in-app or web NPS, survey links, exports from another
tool. They have accounts, contacts, surveys, responses and follow-ups, but no invitations, and
their responses point at none. :func:`write_response_only_drop` turns a generated demo folder
(``cxloop.demo.generator.generate``) into such a drop: it writes the full demo drop with
:func:`cxloop.demo.file_drops.write_file_drops` (planted faults included), then leaves out the
invitations and empties ``invitation_id`` on the responses. With ``invited_survey_types`` the
invitations of those survey types (and their responses' links) stay: a mixed program where,
say, relationship surveys are sent by e-mail and transactional ones are answered in the app.

Everything is written inside ``drop_dir`` and nowhere else; symlinks in it are never followed.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cxloop.demo.file_drops import FORMATS, write_file_drops


def _survey_types(demo_dir: Path) -> dict[str, str]:
    table = pq.read_table(demo_dir / "truth" / "surveys.parquet", columns=["survey_id", "survey_type"])
    return dict(zip(table.column("survey_id").to_pylist(), table.column("survey_type").to_pylist(), strict=True))


def _rewrite_csv(path: Path, keep_row, edit_row) -> int:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    index = {c: i for i, c in enumerate(header)}
    out = []
    for values in rows:
        row = {c: values[i] for c, i in index.items()}
        if keep_row(row):
            edit_row(row)
            out.append([row[c] for c in header])
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(out)
    return len(out)


def _rewrite_jsonl(path: Path, keep_row, edit_row) -> int:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if keep_row(row):
            edit_row(row)
            out.append(json.dumps(row, ensure_ascii=False))
    path.write_text("".join(f"{line}\n" for line in out), encoding="utf-8")
    return len(out)


def _rewrite_parquet(path: Path, keep_row, edit_row) -> int:
    table = pq.read_table(path)
    rows = [r for r in table.to_pylist() if keep_row(r)]
    for r in rows:
        edit_row(r)
    arrays = [pa.array([r[name] for r in rows], type=table.schema.field(name).type) for name in table.column_names]
    pq.write_table(pa.Table.from_arrays(arrays, names=table.column_names), path)
    return len(rows)


def _rewrite(path: Path, keep_row, edit_row) -> int:
    """Rewrite one drop file in its own format, keeping the rows ``keep_row`` accepts after
    ``edit_row`` changed them in place; returns the rows kept."""
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path.name}: not a regular file of the drop")
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        return _rewrite_csv(path, keep_row, edit_row)
    if fmt == "jsonl":
        return _rewrite_jsonl(path, keep_row, edit_row)
    if fmt == "parquet":
        return _rewrite_parquet(path, keep_row, edit_row)
    raise ValueError(f"{path.name}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def write_response_only_drop(
    demo_dir: Path | str,
    drop_dir: Path | str,
    formats: Sequence[str] = FORMATS,
    invited_survey_types: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Write the demo of ``demo_dir`` as a file drop of a program that records only responses
    into ``drop_dir``: no invitations file, every response's ``invitation_id`` empty. Survey
    types named in ``invited_survey_types`` keep their invitations and links (a mixed
    program). Returns entity -> the file names written (no ``invitations`` key when none is
    left). Existing entity files in ``drop_dir`` are replaced, as by ``write_file_drops``."""
    demo, drop = Path(demo_dir), Path(drop_dir)
    survey_type = _survey_types(demo)
    known_types = set(survey_type.values())
    unknown = sorted(set(invited_survey_types) - known_types)
    if unknown:
        raise ValueError(f"unknown survey type(s) {', '.join(unknown)}; known: {', '.join(sorted(known_types))}")
    invited = set(invited_survey_types)

    written = write_file_drops(demo, drop, formats=formats)

    def is_invited(row: dict) -> bool:
        return survey_type.get(row.get("survey_id")) in invited

    def keep_all(row: dict) -> bool:
        return True

    for name in written["responses"]:
        path = drop / name
        empty = "" if path.suffix == ".csv" else None  # the null of the file's format

        def unlink(row: dict, empty=empty) -> None:
            if not is_invited(row):
                row["invitation_id"] = empty

        _rewrite(path, keep_all, unlink)

    kept: list[str] = []
    for name in written.get("invitations", []):
        path = drop / name
        if invited and _rewrite(path, is_invited, lambda row: None):
            kept.append(name)
        else:
            path.unlink()
    out = {e: files for e, files in written.items() if e != "invitations"}
    if kept:
        out["invitations"] = kept
    return {e: out[e] for e in written if e in out}
