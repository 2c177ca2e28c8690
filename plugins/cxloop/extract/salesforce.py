"""Salesforce connector: REST query API -> owners, accounts, contacts, follow_ups, renewals.

SOQL through ``/services/data/<version>/queryAll`` (deleted Accounts and Contacts arrive with
``is_deleted = true``), paging through ``nextRecordsUrl``. Every page is landed raw as
``<landing_dir>/salesforce/<SObject>/page-0001.json``.

Large objects go through Bulk API 2.0 query jobs instead: a ``SELECT COUNT()`` of the window
first; at ``bulk_threshold`` records or more the query becomes a job (``POST jobs/query``, polled
until ``JobComplete``, its CSV result sets read with ``maxRecords`` and the ``Sforce-Locator``
header, each checked against ``Sforce-NumberOfRecords`` and landed raw as
``<SObject>/bulk-0001.csv``, the job deleted after use). ``Failed`` and ``Aborted`` jobs fail the
extraction with one line naming the object and the job. CSV carries text only: the landed text
form is the same as the REST path's (``true``/``false``, numbers as written, empty = null).

Mapping (docs/demo-sources.md):

- owners <- User: Id, Name, Department (team), IsActive, SystemModstamp.
- accounts <- Account.
- contacts <- Contact: ``Email`` becomes ``email_hash`` (HMAC, :mod:`cxloop.extract.pseudonymise`) and
  ``email_domain_valid``; the raw address never enters the frame. ``Buying_Role__c`` maps onto the
  contract's roles through :class:`cxloop.extract.roles.RoleMapper` (job-title fallback).
- follow_ups <- Task with ``Survey_Response_Id__c != null``. The contract has no ``is_deleted`` for
  follow-ups, so Tasks are read with ``query`` (deleted tasks are not follow-ups).
- renewals <- Opportunity with ``Type IN (<renewal types>)`` (source option ``renewal_types``,
  comma-separated; default :data:`cxloop.contract.DEFAULT_RENEWAL_TYPES`, ``Renewal``): Id,
  AccountId, Type, StageName, Amount, ``Previous_ARR__c`` (custom: the ARR up for renewal),
  CloseDate, IsClosed, IsWon, IsDeleted, CreatedDate, SystemModstamp; read with ``queryAll`` so a
  deleted opportunity arrives with ``is_deleted = true``.

Values are passed through as received (a non-numeric ARR stays a string); datetimes become naive
UTC (see :func:`cxloop.extract.frames.timestamp_series`); the validation gate coerces and quarantines.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from cxloop.contract import DEFAULT_RENEWAL_TYPES
from cxloop.extract.frames import ChunkBuffer, ChunkSink, FrameCollector, Landing, safe_name
from cxloop.extract.http_client import HttpClient, RetryPolicy, SourceHTTPError
from cxloop.extract.pseudonymise import email_hash, is_valid_email, pii_key
from cxloop.extract.roles import RoleMapper, configured_role_mapper

log = logging.getLogger(__name__)

TASK_STATUS: dict[str, str] = {
    "not started": "open",
    "open": "open",
    "in progress": "in_progress",
    "waiting on someone else": "in_progress",
    "completed": "completed",
    "deferred": "cancelled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}

# entity: (endpoint, SELECT ... FROM ..., standing filter or None)
QUERIES: dict[str, tuple[str, str, str | None]] = {
    "owners": ("query", "SELECT Id, Name, Department, IsActive, SystemModstamp FROM User", None),
    "accounts": (
        "queryAll",
        "SELECT Id, Name, Segment__c, Region__c, Tier__c, AnnualRecurringRevenue__c, OwnerId, "
        "Renewal_Date__c, Active__c, IsDeleted, CreatedDate, SystemModstamp FROM Account",
        None,
    ),
    "contacts": (
        "queryAll",
        "SELECT Id, AccountId, Email, Title, {role_field}, Active__c, HasOptedOutOfEmail, IsDeleted, "
        "SystemModstamp FROM Contact",
        None,
    ),
    "follow_ups": (
        "query",
        "SELECT Id, WhatId, WhoId, OwnerId, Status, Survey_Response_Id__c, First_Contact_At__c, "
        "CompletedDateTime, CreatedDate, SystemModstamp FROM Task",
        "Survey_Response_Id__c != null",
    ),
    "renewals": (
        "queryAll",
        "SELECT Id, AccountId, Type, StageName, Amount, Previous_ARR__c, CloseDate, IsClosed, IsWon, "
        "IsDeleted, CreatedDate, SystemModstamp FROM Opportunity",
        "Type IN ({renewal_types})",
    ),
}


def soql_datetime(value: datetime) -> str:
    """A SOQL datetime literal (UTC, unquoted)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


ROLE_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")


def parse_renewal_types(option: Any = None) -> tuple[str, ...]:
    """The Opportunity types read as renewals: the ``renewal_types`` option (comma-separated,
    blanks dropped) or :data:`DEFAULT_RENEWAL_TYPES`."""
    if option is None or (isinstance(option, str) and not option.strip()):
        return DEFAULT_RENEWAL_TYPES
    values = option.split(",") if isinstance(option, str) else list(option)
    out = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    return out or DEFAULT_RENEWAL_TYPES


def parse_bulk_threshold(option: Any) -> int | None:
    """The ``bulk_threshold`` option: an integer (0 = always bulk), or None / ``off`` / ``never``
    (REST paging only)."""
    if option is None or (isinstance(option, str) and option.strip().lower() in {"", "off", "never", "none"}):
        return None
    try:
        value = int(option)
    except (TypeError, ValueError):
        raise ValueError(f"salesforce: bulk_threshold {option!r} is not a whole number or 'off'") from None
    return max(0, value)


def soql_string(value: str) -> str:
    """A quoted SOQL string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def build_soql(
    entity: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    role_field: str = "Buying_Role__c",
    types: tuple[str, ...] = DEFAULT_RENEWAL_TYPES,
    form: str = "ordered",
) -> tuple[str, str]:
    """(endpoint, SOQL) for one entity over the half-open change window [since, until).

    ``form="ordered"`` (REST paging): ordered by the composite cursor (SystemModstamp, Id): rows
    sharing a timestamp keep a stable order and a window boundary never splits them, because the
    next window starts at the watermark itself (>=), not after it, and the merge on Id absorbs the
    overlap. ``form="bulk"``: no ORDER BY (Bulk API 2.0 advises against it: it disables PK
    chunking; the window is the filter, order does not matter). ``form="count"``: ``SELECT
    COUNT()`` of the same window."""
    endpoint, select, standing = QUERIES[entity]
    if not ROLE_FIELD_RE.match(role_field):
        raise ValueError(f"salesforce: buying role field {role_field!r} is not a Salesforce field name")
    select = select.replace("{role_field}", role_field)
    if standing and "{renewal_types}" in standing:
        if not types:
            raise ValueError("salesforce: no renewal types configured")
        standing = standing.replace("{renewal_types}", ", ".join(soql_string(t) for t in types))
    conditions = [standing] if standing else []
    if since is not None:
        conditions.append(f"SystemModstamp >= {soql_datetime(since)}")
    if until is not None:
        conditions.append(f"SystemModstamp < {soql_datetime(until)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    if form == "count":
        return endpoint, f"SELECT COUNT() FROM {select.rsplit(' FROM ', 1)[1]}{where}"
    if form == "bulk":
        return endpoint, f"{select}{where}"
    return endpoint, f"{select}{where} ORDER BY SystemModstamp, Id"


def salesforce_error(response: requests.Response) -> str | None:
    """``[{"message", "errorCode"}]`` -> ``"CODE: message"``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        e = body[0]
        return f"{e.get('errorCode', 'ERROR')}: {str(e.get('message', '')).strip()}"
    if isinstance(body, dict) and "error" in body:  # OAuth errors
        return f"{body.get('error')}: {body.get('error_description', '')}"
    return None


#: at this many records (of one entity's window) or more, a Bulk API 2.0 query job reads it
BULK_THRESHOLD = 10_000
BULK_MAX_RECORDS = 50_000  # records per CSV result set (``maxRecords``)
BULK_TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})


class ColumnPage:
    """One CSV result set of a bulk query, by column (``Id`` -> values; a null is None)."""

    __slots__ = ("cols", "n")

    def __init__(self, cols: dict[str, list[Any]], n: int):
        self.cols, self.n = cols, n

    def __len__(self) -> int:
        return self.n

    def column(self, name: str, default: Any = None) -> list[Any]:
        col = self.cols.get(name)
        return list(col) if col is not None else [default] * self.n


def parse_bulk_csv(raw: bytes, what: str) -> ColumnPage:
    """A Bulk API 2.0 CSV result set (header row, quoted fields, LF) -> its columns, all text;
    an empty field is null. An unreadable set raises naming ``what``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not raw.strip():
        return ColumnPage({}, 0)
    end = raw.find(b"\n")
    try:
        header = next(csv.reader([raw[: end if end >= 0 else len(raw)].decode("utf-8")]))
        if len(set(header)) != len(header):
            raise ValueError("repeated column names in the header")
        table = pacsv.read_csv(
            io.BytesIO(raw),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (ValueError, StopIteration, pa.ArrowInvalid) as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise SourceHTTPError("GET", what, 200, f"salesforce: unreadable bulk CSV result set: {reason}") from None
    return ColumnPage({h: table.column(h).to_pylist() for h in header}, table.num_rows)


class SalesforceClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api_version: str = "v60.0",
        batch_size: int | None = None,
        landing_dir: Path | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        bulk_max_records: int = BULK_MAX_RECORDS,
        poll_interval: float = 0.05,
        poll_max_interval: float = 5.0,
        bulk_timeout: float = 1800.0,
        sleep: Any = time.sleep,
    ):
        root = base_url.rstrip("/")
        self.api_version = api_version
        self.http = HttpClient(
            f"{root}/services/data/{api_version}/",
            token,
            source="salesforce",
            error_parser=salesforce_error,
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self.landing = Landing(landing_dir, "salesforce")
        self.batch_size = batch_size
        self.bulk_max_records = bulk_max_records
        self.poll_interval, self.poll_max_interval = poll_interval, poll_max_interval
        self.bulk_timeout = bulk_timeout
        self._sleep = sleep

    def count(self, soql: str, *, include_deleted: bool = False) -> int:
        """The ``totalSize`` of a ``SELECT COUNT()`` query."""
        body, _ = self.http.get_json("queryAll" if include_deleted else "query", params={"q": soql})
        total = body.get("totalSize") if isinstance(body, dict) else None
        if not isinstance(total, int) or isinstance(total, bool):
            raise SourceHTTPError("GET", "query COUNT()", 200, "salesforce: COUNT() answered without a totalSize")
        return total

    # -- Bulk API 2.0 ----------------------------------------------------------------------
    def bulk_pages(
        self,
        soql: str,
        *,
        include_deleted: bool = False,
        land_as: str = "bulk",
        stop: threading.Event | None = None,
    ) -> Iterator[ColumnPage]:
        """Every CSV result set of a Bulk API 2.0 query job (created, polled until complete, read
        with ``maxRecords`` and ``Sforce-Locator``, deleted after use), each landed raw as
        ``<land_as>/bulk-NNNN.csv``."""
        created = self.http.decode(
            self.http.post(
                "jobs/query",
                json={
                    "operation": "queryAll" if include_deleted else "query",
                    "query": soql,
                    "contentType": "CSV",
                    "columnDelimiter": "COMMA",
                    "lineEnding": "LF",
                },
                retry_safe=True,  # a repeated create only costs the org a second job
            )
        )
        job_id = created.get("id") if isinstance(created, dict) else None
        if not job_id or not re.fullmatch(r"[A-Za-z0-9]{15,18}", str(job_id)):
            raise SourceHTTPError("POST", "jobs/query", 200, f"salesforce: bulk query job for {land_as} has no id")
        state = created.get("state")
        try:
            info = self._wait(job_id, land_as, stop)
            state = info.get("state")
            if info.get("state") != "JobComplete":  # stopped: another query failed
                return
            expected = info.get("numberRecordsProcessed")
            locator: str | None = None
            got, n = 0, 1
            while True:
                params: dict[str, Any] = {"maxRecords": self.bulk_max_records}
                if locator:
                    params["locator"] = locator
                resp = self.http.get(f"jobs/query/{job_id}/results", params=params, headers={"Accept": "text/csv"})
                raw = resp.content
                self.landing.write(f"{safe_name(land_as)}/bulk-{n:04d}.csv", raw)
                page = parse_bulk_csv(raw, f"jobs/query/{job_id}/results ({land_as}, set {n})")
                declared = resp.headers.get("Sforce-NumberOfRecords")
                if declared is not None and declared.strip().isdigit() and int(declared) != len(page):
                    raise SourceHTTPError(
                        "GET",
                        f"jobs/query/{job_id}/results",
                        200,
                        f"salesforce: {land_as} result set {n} declares Sforce-NumberOfRecords {declared} "
                        f"but holds {len(page)} records",
                    )
                got += len(page)
                yield page
                locator = resp.headers.get("Sforce-Locator")
                if not locator or locator.strip().lower() == "null" or (stop is not None and stop.is_set()):
                    break
                n += 1
            if isinstance(expected, int) and not (stop is not None and stop.is_set()) and got != expected:
                raise SourceHTTPError(
                    "GET",
                    f"jobs/query/{job_id}/results",
                    200,
                    f"salesforce: bulk job {job_id} ({land_as}) processed {expected} records but {got} were "
                    "received: result sets lost rows",
                )
        finally:
            self._discard(job_id, state)

    def _wait(self, job_id: str, land_as: str, stop: threading.Event | None) -> dict[str, Any]:
        """Poll a job until it is terminal (short first waits, then doubling); raise on Failed or
        Aborted, or when it is not done after ``bulk_timeout`` seconds."""
        deadline = time.monotonic() + self.bulk_timeout
        interval = self.poll_interval
        first = True
        while True:
            if not first:
                self._sleep(interval)
                interval = min(self.poll_max_interval, interval * 2)
            first = False
            info, _ = self.http.get_json(f"jobs/query/{job_id}")
            state = info.get("state") if isinstance(info, dict) else None
            if state == "JobComplete":
                return info
            if state in {"Failed", "Aborted"}:
                why = str(info.get("errorMessage") or "").strip()[:300]
                raise SourceHTTPError(
                    "GET",
                    f"jobs/query/{job_id}",
                    200,
                    f"salesforce: Bulk API 2.0 query job {job_id} for {land_as} ended {state}"
                    + (f": {why}" if why else "")
                    + (
                        "; rerun the extraction (a job is aborted by an admin or another client)"
                        if state == "Aborted"
                        else "; rerun the extraction, or lower the window if it fails again"
                    ),
                )
            if stop is not None and stop.is_set():
                return info
            if time.monotonic() > deadline:
                raise SourceHTTPError(
                    "GET",
                    f"jobs/query/{job_id}",
                    200,
                    f"salesforce: Bulk API 2.0 query job {job_id} for {land_as} not complete after "
                    f"{self.bulk_timeout:.0f}s (state {state})",
                )

    def _discard(self, job_id: str, state: Any) -> None:
        """Abort a job still running, then delete it (best effort: a failure here is logged,
        never raised over the extraction's own outcome)."""
        try:
            if state not in BULK_TERMINAL:
                info, _ = self.http.get_json(f"jobs/query/{job_id}")
                if isinstance(info, dict) and info.get("state") not in BULK_TERMINAL:
                    self.http.request("PATCH", f"jobs/query/{job_id}", json={"state": "Aborted"}, retry_safe=True)
            self.http.request("DELETE", f"jobs/query/{job_id}", retry_safe=True)
        except SourceHTTPError as e:
            log.warning("salesforce: bulk job %s not deleted: %s", job_id, e)

    def pages(
        self,
        soql: str,
        *,
        include_deleted: bool = False,
        land_as: str | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[dict]:
        """Every page of a SOQL query (each landed raw as ``<land_as>/page-NNNN.json``); ends
        early when ``stop`` is set (another query of the same extraction failed)."""
        headers = {"Sforce-Query-Options": f"batchSize={self.batch_size}"} if self.batch_size else None
        endpoint = "queryAll" if include_deleted else "query"
        body, raw = self.http.get_json(endpoint, params={"q": soql}, headers=headers)
        n = 1
        while True:
            if land_as:
                self.landing.write(f"{safe_name(land_as)}/page-{n:04d}.json", raw)
            yield body
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url or (stop is not None and stop.is_set()):
                return
            body, raw = self.http.get_json(next_url, headers=headers)
            n += 1

    def records(self, soql: str, *, include_deleted: bool = False, land_as: str | None = None) -> list[dict]:
        out: list[dict] = []
        total = None
        for page in self.pages(soql, include_deleted=include_deleted, land_as=land_as):
            total = page.get("totalSize", total)
            for r in page.get("records", []):
                r = dict(r)
                r.pop("attributes", None)
                out.append(r)
        if total is not None and total != len(out):
            raise SourceHTTPError(
                "GET", f"query {land_as}", 200, f"totalSize {total} but {len(out)} records received: paging lost rows"
            )
        return out

    def close(self) -> None:
        self.http.close()


def _is_blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def map_owner(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner_id": r.get("Id"),
        "owner_name": r.get("Name"),
        "team": r.get("Department"),
        "is_active": r.get("IsActive"),
        "updated_at": r.get("SystemModstamp"),
    }


def map_account(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": r.get("Id"),
        "account_name": r.get("Name"),
        "segment": r.get("Segment__c"),
        "region": r.get("Region__c"),
        "tier": r.get("Tier__c"),
        "arr": r.get("AnnualRecurringRevenue__c"),
        "owner_id": r.get("OwnerId"),
        "renewal_date": r.get("Renewal_Date__c"),
        "is_active": r.get("Active__c"),
        "is_deleted": r.get("IsDeleted", False),
        "created_at": r.get("CreatedDate"),
        "updated_at": r.get("SystemModstamp"),
    }


def _field(r: dict[str, Any], path: str) -> Any:
    """A field of a record; ``Rel__r.Field`` paths follow the related record."""
    value: Any = r
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def map_contact(r: dict[str, Any], roles: RoleMapper, key: bytes, role_field: str = "Buying_Role__c") -> dict[str, Any]:
    email = r.get("Email")
    has_email = not _is_blank(email)
    role_source = _field(r, role_field)
    return {
        "contact_id": r.get("Id"),
        "account_id": r.get("AccountId"),
        "email_hash": email_hash(email, key) if has_email else None,
        "email_domain_valid": is_valid_email(email) if has_email else None,
        "title": r.get("Title"),
        "buying_role": roles.map(role_source, r.get("Title")),
        "buying_role_source": None if _is_blank(role_source) else role_source,
        "is_active": r.get("Active__c"),
        "opted_out": r.get("HasOptedOutOfEmail"),
        "is_deleted": r.get("IsDeleted", False),
        "updated_at": r.get("SystemModstamp"),
    }


def map_task_status(status: Any) -> Any:
    """Task Status -> follow-up status; an unknown spelling passes through for the gate to judge."""
    if _is_blank(status):
        return None
    return TASK_STATUS.get(str(status).strip().lower(), status)


def map_task(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "follow_up_id": r.get("Id"),
        "response_id": r.get("Survey_Response_Id__c"),
        "account_id": r.get("WhatId"),
        "contact_id": r.get("WhoId"),
        "owner_id": r.get("OwnerId"),
        "created_at": r.get("CreatedDate"),
        "first_contact_at": r.get("First_Contact_At__c"),
        "closed_at": r.get("CompletedDateTime"),
        "status": map_task_status(r.get("Status")),
        "updated_at": r.get("SystemModstamp"),
    }


def map_opportunity(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] for k, v in opportunity_columns([r]).items()}


TIMESTAMPS = {
    "owners": ("updated_at",),
    "accounts": ("created_at", "updated_at"),
    "contacts": ("updated_at",),
    "follow_ups": ("created_at", "first_contact_at", "closed_at", "updated_at"),
    "renewals": ("created_at", "updated_at"),
}
SOBJECT = {
    "owners": "User", "accounts": "Account", "contacts": "Contact", "follow_ups": "Task", "renewals": "Opportunity",
}  # fmt: skip
ENTITIES = ("owners", "accounts", "contacts", "follow_ups", "renewals")


# --------------------------------------------------------------------------- page -> columns
# The same mapping as map_owner/map_account/map_contact/map_task, a page's column at a time.


def _col(records: list[dict[str, Any]] | ColumnPage, name: str, default: Any = None) -> list[Any]:
    if isinstance(records, ColumnPage):
        return records.column(name, default)
    return [r.get(name, default) for r in records]


def owner_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "owner_id": _col(records, "Id"),
        "owner_name": _col(records, "Name"),
        "team": _col(records, "Department"),
        "is_active": _col(records, "IsActive"),
        "updated_at": _col(records, "SystemModstamp"),
    }


def account_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "account_id": _col(records, "Id"),
        "account_name": _col(records, "Name"),
        "segment": _col(records, "Segment__c"),
        "region": _col(records, "Region__c"),
        "tier": _col(records, "Tier__c"),
        "arr": _col(records, "AnnualRecurringRevenue__c"),
        "owner_id": _col(records, "OwnerId"),
        "renewal_date": _col(records, "Renewal_Date__c"),
        "is_active": _col(records, "Active__c"),
        "is_deleted": _col(records, "IsDeleted", False),
        "created_at": _col(records, "CreatedDate"),
        "updated_at": _col(records, "SystemModstamp"),
    }


class ContactMapper:
    """:func:`map_contact` by columns, with the role and e-mail domain checks cached per value."""

    def __init__(self, roles: RoleMapper, key: bytes, role_field: str = "Buying_Role__c"):
        self.roles, self.key, self.role_field = roles, key, role_field
        self._roles: dict[tuple[Any, Any], str] = {}
        self._nested = "." in role_field

    def _role(self, source: Any, title: Any) -> str:
        try:
            k = (source, title)
            role = self._roles.get(k)
        except TypeError:  # an unhashable value: no caching
            return self.roles.map(source, title)
        if role is None:
            role = self._roles[k] = self.roles.map(source, title)
        return role

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
        emails = _col(records, "Email")
        titles = _col(records, "Title")
        sources = (
            [_field(r, self.role_field) for r in records]
            if self._nested and not isinstance(records, ColumnPage)
            else _col(records, self.role_field)  # a bulk CSV names the column by its path
        )
        hashes: list[Any] = []
        valid: list[Any] = []
        for e in emails:
            if _is_blank(e):
                hashes.append(None)
                valid.append(None)
            else:
                hashes.append(email_hash(e, self.key))
                valid.append(is_valid_email(e))
        return {
            "contact_id": _col(records, "Id"),
            "account_id": _col(records, "AccountId"),
            "email_hash": hashes,
            "email_domain_valid": valid,
            "title": titles,
            "buying_role": [self._role(src, t) for src, t in zip(sources, titles, strict=True)],
            "buying_role_source": [None if _is_blank(src) else src for src in sources],
            "is_active": _col(records, "Active__c"),
            "opted_out": _col(records, "HasOptedOutOfEmail"),
            "is_deleted": _col(records, "IsDeleted", False),
            "updated_at": _col(records, "SystemModstamp"),
        }


def task_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "follow_up_id": _col(records, "Id"),
        "response_id": _col(records, "Survey_Response_Id__c"),
        "account_id": _col(records, "WhatId"),
        "contact_id": _col(records, "WhoId"),
        "owner_id": _col(records, "OwnerId"),
        "created_at": _col(records, "CreatedDate"),
        "first_contact_at": _col(records, "First_Contact_At__c"),
        "closed_at": _col(records, "CompletedDateTime"),
        "status": [map_task_status(v) for v in _col(records, "Status")],
        "updated_at": _col(records, "SystemModstamp"),
    }


def opportunity_columns(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {
        "renewal_id": _col(records, "Id"),
        "account_id": _col(records, "AccountId"),
        "renewal_type": _col(records, "Type"),
        "stage_name": _col(records, "StageName"),
        "amount": _col(records, "Amount"),
        "previous_amount": _col(records, "Previous_ARR__c"),
        "close_date": _col(records, "CloseDate"),
        "is_closed": _col(records, "IsClosed"),
        "is_won": _col(records, "IsWon"),
        "is_deleted": _col(records, "IsDeleted", False),
        "created_at": _col(records, "CreatedDate"),
        "updated_at": _col(records, "SystemModstamp"),
    }


def _run(
    base_url: str,
    token: str,
    landing_dir: Path | None,
    api_version: str,
    *,
    buffers: dict[str, Any],
    role_mapper: RoleMapper | None,
    batch_size: int | None,
    retry: RetryPolicy | None,
    since: dict[str, datetime] | None,
    until: datetime | None,
    role_field: str,
    workers: int,
    types: tuple[str, ...] = DEFAULT_RENEWAL_TYPES,
    bulk_threshold: int | None = BULK_THRESHOLD,
    bulk_max_records: int = BULK_MAX_RECORDS,
) -> None:
    """Query every entity of ``buffers`` (concurrently, one thread per query: the queries are
    independent) and hand each page's mapped columns to its buffer."""
    entities = tuple(buffers)
    roles = role_mapper or configured_role_mapper("salesforce")  # config mappings: maps, title rules
    key = pii_key() if "contacts" in entities else b""  # fail fast, before any request
    for entity in entities:  # a bad role field fails before any request too
        build_soql(entity, (since or {}).get(entity), until, role_field=role_field, types=types)
    client = SalesforceClient(
        base_url,
        token,
        api_version=api_version,
        batch_size=batch_size,
        landing_dir=landing_dir,
        retry=retry,
        bulk_max_records=bulk_max_records,
    )
    mappers = {
        "owners": owner_columns,
        "accounts": account_columns,
        "contacts": ContactMapper(roles, key, role_field),
        "follow_ups": task_columns,
        "renewals": opportunity_columns,
    }
    stop = threading.Event()

    def one(entity: str) -> None:
        window = (since or {}).get(entity), until
        endpoint, soql = build_soql(entity, *window, role_field=role_field, types=types)
        deleted = endpoint == "queryAll"
        t0 = time.monotonic()
        n = 0
        total = None
        land_as = SOBJECT[entity]
        bulk = bulk_threshold is not None and (
            bulk_threshold <= 0
            or client.count(
                build_soql(entity, *window, role_field=role_field, types=types, form="count")[1],
                include_deleted=deleted,
            )
            >= bulk_threshold
        )
        if bulk:
            _, bulk_soql = build_soql(entity, *window, role_field=role_field, types=types, form="bulk")
            for rows in client.bulk_pages(bulk_soql, include_deleted=deleted, land_as=land_as, stop=stop):
                n += len(rows)
                buffers[entity].add(mappers[entity](rows))
        else:
            for page in client.pages(soql, include_deleted=deleted, land_as=land_as, stop=stop):
                total = page.get("totalSize", total)
                records = page.get("records") or []
                n += len(records)
                buffers[entity].add(mappers[entity](records))
        if stop.is_set():  # cut short because another query failed: that failure is raised
            return
        if total is not None and total != n:
            raise SourceHTTPError(
                "GET", f"query {land_as}", 200, f"totalSize {total} but {n} records received: paging lost rows"
            )
        buffers[entity].flush()
        log.info("salesforce: %s: %d rows in %.2fs (%s)", entity, n, time.monotonic() - t0, "bulk" if bulk else "rest")

    try:
        if workers <= 1 or len(entities) <= 1:
            for entity in entities:
                one(entity)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(entities)), thread_name_prefix="sf") as pool:
            futures = {entity: pool.submit(one, entity) for entity in entities}
            first: BaseException | None = None
            for entity in entities:  # the first failure in entity order is the one raised
                try:
                    futures[entity].result()
                except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others stop
                    stop.set()
                    first = first or exc
            if first is not None:
                raise first
    finally:
        client.close()


def extract_salesforce(
    base_url: str,
    token: str,
    landing_dir: Path | None = None,
    api_version: str = "v60.0",
    *,
    role_mapper: RoleMapper | None = None,
    batch_size: int | None = None,
    retry: RetryPolicy | None = None,
    entities: tuple[str, ...] = ENTITIES,
    since: dict[str, datetime] | None = None,
    until: datetime | None = None,
    role_field: str = "Buying_Role__c",
    workers: int = 4,
    sink: ChunkSink | None = None,
    chunk_rows: int = 100_000,
    renewal_types: tuple[str, ...] | str | None = None,
    bulk_threshold: int | str | None = BULK_THRESHOLD,
    bulk_max_records: int = BULK_MAX_RECORDS,
) -> dict[str, pd.DataFrame] | None:
    """Extract the CRM entities from Salesforce (or the demo server) into canonical frames.

    ``base_url`` is the instance root (``https://x.my.salesforce.com`` or the demo server's URL).
    ``since`` (per entity) and ``until`` bound the change window on SystemModstamp: ``since``
    inclusive, ``until`` exclusive; no ``since`` means everything.
    ``role_field`` is the Contact field holding the buying role (a custom picklist by default;
    any field or ``Relationship__r.Field`` path the org uses).
    ``batch_size`` sets ``Sforce-Query-Options: batchSize`` (200..2000). Requires
    ``CXLOOP_PII_KEY`` (contacts' e-mail hashing) unless contacts are not extracted.
    ``workers``: how many queries run at once (1: one after the other).
    ``renewal_types``: the Opportunity ``Type`` values that are renewals (a tuple or a
    comma-separated string; default ``Renewal``).
    ``bulk_threshold``: an entity whose window holds this many records or more (a ``SELECT
    COUNT()`` first) is read by a Bulk API 2.0 query job, in CSV result sets of
    ``bulk_max_records``; smaller ones page through REST. 0: always bulk; None (or ``"off"``):
    never. The landed text is the same either way.
    With ``sink`` (the pipeline, through :func:`land_salesforce`) nothing is held whole: every
    ``chunk_rows`` rows of an entity go to ``sink(entity, text table, maxima)`` in their landed
    text form (:func:`cxloop.extract.frames.text_table`) as the pages arrive, and nothing is returned.
    """
    if sink is None:
        buffers: dict[str, Any] = {e: FrameCollector(e, TIMESTAMPS[e]) for e in entities}
    else:
        buffers = {e: ChunkBuffer(e, sink, TIMESTAMPS[e], rows=chunk_rows) for e in entities}
    _run(
        base_url,
        token,
        landing_dir,
        api_version,
        buffers=buffers,
        role_mapper=role_mapper,
        batch_size=batch_size,
        retry=retry,
        since=since,
        until=until,
        role_field=role_field,
        workers=workers,
        types=parse_renewal_types(renewal_types),
        bulk_threshold=parse_bulk_threshold(bulk_threshold),
        bulk_max_records=int(bulk_max_records),
    )
    return None if sink is not None else {e: c.frame() for e, c in buffers.items()}


def land_salesforce(base_url: str, token: str, sink: ChunkSink, **options: Any) -> None:
    """:func:`extract_salesforce` streamed into ``sink`` (the same ``options``)."""
    extract_salesforce(base_url, token, sink=sink, **options)
