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
    source_dir: Path | str, drop_dir: Path | str, formats: Sequence[str] = FORMATS
) -> dict[str, list[str]]:
    """Write the demo of ``source_dir`` (a ``generate`` output folder) as a file drop into
    ``drop_dir``; returns entity -> the file names written. Existing entity files in
    ``drop_dir`` are replaced."""
    formats = tuple(formats)
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"unknown format {f!r}; known: {', '.join(FORMATS)}")
    if not formats:
        raise ValueError("no formats given")
    src, drop = Path(source_dir), Path(drop_dir)
    truth_dir = src / "truth"
    drop.mkdir(parents=True, exist_ok=True)
    for old in drop.iterdir():
        if (
            old.is_file()
            and old.suffix.lstrip(".") in FORMATS
            and old.name.split("-")[0].split(".")[0] in ENTITIES
        ):
            old.unlink()

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
