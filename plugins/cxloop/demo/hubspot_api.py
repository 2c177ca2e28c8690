"""The HubSpot side of the demo server: the generator's CRM files served through the HubSpot CRM
v3 protocol, plus a fault-injection hook for protocol tests.

The demo generator writes Salesforce-shaped records (``source/salesforce/*.json``, see
docs/demo-sources.md); this module derives HubSpot objects from them and serves those:

- owners    <- User:    ``id``, ``email``, ``firstName``/``lastName`` (``Name`` split at the first
  space), ``userId``, ``createdAt``/``updatedAt`` (``SystemModstamp``), ``archived`` (an inactive
  user is an archived owner, as HubSpot does for deactivated users), ``teams`` (``Department`` as
  the primary team);
- companies <- Account: ``name``, custom ``segment``/``region``/``tier`` (enumerations), custom
  ``arr`` (number), ``hubspot_owner_id``, custom ``renewal_date`` (date), custom ``active``
  (bool), ``createdate``, ``hs_lastmodifieddate``; ``IsDeleted`` -> archived;
- contacts  <- Contact: ``email``, ``jobtitle``, ``hs_buying_role`` (HubSpot's internal values,
  :data:`ROLE_TO_HUBSPOT`), ``associatedcompanyid`` (+ a contact->company association),
  ``hs_email_optout``, custom ``active``, ``createdate``/``lastmodifieddate``;
- tasks     <- Task:    ``hs_task_subject``, ``hs_task_status`` (:data:`STATUS_TO_HUBSPOT`),
  ``hs_timestamp`` (due date = ``CreatedDate``), ``hs_task_completion_date``, custom
  ``survey_response_id`` and ``first_contact_at``, ``hubspot_owner_id``, ``hs_createdate``,
  ``hs_lastmodifieddate``, associations to the contact (``WhoId``) and company (``WhatId``);
- deals     <- Opportunity: ``dealname``, ``dealtype`` (:data:`TYPE_TO_DEALTYPE`: a Renewal is the
  portal's custom ``renewal`` option, an upgrade ``existingbusiness``), ``pipeline`` (``default``),
  ``dealstage`` (:data:`STAGE_TO_DEALSTAGE`), ``amount``, ``closedate`` (``CloseDate`` at midnight
  UTC), ``hs_is_closed`` / ``hs_is_closed_won`` (``IsClosed`` / ``IsWon``), custom
  ``previous_arr`` (``Previous_ARR__c``), ``hubspot_owner_id``, ``createdate``,
  ``hs_lastmodifieddate``, an association to the company (``AccountId``).

Property values are strings, as HubSpot sends them (numbers ``"1200.5"``, booleans
``"true"``, datetimes ``2025-01-03T10:00:00.000Z``, dates ``2025-01-03``); a value that does not
fit its property type is served as received (the planted faults must reach the connector).
Object ids are the generator's record ids, not HubSpot's numeric ids: the Qualtrics side of the
demo references them (``extRef``, ``AccountId``), and the connector treats ids as opaque strings.
A record the generator wrote twice (a planted duplicate) is served twice.

Endpoints (``Authorization: Bearer <private app token>``; errors as HubSpot's envelope
``{"status": "error", "message", "correlationId", "category"}``):

- ``GET  /crm/v3/owners?limit(<=500)&after&archived&email`` and ``GET /crm/v3/owners/{id}``;
- ``GET  /crm/v3/objects/{companies|contacts|tasks|deals}?limit(<=100)&after&properties&associations&archived``
  and ``GET /crm/v3/objects/{type}/{id}``;
- ``POST /crm/v3/objects/{type}/search`` ``{filterGroups, sorts, properties, limit(<=200), after}``:
  archived objects are never returned; filter operators EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN
  HAS_PROPERTY NOT_HAS_PROPERTY; one sort (ties broken by id); ``total`` and
  ``paging.next.after``; ``after >= result_cap`` (10,000) is answered 400 as HubSpot does; more
  than ``search_rate`` search requests within ``search_period`` seconds are answered 429 with
  ``Retry-After`` (seconds, fractional) and the rate-limit envelope;
- ``POST /crm/v4/associations/{from}/{to}/batch/read`` ``{"inputs": [{"id"}]}`` (<= 1000 inputs;
  207 with ``NO_ASSOCIATIONS_FOUND`` errors for inputs without associations).

Configuration per server: :func:`configure` (``search_rate``, ``search_period``, ``result_cap``,
``faults``). Fault injection: a :class:`FaultPlan` of :class:`FaultRule` s; with no plan
configured nothing changes for any route, and a rule only touches the requests its ``path``
regex and ``method`` match (HubSpot paths by default), so Qualtrics/Salesforce routes are faulted
only when a rule asks for them.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

HUBSPOT_PREFIXES = ("/crm/v3/", "/crm/v4/")
RESULT_CAP = 10_000
SEARCH_MAX_LIMIT = 200
LIST_MAX_LIMIT = 100
OWNERS_MAX_LIMIT = 500
ASSOCIATION_BATCH_MAX = 1000
MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25

#: Salesforce ``Buying_Role__c`` picklist -> HubSpot ``hs_buying_role`` internal value. HubSpot
#: has no "technical evaluator": it is an influencer there. Unknown spellings pass unchanged.
ROLE_TO_HUBSPOT: dict[str, str] = {
    "decision maker": "DECISION_MAKER",
    "economic buyer": "BUDGET_HOLDER",
    "influencer": "INFLUENCER",
    "technical evaluator": "INFLUENCER",
    "end user": "END_USER",
    "other": "OTHER",
}
#: Salesforce Task ``Status`` -> HubSpot ``hs_task_status``. Unknown spellings pass unchanged.
STATUS_TO_HUBSPOT: dict[str, str] = {
    "not started": "NOT_STARTED",
    "in progress": "IN_PROGRESS",
    "completed": "COMPLETED",
    "deferred": "DEFERRED",
    "waiting on someone else": "WAITING",
}

OBJECT_TYPES = {"companies": "companies", "0-2": "companies", "contacts": "contacts", "0-1": "contacts",
                "tasks": "tasks", "0-27": "tasks", "deals": "deals", "0-3": "deals"}  # fmt: skip
SINGULAR = {"companies": "company", "contacts": "contact", "tasks": "task", "deals": "deal"}
#: Salesforce Opportunity ``Type`` -> HubSpot ``dealtype``. Unknown spellings pass unchanged.
TYPE_TO_DEALTYPE: dict[str, str] = {
    "renewal": "renewal",
    "existing customer - upgrade": "existingbusiness",
    "new customer": "newbusiness",
}
#: Salesforce ``StageName`` -> HubSpot ``dealstage`` (the default pipeline's internal ids).
STAGE_TO_DEALSTAGE: dict[str, str] = {
    "prospecting": "qualifiedtobuy",
    "negotiation/review": "contractsent",
    "closed won": "closedwon",
    "closed lost": "closedlost",
}
ASSOCIATION_TYPE_IDS = {  # HUBSPOT_DEFINED association type ids
    ("contacts", "companies"): 1,  # contact -> primary company
    ("companies", "contacts"): 2,
    ("tasks", "contacts"): 204,
    ("contacts", "tasks"): 203,
    ("tasks", "companies"): 192,
    ("companies", "tasks"): 191,
    ("deals", "companies"): 5,
    ("companies", "deals"): 6,
}

#: Property types per object (``id`` = the object id, compared as text).
SCHEMA: dict[str, dict[str, str]] = {
    "companies": {
        "hs_object_id": "id", "name": "string", "segment": "enumeration", "region": "enumeration",
        "tier": "enumeration", "arr": "number", "hubspot_owner_id": "enumeration",
        "renewal_date": "date", "active": "bool", "createdate": "datetime",
        "hs_lastmodifieddate": "datetime", "lastmodifieddate": "datetime",
    },
    "contacts": {
        "hs_object_id": "id", "email": "string", "jobtitle": "string",
        "hs_buying_role": "enumeration", "associatedcompanyid": "number",
        "hs_email_optout": "bool", "active": "bool", "createdate": "datetime",
        "lastmodifieddate": "datetime", "hs_lastmodifieddate": "datetime",
    },
    "tasks": {
        "hs_object_id": "id", "hs_task_subject": "string", "hs_task_status": "enumeration",
        "hs_task_type": "enumeration", "hs_timestamp": "datetime", "hs_task_completion_date": "datetime",
        "survey_response_id": "string", "first_contact_at": "datetime",
        "hubspot_owner_id": "enumeration", "hs_createdate": "datetime", "createdate": "datetime",
        "hs_lastmodifieddate": "datetime", "lastmodifieddate": "datetime",
    },
    "deals": {
        "hs_object_id": "id", "dealname": "string", "dealtype": "enumeration", "pipeline": "enumeration",
        "dealstage": "enumeration", "amount": "number", "closedate": "datetime", "hs_is_closed": "bool",
        "hs_is_closed_won": "bool", "previous_arr": "number", "hubspot_owner_id": "enumeration",
        "createdate": "datetime", "hs_lastmodifieddate": "datetime",
    },
}  # fmt: skip
#: Returned by search and list whatever ``properties`` asks for.
ALWAYS_RETURNED = {
    "companies": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": ("createdate", "lastmodifieddate", "hs_object_id"),
    "tasks": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
}
#: Returned when ``properties`` is not given.
DEFAULT_PROPERTIES = {
    "companies": ("name", "domain"),
    "contacts": ("email", "firstname", "lastname"),
    "tasks": ("hs_task_subject", "hs_task_status", "hs_timestamp"),
    "deals": ("dealname", "amount", "closedate", "dealstage", "pipeline"),
}


# ----------------------------------------------------------------------------------------
# Fault injection
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What to do to a request.

    kind: ``status`` (answer ``status`` with the source's error body), ``rate_limit`` (429 with
    ``Retry-After: retry_after``), ``delay`` (sleep ``seconds`` before answering normally: beyond
    the client's read timeout it is a timeout), ``truncate`` (send only ``keep`` of the body;
    ``full_length`` declares the whole body's Content-Length and closes the connection, as a
    dropped transfer; otherwise the cut body is declared, as a broken proxy), ``drop`` (close the
    connection without answering)."""

    kind: str
    status: int = 500
    retry_after: float = 1.0
    seconds: float = 0.0
    keep: float = 0.5
    full_length: bool = True

    def __post_init__(self) -> None:
        if self.kind not in {"status", "rate_limit", "delay", "truncate", "drop"}:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass
class FaultRule:
    """Inject ``fault`` into the matching requests number ``first`` .. ``first + count - 1``
    (1-based, counted per rule; ``count=None``: every one from ``first`` on)."""

    fault: Fault
    path: str = r"^/crm/"  # regex searched in the request path
    method: str | None = None
    first: int = 1
    count: int | None = 1
    seen: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if not re.search(self.path, path):
            return False
        self.seen += 1
        n = self.seen
        return n >= self.first and (self.count is None or n < self.first + self.count)


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, kind)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, *rules: FaultRule) -> FaultPlan:
        return cls(list(rules))

    def match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            hit = None
            for rule in self.rules:  # every rule counts the request; the first that fires wins
                if rule.take(method, path) and hit is None:
                    hit = rule.fault
            if hit is not None:
                self.injected.append((method, path, hit.kind))
            return hit


class _TruncatingWriter:
    """Wraps a handler's ``wfile``: passes the header block, then only part of the body."""

    def __init__(self, handler: Any, fault: Fault):
        self._raw = handler.wfile
        self._handler = handler
        self._fault = fault
        self._headers: bytes | None = None

    def write(self, data: bytes) -> int:
        if self._headers is None:  # end_headers() flushes the header block in one write
            self._headers = bytes(data)
            return len(data)
        body = bytes(data)
        n = int(len(body) * self._fault.keep)
        headers = self._headers
        if not self._fault.full_length:
            headers = re.sub(rb"(?i)content-length: *\d+", b"Content-Length: %d" % n, headers)
        try:
            self._raw.write(headers + body[:n])
            self._raw.flush()
            if self._fault.full_length:
                self._handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._handler.close_connection = True
        return len(data)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


# ----------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------


def _parse_dt(text: str) -> datetime:
    t = str(text).strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    elif re.search(r"[+-]\d{4}$", t):
        t = f"{t[:-2]}:{t[-2:]}"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def to_ms(value: Any) -> int | None:
    """Epoch milliseconds from ``"1735898400000"``, an ISO datetime or an ISO date; None if not one."""
    if value is None:
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return int(round(_parse_dt(text).timestamp() * 1000))
    except ValueError:
        return None


def _fmt_dt(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        dt = _parse_dt(str(value))
    except ValueError:
        return str(value)  # served as received
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _fmt_num(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _fmt_bool(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fmt_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _lookup(table: dict[str, str], value: Any) -> str | None:
    if value is None or not str(value).strip():
        return None
    return table.get(str(value).strip().lower(), str(value))


# ----------------------------------------------------------------------------------------
# The derived HubSpot objects
# ----------------------------------------------------------------------------------------


def _obj(oid: Any, props: dict[str, Any], created: Any, updated: Any, archived: bool, assoc=None) -> dict:
    return {
        "id": str(oid),
        "properties": {**props, "hs_object_id": str(oid)},
        "createdAt": _fmt_dt(created) or _fmt_dt(updated),
        "updatedAt": _fmt_dt(updated),
        "archived": bool(archived),
        "associations": assoc or {},
    }


def derive(sobject: Any) -> dict[str, list[dict[str, Any]]]:
    """HubSpot objects from the generator's Salesforce records (``sobject(name) -> list``)."""
    owners = []
    for u in sobject("User"):
        name = u.get("Name")
        first, _, last = str(name).strip().partition(" ") if name is not None else (None, "", None)
        team = u.get("Department")
        digits = re.sub(r"\D", "", str(u.get("Id")))[-9:] or "0"
        owners.append(
            {
                "id": str(u.get("Id")),
                "email": u.get("Email"),
                "type": "PERSON",
                "firstName": first,
                "lastName": last if name is not None else None,
                "userId": int(digits),
                "userIdIncludingInactive": int(digits),
                "createdAt": _fmt_dt(u.get("SystemModstamp")),
                "updatedAt": _fmt_dt(u.get("SystemModstamp")),
                "archived": u.get("IsActive") is False,
                "teams": (
                    [{"id": str(zlib.crc32(str(team).encode()) % 1_000_000), "name": team, "primary": True}]
                    if team
                    else []
                ),
            }
        )
    companies = []
    for a in sobject("Account"):
        props = {
            "name": _fmt_text(a.get("Name")),
            "segment": _fmt_text(a.get("Segment__c")),
            "region": _fmt_text(a.get("Region__c")),
            "tier": _fmt_text(a.get("Tier__c")),
            "arr": _fmt_num(a.get("AnnualRecurringRevenue__c")),
            "hubspot_owner_id": _fmt_text(a.get("OwnerId")),
            "renewal_date": _fmt_text(a.get("Renewal_Date__c")),
            "active": _fmt_bool(a.get("Active__c")),
            "createdate": _fmt_dt(a.get("CreatedDate")),
            "hs_lastmodifieddate": _fmt_dt(a.get("SystemModstamp")),
        }
        props["lastmodifieddate"] = props["hs_lastmodifieddate"]
        companies.append(
            _obj(a.get("Id"), props, a.get("CreatedDate"), a.get("SystemModstamp"), bool(a.get("IsDeleted")))
        )
    contacts = []
    for c in sobject("Contact"):
        mod = _fmt_dt(c.get("SystemModstamp"))
        props = {
            "email": _fmt_text(c.get("Email")),
            "jobtitle": _fmt_text(c.get("Title")),
            "hs_buying_role": _lookup(ROLE_TO_HUBSPOT, c.get("Buying_Role__c")),
            "associatedcompanyid": _fmt_text(c.get("AccountId")),
            "hs_email_optout": _fmt_bool(c.get("HasOptedOutOfEmail")),
            "active": _fmt_bool(c.get("Active__c")),
            "createdate": mod,  # Contact carries no CreatedDate
            "lastmodifieddate": mod,
            "hs_lastmodifieddate": mod,
        }
        assoc = {"companies": [str(c["AccountId"])]} if c.get("AccountId") else {}
        contacts.append(
            _obj(c.get("Id"), props, None, c.get("SystemModstamp"), bool(c.get("IsDeleted")), assoc)
        )
    tasks = []
    for t in sobject("Task"):
        props = {
            "hs_task_subject": _fmt_text(t.get("Subject")),
            "hs_task_status": _lookup(STATUS_TO_HUBSPOT, t.get("Status")),
            "hs_task_type": "CALL",
            "hs_timestamp": _fmt_dt(t.get("CreatedDate")),
            "hs_task_completion_date": _fmt_dt(t.get("CompletedDateTime")),
            "survey_response_id": _fmt_text(t.get("Survey_Response_Id__c")),
            "first_contact_at": _fmt_dt(t.get("First_Contact_At__c")),
            "hubspot_owner_id": _fmt_text(t.get("OwnerId")),
            "hs_createdate": _fmt_dt(t.get("CreatedDate")),
            "hs_lastmodifieddate": _fmt_dt(t.get("SystemModstamp")),
        }
        props["createdate"] = props["hs_createdate"]
        props["lastmodifieddate"] = props["hs_lastmodifieddate"]
        assoc = {}
        if t.get("WhoId"):
            assoc["contacts"] = [str(t["WhoId"])]
        if t.get("WhatId"):
            assoc["companies"] = [str(t["WhatId"])]
        tasks.append(
            _obj(
                t.get("Id"),
                props,
                t.get("CreatedDate"),
                t.get("SystemModstamp"),
                bool(t.get("IsDeleted")),
                assoc,
            )
        )
    deals = []
    for d in sobject("Opportunity"):
        close = d.get("CloseDate")
        if isinstance(close, str) and len(close) == 10:  # a date: HubSpot's closedate is a datetime
            close = f"{close}T00:00:00Z"
        props = {
            "dealname": _fmt_text(d.get("Name")),
            "dealtype": _lookup(TYPE_TO_DEALTYPE, d.get("Type")),
            "pipeline": "default",
            "dealstage": _lookup(STAGE_TO_DEALSTAGE, d.get("StageName")),
            "amount": _fmt_num(d.get("Amount")),
            "closedate": _fmt_dt(close),
            "hs_is_closed": _fmt_bool(d.get("IsClosed")),
            "hs_is_closed_won": _fmt_bool(d.get("IsWon")),
            "previous_arr": _fmt_num(d.get("Previous_ARR__c")),
            "hubspot_owner_id": _fmt_text(d.get("OwnerId")),
            "createdate": _fmt_dt(d.get("CreatedDate")),
            "hs_lastmodifieddate": _fmt_dt(d.get("SystemModstamp")),
        }
        assoc = {"companies": [str(d["AccountId"])]} if d.get("AccountId") else {}
        deals.append(
            _obj(d.get("Id"), props, d.get("CreatedDate"), d.get("SystemModstamp"), bool(d.get("IsDeleted")), assoc)
        )
    # the reverse associations
    for src, dst in (("contacts", "companies"), ("tasks", "contacts"), ("tasks", "companies"), ("deals", "companies")):
        back: dict[str, list[str]] = {}
        for o in {"contacts": contacts, "tasks": tasks, "deals": deals}[src]:
            for to_id in o["associations"].get(dst, []):
                back.setdefault(to_id, []).append(o["id"])
        for o in {"companies": companies, "contacts": contacts}[dst]:
            if o["id"] in back:
                o["associations"].setdefault(src, []).extend(back[o["id"]])
    return {"owners": owners, "companies": companies, "contacts": contacts, "tasks": tasks, "deals": deals}


# ----------------------------------------------------------------------------------------
# Per-server state
# ----------------------------------------------------------------------------------------


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        category: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.category = status, message, category
        self.headers, self.extra = headers or {}, extra or {}


@dataclass
class HubSpotStats:
    requests: int = 0
    search_requests: int = 0  # answered (not rate limited)
    rate_limited: int = 0
    cap_rejections: int = 0  # 400s for paging past the result cap
    search_log: list[dict[str, Any]] = field(default_factory=list)  # bodies of answered searches


class HubSpotEmulation:
    """The HubSpot state of one :class:`cxloop.demo.server.DemoServer` (see :func:`emulation`)."""

    def __init__(self, demo: Any):
        self.demo = demo
        self.search_rate = 5
        self.search_period = 1.0
        self.result_cap = RESULT_CAP
        self.faults: FaultPlan | None = None
        self.stats = HubSpotStats()
        self._lock = threading.Lock()
        self._search_times: deque[float] = deque()
        self._objects: dict[str, list[dict[str, Any]]] | None = None

    def objects(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            if self._objects is None:
                self._objects = derive(self.demo.data.sobject)
            return self._objects

    def admit_search(self) -> None:
        """The search endpoints' secondly limit: raise a 429 when the window is full."""
        now = time.monotonic()
        with self._lock:
            q = self._search_times
            while q and q[0] <= now - self.search_period:
                q.popleft()
            if self.search_rate and len(q) >= self.search_rate:
                self.stats.rate_limited += 1
                wait = max(0.01, q[0] + self.search_period - now)
                raise _ApiError(
                    429,
                    "You have reached your secondly limit.",
                    "RATE_LIMITS",
                    {"Retry-After": f"{wait:.3f}"},
                    {"errorType": "RATE_LIMIT", "policyName": "SECONDLY"},
                )
            q.append(now)
            self.stats.search_requests += 1


def emulation(demo: Any) -> HubSpotEmulation:
    """The HubSpot state of ``demo`` (created with the defaults on first use)."""
    emu = demo.__dict__.get("_hubspot")
    if emu is None:
        with demo._lock:
            emu = demo.__dict__.setdefault("_hubspot", HubSpotEmulation(demo))
    return emu


def configure(
    demo: Any,
    *,
    search_rate: int | None = None,
    search_period: float | None = None,
    result_cap: int | None = None,
    faults: FaultPlan | None | bool = False,
) -> HubSpotEmulation:
    """Set the HubSpot emulation's limits (``search_rate=0`` disables the rate limit) and its
    fault plan (``faults=None`` removes it); returns the emulation (``.stats``, ``.faults``)."""
    emu = emulation(demo)
    if search_rate is not None:
        emu.search_rate = int(search_rate)
    if search_period is not None:
        emu.search_period = float(search_period)
    if result_cap is not None:
        emu.result_cap = int(result_cap)
    if faults is not False:
        emu.faults = faults  # type: ignore[assignment]
    return emu


# ----------------------------------------------------------------------------------------
# Request handling (called from the demo server's dispatcher)
# ----------------------------------------------------------------------------------------


def is_hubspot_path(path: str) -> bool:
    return path.startswith(HUBSPOT_PREFIXES)


def intercept(handler: Any, method: str, path: str, body: bytes) -> bool:
    """Fault injection for any route, then the HubSpot routes. True when the request was answered.

    Without a configured fault plan and for a non-HubSpot path this returns False at once."""
    emu: HubSpotEmulation | None = handler.demo.__dict__.get("_hubspot")
    hubspot = is_hubspot_path(path)
    if emu is not None and emu.faults is not None:
        fault = emu.faults.match(method, path)
        if fault is not None and _apply_fault(handler, fault, hubspot):
            return True
    if not hubspot:
        return False
    emu = emu or emulation(handler.demo)
    with emu._lock:
        emu.stats.requests += 1
    try:
        if not handler._authorized(qualtrics=False):
            raise _ApiError(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
                "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )
        status, payload, headers = _route(emu, handler, method, path, body)
        _reply(handler, status, payload, headers)
    except _ApiError as e:
        _reply(handler, e.status, _envelope(e.message, e.category, e.extra), e.headers)
    return True


def _envelope(message: str, category: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **(extra or {}),
    }


def _reply(handler: Any, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    try:
        handler._send(status, body, "application/json;charset=utf-8", headers)
    except OSError:  # the client gave up (a delay fault beyond its timeout)
        handler.close_connection = True


def _apply_fault(handler: Any, fault: Fault, hubspot: bool) -> bool:
    if fault.kind == "delay":
        time.sleep(fault.seconds)
        return False
    if fault.kind == "truncate":
        handler.wfile = _TruncatingWriter(handler, fault)
        return False
    if fault.kind == "drop":
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True
    if fault.kind == "rate_limit":
        payload = _envelope(
            "You have reached your secondly limit.",
            "RATE_LIMITS",
            {"errorType": "RATE_LIMIT", "policyName": "SECONDLY"},
        )
        _reply(handler, 429, payload, {"Retry-After": f"{fault.retry_after:g}"})
        return True
    # status
    if hubspot:
        payload = _envelope(
            f"injected fault: HTTP {fault.status}", "INTERNAL_ERROR" if fault.status >= 500 else "ERROR"
        )
    else:
        payload = {"message": f"injected fault: HTTP {fault.status}"}
    _reply(handler, fault.status, payload)
    return True


def _all_params(handler: Any) -> dict[str, list[str]]:
    """Query parameters with repeats kept (``properties=a&properties=b`` or ``properties=a,b``)."""
    return parse_qs(urlsplit(handler.path).query, keep_blank_values=True)


def _csv(params: dict[str, list[str]], name: str) -> list[str] | None:
    if name not in params:
        return None
    out: list[str] = []
    for v in params[name]:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _int_param(params: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    raw = params.get(name, [None])[-1]
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise _ApiError(
            400, f"Invalid input JSON on line 1: {name} must be an integer", "VALIDATION_ERROR"
        ) from None
    if n < 1 or n > maximum:
        raise _ApiError(400, f"{name} must be between 1 and {maximum}", "VALIDATION_ERROR")
    return n


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(after: str | None) -> int:
    if not after:
        return 0
    try:
        pad = "=" * (-len(after) % 4)
        text = base64.urlsafe_b64decode((after + pad).encode()).decode()
        if not text.startswith("o:"):
            raise ValueError
        return max(0, int(text[2:]))
    except (ValueError, UnicodeDecodeError):
        raise _ApiError(400, f"Invalid paging cursor: {after}", "VALIDATION_ERROR") from None


def _object_type(name: str) -> str:
    t = OBJECT_TYPES.get(name.lower())
    if t is None:
        raise _ApiError(400, f"Unable to infer object type from: {name}", "VALIDATION_ERROR")
    return t


def _route(emu: HubSpotEmulation, handler: Any, method: str, path: str, body: bytes):
    seg = [s for s in path.split("/") if s]  # crm, v3, ...
    version, rest = seg[1], seg[2:]

    def need(m: str) -> None:
        if method != m:
            raise _ApiError(405, f"Method {method} not allowed on {path}", "VALIDATION_ERROR")

    if version == "v3" and rest[:1] == ["owners"]:
        need("GET")
        return 200, _owners(emu, _all_params(handler), rest[1] if len(rest) > 1 else None), None
    if version == "v3" and rest[:1] == ["objects"] and len(rest) >= 2:
        otype = _object_type(rest[1])
        if len(rest) == 2:
            need("GET")
            return 200, _list(emu, otype, _all_params(handler)), None
        if len(rest) == 3 and rest[2] == "search":
            need("POST")
            emu.admit_search()
            return 200, _search(emu, otype, _json_body(body)), None
        if len(rest) == 3:
            need("GET")
            return 200, _get_one(emu, otype, rest[2], _all_params(handler)), None
    if version == "v4" and rest[:1] == ["associations"] and len(rest) == 5 and rest[3:] == ["batch", "read"]:
        need("POST")
        return _associations(emu, _object_type(rest[1]), _object_type(rest[2]), _json_body(body))
    raise _ApiError(404, f"No route for {method} {path}", "OBJECT_NOT_FOUND")


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body or b"{}")
    except ValueError:
        raise _ApiError(400, "Invalid input JSON: the body is not JSON", "VALIDATION_ERROR") from None
    if not isinstance(obj, dict):
        raise _ApiError(400, "Invalid input JSON: expected an object", "VALIDATION_ERROR")
    return obj


# -- owners -------------------------------------------------------------------------------


def _owners(emu: HubSpotEmulation, params: dict[str, list[str]], owner_id: str | None) -> dict[str, Any]:
    archived = params.get("archived", ["false"])[-1].lower() == "true"
    owners = [o for o in emu.objects()["owners"] if o["archived"] == archived]
    if owner_id is not None:
        for o in owners:
            if o["id"] == owner_id:
                return o
        raise _ApiError(404, f"Owner {owner_id} not found", "OBJECT_NOT_FOUND")
    email = params.get("email", [None])[-1]
    if email:
        owners = [o for o in owners if str(o.get("email") or "").lower() == email.lower()]
    limit = _int_param(params, "limit", 100, OWNERS_MAX_LIMIT)
    offset = _decode_cursor(params.get("after", [None])[-1])
    out: dict[str, Any] = {"results": owners[offset : offset + limit]}
    if offset + limit < len(owners):
        after = _encode_cursor(offset + limit)
        out["paging"] = {"next": {"after": after, "link": f"/crm/v3/owners?after={after}"}}
    return out


# -- objects ------------------------------------------------------------------------------


def _public(o: dict[str, Any], otype: str, props: list[str] | None, assoc: list[str] | None = None) -> dict:
    wanted = list(DEFAULT_PROPERTIES[otype]) if props is None else props
    names = [*wanted, *ALWAYS_RETURNED[otype]]
    out = {
        "id": o["id"],
        "properties": {
            p: o["properties"].get(p) for p in dict.fromkeys(names) if p in SCHEMA[otype] or p in wanted
        },
        "createdAt": o["createdAt"],
        "updatedAt": o["updatedAt"],
        "archived": o["archived"],
    }
    if o["archived"]:
        out["archivedAt"] = o["updatedAt"]
    if assoc:
        blocks = {}
        for to in assoc:
            ids = o["associations"].get(to, [])
            if ids:
                kind = f"{SINGULAR[otype]}_to_{SINGULAR[to]}"
                blocks[to] = {"results": [{"id": i, "type": kind} for i in ids]}
        if blocks:
            out["associations"] = blocks
    return out


def _list(emu: HubSpotEmulation, otype: str, params: dict[str, list[str]]) -> dict[str, Any]:
    archived = params.get("archived", ["false"])[-1].lower() == "true"
    rows = [o for o in emu.objects()[otype] if o["archived"] == archived]
    limit = _int_param(params, "limit", 10, LIST_MAX_LIMIT)
    offset = _decode_cursor(params.get("after", [None])[-1])
    assoc = [_object_type(a) for a in (_csv(params, "associations") or [])]
    props = _csv(params, "properties")
    out: dict[str, Any] = {
        "results": [_public(o, otype, props, assoc) for o in rows[offset : offset + limit]]
    }
    if offset + limit < len(rows):
        after = _encode_cursor(offset + limit)
        out["paging"] = {"next": {"after": after, "link": f"/crm/v3/objects/{otype}?after={after}"}}
    return out


def _get_one(emu: HubSpotEmulation, otype: str, oid: str, params: dict[str, list[str]]) -> dict[str, Any]:
    archived = params.get("archived", ["false"])[-1].lower() == "true"
    for o in emu.objects()[otype]:
        if o["id"] == oid and o["archived"] == archived:
            assoc = [_object_type(a) for a in (_csv(params, "associations") or [])]
            return _public(o, otype, _csv(params, "properties"), assoc)
    raise _ApiError(404, f"Object not found. objectId are usually numeric. ({oid})", "OBJECT_NOT_FOUND")


# -- search -------------------------------------------------------------------------------


def _prop_type(otype: str, name: str) -> str:
    t = SCHEMA[otype].get(name)
    if t is None:
        raise _ApiError(
            400, f"There was a problem with the request: unknown property '{name}'", "VALIDATION_ERROR"
        )
    return t


def _value(o: dict[str, Any], name: str) -> Any:
    return o["id"] if name == "hs_object_id" else o["properties"].get(name)


def _norm(ptype: str, value: Any, *, strict: bool, prop: str = "") -> Any:
    """A property or filter value in its comparable domain (None: no comparable value)."""
    if value is None or value == "":
        return None
    if ptype in {"datetime", "date"}:
        ms = to_ms(value)
        if ms is None and strict:
            raise _ApiError(
                400, f"{value} is not a valid date/time value for property {prop}", "VALIDATION_ERROR"
            )
        return ms
    if ptype == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            if strict:
                raise _ApiError(
                    400, f"{value} is not a valid number for property {prop}", "VALIDATION_ERROR"
                ) from None
            return None
    return str(value).lower() if ptype != "id" else str(value)


def _filter_matches(o: dict[str, Any], otype: str, f: dict[str, Any]) -> bool:
    name = f.get("propertyName")
    op = str(f.get("operator", "EQ")).upper()
    if not name:
        raise _ApiError(400, "filter without propertyName", "VALIDATION_ERROR")
    ptype = _prop_type(otype, name)
    raw = _value(o, name)
    if op == "HAS_PROPERTY":
        return raw is not None and raw != ""
    if op == "NOT_HAS_PROPERTY":
        return raw is None or raw == ""
    v = _norm(ptype, raw, strict=False)
    if op in {"IN", "NOT_IN"}:
        wanted = {_norm(ptype, x, strict=True, prop=name) for x in (f.get("values") or [])}
        return (v in wanted) if op == "IN" else (v is None or v not in wanted)
    target = _norm(ptype, f.get("value"), strict=True, prop=name)
    if op == "NEQ":
        return v != target
    if v is None or target is None:
        return False
    if op == "EQ":
        return v == target
    if op == "BETWEEN":
        high = _norm(ptype, f.get("highValue"), strict=True, prop=name)
        return high is not None and target <= v <= high
    try:
        return {"LT": v < target, "LTE": v <= target, "GT": v > target, "GTE": v >= target}[op]
    except KeyError:
        raise _ApiError(400, f"Unsupported operator {op}", "VALIDATION_ERROR") from None
    except TypeError:
        return False


def _search(emu: HubSpotEmulation, otype: str, req: dict[str, Any]) -> dict[str, Any]:
    groups = req.get("filterGroups") or []
    if len(groups) > MAX_FILTER_GROUPS:
        raise _ApiError(
            400,
            f"Too many filter groups ({len(groups)}); the maximum is {MAX_FILTER_GROUPS}",
            "VALIDATION_ERROR",
        )
    n_filters = sum(len(g.get("filters") or []) for g in groups)
    if n_filters > MAX_FILTERS or any(len(g.get("filters") or []) > MAX_FILTERS_PER_GROUP for g in groups):
        raise _ApiError(400, "Too many filters", "VALIDATION_ERROR")
    sorts = req.get("sorts") or []
    if len(sorts) > 1:
        raise _ApiError(400, "Only one sort is supported per search request", "VALIDATION_ERROR")
    try:
        limit = int(req.get("limit", 10))
        offset = int(req.get("after") or 0)
    except (TypeError, ValueError):
        raise _ApiError(400, "limit and after must be integers", "VALIDATION_ERROR") from None
    if limit < 1 or limit > SEARCH_MAX_LIMIT:
        raise _ApiError(400, f"limit must be between 1 and {SEARCH_MAX_LIMIT}", "VALIDATION_ERROR")
    if offset >= emu.result_cap:
        with emu._lock:
            emu.stats.cap_rejections += 1
        raise _ApiError(
            400,
            f"There was a problem with the request. The search API returns at most {emu.result_cap} results "
            f"per query; after={offset} is beyond that.",
            "VALIDATION_ERROR",
        )
    rows = [o for o in emu.objects()[otype] if not o["archived"]]
    if groups:
        rows = [
            o
            for o in rows
            if any(all(_filter_matches(o, otype, f) for f in (g.get("filters") or [])) for g in groups)
        ]
    rows = sorted(rows, key=lambda o: o["id"])  # ties break by id
    if sorts:
        s = sorts[0] if isinstance(sorts[0], dict) else _sort_from_text(str(sorts[0]))
        name = s.get("propertyName")
        ptype = _prop_type(otype, name)
        desc = str(s.get("direction", "ASCENDING")).upper() == "DESCENDING"
        present = [o for o in rows if _norm(ptype, _value(o, name), strict=False) is not None]
        missing = [o for o in rows if _norm(ptype, _value(o, name), strict=False) is None]
        present.sort(key=lambda o: _norm(ptype, _value(o, name), strict=False), reverse=desc)
        if desc:  # keep id ascending among ties
            present = _stable_desc(present, lambda o: _norm(ptype, _value(o, name), strict=False))
        rows = present + missing
    with emu._lock:
        emu.stats.search_log.append({"type": otype, **req})
    props = req.get("properties")
    page = rows[offset : offset + limit]
    out: dict[str, Any] = {"total": len(rows), "results": [_public(o, otype, props) for o in page]}
    if offset + limit < len(rows):
        out["paging"] = {"next": {"after": str(offset + limit)}}
    return out


def _sort_from_text(text: str) -> dict[str, str]:
    """``"createdate"`` / ``"-createdate"`` (the string form of a sort) as a sort object."""
    desc = text.startswith("-")
    return {"propertyName": text.lstrip("-"), "direction": "DESCENDING" if desc else "ASCENDING"}


def _stable_desc(rows: list[dict], key: Any) -> list[dict]:
    groups: dict[Any, list[dict]] = {}
    for o in rows:
        groups.setdefault(key(o), []).append(o)
    return [o for k in sorted(groups, reverse=True) for o in sorted(groups[k], key=lambda r: r["id"])]


# -- associations ---------------------------------------------------------------------------


def _associations(emu: HubSpotEmulation, src: str, dst: str, req: dict[str, Any]):
    inputs = req.get("inputs")
    if not isinstance(inputs, list):
        raise _ApiError(400, "inputs is required", "VALIDATION_ERROR")
    if len(inputs) > ASSOCIATION_BATCH_MAX:
        raise _ApiError(400, f"Batch read may not exceed {ASSOCIATION_BATCH_MAX} inputs", "VALIDATION_ERROR")
    started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    by_id = {o["id"]: o for o in emu.objects()[src] if not o["archived"]}
    type_id = ASSOCIATION_TYPE_IDS.get((src, dst), 0)
    results, errors = [], []
    for item in inputs:
        oid = str(item.get("id")) if isinstance(item, dict) else str(item)
        ids = by_id[oid]["associations"].get(dst, []) if oid in by_id else []
        if not ids:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                    "message": f"No {dst} is associated with {SINGULAR[src]} {oid}.",
                    "context": {"fromObjectId": [oid]},
                }
            )
            continue
        results.append(
            {
                "from": {"id": oid},
                "to": [
                    {
                        "toObjectId": i,
                        "associationTypes": [
                            {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
                        ],
                    }
                    for i in ids
                ],
            }
        )
    done = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": done,
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return 207, body, None
    return 200, body, None
