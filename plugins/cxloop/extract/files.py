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
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.source_config import Limits

FORMATS = ("csv", "jsonl", "parquet")
#: data formats we recognise but do not read: a file like this is a problem, not ignored
UNSUPPORTED = ("json", "ndjson", "tsv", "txt", "xlsx", "xls", "gz", "zip", "avro", "orc")
MANIFEST_NAME = "_files.json"
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


def _float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"  # a value, not a null: the gate rejects it where a number is wanted
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


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
        return _float_text(v)
    if isinstance(v, Decimal):
        return "NaN" if v.is_nan() else str(v)
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


# --------------------------------------------------------------------------- opening


def _open_entry(drop_fd: int, name: str) -> int:
    """A file descriptor for the regular file ``name`` directly inside the drop folder.

    ``O_NOFOLLOW`` relative to the folder's own descriptor: a symbolic link (or a name swapped
    for one after the listing) is refused by the kernel, not by a check that could race. Only a
    regular file with a single link is read (a hard link can reach a file outside the folder)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=drop_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Reject("is a symbolic link: drop folders never follow links; copy the file in") from None
        raise _Reject(f"cannot be opened ({errno.errorcode.get(exc.errno or 0, 'error')})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _Reject("is not a regular file")
    if st.st_nlink > 1:
        os.close(fd)
        raise _Reject("is a hard link (more than one name): copy the file into the drop folder")
    return fd


class _Hashing(io.RawIOBase):
    """A binary stream over a descriptor that hashes what is read and refuses more than
    ``limit`` bytes."""

    def __init__(self, fd: int, limit: int):
        self._f = os.fdopen(fd, "rb", buffering=0)
        self.sha = hashlib.sha256()
        self.limit = limit
        self.size = 0
        self.buffered = io.BufferedReader(self, buffer_size=1 << 20)  # the one reader of the file

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        if n:
            self.size += n
            if self.size > self.limit:
                raise _Reject(f"larger than the limit file_bytes={self.limit}")
            self.sha.update(memoryview(b)[:n])
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


# --------------------------------------------------------------------------- decoding


def _lines(stream: Any, limits: Limits, state: dict[str, Any]) -> Iterator[str]:
    """The physical lines of a UTF-8 text file (each with its ``\n``), read one at a time with
    at most ``limits.line_bytes`` bytes per line. Raises _Reject (naming the line) for
    undecodable bytes, a NUL, an over-long line; ``state`` records the line count, whether the
    file ended with a line break and whether it had any non-blank text."""
    reader = stream.buffered
    n = 0
    offset = 0
    state.update(lines=0, final_newline=True, blank=True, empty=True)
    while True:
        raw = reader.readline(limits.line_bytes + 1)
        if not raw:
            return
        n += 1
        state["lines"] = n
        state["empty"] = False
        if len(raw) > limits.line_bytes and not raw.endswith(b"\n"):
            raise _Reject(f"line longer than the limit line_bytes={limits.line_bytes}", line=n)
        skip = 0
        if n == 1:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise _Reject("file is UTF-16 encoded (byte-order mark at byte 0): save it as UTF-8")
            if raw.startswith(codecs.BOM_UTF8):
                skip = len(codecs.BOM_UTF8)
        body = raw[skip:] if skip else raw
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = body[exc.start : max(exc.end, exc.start + 1)][:4].hex(" ")
            raise _Reject(
                f"invalid UTF-8 at byte offset {offset + skip + exc.start} (line {n}, column {exc.start + 1}): "
                f"byte(s) {bad}; save the file as UTF-8",
                line=n,
            ) from None
        nul = text.find("\x00")
        if nul >= 0:
            at = offset + skip + len(text[:nul].encode())
            hint = " (UTF-16 without a byte-order mark? save it as UTF-8)" if nul <= 1 else " (binary file?)"
            raise _Reject(f"NUL character at byte offset {at}{hint}", line=n)
        offset += len(raw)
        state["final_newline"] = raw.endswith(b"\n")
        if state["blank"] and text.strip():
            state["blank"] = False
        yield text


def _no_text(state: dict[str, Any], had_bom: bool = False) -> _Reject:
    if state.get("empty", True):
        return _Reject("empty file: no header")
    return _Reject("file holds only blank space: no header")


def _cut_last_line(state: dict[str, Any], note: str = "") -> _Reject:
    return _Reject(
        f"the file does not end with a line break{note}: its last line may be cut short (an interrupted "
        "export or upload?); the file is rejected - re-drop the complete file",
        line=state["lines"],
    )


# --------------------------------------------------------------------------- readers

# csv.Error texts are fixed descriptions of the format (CPython's _csv); anything else is named
# generically, so no message ever quotes file content
_CSV_ERRORS = (
    (re.compile(r"^unexpected end of data$"), "unexpected end of data (a quote is never closed)"),
    (re.compile(r"^'.' expected after '.'$"), None),
    (re.compile(r"^new-line character seen in unquoted field"), "a bare carriage return (CR) line end"),
    (re.compile(r"^line contains NUL$"), "NUL character"),
)


def _csv_error(exc: csv.Error) -> str:
    text = str(exc)
    for pattern, phrase in _CSV_ERRORS:
        if pattern.match(text):
            return f"malformed CSV: {phrase or text}"
    return "malformed CSV"


def _overlong_field(text: str, limit: int) -> int:
    """The 0-based index of the first field longer than ``limit`` in the (partial) CSV record
    ``text``; quoted fields may hold commas and line breaks."""
    pos, idx, n = 0, 0, len(text)
    while pos < n:
        if text[pos] == '"':
            j = pos + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    return idx  # an open quote running to the end: the long field
                if text.startswith('""', k):
                    j = k + 2
                    continue
                break
            stop = text.find(",", k + 1)
        else:
            stop = min((x for x in (text.find(",", pos), text.find("\n", pos)) if x >= 0), default=-1)
        end = n if stop < 0 else stop
        if end - pos > limit:
            return idx
        if stop < 0 or text[stop] != ",":
            return idx
        pos, idx = stop + 1, idx + 1
    return idx


def _read_csv(path: Path, stream: Any, limits: Limits) -> _Read:
    state: dict[str, Any] = {}
    record_lines: list[str] = []  # the physical lines of the record being parsed

    def feed() -> Iterator[str]:
        for text in _lines(stream, limits, state):
            record_lines.append(text)
            yield text

    old_limit = csv.field_size_limit()
    csv.field_size_limit(limits.field_chars)
    try:
        reader = csv.reader(feed(), strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise _no_text(state) from None
        except csv.Error as exc:
            raise _Reject(f"unreadable header: {_csv_error(exc)}", line=reader.line_num or 1) from None
        if not header or not any(h.strip() for h in header):
            try:
                for _ in reader:
                    if not state["blank"]:
                        break
            except csv.Error:
                state["blank"] = False
            if state["blank"]:
                raise _no_text(state)
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
        _check_columns(header, line=1)
        cols: list[list[Any]] = [[] for _ in header]
        lines: list[int] = []
        prev = reader.line_num
        record_lines.clear()
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    i = _overlong_field("".join(record_lines), limits.field_chars)
                    raise _Reject(
                        f"value longer than the limit field_chars={limits.field_chars}",
                        line=prev + 1,
                        field=header[i] if i < len(header) else f"#{i + 1}",
                    ) from None
                if not state.get("final_newline", True):
                    open_quote = str(exc) == "unexpected end of data"
                    raise _cut_last_line(state, " and a quote on it is never closed" if open_quote else "") from None
                raise _Reject(_csv_error(exc), line=prev + 1) from None
            record_lines.clear()
            start, prev = prev + 1, reader.line_num
            if not record:
                continue  # a blank line
            if len(record) != len(header):
                if not state["final_newline"]:
                    raise _cut_last_line(state)
                raise _Reject(
                    f"{len(record)} fields but the header has {len(header)} "
                    "(an unquoted comma or line break in a value?)",
                    line=start,
                )
            if len(lines) >= limits.file_rows:
                raise _Reject(f"more rows than the limit file_rows={limits.file_rows}", line=start)
            for i, v in enumerate(record):
                cols[i].append(v)
            lines.append(start)
    finally:
        csv.field_size_limit(old_limit)
    if not state["final_newline"]:
        raise _cut_last_line(state)
    return _Read(path, header, cols, lines)


def _check_columns(columns: list[str], line: int | None = None) -> None:
    """A header naming one column twice (after stripping blanks) is rejected: which of the two
    values would count is undefined."""
    seen: set[str] = set()
    for c in columns:
        if c in seen:
            raise _Reject(
                f"the header names column {c!r} twice (after stripping blanks): which value counts is "
                "undefined; rename or remove one",
                line=line,
                field=c,
            )
        seen.add(c)


class _KeyProblem(Exception):
    def __init__(self, reason: str, key: str):
        super().__init__(reason)
        self.reason, self.key = reason, key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    stripped: dict[str, str] = {}
    for k, v in pairs:
        key = k.strip()
        if key in stripped:
            first = stripped[key]
            what = "twice" if first == k else f"twice ({first!r} and {k!r} differ only in blanks)"
            raise _KeyProblem(f"one object names key {key!r} {what}: which value counts is undefined", key[:100])
        stripped[key] = k
        out[key] = v
    return out


def _json_literal(text: str) -> str:
    return text  # a JSON number keeps its written form: the gate, not the reader, decides


def _read_jsonl(path: Path, stream: Any, limits: Limits) -> _Read:
    state: dict[str, Any] = {}
    columns: list[str] = []
    seen: dict[str, int] = {}
    objects: list[dict[str, Any]] = []
    lines: list[int] = []
    pending: _Reject | None = None  # a bad line: reported once we know whether it is the last
    last = True
    try:
        for n, raw in enumerate(_lines(stream, limits, state), start=1):
            if pending is not None:
                if raw.strip():
                    last = False
                    break
                continue
            s = raw.rstrip("\n")
            s = s[:-1] if s.endswith("\r") else s
            if not s.strip():
                continue
            try:
                obj = json.loads(
                    s,
                    parse_float=_json_literal,
                    parse_int=_json_literal,
                    parse_constant=_json_literal,
                    object_pairs_hook=_pairs,
                )
            except json.JSONDecodeError as exc:
                hint = " - the line is truncated" if not s.rstrip().endswith("}") else ""
                pending = _Reject(f"invalid JSON at column {exc.colno}: {exc.msg}{hint}", line=n)
                continue
            except _KeyProblem as exc:
                raise _Reject(exc.reason, line=n, field=exc.key) from None
            except RecursionError:
                raise _Reject("invalid JSON: nested too deeply", line=n) from None
            except ValueError:
                raise _Reject("invalid JSON", line=n) from None
            if not isinstance(obj, dict):
                kind = (  # numbers and constants parse as their text
                    "list" if isinstance(obj, list) else "boolean" if isinstance(obj, bool)
                    else "null" if obj is None else "string or number"
                )
                raise _Reject(f"a JSON {kind} where an object is required", line=n)
            row = {}
            for key, v in obj.items():
                if key not in seen:
                    seen[key] = len(columns)
                    columns.append(key)
                try:
                    row[key] = _text(v)
                    if row[key] is not None:
                        if len(row[key]) > limits.field_chars:
                            raise _Reject(f"value longer than the limit field_chars={limits.field_chars}")
                        row[key].encode("utf-8")
                except _Reject as exc:
                    raise _Reject(exc.reason, line=n, field=key) from None
                except UnicodeEncodeError:
                    raise _Reject("value holds an unpaired \\u surrogate escape", line=n, field=key) from None
            if len(objects) >= limits.file_rows:
                raise _Reject(f"more rows than the limit file_rows={limits.file_rows}", line=n)
            objects.append(row)
            lines.append(n)
    except _Reject:
        if pending is None:
            raise
        last = False
    if pending is not None:
        if last:
            raise _Reject(pending.reason + " (the last line of the file)", line=pending.line)
        raise pending
    if state.get("empty", True) or state.get("blank", True):
        raise _no_text(state)
    if not objects:
        raise _Reject("no JSON objects: the file holds only blank space")
    cols = [[o.get(c) for o in objects] for c in columns]
    return _Read(path, columns, cols, lines)


def _read_parquet(path: Path, stream: Any, limits: Limits) -> _Read:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fd = stream._f.fileno()
    size = os.fstat(fd).st_size
    if size == 0:
        raise _Reject("empty file: no schema")
    if size > limits.file_bytes:
        raise _Reject(f"larger than the limit file_bytes={limits.file_bytes}")
    while stream.buffered.read(1 << 20):  # the checksum
        pass
    stream._f.seek(0)
    try:
        pf = pq.ParquetFile(stream._f)
        meta = pf.metadata
    except Exception as exc:  # noqa: BLE001 - any reader failure is "not readable"
        raise _Reject(f"not a readable Parquet file ({type(exc).__name__})") from None
    if meta.num_rows > limits.file_rows:
        raise _Reject(f"{meta.num_rows} rows: more than the limit file_rows={limits.file_rows}")
    inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if inflated > limits.uncompressed_bytes:
        raise _Reject(
            f"{inflated} bytes uncompressed: more than the limit uncompressed_bytes={limits.uncompressed_bytes}"
        )
    columns = [str(c).strip() for c in pf.schema_arrow.names]
    _check_columns(columns)
    cols: list[list[Any]] = [[] for _ in columns]
    done = 0
    try:
        batches = pf.iter_batches(batch_size=65_536)
        for batch in batches:
            for i, name in enumerate(columns):
                arr = batch.column(i)
                t = arr.type
                lengths = None
                if pa.types.is_string(t) or pa.types.is_large_string(t):
                    lengths = pc.utf8_length(arr)
                elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
                    lengths = pc.binary_length(arr)
                if lengths is not None:
                    longest = pc.max(lengths).as_py()
                    if longest is not None and longest > limits.field_chars:
                        r = pc.index(pc.greater(lengths, limits.field_chars), True).as_py()
                        raise _Reject(
                            f"value longer than the limit field_chars={limits.field_chars}",
                            line=done + r + 1,
                            field=name,
                        )
                try:
                    values = arr.to_pylist()
                except Exception as exc:  # noqa: BLE001 - e.g. a timestamp outside Python's range
                    raise _Reject(f"column cannot be read ({type(exc).__name__})", field=name) from None
                out = cols[i]
                for r, v in enumerate(values, start=done + 1):
                    try:
                        out.append(_text(v))
                    except _Reject as exc:
                        raise _Reject(exc.reason, line=r, field=name) from None
            done += batch.num_rows
    except _Reject:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt page deep in the file
        raise _Reject(f"not a readable Parquet file ({type(exc).__name__})", line=done + 1) from None
    return _Read(path, columns, cols, list(range(1, done + 1)))


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


def classify(path: Path, *, is_file: bool | None = None) -> tuple[str | None, str | None, str | None]:
    """(entity, format, problem) for a file name in a drop folder; all None = ignore it.
    ``is_file`` (from the caller's ``lstat``) saves a second look at the file system."""
    name = path.name
    if is_file is None:
        is_file = path.is_file() and not path.is_symlink()
    if name.startswith((".", "_", "~")) or not is_file:
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
    limits: Limits | None = None,
) -> FileDropResult:
    """Read every ``<entity>[-<part>].{csv,jsonl,parquet}`` file of ``drop_dir``.

    Never raises on file content: problems are returned in ``result.problems`` (call
    :meth:`FileDropResult.raise_for_problems`). ``pii_key`` is the HMAC key for contact e-mails
    (default: :func:`cxloop.extract.pseudonymise.pii_key`, read only when a contacts file is present).
    With ``landing_dir``, the manifest (origins, row locations, checksums; no values) is written
    there as ``_files.json``. ``limits`` bound each file (default: the ``limits:`` of
    ``config/sources.yml``, :func:`cxloop.source_config.load_limits`).

    Entries are taken from the folder itself: a symbolic link (to a file or a folder) is a
    problem and is never opened; every file is opened ``O_NOFOLLOW`` relative to the folder.
    """
    drop = Path(drop_dir)
    result = FileDropResult(str(drop))
    if limits is None:
        from cxloop.source_config import load_limits

        limits = load_limits()
    try:
        drop_fd = os.open(drop, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        result.problems.append(FileProblem(str(drop), "drop folder does not exist"))
        return result
    try:
        entries = sorted(os.scandir(drop_fd), key=lambda e: e.name)
    except OSError as exc:
        os.close(drop_fd)
        result.problems.append(FileProblem(str(drop), f"drop folder cannot be listed ({type(exc).__name__})"))
        return result
    reads: dict[str, list[_Read]] = {}
    rejected: set[str] = set()
    key: bytes | None = pii_key.encode() if isinstance(pii_key, str) else pii_key
    try:
        for entry in entries:
            path = drop / entry.name
            if entry.is_symlink():  # lstat: the link itself, never what it points at
                result.problems.append(
                    FileProblem(str(path), "is a symbolic link: drop folders never follow links (file or folder)")
                )
                continue
            if entry.is_dir(follow_symlinks=False):
                result.ignored.append(str(path))
                continue
            if not entry.is_file(follow_symlinks=False) and _NAME_RE.match(entry.name):
                # a FIFO, socket or device named like a data file: never opened, never skipped silently
                result.problems.append(FileProblem(str(path), "is not a regular file"))
                continue
            entity, fmt, problem = classify(path, is_file=entry.is_file(follow_symlinks=False))
            if problem:
                result.problems.append(FileProblem(str(path), problem))
                continue
            if entity is None:
                result.ignored.append(str(path))
                continue
            result.files.setdefault(entity, []).append(str(path))
            stream = None
            try:
                stream = _Hashing(_open_entry(drop_fd, entry.name), limits.file_bytes)
                read = _READERS[fmt](path, stream, limits)
                while stream.buffered.read(1 << 20):  # what a reader left unread counts for the checksum
                    pass
                result.checksums[str(path)] = stream.sha.hexdigest()
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
                reason = f"cannot be read ({errno.errorcode.get(exc.errno or 0, type(exc).__name__)})"
                result.problems.append(FileProblem(str(path), reason, entity=entity))
                rejected.add(entity)
                continue
            finally:
                if stream is not None:
                    stream.buffered.close()
            reads.setdefault(entity, []).append(read)
    finally:
        os.close(drop_fd)

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
    :class:`cxloop.gate.outcome.ValidationOutcome` validated with ``origin=drop.origin``)
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
