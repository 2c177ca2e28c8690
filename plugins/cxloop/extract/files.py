"""File-drop source: CSV, JSON Lines and Parquet files in a landing folder -> canonical frames.

For teams that export from any survey tool or CRM. A drop folder holds files named
``<entity>.<ext>`` or ``<entity>-<part>.<ext>`` (``responses-2026-09.csv``), ext one of
``csv``, ``jsonl``, ``parquet``; several files of one entity are read in file-name order and
concatenated (they must have the same columns). The column contract per entity is the
contract's (:mod:`cxloop.contract`), except that contacts carry the raw ``email``, which is
hashed on read into ``email_hash`` and ``email_domain_valid``: the raw address never leaves
this module. See ``docs/file-drops.md``.

What the reader decides, and what it leaves to the validation gate:

- **File-level problems** (undecodable bytes, a line that is not JSON, a CSV row with the wrong
  number of fields, an empty or unreadable file, unknown file names, differing columns across
  the files of one entity) are :class:`FileProblem`\\ s naming the file and, where there is one,
  the line and field. A file with a problem contributes nothing, and an entity with a rejected
  file is left out of ``frames``; :meth:`FileDropResult.raise_for_problems` raises
  :class:`FileDropRejected` listing them all. The reader itself never raises on file content.
- **Columns** are passed through as the file names them (surrounding blanks stripped): a
  missing or renamed column is rejected by the gate's structural check, an extra column is
  dropped there with a warning.
- **Values** are passed through as text exactly as read (null stays ``None``): the gate
  coerces and quarantines. Parquet values are turned into text (ISO-8601 for dates and
  timestamps, ``true``/``false`` for booleans) since the gate, not the file, owns the types.

Row locations: every frame row is traced to ``(file, line)``: the physical line a CSV record
starts on (the header is line 1), the 1-based line of a JSONL object, the 1-based row of a
Parquet file. Frame order equals file order. The gate numbers rows by their position in the
frame, so :meth:`FileDropResult.row_labels` / :func:`relabel_outcome` translate its messages;
:meth:`FileDropResult.manifest` carries the mapping across processes (written as
``_files.json`` into ``landing_dir`` when one is given).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cxloop.contract import ENTITIES, ENTITY_ORDER

FORMATS = ("csv", "jsonl", "parquet")
#: data formats we recognise but do not read: a file like this is a problem, not ignored
UNSUPPORTED = ("json", "ndjson", "tsv", "txt", "xlsx", "xls", "gz", "zip", "avro", "orc")
MANIFEST_NAME = "_files.json"
MAX_FIELD_CHARS = 64 * 1024 * 1024  # one CSV field; larger -> the file is rejected
EMAIL_COLUMN = "email"
HASHED_COLUMNS = ("email_hash", "email_domain_valid")

_NAME_RE = re.compile(r"^(?P<entity>[A-Za-z0-9_]+)(?:-(?P<part>.+))?\.(?P<ext>[A-Za-z0-9]+)$")


class FileDropRejected(Exception):
    """The drop holds files that cannot be read; nothing of it may be loaded."""

    def __init__(self, drop_dir: str, problems: Sequence[FileProblem]):
        self.drop_dir = drop_dir
        self.problems = list(problems)
        super().__init__(f"file drop {drop_dir} rejected: " + " | ".join(p.message for p in self.problems))


@dataclass(frozen=True)
class FileProblem:
    file: str
    reason: str
    line: int | None = None
    field: str | None = None
    entity: str | None = None

    @property
    def message(self) -> str:
        where = self.file
        if self.line is not None:
            where += f" {'row' if self.file.lower().endswith('.parquet') else 'line'} {self.line}"
        if self.field is not None:
            where += f" field {self.field}"
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "entity": self.entity,
            "reason": self.reason,
            "message": self.message,
        }


class _Reject(Exception):
    def __init__(self, reason: str, line: int | None = None, field: str | None = None):
        super().__init__(reason)
        self.reason, self.line, self.field = reason, line, field


@dataclass
class _Read:
    path: Path
    columns: list[str]
    data: list[list[Any]]  # column-major
    lines: list[int]


@dataclass
class FileDropResult:
    drop_dir: str
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)  # entity -> file paths, read order
    locations: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # per frame row
    problems: list[FileProblem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    checksums: dict[str, str] = field(default_factory=dict)  # file -> sha256
    manifest_path: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def origin(self) -> dict[str, str]:
        """entity -> the file name(s) to pass to ``validate_batch(origin=...)``."""
        return {e: " + ".join(fs) for e, fs in self.files.items() if e in self.locations}

    def row_labels(self, entity: str) -> list[str]:
        """``"<file> line <n>"`` (Parquet: ``row <n>``) for every frame row, in frame order."""
        return [_label(f, n) for f, n in self.locations.get(entity, [])]

    def locate(self, entity: str, row_number: int) -> tuple[str, int]:
        """The (file, line) of the gate's 1-based ``row_number`` of ``entity``."""
        return self.locations[entity][row_number - 1]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise FileDropRejected(self.drop_dir, self.problems)

    def manifest(self) -> dict[str, Any]:
        """JSON-able: origin, per-row locations, files, checksums and problems (no values)."""
        out: dict[str, Any] = {
            "drop_dir": self.drop_dir,
            "origin": self.origin,
            "files": self.files,
            "checksums": self.checksums,
            "problems": [p.to_dict() for p in self.problems],
            "ignored": self.ignored,
            "rows": {},
        }
        for e, locs in self.locations.items():
            files = self.files[e]
            index = {f: i for i, f in enumerate(files)}
            out["rows"][e] = [[index[f], n] for f, n in locs]
        return out

    @classmethod
    def from_manifest(cls, data: Mapping[str, Any]) -> FileDropResult:
        """A result without frames, enough for :func:`relabel_outcome`."""
        files = {e: list(fs) for e, fs in data["files"].items()}
        locations = {e: [(files[e][i], int(n)) for i, n in rows] for e, rows in data["rows"].items()}
        r = cls(str(data["drop_dir"]), files=files, locations=locations, checksums=dict(data["checksums"]))
        r.ignored = list(data.get("ignored", []))
        r.problems = [
            FileProblem(p["file"], p["reason"], p.get("line"), p.get("field"), p.get("entity"))
            for p in data.get("problems", [])
        ]
        return r


def _label(file: str, n: int) -> str:
    return f"{file} {'row' if file.lower().endswith('.parquet') else 'line'} {n}"


# --------------------------------------------------------------------------- text values


def _text(v: Any) -> str | None:
    """A read value as text; None for null. Raises _Reject for undecodable bytes/NUL."""
    if v is None:
        return None
    if isinstance(v, str):
        if "\x00" in v:
            raise _Reject("value contains a NUL character")
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return None if math.isnan(v) else repr(v)
    if isinstance(v, Decimal):
        return None if v.is_nan() else str(v)
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.isoformat()
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, bytes | bytearray):
        try:
            return _text(bytes(v).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _Reject(f"binary value is not UTF-8 text (byte {exc.start})") from None
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


# --------------------------------------------------------------------------- decoding


def _decode(data: bytes) -> str:
    if not data.strip():
        raise _Reject("empty file: no header" if data == b"" else "file holds only blank space: no header")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _Reject("file is UTF-16 encoded (byte-order mark at byte 0): save it as UTF-8")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    body = data[skip:]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
        line = body.count(b"\n", 0, start) + 1
        col = start - (body.rfind(b"\n", 0, start) + 1) + 1
        bad = body[start : max(exc.end, start + 1)].hex(" ")
        raise _Reject(
            f"invalid UTF-8 at byte offset {start + skip} (line {line}, column {col}): byte(s) {bad}; "
            "save the file as UTF-8",
            line=line,
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise _Reject(
            f"NUL character at byte offset {len(text[:nul].encode()) + skip} (binary file?)", line=line
        )
    if not text.strip():
        raise _Reject("file holds only a byte-order mark / blank space: no header")
    return text


# --------------------------------------------------------------------------- readers


def _read_csv(path: Path, data: bytes) -> _Read:
    text = _decode(data)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD_CHARS)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader)
        except csv.Error as exc:
            raise _Reject(f"unreadable header: {exc}", line=reader.line_num or 1) from None
        if not header or not any(h.strip() for h in header):
            raise _Reject("no header (line 1 is blank)", line=1)
        header = [h.strip() for h in header]
        if len(header) == 1:
            for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
                if sep in header[0]:
                    raise _Reject(
                        f"the header is a single column containing {name}s: file drops are "
                        "comma-separated CSV (RFC 4180)",
                        line=1,
                    )
        cols: list[list[Any]] = [[] for _ in header]
        lines: list[int] = []
        prev = reader.line_num
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise _Reject(f"malformed CSV: {exc}", line=prev + 1) from None
            start, prev = prev + 1, reader.line_num
            if not record:
                continue  # a blank line
            if len(record) != len(header):
                raise _Reject(
                    f"{len(record)} fields but the header has {len(header)} "
                    "(an unquoted comma or line break in a value?)",
                    line=start,
                )
            for i, v in enumerate(record):
                cols[i].append(v)
            lines.append(start)
    finally:
        csv.field_size_limit(old_limit)
    return _Read(path, header, cols, lines)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r} in one object")
        out[k] = v
    return out


def _read_jsonl(path: Path, data: bytes) -> _Read:
    text = _decode(data)
    columns: list[str] = []
    seen: dict[str, int] = {}
    objects: list[dict[str, Any]] = []
    lines: list[int] = []
    physical = text.split("\n")
    for n, raw in enumerate(physical, start=1):
        s = raw[:-1] if raw.endswith("\r") else raw
        if not s.strip():
            continue
        try:
            obj = json.loads(s, parse_float=Decimal, parse_constant=str, object_pairs_hook=_pairs)
        except json.JSONDecodeError as exc:
            hint = " - the line is truncated" if not s.rstrip().endswith("}") else ""
            last = (
                " (the last line of the file)"
                if n == len(physical) or not any(x.strip() for x in physical[n:])
                else ""
            )
            raise _Reject(f"invalid JSON at column {exc.colno}: {exc.msg}{hint}{last}", line=n) from None
        except ValueError as exc:
            raise _Reject(f"invalid JSON: {exc}", line=n) from None
        if not isinstance(obj, dict):
            raise _Reject(f"a JSON {type(obj).__name__} where an object is required", line=n)
        row = {}
        for k, v in obj.items():
            key = k.strip()
            if key not in seen:
                seen[key] = len(columns)
                columns.append(key)
            try:
                row[key] = _text(v)
                if row[key] is not None:
                    row[key].encode("utf-8")
            except _Reject as exc:
                raise _Reject(exc.reason, line=n, field=key) from None
            except UnicodeEncodeError:
                raise _Reject("value holds an unpaired \\u surrogate escape", line=n, field=key) from None
        objects.append(row)
        lines.append(n)
    if not objects:
        raise _Reject("no JSON objects: the file has only blank lines")
    cols = [[o.get(c) for o in objects] for c in columns]
    return _Read(path, columns, cols, lines)


def _read_parquet(path: Path, data: bytes) -> _Read:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise _Reject("empty file: no schema")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # noqa: BLE001 - any reader failure is "not readable"
        raise _Reject(f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    columns = [str(c).strip() for c in table.column_names]
    cols: list[list[Any]] = []
    for i, name in enumerate(columns):
        try:
            values = table.column(i).to_pylist()
        except Exception as exc:  # noqa: BLE001
            raise _Reject(f"column cannot be read ({type(exc).__name__}: {exc})", field=name) from None
        out = []
        for r, v in enumerate(values, start=1):
            try:
                out.append(_text(v))
            except _Reject as exc:
                raise _Reject(exc.reason, line=r, field=name) from None
        cols.append(out)
    return _Read(path, columns, cols, list(range(1, table.num_rows + 1)))


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


# --------------------------------------------------------------------------- contacts


def _hash_emails(read: _Read, key: bytes) -> None:
    """Replace the raw ``email`` column by email_hash + email_domain_valid, in place."""
    from cxloop.extract.pseudonymise import email_hash, is_valid_email

    present = [c for c in HASHED_COLUMNS if c in read.columns]
    if present:
        raise _Reject(
            f"carries {', '.join(present)}: contact files carry the raw {EMAIL_COLUMN} column, "
            "which cxloop hashes on read"
        )
    n = read.columns.count(EMAIL_COLUMN)
    if n != 1:
        raise _Reject(
            f"missing column {EMAIL_COLUMN} (the contact's raw e-mail address, hashed on read)"
            if n == 0
            else f"duplicated column(s) {EMAIL_COLUMN}"
        )
    i = read.columns.index(EMAIL_COLUMN)
    raw = read.data[i]
    hashes, valid = [], []
    for v in raw:
        if v is None or not str(v).strip():
            hashes.append(None)
            valid.append(None)
        else:
            hashes.append(email_hash(v, key))
            valid.append("true" if is_valid_email(v) else "false")
    read.columns[i : i + 1] = list(HASHED_COLUMNS)
    read.data[i : i + 1] = [hashes, valid]
    raw.clear()


# --------------------------------------------------------------------------- the drop


def _frame(columns: list[str], data: list[list[Any]]) -> pd.DataFrame:
    df = pd.DataFrame({i: pd.Series(c, dtype=object) for i, c in enumerate(data)}, dtype=object)
    if not data:
        df = pd.DataFrame(index=range(0))
    df.columns = columns
    return df


def classify(path: Path) -> tuple[str | None, str | None, str | None]:
    """(entity, format, problem) for a file name in a drop folder; all None = ignore it."""
    name = path.name
    if name.startswith((".", "_", "~")) or not path.is_file():
        return None, None, None
    m = _NAME_RE.match(name)
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext in UNSUPPORTED or (m is None and ext in FORMATS):
        return (
            None,
            None,
            f"unsupported file: drop <entity>.csv, <entity>.jsonl or <entity>.parquet (got .{ext})",
        )
    if m is None or ext not in FORMATS:
        return None, None, None
    entity = m.group("entity")
    if entity not in ENTITIES:
        return None, None, f"unknown entity {entity!r} in the file name; known: {', '.join(ENTITY_ORDER)}"
    return entity, ext, None


def extract_files(
    drop_dir: Path | str,
    *,
    landing_dir: Path | str | None = None,
    pii_key: bytes | str | None = None,
) -> FileDropResult:
    """Read every ``<entity>[-<part>].{csv,jsonl,parquet}`` file of ``drop_dir``.

    Never raises on file content: problems are returned in ``result.problems`` (call
    :meth:`FileDropResult.raise_for_problems`). ``pii_key`` is the HMAC key for contact e-mails
    (default: :func:`cxloop.extract.pseudonymise.pii_key`, read only when a contacts file is present).
    With ``landing_dir``, the manifest (origins, row locations, checksums; no values) is written
    there as ``_files.json``.
    """
    drop = Path(drop_dir)
    result = FileDropResult(str(drop))
    if not drop.is_dir():
        result.problems.append(FileProblem(str(drop), "drop folder does not exist"))
        return result
    reads: dict[str, list[_Read]] = {}
    rejected: set[str] = set()
    key: bytes | None = pii_key.encode() if isinstance(pii_key, str) else pii_key
    for path in sorted(drop.iterdir(), key=lambda p: p.name):
        entity, fmt, problem = classify(path)
        if problem:
            result.problems.append(FileProblem(str(path), problem))
            continue
        if entity is None:
            result.ignored.append(str(path))
            continue
        result.files.setdefault(entity, []).append(str(path))
        try:
            data = path.read_bytes()
            result.checksums[str(path)] = hashlib.sha256(data).hexdigest()
            read = _READERS[fmt](path, data)
            del data
            if entity == "contacts":
                if key is None:
                    from cxloop.extract.pseudonymise import pii_key as configured_key

                    key = configured_key()
                _hash_emails(read, key)
        except _Reject as exc:
            result.problems.append(FileProblem(str(path), exc.reason, exc.line, exc.field, entity))
            rejected.add(entity)
            continue
        except OSError as exc:
            result.problems.append(FileProblem(str(path), f"cannot be read: {exc}", entity=entity))
            rejected.add(entity)
            continue
        reads.setdefault(entity, []).append(read)

    for entity in ENTITY_ORDER:
        parts = reads.get(entity)
        if not parts or entity in rejected:
            continue
        first = parts[0]
        ok = True
        for other in parts[1:]:
            if sorted(other.columns) != sorted(first.columns):
                missing = [c for c in first.columns if c not in other.columns]
                extra = [c for c in other.columns if c not in first.columns]
                bits = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"unexpected {', '.join(extra)}"] if extra else []
                )
                result.problems.append(
                    FileProblem(
                        str(other.path),
                        f"columns differ from {first.path} ({'; '.join(bits) or 'duplicated columns'}): "
                        "every file of one entity must have the same columns",
                        entity=entity,
                    )
                )
                ok = False
            elif other.columns != first.columns:
                if len(set(other.columns)) != len(other.columns):
                    result.problems.append(
                        FileProblem(str(other.path), "duplicated columns in a different order", entity=entity)
                    )
                    ok = False
                    continue
                order = [other.columns.index(c) for c in first.columns]
                other.data = [other.data[i] for i in order]
                other.columns = list(first.columns)
        if not ok:
            continue
        data = [sum((p.data[i] for p in parts), []) for i in range(len(first.columns))]
        result.frames[entity] = _frame(list(first.columns), data)
        result.locations[entity] = [(str(p.path), n) for p in parts for n in p.lines]
        if not first.columns:
            result.frames[entity] = pd.DataFrame(index=range(0))
    for entity in list(result.files):
        if entity not in result.frames:
            result.locations.pop(entity, None)
    if landing_dir is not None:
        folder = Path(landing_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MANIFEST_NAME
        path.write_text(json.dumps(result.manifest(), indent=1), encoding="utf-8")
        result.manifest_path = str(path)
    return result


def load_manifest(path: Path | str) -> FileDropResult:
    return FileDropResult.from_manifest(json.loads(Path(path).read_text(encoding="utf-8")))


# --------------------------------------------------------------------------- gate messages

_FIRST_SEEN = re.compile(r"first seen at row (\d+)$")


def relabel_outcome(outcome: Any, drop: FileDropResult, origin: Mapping[str, str] | None = None) -> Any:
    """Rewrite the gate's quarantine and warning reasons of ``outcome`` (a
    :class:`cxloop.gate.validation.ValidationOutcome` validated with ``origin=drop.origin``)
    so that they name the drop file and line of each row: ``"<origin> row <n>"`` becomes
    ``"<file> line <line>"``; reasons without a location (cascades) get one prefixed; "first
    seen at row <n>" names the first occurrence's file and line. Changes ``outcome`` in place
    and returns it. Rows of entities the drop does not know are left alone."""
    origin = dict(origin or drop.origin)

    def fix(frame: pd.DataFrame) -> None:
        if frame is None or frame.empty:
            return
        out = []
        for entity, row, fld, reason in zip(
            frame["entity"], frame["row_number"], frame["field"], frame["reason"], strict=True
        ):
            locs = drop.locations.get(entity)
            if not locs or not (1 <= int(row) <= len(locs)):
                out.append(reason)
                continue
            label = _label(*locs[int(row) - 1])
            prefix = f"{origin.get(entity, entity)} row {int(row)}"
            if reason.startswith(prefix):
                reason = label + reason[len(prefix) :]
            else:
                reason = f"{label} field {fld}: {reason}"
            m = _FIRST_SEEN.search(reason)
            if m and 1 <= int(m.group(1)) <= len(locs):
                reason = reason[: m.start()] + "first seen at " + _label(*locs[int(m.group(1)) - 1])
            out.append(reason)
        frame["reason"] = out

    fix(outcome.quarantine)
    fix(outcome.warnings)
    return outcome
