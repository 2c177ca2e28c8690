"""The demo source server: serves generated source files through the Qualtrics v3 and Salesforce
REST query protocols on 127.0.0.1 (see docs/demo-sources.md).

    with DemoServer(out_dir, token="demo") as base_url:   # or .start() / .stop()
        extract_salesforce(base_url, "demo") ...

``data_dir`` is the generator's ``out_dir`` (holding ``source/``) or ``source/`` itself. The JSON
files are read lazily, once, on first use.

Command line: ``python -m cxloop.demo.server --data DIR --token T [--port P]`` prints the base URL
and serves until killed.

Qualtrics (``/API/v3``): ``GET surveys``, ``GET directories/{id}/contacts`` (``embeddedData`` only
with ``includeEmbedded=true``, as the real API), ``GET distributions?surveyId=``,
``GET distributions/{id}/history``, the response export (``POST surveys/{id}/export-responses``,
poll ``.../export-responses/{progressId}``, ``GET .../export-responses/{fileId}/file``). Lists
page with ``pageSize`` (default ``page_size``) and an opaque ``skipToken`` in ``nextPage``. Auth:
``Authorization: Bearer`` (OAuth) or ``X-API-TOKEN``.

Salesforce (``/services/data/vNN.N``): ``GET query?q=`` / ``queryAll?q=`` with a SOQL subset
(``SELECT`` fields ``FROM`` User/Account/Contact/Task/Opportunity, ``WHERE`` comparisons joined by
``AND``, ``field IN ('a', 'b')`` / ``NOT IN``, ``ORDER BY``, ``LIMIT``),
``nextRecordsUrl`` paging, ``Sforce-Query-Options: batchSize=N`` (200..2000), ``SELECT COUNT()``
(``totalSize`` only), errors as ``[{"message", "errorCode"}]``. Bulk API 2.0 query jobs:
``POST jobs/query`` (``operation`` query/queryAll, CSV) answers ``UploadComplete``; ``GET
jobs/query/{id}`` answers ``InProgress`` for ``bulk_polls`` polls, then ``JobComplete`` (or the
``Failed``/``Aborted`` of ``bulk_faults``); ``GET jobs/query/{id}/results?maxRecords=&locator=``
serves CSV result sets (quoted, LF, empty = null) with ``Sforce-Locator`` (``null`` after the
last) and ``Sforce-NumberOfRecords``, only when complete and only for the job's API version
(else 409); ``PATCH`` ``{"state": "Aborted"}`` aborts, ``DELETE`` (terminal jobs only) deletes;
``GET jobs/query`` lists the jobs.

XM Directory search: ``POST directories/{id}/contacts/search`` with a ``lastModifiedDate``
filter (each contact's own field, else the ``SystemModstamp`` of the CRM contact it mirrors),
paged like the list; paging past ``search_depth`` (10,000) answers 400.

HubSpot CRM v3 (``/crm/v3``, ``/crm/v4``): served by :mod:`cxloop.demo.hubspot_api` from the same
Salesforce files; its ``configure(server, ...)`` sets rate limits, the result cap and a fault plan.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import secrets
import signal
import sys
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cxloop.demo import hubspot_api  # HubSpot CRM v3 routes and fault injection

try:
    import msgspec

    _fast_encode = msgspec.json.Encoder().encode
except ImportError:  # pragma: no cover
    _fast_encode = None

QUALTRICS_PREFIX = "/API/v3"
SALESFORCE_PREFIX = "/services/data/"
SF_OBJECTS = ("User", "Account", "Contact", "Task", "Opportunity")
# Fields documented per SObject (a field is also known when any record carries it).
SF_FIELDS: dict[str, tuple[str, ...]] = {
    "User": ("Id", "Name", "Email", "Department", "IsActive", "SystemModstamp"),
    "Account": (
        "Id",
        "Name",
        "Segment__c",
        "Region__c",
        "Tier__c",
        "AnnualRecurringRevenue__c",
        "OwnerId",
        "Renewal_Date__c",
        "Active__c",
        "IsDeleted",
        "CreatedDate",
        "SystemModstamp",
    ),
    "Contact": (
        "Id",
        "AccountId",
        "Email",
        "Title",
        "Buying_Role__c",
        "Active__c",
        "HasOptedOutOfEmail",
        "IsDeleted",
        "SystemModstamp",
    ),
    "Task": (
        "Id",
        "WhatId",
        "WhoId",
        "OwnerId",
        "Subject",
        "Status",
        "Survey_Response_Id__c",
        "First_Contact_At__c",
        "CompletedDateTime",
        "CreatedDate",
        "IsDeleted",
        "SystemModstamp",
    ),
    "Opportunity": (
        "Id",
        "AccountId",
        "Name",
        "Type",
        "StageName",
        "Amount",
        "Previous_ARR__c",
        "CloseDate",
        "IsClosed",
        "IsWon",
        "OwnerId",
        "IsDeleted",
        "CreatedDate",
        "SystemModstamp",
    ),
}
QUALTRICS_DEFAULT_PAGE = 100
SF_DEFAULT_BATCH = 2000
SF_MIN_BATCH, SF_MAX_BATCH = 200, 2000


class SoqlError(ValueError):
    def __init__(self, message: str, code: str = "MALFORMED_QUERY"):
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------
# SOQL subset
# ----------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.)*')
      | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<comma>,)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
KEYWORDS = {
    "select", "from", "where", "and", "order", "by", "limit", "asc", "desc", "nulls", "first", "last", "in", "not",
}  # fmt: skip


@dataclass
class Tok:
    kind: str
    text: str
    value: Any = None


@dataclass
class Literal:
    kind: str  # str, datetime, date, num, bool, null, list (IN / NOT IN: value is a list of Literals)
    value: Any


@dataclass
class Query:
    fields: list[str]
    sobject: str
    where: list[tuple[str, str, Literal]] = field(default_factory=list)
    order: list[tuple[str, bool, bool]] = field(default_factory=list)  # field, descending, nulls_last
    limit: int | None = None
    count: bool = False  # SELECT COUNT() FROM ...: only totalSize is answered


def _parse_dt(text: str) -> datetime:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", t):
        t = f"{t[:-2]}:{t[-2:]}"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def tokenize(soql: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    text = soql.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "bad":
            raise SoqlError(f"unexpected token: '{raw}'")
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
            toks.append(Tok("lit", raw, Literal("str", value)))
        elif kind == "dt":
            toks.append(Tok("lit", raw, Literal("datetime", _parse_dt(raw))))
        elif kind == "date":
            toks.append(Tok("lit", raw, Literal("date", date.fromisoformat(raw))))
        elif kind == "num":
            toks.append(Tok("lit", raw, Literal("num", float(raw))))
        elif kind == "word" and raw.lower() in {"true", "false"}:
            toks.append(Tok("lit", raw, Literal("bool", raw.lower() == "true")))
        elif kind == "word" and raw.lower() == "null":
            toks.append(Tok("lit", raw, Literal("null", None)))
        elif kind == "word" and raw.lower() in KEYWORDS:
            toks.append(Tok("kw", raw.lower()))
        else:
            toks.append(Tok(kind, raw))
    return toks


def parse_soql(soql: str) -> Query:
    toks = tokenize(soql)
    i = 0

    def peek(offset: int = 0) -> Tok | None:
        return toks[i + offset] if i + offset < len(toks) else None

    def expect(kind: str, text: str | None = None) -> Tok:
        nonlocal i
        t = peek()
        if t is None or t.kind != kind or (text is not None and t.text != text):
            got = "end of query" if t is None else f"'{t.text}'"
            want = text.upper() if text else kind
            raise SoqlError(f"unexpected token: {got} (expecting {want})")
        i += 1
        return t

    expect("kw", "select")
    count = False
    t0, t1 = peek(), peek(1)
    if t0 is not None and t0.kind == "word" and t0.text.lower() == "count" and t1 is not None and t1.kind == "lparen":
        i += 2
        expect("rparen")
        fields: list[str] = []
        count = True
    else:
        fields = [expect("word").text]
        while peek() is not None and peek().kind == "comma":
            i += 1
            fields.append(expect("word").text)
    expect("kw", "from")
    q = Query(fields, expect("word").text, count=count)
    if peek() is not None and peek().kind == "kw" and peek().text == "where":
        i += 1
        while True:
            f = expect("word").text
            t = peek()
            if t is not None and t.kind == "kw" and t.text in {"in", "not"}:
                i += 1
                if t.text == "not":
                    expect("kw", "in")
                expect("lparen")
                items = [expect("lit").value]
                while peek() is not None and peek().kind == "comma":
                    i += 1
                    items.append(expect("lit").value)
                expect("rparen")
                if any(x.kind in {"null", "list"} for x in items):
                    raise SoqlError("unexpected token: 'null' (IN takes literal values)")
                q.where.append((f, "not in" if t.text == "not" else "in", Literal("list", items)))
                if peek() is not None and peek().kind == "kw" and peek().text == "and":
                    i += 1
                    continue
                break
            op = expect("op").text
            lit = expect("lit").value
            if lit.kind == "null" and op not in {"=", "!=", "<>"}:
                raise SoqlError("unexpected token: 'null' (only = and != compare with null)")
            q.where.append((f, "!=" if op == "<>" else op, lit))
            if peek() is not None and peek().kind == "kw" and peek().text == "and":
                i += 1
                continue
            break
    if peek() is not None and peek().kind == "kw" and peek().text == "order":
        i += 1
        expect("kw", "by")
        while True:
            f = expect("word").text
            desc = False
            if peek() is not None and peek().kind == "kw" and peek().text in {"asc", "desc"}:
                desc = peek().text == "desc"
                i += 1
            nulls_last = desc  # SOQL default: nulls first ascending, last descending
            if peek() is not None and peek().kind == "kw" and peek().text == "nulls":
                i += 1
                t = peek()
                if t is None or t.kind != "kw" or t.text not in {"first", "last"}:
                    raise SoqlError("unexpected token after NULLS (expecting FIRST or LAST)")
                nulls_last = t.text == "last"
                i += 1
            q.order.append((f, desc, nulls_last))
            if peek() is not None and peek().kind == "comma":
                i += 1
                continue
            break
    if peek() is not None and peek().kind == "kw" and peek().text == "limit":
        i += 1
        t = expect("lit")
        if t.value.kind != "num" or t.value.value != int(t.value.value) or t.value.value < 0:
            raise SoqlError(f"unexpected token: '{t.text}' (LIMIT needs a non-negative integer)")
        q.limit = int(t.value.value)
    if peek() is not None:
        raise SoqlError(f"unexpected token: '{peek().text}'")
    return q


def _coerce_for(lit: Literal, value: Any) -> Any:
    """The record value in the literal's domain, or a sentinel when it cannot be compared."""
    if value is None:
        return None
    try:
        if lit.kind == "datetime":
            return _parse_dt(str(value))
        if lit.kind == "date":
            text = str(value)
            return _parse_dt(text).date() if "T" in text else date.fromisoformat(text[:10])
        if lit.kind == "num":
            if isinstance(value, bool):
                return _INCOMPARABLE
            return float(value)
        if lit.kind == "bool":
            return value if isinstance(value, bool) else _INCOMPARABLE
        if lit.kind == "str":
            return str(value).lower()
    except (ValueError, TypeError):
        return _INCOMPARABLE
    return _INCOMPARABLE


_INCOMPARABLE = object()
_OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _matches(record: dict[str, Any], cond: tuple[str, str, Literal]) -> bool:
    f, op, lit = cond
    value = record.get(f)
    if lit.kind == "list":  # a null never matches IN and always matches NOT IN (like != null)
        hit = any(_matches(record, (f, "=", x)) for x in lit.value)
        if value is None:
            return op == "not in"
        return hit if op == "in" else not hit
    if lit.kind == "null":
        return (value is None) == (op == "=")
    if value is None:
        return op == "!="
    v = _coerce_for(lit, value)
    if v is _INCOMPARABLE:
        return op == "!="
    want = lit.value.lower() if lit.kind == "str" else lit.value
    try:
        return bool(_OPS[op](v, want))
    except TypeError:
        return False


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, int | float):
        return (0, float(value), "")
    text = str(value)
    try:
        return (1, _parse_dt(text).timestamp(), "") if "T" in text else (2, 0.0, text.lower())
    except ValueError:
        return (2, 0.0, text.lower())


def run_query(
    records: list[dict[str, Any]], q: Query, known_fields: set[str], include_deleted: bool
) -> list[dict]:
    canon = {f.lower(): f for f in known_fields}

    def field_name(name: str) -> str:
        if name.lower() not in canon:
            raise SoqlError(
                f"\n{name}\n^\nERROR at Row:1:Column:1\nNo such column '{name}' on entity '{q.sobject}'.",
                "INVALID_FIELD",
            )
        return canon[name.lower()]

    fields = []
    for f in q.fields:
        c = field_name(f)
        if c not in fields:
            fields.append(c)
    where = [(field_name(f), op, lit) for f, op, lit in q.where]
    order = [(field_name(f), d, n) for f, d, n in q.order]
    rows = [r for r in records if include_deleted or not r.get("IsDeleted")]
    rows = [r for r in rows if all(_matches(r, c) for c in where)]
    for f, desc, nulls_last in reversed(order):  # stable sorts, last key first
        nonnull = [r for r in rows if r.get(f) is not None]
        nulls = [r for r in rows if r.get(f) is None]
        nonnull.sort(key=lambda r: _sort_key(r[f]), reverse=desc)
        rows = nonnull + nulls if nulls_last else nulls + nonnull
    if q.limit is not None:
        rows = rows[: q.limit]
    return [{f: r.get(f) for f in fields} for r in rows]


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


class SourceData:
    """The generator's source files, read once on first use."""

    def __init__(self, data_dir: Path):
        data_dir = Path(data_dir)
        self.root = data_dir / "source" if (data_dir / "source").is_dir() else data_dir
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    def _load(self, key: str, rel: str, default: Any) -> Any:
        with self._lock:
            if key not in self._cache:
                path = self.root / rel
                self._cache[key] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else default
            return self._cache[key]

    def sobject(self, name: str) -> list[dict[str, Any]]:
        return self._load(f"sf:{name}", f"salesforce/{name}.json", [])

    def sobject_fields(self, name: str) -> set[str]:
        with self._lock:
            key = f"sffields:{name}"
            if key in self._cache:
                return self._cache[key]
        fields = set(SF_FIELDS.get(name, ()))
        for r in self.sobject(name):
            fields.update(r.keys())
        fields.discard("attributes")
        with self._lock:
            self._cache[f"sffields:{name}"] = fields
        return fields

    def surveys(self) -> list[dict[str, Any]]:
        return self._load("q:surveys", "qualtrics/surveys.json", [])

    def directory_contacts(self) -> list[dict[str, Any]]:
        return self._load("q:contacts", "qualtrics/directory_contacts.json", [])

    def contact_modified(self) -> list[datetime]:
        """Each directory contact's ``lastModifiedDate`` (UTC), in directory order: the contact's
        own field when the file carries one, else the ``SystemModstamp`` of the CRM contact it
        mirrors (``extRef``: the demo's directory is synced from the CRM), else 2000-01-01."""
        contacts = self.directory_contacts()
        with self._lock:
            cached = self._cache.get("q:contact_modified")
        if cached is not None:
            return cached
        crm = {c.get("Id"): c.get("SystemModstamp") for c in self.sobject("Contact")}
        out = []
        for c in contacts:
            raw = c.get("lastModifiedDate") or crm.get(c.get("extRef"))
            try:
                out.append(_parse_dt(str(raw)) if raw else _EPOCH)
            except ValueError:
                out.append(_EPOCH)
        with self._lock:
            self._cache["q:contact_modified"] = out
        return out

    def distributions(self) -> list[dict[str, Any]]:
        return self._load("q:distributions", "qualtrics/distributions.json", [])

    def distribution_ids(self) -> set[Any]:
        dists = self.distributions()
        with self._lock:
            if "q:distribution_ids" not in self._cache:
                self._cache["q:distribution_ids"] = {d.get("id") for d in dists}
            return self._cache["q:distribution_ids"]

    def distribution_history(self) -> dict[str, list[dict[str, Any]]]:
        return self._load("q:history", "qualtrics/distribution_history.json", {})

    def responses(self, survey_id: str) -> list[dict[str, Any]]:
        return self._load(f"q:responses:{survey_id}", f"qualtrics/responses/{survey_id}.json", [])

    def recorded(self, survey_id: str) -> list[datetime | None]:
        """Each response's ``values.recordedDate`` (UTC; None when unreadable: no window holds it),
        in file order, parsed once per survey (an export in windows filters the same file often)."""
        rows = self.responses(survey_id)
        key = f"q:recorded:{survey_id}"
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        out: list[datetime | None] = []
        for r in rows:
            try:
                out.append(_parse_dt(str((r.get("values") or {}).get("recordedDate"))))
            except ValueError:
                out.append(None)
        with self._lock:
            self._cache[key] = out
        return out

    def preload(self) -> None:
        """Read every source file now instead of on first use: a benchmark then times the
        client against a source system that has its data ready, not the parsing of fixtures."""
        for path in sorted((self.root / "salesforce").glob("*.json")):
            self.sobject_fields(path.stem)
        for s in self.surveys():
            self.recorded(s.get("id"))
        self.directory_contacts()
        self.contact_modified()
        self.distribution_ids()
        self.distribution_history()


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_SEARCH_OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _dumps(obj: Any, compact: bool = True) -> bytes:
    """JSON bytes (msgspec when installed: several times faster than the stdlib on big pages)."""
    if _fast_encode is not None:
        try:
            return _fast_encode(obj)
        except (TypeError, ValueError, OverflowError):
            pass  # something msgspec does not encode (NaN is fine; e.g. huge ints): the stdlib
    if compact:
        return json.dumps(obj, separators=(",", ":")).encode()
    return json.dumps(obj).encode()


def _distribution_survey(d: dict[str, Any]) -> str | None:
    link = d.get("surveyLink")
    if isinstance(link, dict) and link.get("surveyId"):
        return link["surveyId"]
    return d.get("surveyId")


# ----------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class _Export:
    survey_id: str
    start: datetime | None
    end: datetime | None
    polls: int = 0
    file_id: str | None = None
    job: Any = None  # the background thread building the file (an export job runs asynchronously)
    blob: bytes | None = None
    error: BaseException | None = None


@dataclass
class _BulkJob:
    """A Bulk API 2.0 query job: created ``UploadComplete``, ``InProgress`` while polled, then
    ``JobComplete`` (or ``Failed`` / ``Aborted``). Its rows are selected in a background thread."""

    id: str
    operation: str  # query | queryAll
    sobject: str
    query: Query
    api_version: str
    created: str
    state: str = "UploadComplete"
    polls: int = 0
    fault: str | None = None  # "Failed" / "Aborted": the state the job ends in (a test's fault)
    rows: list[dict[str, Any]] | None = None
    fields: list[str] = field(default_factory=list)
    job: Any = None
    error: BaseException | None = None

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": "005000000000000AAA",
            "createdDate": self.created,
            "systemModstamp": self.created,
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version[1:]),
            "jobType": "V2Query",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
            "numberRecordsProcessed": len(self.rows) if self.state == "JobComplete" and self.rows is not None else 0,
            "retries": 0,
            "totalProcessingTime": 0,
        }
        if self.state == "Failed":
            body["errorMessage"] = "InternalServerError: the query job failed while processing its chunks"
        return body


def _csv_cell(v: Any) -> str:
    """One value of a Bulk API 2.0 CSV result: null is an empty field, text is quoted (quotes
    doubled), booleans ``true``/``false``, numbers as their JSON text."""
    if v is None:
        return ""
    if v.__class__ is not str:
        if v is True or v is False:
            v = "true" if v else "false"
        elif isinstance(v, int | float):
            v = repr(v)
        else:
            v = json.dumps(v, sort_keys=True)
    return '"' + v.replace('"', '""') + '"'


def bulk_csv(fields: list[str], rows: list[dict[str, Any]]) -> bytes:
    """The CSV of a result set: a quoted header row, one line per record, LF line endings."""
    cell = _csv_cell
    lines = [",".join(cell(f) for f in fields)]
    lines.extend(",".join([cell(r.get(f)) for f in fields]) for r in rows)
    return ("\n".join(lines) + "\n").encode("utf-8")


BULK_DEFAULT_MAX_RECORDS = 50_000
BULK_TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})


class DemoServer:
    """Serves ``data_dir`` over HTTP on ``host:port`` (0 = a free port) in a background thread.

    ``bulk_polls``: the polls a Bulk API 2.0 query job answers ``InProgress`` before it is
    complete; ``bulk_faults``: SObject -> ``Failed`` or ``Aborted``, the state its query jobs end
    in (fault injection); ``search_depth``: how deep XM Directory contact searches page (the
    documented 10,000; past it a search answers 400)."""

    def __init__(
        self,
        data_dir: Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        page_size: int | None = None,
        export_polls: int = 2,
        bulk_polls: int = 2,
        bulk_faults: dict[str, str] | None = None,
        search_depth: int = 10_000,
    ):
        if not token:
            raise ValueError("a demo server needs a token")
        self.data = SourceData(Path(data_dir))
        self.token = token
        self.host, self.port = host, port
        self.page_size = page_size
        self.export_polls = max(1, export_polls)
        self.bulk_polls = max(0, bulk_polls)
        self.bulk_faults = dict(bulk_faults or {})
        self.search_depth = search_depth
        self._bulk_jobs: dict[str, _BulkJob] = {}
        self.base_url: str | None = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._cursors: dict[
            str, tuple[list[dict], str, int, str]
        ] = {}  # locator -> rows, sobject, batch, kind
        self._exports: dict[str, _Export] = {}
        self._files: dict[str, tuple[str, bytes]] = {}  # fileId -> survey id, zip bytes
        self.request_count = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> str:
        if self._httpd is not None:
            return self.base_url  # type: ignore[return-value]
        server = self

        class Handler(_Handler):
            demo = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.port = port
        self.base_url = f"http://{host}:{port}"
        # shutdown() waits for serve_forever's next poll: at the default 0.5 s every stop took
        # up to half a second (a test suite starts and stops hundreds of these)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="cxloop-demo-server", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def serve_forever(self) -> None:
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paging helpers -------------------------------------------------------------------
    def _page(self, elements: list, query: dict[str, str], path: str) -> dict[str, Any]:
        try:
            size = int(query.get("pageSize") or self.page_size or QUALTRICS_DEFAULT_PAGE)
        except ValueError:
            raise _HTTPError(400, "Invalid pageSize", "QVal_1") from None
        if size < 1:
            raise _HTTPError(400, "Invalid pageSize", "QVal_1")
        offset = 0
        if query.get("skipToken"):
            try:
                offset = int(base64.urlsafe_b64decode(query["skipToken"].encode()).decode().split(":")[1])
            except (ValueError, IndexError, UnicodeDecodeError):
                raise _HTTPError(400, "Invalid skipToken", "QVal_1") from None
        chunk = elements[offset : offset + size]
        next_page = None
        if offset + size < len(elements):
            token = base64.urlsafe_b64encode(f"skip:{offset + size}".encode()).decode()
            params = {k: v for k, v in query.items() if k != "skipToken"}
            params["skipToken"] = token
            next_page = f"{self.base_url}{path}?{urlencode(params)}"
        return {"elements": chunk, "nextPage": next_page}

    def _sf_batch(self, header: str | None) -> int:
        default = self.page_size or SF_DEFAULT_BATCH
        if not header:
            return default
        m = re.search(r"batchSize\s*=\s*(\d+)", header, re.IGNORECASE)
        if not m:
            return default
        n = int(m.group(1))
        if self.page_size:  # a test server with small pages: honour small sizes too
            return max(1, min(SF_MAX_BATCH, n))
        return max(SF_MIN_BATCH, min(SF_MAX_BATCH, n))

    def _sf_page(self, version: str, locator: str, offset: int) -> dict[str, Any]:
        with self._lock:
            entry = self._cursors.get(locator)
        if entry is None:
            raise _HTTPError(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        rows, sobject, batch, kind = entry
        if offset < 0 or offset > len(rows):
            raise _HTTPError(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
        chunk = rows[offset : offset + batch]
        records = [
            {
                "attributes": {
                    "type": sobject,
                    "url": f"/services/data/{version}/sobjects/{sobject}/{r.get('Id')}",
                },
                **r,
            }
            for r in chunk
        ]
        body: dict[str, Any] = {
            "totalSize": len(rows),
            "done": offset + batch >= len(rows),
            "records": records,
        }
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/{version}/{kind}/{locator}-{offset + batch}"
        else:
            with self._lock:
                self._cursors.pop(locator, None)
        return body


class _Handler(BaseHTTPRequestHandler):
    demo: DemoServer
    protocol_version = "HTTP/1.1"
    server_version = "cxloop-demo"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", extra: dict | None = None
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, _dumps(obj))

    def _authorized(self, qualtrics: bool) -> bool:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and secrets.compare_digest(auth[7:].strip(), self.demo.token):
            return True
        api_token = self.headers.get("X-API-TOKEN")
        return bool(qualtrics and api_token and secrets.compare_digest(api_token.strip(), self.demo.token))

    def _qualtrics_error(self, status: int, message: str, code: str) -> None:
        phrase = HTTPStatus(status).phrase
        self._json(
            status,
            {
                "meta": {
                    "httpStatus": f"{status} - {phrase}",
                    "requestId": str(uuid.uuid4()),
                    "error": {"errorMessage": message, "errorCode": code},
                }
            },
        )

    def _qualtrics_ok(self, result: Any) -> None:
        self._json(
            200, {"result": result, "meta": {"httpStatus": "200 - OK", "requestId": str(uuid.uuid4())}}
        )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        with self.demo._lock:
            self.demo.request_count += 1
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = self._read_body() if method in {"POST", "PUT", "PATCH"} else b""
        # -- HubSpot (cxloop.demo.hubspot_api): /crm/v3, /crm/v4 routes, and injected faults for
        # -- any route when a FaultPlan is configured; otherwise a no-op for the routes below.
        if hubspot_api.intercept(self, method, path, body):
            return
        # -- end HubSpot
        if path.startswith(QUALTRICS_PREFIX + "/") or path == QUALTRICS_PREFIX:
            if not self._authorized(qualtrics=True):
                return self._qualtrics_error(
                    401, "Authentication failed: missing or invalid token", "AUTH_1.0"
                )
            try:
                return self._qualtrics(method, path[len(QUALTRICS_PREFIX) :], query, body)
            except _HTTPError as e:
                return self._qualtrics_error(e.status, e.message, e.code)
        if path.startswith(SALESFORCE_PREFIX):
            if not self._authorized(qualtrics=False):
                return self._json(
                    401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
                )
            try:
                return self._salesforce(method, path[len(SALESFORCE_PREFIX) :], query, body)
            except _HTTPError as e:
                return self._json(e.status, [{"message": e.message, "errorCode": e.code}])
        self._json(404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}])

    # -- Qualtrics ------------------------------------------------------------------------
    def _qualtrics(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        demo, data = self.demo, self.demo.data
        seg = [s for s in path.split("/") if s]

        def need(m: str) -> None:
            if method != m:
                raise _HTTPError(405, f"Method {method} not allowed", "QVal_MethodNotAllowed")

        if seg == ["surveys"]:
            need("GET")
            return self._qualtrics_ok(demo._page(data.surveys(), query, QUALTRICS_PREFIX + path))
        if len(seg) == 3 and seg[0] == "directories" and seg[2] == "contacts":
            need("GET")
            contacts = data.directory_contacts()
            if query.get("includeEmbedded", "").lower() != "true":
                contacts = [{k: v for k, v in c.items() if k != "embeddedData"} for c in contacts]
            return self._qualtrics_ok(demo._page(contacts, query, QUALTRICS_PREFIX + path))
        if len(seg) == 4 and seg[0] == "directories" and seg[2] == "contacts" and seg[3] == "search":
            need("POST")
            return self._search_contacts(query, body, QUALTRICS_PREFIX + path)
        if seg == ["distributions"]:
            need("GET")
            survey_id = query.get("surveyId")
            if not survey_id:
                raise _HTTPError(400, "surveyId is required", "QVal_1")
            rows = [d for d in data.distributions() if _distribution_survey(d) == survey_id]
            return self._qualtrics_ok(demo._page(rows, query, QUALTRICS_PREFIX + path))
        if len(seg) == 3 and seg[0] == "distributions" and seg[2] == "history":
            need("GET")
            history = data.distribution_history()
            if seg[1] not in history and seg[1] not in data.distribution_ids():
                raise _HTTPError(404, f"Distribution {seg[1]} not found", "GS_1")
            return self._qualtrics_ok(demo._page(history.get(seg[1], []), query, QUALTRICS_PREFIX + path))
        if len(seg) >= 3 and seg[0] == "surveys" and seg[2] == "export-responses":
            survey_id = seg[1]
            if survey_id not in {s.get("id") for s in data.surveys()}:
                raise _HTTPError(404, f"Survey {survey_id} not found", "GS_1")
            if len(seg) == 3:
                need("POST")
                return self._start_export(survey_id, body)
            if len(seg) == 4:
                need("GET")
                return self._export_progress(survey_id, seg[3])
            if len(seg) == 5 and seg[4] == "file":
                need("GET")
                with demo._lock:
                    entry = demo._files.get(seg[3])
                if entry is None or entry[0] != survey_id:
                    raise _HTTPError(404, f"File {seg[3]} not found", "GS_1")
                return self._send(200, entry[1], "application/zip")
        raise _HTTPError(404, f"Path /API/v3{path} not found", "GS_NotFound")

    def _search_contacts(self, query: dict[str, str], body: bytes, path: str) -> None:
        """Search Directory Contacts: ``{"filter": {"filterType": "lastModifiedDate", "comparison":
        "gt"|"gte"|"lt"|"lte"|"eq"|"ne", "value": ISO-8601}}`` (the demo's one filter type), paged
        like the list with ``skipToken``; paging past ``search_depth`` contacts answers 400 (use
        the contact export for more)."""
        data, demo = self.demo.data, self.demo
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise _HTTPError(400, "Request body is not valid JSON", "QVal_1") from None
        flt = params.get("filter") if isinstance(params, dict) else None
        if not isinstance(flt, dict) or flt.get("filterType") != "lastModifiedDate":
            raise _HTTPError(400, "filter.filterType must be lastModifiedDate (the demo's search)", "QVal_1")
        op = _SEARCH_OPS.get(str(flt.get("comparison")))
        if op is None:
            raise _HTTPError(400, f"Invalid comparison {flt.get('comparison')!r}", "QVal_1")
        try:
            value = _parse_dt(str(flt.get("value")))
        except ValueError:
            raise _HTTPError(400, "Invalid filter value: an ISO-8601 date-time", "QVal_1") from None
        compare = _OPS[op]
        contacts = data.directory_contacts()
        hits = [
            c for c, modified in zip(contacts, data.contact_modified(), strict=True) if compare(modified, value)
        ]
        if query.get("includeEmbedded", "").lower() != "true":
            hits = [{k: v for k, v in c.items() if k != "embeddedData"} for c in hits]
        page = demo._page(hits, query, path)
        if query.get("skipToken"):
            offset = int(base64.urlsafe_b64decode(query["skipToken"].encode()).decode().split(":")[1])
            if offset >= demo.search_depth:
                raise _HTTPError(400, f"Search depth limit: paging beyond {demo.search_depth} contacts", "QVal_1")
        self._qualtrics_ok(page)  # the next page is POSTed to nextPage with the same filter

    def _start_export(self, survey_id: str, body: bytes) -> None:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise _HTTPError(400, "Request body is not valid JSON", "QVal_1") from None
        if not isinstance(params, dict):
            raise _HTTPError(400, "Request body must be an object", "QVal_1")
        if params.get("format") != "json":
            raise _HTTPError(400, "format must be one of: json (the demo serves json only)", "QVal_1")
        bounds = {}
        for key in ("startDate", "endDate"):
            if params.get(key) is not None:
                try:
                    bounds[key] = _parse_dt(str(params[key]))
                except ValueError:
                    raise _HTTPError(400, f"Invalid {key}", "QVal_1") from None
        progress_id = "ES_" + secrets.token_hex(8)
        export = _Export(survey_id, bounds.get("startDate"), bounds.get("endDate"))

        def build() -> None:
            try:
                export.blob = self._export_zip(export)
            except BaseException as e:  # noqa: BLE001 - reported by the progress request
                export.error = e

        export.job = threading.Thread(target=build, name=f"export-{progress_id}", daemon=True)
        with self.demo._lock:
            self.demo._exports[progress_id] = export
        export.job.start()
        self._qualtrics_ok({"progressId": progress_id, "percentComplete": 0.0, "status": "inProgress"})

    def _export_progress(self, survey_id: str, progress_id: str) -> None:
        demo = self.demo
        with demo._lock:
            export = demo._exports.get(progress_id)
            if export is None or export.survey_id != survey_id:
                raise _HTTPError(404, f"Export {progress_id} not found", "GS_1")
            export.polls += 1
            polls = export.polls
        if polls < demo.export_polls:
            pct = round(100.0 * polls / demo.export_polls, 1)
            return self._qualtrics_ok({"percentComplete": pct, "status": "inProgress"})
        if export.file_id is None:
            export.job.join()  # the demo's file is complete after export_polls polls, ready or not
            if export.error is not None:
                raise export.error
            file_id = secrets.token_hex(4) + "-" + str(uuid.uuid4())
            with demo._lock:
                if export.file_id is None:
                    demo._files[file_id] = (survey_id, export.blob)
                    export.file_id = file_id
        self._qualtrics_ok({"fileId": export.file_id, "percentComplete": 100.0, "status": "complete"})

    def _export_zip(self, export: _Export) -> bytes:
        data = self.demo.data
        rows = data.responses(export.survey_id)
        if export.start or export.end:
            recorded = data.recorded(export.survey_id)  # parsed once per survey, not per export
            lo, hi = export.start, export.end
            rows = [
                r
                for r, t in zip(rows, recorded, strict=True)
                if t is not None and (lo is None or t >= lo) and (hi is None or t < hi)
            ]
        name = next(
            (s.get("name") for s in data.surveys() if s.get("id") == export.survey_id), export.survey_id
        )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr(f"{name}.json", _dumps({"responses": rows}, compact=False))
        return buf.getvalue()

    # -- Salesforce -----------------------------------------------------------------------
    def _salesforce(self, method: str, path: str, query: dict[str, str], body: bytes = b"") -> None:
        seg = [s for s in path.split("/") if s]
        if not seg or not re.fullmatch(r"v\d+\.\d", seg[0]):
            raise _HTTPError(404, "The requested resource does not exist", "NOT_FOUND")
        version = seg[0]
        if len(seg) >= 3 and seg[1] == "jobs" and seg[2] == "query":
            return self._bulk(method, version, seg[3:], query, body)
        if method != "GET":
            raise _HTTPError(
                405, f"HTTP Method '{method}' not allowed. Allowed are GET", "METHOD_NOT_ALLOWED"
            )
        if len(seg) == 2 and seg[1] in {"query", "queryAll"}:
            soql = query.get("q")
            if not soql:
                raise _HTTPError(400, "A query string has to be specified", "MALFORMED_QUERY")
            return self._json(200, self._run_soql(version, soql, seg[1] == "queryAll"))
        if len(seg) == 3 and seg[1] in {"query", "queryAll"}:
            locator, _, offset = seg[2].rpartition("-")
            if not locator or not offset.isdigit():
                raise _HTTPError(400, "invalid query locator", "INVALID_QUERY_LOCATOR")
            return self._json(200, self.demo._sf_page(version, locator, int(offset)))
        raise _HTTPError(404, "The requested resource does not exist", "NOT_FOUND")

    def _parse(self, soql: str) -> Query:
        q = parse_soql(soql)
        sobject = next((o for o in SF_OBJECTS if o.lower() == q.sobject.lower()), None)
        if sobject is None:
            raise SoqlError(
                f"\n{q.sobject}\n^\nERROR at Row:1:Column:1\nsObject type '{q.sobject}' is not supported.",
                "INVALID_TYPE",
            )
        q.sobject = sobject
        return q

    def _run_soql(self, version: str, soql: str, include_deleted: bool) -> dict[str, Any]:
        demo = self.demo
        try:
            q = self._parse(soql)
            sobject = q.sobject
            rows = run_query(
                demo.data.sobject(sobject), q, demo.data.sobject_fields(sobject), include_deleted
            )
        except SoqlError as e:
            raise _HTTPError(400, str(e), e.code) from None
        if q.count:  # SELECT COUNT(): the number of matching records, no records
            return {"totalSize": len(rows), "done": True, "records": []}
        batch = demo._sf_batch(self.headers.get("Sforce-Query-Options"))
        locator = "01g" + secrets.token_hex(8).upper()[:15]
        with demo._lock:
            demo._cursors[locator] = (rows, sobject, batch, "queryAll" if include_deleted else "query")
        return demo._sf_page(version, locator, 0)

    # -- Salesforce Bulk API 2.0 query jobs ----------------------------------------------------
    def _bulk(self, method: str, version: str, rest: list[str], query: dict[str, str], body: bytes) -> None:
        demo = self.demo
        if not rest:
            if method == "POST":
                return self._bulk_create(version, body)
            if method == "GET":
                with demo._lock:
                    jobs = [j.info() for j in demo._bulk_jobs.values()]
                return self._json(200, {"done": True, "records": jobs, "nextRecordsUrl": None})
            raise _HTTPError(405, f"HTTP Method '{method}' not allowed. Allowed are GET,POST", "METHOD_NOT_ALLOWED")
        with demo._lock:
            job = demo._bulk_jobs.get(rest[0])
        if job is None:
            raise _HTTPError(404, "The requested resource does not exist", "NOT_FOUND")
        if len(rest) == 1:
            if method == "GET":
                return self._json(200, self._bulk_poll(job))
            if method == "PATCH":
                try:
                    wanted = json.loads(body or b"{}").get("state")
                except (ValueError, AttributeError):
                    raise _HTTPError(400, "Request body is not valid JSON", "JSON_PARSER_ERROR") from None
                if wanted != "Aborted":
                    raise _HTTPError(400, "A query job can only be set to Aborted", "INVALIDJOBSTATE")
                with demo._lock:
                    if job.state in BULK_TERMINAL:
                        raise _HTTPError(400, f"Job is already {job.state}", "INVALIDJOBSTATE")
                    job.state = "Aborted"
                return self._json(200, job.info())
            if method == "DELETE":
                with demo._lock:
                    if job.state not in BULK_TERMINAL:
                        raise _HTTPError(
                            400, "Only a JobComplete, Aborted or Failed job can be deleted", "INVALIDJOBSTATE"
                        )
                    demo._bulk_jobs.pop(job.id, None)
                return self._send(204, b"")
            raise _HTTPError(
                405, f"HTTP Method '{method}' not allowed. Allowed are GET,PATCH,DELETE", "METHOD_NOT_ALLOWED"
            )
        if len(rest) == 2 and rest[1] == "results":
            if method != "GET":
                raise _HTTPError(405, f"HTTP Method '{method}' not allowed. Allowed are GET", "METHOD_NOT_ALLOWED")
            return self._bulk_results(job, version, query)
        raise _HTTPError(404, "The requested resource does not exist", "NOT_FOUND")

    def _bulk_create(self, version: str, body: bytes) -> None:
        demo = self.demo
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            raise _HTTPError(400, "Request body is not valid JSON", "JSON_PARSER_ERROR") from None
        if not isinstance(params, dict):
            raise _HTTPError(400, "Request body must be a JSON object", "JSON_PARSER_ERROR")
        operation = params.get("operation")
        if operation not in {"query", "queryAll"}:
            raise _HTTPError(400, "operation must be query or queryAll", "INVALIDJOB")
        if params.get("contentType", "CSV") != "CSV":
            raise _HTTPError(400, "contentType must be CSV", "INVALIDJOB")
        if params.get("columnDelimiter", "COMMA") != "COMMA" or params.get("lineEnding", "LF") != "LF":
            raise _HTTPError(400, "the demo serves COMMA-delimited, LF-terminated CSV only", "INVALIDJOB")
        soql = params.get("query")
        if not soql or not isinstance(soql, str):
            raise _HTTPError(400, "A query has to be specified", "INVALIDJOB")
        try:
            q = self._parse(soql)
            if q.count:
                raise SoqlError("Aggregate Relationships not supported in Bulk Query", "INVALIDJOB")
            data = demo.data
            known = data.sobject_fields(q.sobject)
            run_query([], q, known, True)  # field names checked now: a bad field fails the create
        except SoqlError as e:
            raise _HTTPError(400, str(e), e.code) from None
        job = _BulkJob(
            id="750" + secrets.token_hex(8).upper()[:15],
            operation=operation,
            sobject=q.sobject,
            query=q,
            api_version=version,
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            fault=demo.bulk_faults.get(q.sobject),
        )

        def select() -> None:
            try:
                job.rows = run_query(data.sobject(q.sobject), q, known, operation == "queryAll")
                canon = {f.lower(): f for f in known}
                job.fields = list(dict.fromkeys(canon[f.lower()] for f in q.fields))
            except BaseException as e:  # noqa: BLE001 - the job then fails
                job.error = e

        job.job = threading.Thread(target=select, name=f"bulk-{job.id}", daemon=True)
        with demo._lock:
            demo._bulk_jobs[job.id] = job
        job.job.start()
        self._json(200, job.info())

    def _bulk_poll(self, job: _BulkJob) -> dict[str, Any]:
        demo = self.demo
        with demo._lock:
            if job.state in BULK_TERMINAL:
                return job.info()
            job.polls += 1
            polls = job.polls
        if polls <= demo.bulk_polls:
            with demo._lock:
                if job.state not in BULK_TERMINAL:
                    job.state = "InProgress"
                return job.info()
        job.job.join()
        with demo._lock:
            if job.state not in BULK_TERMINAL:
                job.state = "Failed" if job.error is not None else (job.fault or "JobComplete")
            return job.info()

    def _bulk_results(self, job: _BulkJob, version: str, query: dict[str, str]) -> None:
        if version != job.api_version:
            raise _HTTPError(409, "Use the API version the job was created with", "INVALIDVERSION")
        if job.state != "JobComplete" or job.rows is None:
            raise _HTTPError(400, f"Job {job.id} is not JobComplete (it is {job.state})", "INVALIDJOBSTATE")
        try:
            size = int(query.get("maxRecords") or BULK_DEFAULT_MAX_RECORDS)
        except ValueError:
            raise _HTTPError(400, "maxRecords must be a positive integer", "INVALIDPARAMETER") from None
        if size < 1:
            raise _HTTPError(400, "maxRecords must be a positive integer", "INVALIDPARAMETER")
        offset = 0
        if query.get("locator"):
            try:
                offset = int(base64.b64decode(query["locator"].encode(), validate=True).decode())
            except (ValueError, UnicodeDecodeError):
                raise _HTTPError(400, "invalid locator", "INVALIDPARAMETER") from None
            if offset < 0 or offset > len(job.rows):
                raise _HTTPError(400, "invalid locator", "INVALIDPARAMETER")
        chunk = job.rows[offset : offset + size]
        end = offset + len(chunk)
        locator = base64.b64encode(str(end).encode()).decode() if end < len(job.rows) else "null"
        self._send(
            200,
            bulk_csv(job.fields, chunk),
            "text/csv",
            {"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(chunk))},
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxloop.demo.server", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the generator's out_dir (or its source/)")
    parser.add_argument("--token", required=True, help="bearer token clients must send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    parser.add_argument("--page-size", type=int, default=None)
    parser.add_argument(
        "--preload", action="store_true", help="read every source file before serving (default: on first use)"
    )
    args = parser.parse_args(argv)
    server = DemoServer(args.data, args.token, host=args.host, port=args.port, page_size=args.page_size)
    if args.preload:
        server.data.preload()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # before the URL is printed: a caller that stops the server as soon as it has read the URL
    # must get the clean exit, not the default SIGTERM death
    signal.signal(signal.SIGTERM, on_term)
    try:
        print(server.start(), flush=True)
        server.serve_forever()
    except KeyboardInterrupt:  # a signal between the print and serve_forever's own handler
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
