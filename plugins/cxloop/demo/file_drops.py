"""The demo world as a file drop: the generator's truth plus its planted faults, as files.

:func:`write_file_drops` turns a generated demo folder (``cxloop.demo.generator.generate``)
into a drop folder that :func:`cxloop.extract.files.extract_files` reads: the clean rows of
``truth/<entity>.parquet`` plus, for every row of ``truth/faults.parquet``, the faulty row the
APIs serve (a second copy of a duplicated account or response, the orphan contact from
``source/salesforce/Contact.json``, the out-of-range response from the Qualtrics export), so
the gate quarantines the same rows as through the APIs. Contacts get their raw ``email`` from
``Contact.json`` (the truth has no hash: that needs the deployment's key).

Entities are spread across the formats given (round robin in load order); the responses are
split into one file per format (``responses-01.csv``, ``responses-02.jsonl``, ...), so the drop
also exercises several files per entity and a duplicate key across two files.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.demo.generator import canonical_buying_role
from cxloop.extract.registry import CURSOR_COLUMNS

FORMATS = ("csv", "jsonl", "parquet")
_ARROW = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def file_columns(entity: str) -> list[str]:
    """The file-drop column contract of an entity (contacts: raw email instead of the hash)."""
    cols = ENTITIES[entity].column_names
    if entity != "contacts":
        return list(cols)
    out = []
    for c in cols:
        if c == "email_hash":
            out.append("email")
        elif c != "email_domain_valid":
            out.append(c)
    return out


def _logical(entity: str, column: str) -> str:
    return "string" if column == "email" else ENTITIES[entity].column(column).type


def _py(v: Any, logical: str) -> Any:
    """A truth value as a plain Python value of its logical type (None for null)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if logical == "int":
        return int(v)
    if logical == "float":
        return float(v)
    if logical == "bool":
        return bool(v)
    if logical == "timestamp":
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("+0000", "+00:00"))
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC)
    if logical == "date":
        return (
            v
            if isinstance(v, dt.date) and not isinstance(v, dt.datetime)
            else dt.date.fromisoformat(str(v)[:10])
        )
    return str(v)


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def _as_json(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _write(path: Path, entity: str, rows: list[dict[str, Any]], fmt: str) -> None:
    cols = file_columns(entity)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in rows:
                w.writerow([_as_text(r.get(c)) for c in cols])
    elif fmt == "jsonl":
        with path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({c: _as_json(r.get(c)) for c in cols}, ensure_ascii=False) + "\n")
    elif fmt == "parquet":
        arrays = [pa.array([r.get(c) for r in rows], type=_ARROW[_logical(entity, c)]) for c in cols]
        pq.write_table(pa.Table.from_arrays(arrays, names=cols), path)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def _truth_rows(truth_dir: Path, entity: str) -> list[dict[str, Any]]:
    table = pq.read_table(truth_dir / f"{entity}.parquet")
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    e = ENTITIES[entity]
    return [{c.name: _py(cols[c.name][i], c.type) for c in e.columns} for i in range(table.num_rows)]


def _contact_row(rec: dict[str, Any]) -> dict[str, Any]:
    """A Salesforce Contact record as a file-drop contacts row (the documented mapping)."""
    role_source = rec.get("Buying_Role__c")
    blank = role_source is None or not str(role_source).strip()
    row = {
        "contact_id": rec.get("Id"),
        "account_id": rec.get("AccountId"),
        "email": rec.get("Email"),
        "title": rec.get("Title"),
        "buying_role": canonical_buying_role(role_source, rec.get("Title")),
        "buying_role_source": None if blank else role_source,
        "is_active": rec.get("Active__c"),
        "opted_out": rec.get("HasOptedOutOfEmail"),
        "is_deleted": rec.get("IsDeleted", False),
        "updated_at": rec.get("SystemModstamp"),
    }
    return {c: _py(row[c], _logical("contacts", c)) for c in file_columns("contacts")}


def _response_row(survey_id: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A Qualtrics export response as a responses row (the documented mapping)."""
    v = obj.get("values") or {}
    comment = v.get("QID2_TEXT")
    row = {
        "response_id": obj.get("responseId"),
        "invitation_id": f"{v.get('DistributionId')}:{v.get('ContactId')}",
        "survey_id": survey_id,
        "contact_id": v.get("externalDataReference"),
        "account_id": v.get("AccountId"),
        "recorded_at": v.get("recordedDate"),
        "nps_score": v.get("QID1"),
        "is_finished": v.get("finished"),
        "has_comment": isinstance(comment, str) and bool(comment.strip()),
    }
    return {c: _py(row[c], _logical("responses", c)) for c in file_columns("responses")}


def _chunks(rows: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    size = math.ceil(len(rows) / n) if rows else 0
    return [rows[i * size : (i + 1) * size] for i in range(n)] if size else [rows]


def write_file_drops(
    source_dir: Path | str,
    drop_dir: Path | str,
    formats: Sequence[str] = FORMATS,
    *,
    as_of: dt.datetime | None = None,
) -> dict[str, list[str]]:
    """Write the demo of ``source_dir`` (a ``generate`` output folder) as a file drop into
    ``drop_dir``; returns entity -> the file names written. Nothing is ever deleted or replaced:
    a ``drop_dir`` that already holds a data file (``<entity>*.{csv,jsonl,parquet}``) is refused
    with one line; :func:`remove_written` clears what an earlier call wrote, by its record.
    With ``as_of``, rows whose change timestamp (:data:`CURSOR_COLUMNS`) is at or after it are
    left out, as the API sources leave them out of a run at that ``as_of``."""
    formats = tuple(formats)
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"unknown format {f!r}; known: {', '.join(FORMATS)}")
    if not formats:
        raise ValueError("no formats given")
    src, drop = Path(source_dir), Path(drop_dir)
    truth_dir = src / "truth"
    if drop.is_symlink():
        raise ValueError(f"drop folder {drop} is a symbolic link: the demo never writes through links")
    drop.mkdir(parents=True, exist_ok=True)
    present = data_files(drop)
    if present:
        raise FileExistsError(
            f"drop folder {drop} already holds {present[0]}"
            + (f" and {len(present) - 1} other data file(s)" if len(present) > 1 else "")
            + ": the demo writes only into a folder without data files and never replaces a file it did not write"
        )

    contacts_src = json.loads((src / "source" / "salesforce" / "Contact.json").read_text(encoding="utf-8"))
    by_contact = {r["Id"]: r for r in contacts_src}
    rows = {e: _truth_rows(truth_dir, e) for e in ENTITY_ORDER}
    for r in rows["contacts"]:
        r.pop("email_hash", None)
        r.pop("email_domain_valid", None)
        r["email"] = by_contact.get(r["contact_id"], {}).get("Email")

    faults = pq.read_table(truth_dir / "faults.parquet").to_pylist()
    responses_src: dict[str, tuple[str, dict[str, Any]]] | None = None
    for fault in faults:
        entity, key, kind = fault["entity"], fault["key"], fault["kind"]
        pk = ENTITIES[entity].primary_key
        if kind == "duplicate":
            original = next(r for r in rows[entity] if r[pk] == key)
            rows[entity].append(dict(original))
        elif kind == "orphan" and entity == "contacts":
            rows[entity].append(_contact_row(by_contact[key]))
        elif kind == "out_of_range" and entity == "responses":
            if responses_src is None:
                responses_src = {}
                for path in sorted((src / "source" / "qualtrics" / "responses").glob("*.json")):
                    for obj in json.loads(path.read_text(encoding="utf-8")):
                        responses_src.setdefault(obj["responseId"], (path.stem, obj))
            rows[entity].append(_response_row(*responses_src[key]))
        else:
            raise ValueError(f"planted fault {kind!r} on {entity} is not known to the file-drop writer")

    written: dict[str, list[str]] = {}
    single = [e for e in ENTITY_ORDER if e != "responses"]
    for i, entity in enumerate(single):
        fmt = formats[i % len(formats)]
        name = f"{entity}.{fmt}"
        _write(drop / name, entity, rows[entity], fmt)
        written[entity] = [name]
    parts = _chunks(rows["responses"], len(formats))
    written["responses"] = []
    for i, chunk in enumerate(parts, start=1):
        fmt = formats[(i - 1) % len(formats)]
        name = f"responses-{i:02d}.{fmt}" if len(parts) > 1 else f"responses.{fmt}"
        _write(drop / name, "responses", chunk, fmt)
        written["responses"].append(name)
    return {e: written[e] for e in ENTITY_ORDER}


def _before(entity: str, as_of: dt.datetime | None) -> Any:
    """Row filter: the entity's change timestamp is before ``as_of`` (or unknown: kept)."""
    col = CURSOR_COLUMNS.get(entity)
    if as_of is None or col is None:
        return lambda row: True
    cut = _py(as_of, "timestamp")

    def keep(row: dict[str, Any]) -> bool:
        value = row.get(col)
        try:
            ts = _py(value, "timestamp") if value not in (None, "") else None
        except (TypeError, ValueError):
            ts = None
        return ts is None or ts < cut

    return keep


def _rows_of(path: Path) -> list[dict[str, Any]]:
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return pq.read_table(path).to_pylist()


def cut_at(drop_dir: Path | str, written: dict[str, list[str]], as_of: dt.datetime) -> dict[str, int]:
    """Leave out of the files ``written`` in ``drop_dir`` (entity -> names, as the writers return
    them) every row changed at or after ``as_of``; returns entity -> rows left out. A file
    keeps its format and columns; values of the kept rows are rewritten as read."""
    drop = Path(drop_dir)
    dropped: dict[str, int] = {}
    for entity, names in written.items():
        keep = _before(entity, as_of)
        for name in names:
            path = drop / name
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{path} is not a regular file the demo wrote")
            rows = _rows_of(path)
            kept = [r for r in rows if keep(r)]
            dropped[entity] = dropped.get(entity, 0) + len(rows) - len(kept)
            if len(kept) == len(rows):
                continue
            fmt = path.suffix.lstrip(".")
            if fmt == "parquet":
                table = pq.read_table(path)
                pq.write_table(pa.Table.from_pylist(kept, schema=table.schema), path)
            elif fmt == "csv":
                with path.open(encoding="utf-8", newline="") as f:
                    header = next(csv.reader(f))
                with path.open("w", encoding="utf-8", newline="") as f:
                    w = csv.writer(f)
                    w.writerow(header)
                    w.writerows([[r.get(c, "") for c in header] for r in kept])
            else:
                with path.open("w", encoding="utf-8") as f:
                    for r in kept:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return dropped


def data_files(drop_dir: Path | str) -> list[str]:
    """Names in ``drop_dir`` the file-drop reader would take for data (``<entity>*.<format>``),
    symbolic links included (never followed), sorted."""
    drop = Path(drop_dir)
    if not drop.is_dir():
        return []
    out = []
    for entry in drop.iterdir():
        name = entry.name
        if name.startswith((".", "_", "~")) or "." not in name:
            continue
        stem, ext = name.rsplit(".", 1)
        if ext.lower() in FORMATS and stem.split("-")[0] in ENTITIES:
            out.append(name)
    return sorted(out)


def record_written(record: Path | str, drop_dir: Path | str, written: dict[str, list[str]]) -> None:
    """Keep, in ``record`` (a JSON file outside the drop), the names of the files written
    into ``drop_dir``: :func:`remove_written` removes exactly those and nothing else."""
    path = Path(record)
    names = sorted({n for files in written.values() for n in files})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"drop_dir": str(Path(drop_dir)), "files": names}, indent=2) + "\n")
    tmp.replace(path)


def remove_written(record: Path | str, drop_dir: Path | str) -> list[str]:
    """Remove the files an earlier demo wrote into ``drop_dir``, as kept in ``record``, then the
    record; returns the names removed. Only plain names directly in ``drop_dir`` are taken
    (no path separators, no ``..``); a symbolic link or anything but a regular file is left
    alone; a file the record does not name is never touched."""
    path, drop = Path(record), Path(drop_dir)
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    removed: list[str] = []
    if Path(data.get("drop_dir", "")) == drop and not drop.is_symlink():
        for name in data.get("files", []):
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
                continue
            target = drop / name
            if target.is_file() and not target.is_symlink():
                target.unlink()
                removed.append(name)
    path.unlink()
    return removed
