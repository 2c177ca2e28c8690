"""HubSpot connector: CRM v3 API -> owners, accounts, contacts, follow_ups, renewals.

- owners     <- ``GET /crm/v3/owners`` (``archived=false`` then ``archived=true``; an archived
  owner is a deactivated user: ``is_active = false``), paged with ``after``.
- accounts   <- companies, contacts <- contacts, follow_ups <- tasks with a ``survey_response_id``:
  ``POST /crm/v3/objects/{type}/search`` within last-modified windows (below), plus the archived
  companies/contacts from ``GET /crm/v3/objects/{type}?archived=true`` (search never returns
  archived records; they arrive with ``is_deleted = true``). Archived tasks are not follow-ups.
- a task's contact and company: ``POST /crm/v4/associations/tasks/{contacts|companies}/batch/read``
  (search results carry no associations), 1,000 ids a request.
- renewals   <- deals whose ``dealtype`` is one of the renewal deal types (source option
  ``renewal_dealtypes``, comma-separated internal values; default
  :data:`cxloop.contract.DEFAULT_HUBSPOT_RENEWAL_DEALTYPES`, ``renewal``, a custom option of the
  editable ``dealtype`` property): searched like the other objects on ``hs_lastmodifieddate``
  with an ``IN`` filter on ``dealtype``, plus the archived deals of those types
  (``is_deleted = true``); the company from ``POST /crm/v4/associations/deals/companies/batch/read``.
  ``amount``, custom ``previous_arr``, ``dealstage``, ``closedate`` (a datetime: its UTC date),
  ``hs_is_closed`` and ``hs_is_closed_won``.

**Windows.** The search API returns at most 10,000 results per query (paging past that is a 400)
and allows 5 requests a second. Records are read in windows ``[lo, hi)`` of the last-modified
property (``hs_lastmodifieddate``; ``lastmodifieddate`` for contacts), sorted ascending on it (the
search API takes one sort; ties come in the server's order), 200 a page. When the first page of
a window reports a ``total`` above ``max_results`` the window is split in half and each half read
on its own, recursively (a window of one millisecond that still holds more is an error). Without
``end`` the last window is open, so records modified while the run reads are picked up, and an
open window that must be split is first bounded by the newest record's timestamp.

**No duplicates, no gaps.** A window whose ``total`` changes between pages, or in which an id
comes back with two different timestamps, changed while it was read (offset paging may then
skip a record): it is read again, up to ``window_rereads`` times, then the run fails. An id seen
in two windows (modified during the run) keeps its latest version. The same version of a record
served twice within a window is passed on as received: that is the source's duplicate, and the
validation gate quarantines the second copy.

**Limits and faults.** A client-side sliding-window limiter keeps search requests at
``search_rate`` (default 4 per second, under HubSpot's 5) and all requests at ``request_rate``
(default 100 per 10 s, a private app's burst limit); it also paces the retries of the shared
HTTP layer (:mod:`cxloop.extract.http_client`: timeouts, backoff on 5xx, ``Retry-After`` on 429).
Search and association reads are read-only POSTs and are retried like GETs. A body cut short
(connection dropped mid-transfer) is retried by the shared layer; a 2xx whose body is not a JSON
object (a truncated body with a matching Content-Length) is retried here with the same policy.
A request that fails for good raises :class:`HubSpotError` naming the source, the entity, the
method and the URL (no token: it travels in the ``Authorization`` header only).

**Streaming.** Nothing is held whole. Owners and archived records go on page by page. A search
window's pages are spooled to a private temporary file (``0600`` in a ``0700`` folder, removed
at the end) as they arrive: a window read again starts its file again, and only windows read
whole count. When every window of an object is read, the spool is read back in order and each
record passes on unless a later window holds a newer version of it (the ids and versions seen
are the only thing kept in memory). Tasks' associations are read for every 1,000 tasks passed
on. The mapped rows go to a :class:`cxloop.extract.frames.ChunkBuffer` (the pipeline: page
chunks into the landing's sink) or a :class:`cxloop.extract.frames.FrameCollector` (frames).

Every page received is landed raw under ``<landing_dir>/hubspot/<object>/...``.

Mapping: values as received (HubSpot sends every property as a string; numbers and booleans of
numeric/boolean properties are converted, and a value that does not convert stays a string for
the gate to judge); ``email`` -> ``email_hash`` + ``email_domain_valid`` (the raw address never
enters a frame); ``hs_buying_role`` (a multi-select of HubSpot's internal values, ``;``-separated)
-> the contract's roles through :class:`cxloop.extract.roles.RoleMapper` with
:data:`HUBSPOT_ROLE_PICKLIST` (several roles: the strongest of decision_maker > influencer > user
> other), else the job title, else ``unknown``; ``hs_task_status`` -> :data:`TASK_STATUS`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests

from cxloop.contract import DEFAULT_HUBSPOT_RENEWAL_DEALTYPES
from cxloop.extract.frames import ChunkBuffer, ChunkSink, FrameCollector, Landing
from cxloop.extract.http_client import HttpClient, RetryPolicy, SourceHTTPError, safe_url
from cxloop.extract.pseudonymise import email_hash, is_valid_email, pii_key
from cxloop.extract.roles import RoleMapper, configured_role_mapper

log = logging.getLogger(__name__)

SOURCE = "hubspot"
SEARCH_PAGE_MAX = 200
RESULT_CAP = 10_000
ASSOCIATION_BATCH = 1000

#: HubSpot ``hs_buying_role`` internal values -> contract roles.
HUBSPOT_ROLE_PICKLIST: dict[str, str] = {
    "DECISION_MAKER": "decision_maker",
    "BUDGET_HOLDER": "decision_maker",
    "EXECUTIVE_SPONSOR": "decision_maker",
    "INFLUENCER": "influencer",
    "CHAMPION": "influencer",
    "BLOCKER": "influencer",  # shapes the decision, against us
    "END_USER": "user",
    "LEGAL_AND_PURCHASING": "other",
    "OTHER": "other",
}
ROLE_STRENGTH = ("decision_maker", "influencer", "user", "other")

#: HubSpot ``hs_task_status`` -> follow-up status.
TASK_STATUS: dict[str, str] = {
    "NOT_STARTED": "open",
    "IN_PROGRESS": "in_progress",
    "WAITING": "in_progress",
    "COMPLETED": "completed",
    "DEFERRED": "cancelled",
}

#: object -> (last-modified property, properties requested)
OBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "companies": (
        "hs_lastmodifieddate",
        ("name", "segment", "region", "tier", "arr", "hubspot_owner_id", "renewal_date", "active",
         "createdate", "hs_lastmodifieddate"),
    ),
    "contacts": (
        "lastmodifieddate",
        ("email", "jobtitle", "hs_buying_role", "associatedcompanyid", "hs_email_optout", "active",
         "lastmodifieddate"),
    ),
    "tasks": (
        "hs_lastmodifieddate",
        ("hs_task_status", "hs_timestamp", "hs_task_completion_date", "survey_response_id",
         "first_contact_at", "hubspot_owner_id", "hs_createdate", "hs_lastmodifieddate"),
    ),
    "deals": (
        "hs_lastmodifieddate",
        ("dealname", "dealtype", "pipeline", "dealstage", "amount", "previous_arr", "closedate", "hs_is_closed",
         "hs_is_closed_won", "createdate", "hs_lastmodifieddate"),
    ),
}  # fmt: skip
ENTITIES = ("owners", "accounts", "contacts", "follow_ups", "renewals")
ENTITY_OBJECT = {"accounts": "companies", "contacts": "contacts", "follow_ups": "tasks", "renewals": "deals"}

TIMESTAMPS = {
    "owners": ("updated_at",),
    "accounts": ("created_at", "updated_at"),
    "contacts": ("updated_at",),
    "follow_ups": ("created_at", "first_contact_at", "closed_at", "updated_at"),
    "renewals": ("created_at", "updated_at"),
}


class HubSpotError(SourceHTTPError):
    """A HubSpot extraction failed. ``str()`` names the source, entity, method and safe URL."""

    def __init__(self, entity: str, cause: SourceHTTPError | None = None, message: str | None = None):
        if cause is not None:
            method, url, status, msg, attempts = (
                cause.method,
                cause.url,
                cause.status,
                cause.source_message,
                cause.attempts,
            )
        else:
            method, url, status, msg, attempts = "", "", None, message or "error", 1
        self.entity = entity
        super().__init__(method, url, status, msg, attempts)
        where = f"{method} {url} " if method else ""
        status_text = f"HTTP {status}" if status is not None else "no response"
        detail = f"{where}failed ({status_text}, {attempts} attempt(s)): {msg}" if method else msg
        self.args = (f"{SOURCE}: extracting {entity}: {detail}",)

    def __str__(self) -> str:
        return str(self.args[0])


def hubspot_error(response: requests.Response) -> str | None:
    """HubSpot's envelope ``{"status": "error", "message", "correlationId", "category"}`` as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or None
    if isinstance(body, dict) and "message" in body:
        bits = [str(body.get("category") or body.get("errorType") or "ERROR"), str(body["message"]).strip()]
        text = ": ".join(bits)
        if body.get("correlationId"):
            text += f" (correlationId {body['correlationId']})"
        return text
    return None


# ----------------------------------------------------------------------------------------
# Rate limiting
# ----------------------------------------------------------------------------------------


class RateLimiter:
    """At most ``max_calls`` acquisitions within any ``period`` seconds (a sliding window)."""

    def __init__(
        self,
        max_calls: int,
        period: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_calls < 1 or period <= 0:
            raise ValueError("a rate limit needs max_calls >= 1 and period > 0")
        self.max_calls, self.period = max_calls, period
        self._clock, self._sleep = clock, sleep
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.waited = 0.0
        self.calls = 0

    def acquire(self) -> float:
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                while self._times and self._times[0] <= now - self.period:
                    self._times.popleft()
                if len(self._times) < self.max_calls:
                    self._times.append(now)
                    self.calls += 1
                    self.waited += waited
                    return waited
                pause = self._times[0] + self.period - now + 1e-4
                self._sleep(pause)
                waited += pause


class _LimitedSession(requests.Session):
    """A session that passes every attempt (retries included) through the matching limiters."""

    def __init__(self, limiters: list[tuple[Callable[[str, str], bool], RateLimiter]]):
        super().__init__()
        self._limiters = limiters

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        for applies, limiter in self._limiters:
            if applies(method.upper(), url):
                limiter.acquire()
        return super().request(method, url, *args, **kwargs)


def _is_search(method: str, url: str) -> bool:
    return method == "POST" and urlsplit(url).path.rstrip("/").endswith("/search")


# ----------------------------------------------------------------------------------------
# The client
# ----------------------------------------------------------------------------------------


def _ms(value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1000))


def _to_ms(dt: datetime | None) -> int | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(round(dt.timestamp() * 1000))


class _WindowChanged(Exception):
    pass


class SearchSpool:
    """One object's search results, window by window, in private temporary files (JSON lines
    of ``[id, version, record]``). :meth:`begin` starts (or restarts) the current window's file,
    :meth:`add` appends a page, :meth:`commit` keeps the window and its versions; only committed
    windows are read back by :meth:`records`, which passes on each record's latest version."""

    def __init__(self, folder: Path, name: str):
        self.folder, self.name = Path(folder), name
        self.windows: list[Path] = []
        self.newest: dict[str, int] = {}
        self.dropped = 0
        self._file: Any = None
        self._path: Path | None = None

    def begin(self) -> None:
        self.discard()
        self._path = self.folder / f"{self.name}-{len(self.windows) + 1:05d}.jsonl"
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        self._file = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, rows: list[tuple[str, int | None, dict[str, Any]]]) -> None:
        write = self._file.write
        for row in rows:
            write(json.dumps(row, separators=(",", ":")))
            write("\n")

    def commit(self, versions: dict[str, int | None]) -> None:
        self._file.close()
        self._file = None
        self.windows.append(self._path)  # type: ignore[arg-type]
        self._path = None
        newest = self.newest
        for rid, v in versions.items():
            v = -1 if v is None else v
            if rid not in newest or v > newest[rid]:
                newest[rid] = v

    def discard(self) -> None:
        """Forget the current window (read again, or too big and split)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every committed window's records in the order read, each id's latest version only
        (an older version of a record modified during the run, seen in an earlier window, is
        counted in ``dropped``); the same version served twice is passed on twice."""
        for path in self.windows:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    rid, v, record = json.loads(line)
                    if (-1 if v is None else v) == self.newest[rid]:
                        yield record
                    else:
                        self.dropped += 1


def _groups(records: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    group: list[dict[str, Any]] = []
    for r in records:
        group.append(r)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


@dataclass
class HubSpotStats:
    search_requests: int = 0
    windows_read: int = 0
    windows_split: int = 0
    window_rereads: int = 0
    body_retries: int = 0
    duplicates_collapsed: int = 0
    pages: int = 0
    by_object: dict[str, int] = field(default_factory=dict)


class HubSpotClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        landing_dir: Path | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = SEARCH_PAGE_MAX,
        max_results: int = RESULT_CAP,
        search_rate: tuple[int, float] | None = (4, 1.0),
        request_rate: tuple[int, float] | None = (100, 10.0),
        window_rereads: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not 1 <= page_size <= SEARCH_PAGE_MAX:
            raise ValueError(f"page_size must be 1..{SEARCH_PAGE_MAX}")
        self.retry = retry or RetryPolicy.configured()
        self.search_limiter = RateLimiter(*search_rate, sleep=sleep) if search_rate else None
        self.request_limiter = RateLimiter(*request_rate, sleep=sleep) if request_rate else None
        limiters: list[tuple[Callable[[str, str], bool], RateLimiter]] = []
        if self.request_limiter:
            limiters.append((lambda m, u: True, self.request_limiter))
        if self.search_limiter:
            limiters.append((_is_search, self.search_limiter))
        self.http = HttpClient(
            base_url.rstrip("/") + "/",
            token,
            source=SOURCE,
            error_parser=hubspot_error,
            retry=self.retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            session=_LimitedSession(limiters),
            sleep=sleep,
        )
        self._sleep = sleep
        self._rng = random.Random()
        self.landing = Landing(landing_dir, SOURCE)
        self.page_size = page_size
        self.max_results = max_results
        self.window_rereads = window_rereads
        self.stats = HubSpotStats()
        self._association_batches: dict[tuple[str, str], int] = {}

    def close(self) -> None:
        self.http.close()

    # -- one call: the shared layer's retries, plus retries of bodies cut short -----------------
    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        land_as: str | None = None,
    ) -> dict[str, Any]:
        attempt = 0
        while True:
            attempt += 1
            problem = None
            try:
                response = self.http.request(method, path, params=params, json=json, retry_safe=True)
            except SourceHTTPError as e:
                # a body cut short, as a shared layer that does not retry it reports it
                if e.status is None and e.source_message in {"ChunkedEncodingError", "ContentDecodingError"}:
                    problem, shown, status = "the response body was cut short", e.url, None
                else:
                    raise
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    if land_as:
                        self.landing.write(land_as, response.content)
                    self.stats.pages += 1
                    return body
                problem, shown, status = "the response body is not a JSON object", safe_url(response.url), 200
            if attempt > self.retry.max_retries:
                raise SourceHTTPError(method, shown, status, problem, attempt)
            wait = self.retry.backoff(attempt - 1, self._rng)
            log.warning(
                "%s: %s %s: %s; retry %d/%d in %.2fs",
                SOURCE,
                method,
                shown,
                problem,
                attempt,
                self.retry.max_retries,
                wait,
            )
            self.stats.body_retries += 1
            self._sleep(wait)

    # -- owners and archived objects: GET lists paged with `after` ------------------------------
    def pages(self, path: str, params: dict[str, Any], land_dir: str) -> Iterator[list[dict[str, Any]]]:
        """The ``results`` of every page of a GET list, page by page."""
        after, n = None, 0
        while True:
            n += 1
            p = dict(params, **({"after": after} if after else {}))
            body = self.call("GET", path, params=p, land_as=f"{land_dir}/page-{n:04d}.json")
            yield body.get("results") or []
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def list_pages(self, path: str, params: dict[str, Any], land_dir: str) -> list[dict[str, Any]]:
        return [r for page in self.pages(path, params, land_dir) for r in page]

    def owner_pages(self) -> Iterator[list[dict[str, Any]]]:
        yield from self.pages("crm/v3/owners", {"limit": 500, "archived": "false"}, "owners/active")
        yield from self.pages("crm/v3/owners", {"limit": 500, "archived": "true"}, "owners/archived")

    def owners(self) -> list[dict[str, Any]]:
        return [o for page in self.owner_pages() for o in page]

    def archived_pages(self, obj: str) -> Iterator[list[dict[str, Any]]]:
        _, props = OBJECTS[obj]
        params = {"limit": 100, "archived": "true", "properties": ",".join(props)}
        return self.pages(f"crm/v3/objects/{obj}", params, f"{obj}/archived")

    def archived(self, obj: str) -> list[dict[str, Any]]:
        return [r for page in self.archived_pages(obj) for r in page]

    # -- search in windows -------------------------------------------------------------------------
    def _search(self, obj: str, body: dict[str, Any], land_as: str) -> dict[str, Any]:
        self.stats.search_requests += 1
        return self.call("POST", f"crm/v3/objects/{obj}/search", json=body, land_as=land_as)

    def _filters(self, lm: str, lo: int, hi: int | None, extra: list[dict]) -> list[dict[str, Any]]:
        f = [{"propertyName": lm, "operator": "GTE", "value": str(lo)}]
        if hi is not None:
            f.append({"propertyName": lm, "operator": "LT", "value": str(hi)})
        return f + extra

    def _newest(self, obj: str, lm: str, lo: int, extra: list[dict]) -> int | None:
        body = {
            "filterGroups": [{"filters": self._filters(lm, lo, None, extra)}],
            "sorts": [{"propertyName": lm, "direction": "DESCENDING"}],
            "properties": [lm],
            "limit": 1,
        }
        page = self._search(obj, body, f"{obj}/search/{lo}-open/newest.json")
        results = page.get("results") or []
        return _ms((results[0].get("properties") or {}).get(lm)) if results else None

    def read_window(self, obj: str, lo: int, hi: int | None, extra: list[dict], into: SearchSpool) -> int | None:
        """Every record of ``[lo, hi)`` into ``into`` (committed when read whole): None; or the
        window's ``total`` when it exceeds ``max_results`` (nothing committed)."""
        lm, props = OBJECTS[obj]
        tag = f"{obj}/search/{lo}-{hi if hi is not None else 'open'}"
        for attempt in range(self.window_rereads + 1):
            try:
                return self._read_window_once(obj, lm, props, lo, hi, extra, tag, into)
            except _WindowChanged as e:
                self.stats.window_rereads += 1
                log.warning(
                    "%s: %s window %s..%s changed while read (%s); reading it again (%d/%d)",
                    SOURCE,
                    obj,
                    lo,
                    hi,
                    e,
                    attempt + 1,
                    self.window_rereads,
                )
        raise HubSpotError(obj, message=f"{obj} window [{lo}, {hi}) kept changing while it was read")

    def _read_window_once(self, obj, lm, props, lo, hi, extra, tag, into: SearchSpool) -> int | None:
        into.begin()
        versions: dict[str, int | None] = {}
        total, after, n, received = None, None, 0, 0
        while True:
            n += 1
            body: dict[str, Any] = {
                "filterGroups": [{"filters": self._filters(lm, lo, hi, extra)}],
                "sorts": [{"propertyName": lm, "direction": "ASCENDING"}],
                "properties": list(props),
                "limit": self.page_size,
            }
            if after is not None:
                body["after"] = after
            page = self._search(obj, body, f"{tag}/page-{n:04d}.json")
            page_total = page.get("total")
            if total is None:
                total = page_total
                if isinstance(total, int) and total > self.max_results:
                    into.discard()
                    return total
            elif page_total != total:
                raise _WindowChanged(f"total {total} -> {page_total}")
            rows = []
            for r in page.get("results") or []:
                rid = str(r.get("id"))
                v = _ms((r.get("properties") or {}).get(lm))
                if rid in versions and versions[rid] != v:
                    raise _WindowChanged(f"{rid} came back modified")
                versions[rid] = v
                rows.append((rid, v, r))
            into.add(rows)
            received += len(rows)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        if isinstance(total, int) and received != total:
            raise _WindowChanged(f"total {total} but {received} results")
        into.commit(versions)
        self.stats.windows_read += 1
        return None

    def search_all(
        self,
        obj: str,
        start: datetime | None = None,
        end: datetime | None = None,
        window: timedelta | None = None,
        extra: Iterable[dict] = (),
    ) -> list[dict[str, Any]]:
        """Every live record modified in ``[start, end)`` (open-ended without ``end``), as a list."""
        with tempfile.TemporaryDirectory(prefix="cxloop-hubspot-") as folder:
            spool = SearchSpool(Path(folder), obj)
            self.search(obj, spool, start, end, window, extra)
            out = list(spool.records())
            self.note_dropped(obj, spool)
            return out

    def search(
        self,
        obj: str,
        into: SearchSpool,
        start: datetime | None = None,
        end: datetime | None = None,
        window: timedelta | None = None,
        extra: Iterable[dict] = (),
    ) -> None:
        """Every live record modified in ``[start, end)`` (open-ended without ``end``) into
        ``into``, window by window; :meth:`SearchSpool.records` then gives the latest versions."""
        lm, _ = OBJECTS[obj]
        extra = list(extra)
        lo0 = _to_ms(start) or 0
        hi0 = _to_ms(end)
        windows: list[tuple[int, int | None]] = []
        if window is not None:
            step = max(1, int(window.total_seconds() * 1000))
            stop = hi0 if hi0 is not None else _to_ms(datetime.now(UTC))
            lo = lo0
            while lo + step < stop:
                windows.append((lo, lo + step))
                lo += step
            windows.append((lo, hi0))
        else:
            windows.append((lo0, hi0))
        stack = list(reversed(windows))  # read in time order
        while stack:
            lo, hi = stack.pop()
            got = self.read_window(obj, lo, hi, extra, into)
            if got is None:
                continue
            self.stats.windows_split += 1
            parts: list[tuple[int, int | None]] = []
            if hi is None:  # bound an open window by its newest record; later changes get their own
                newest = self._newest(obj, lm, lo, extra)
                if newest is None:
                    continue
                bound = newest + 1
                parts.append((bound, None))
                hi = bound
            if hi - lo <= 1:
                raise HubSpotError(
                    obj,
                    message=f"{got} {obj} share the {lm} of {lo} ms: more than the search API's "
                    f"{self.max_results}-result limit, and a window cannot be split below one millisecond",
                )
            mid = lo + (hi - lo) // 2
            log.info(
                "%s: %s window [%s, %s) holds %s > %s results: split at %s",
                SOURCE,
                obj,
                lo,
                hi,
                got,
                self.max_results,
                mid,
            )
            parts = [(lo, mid), (mid, hi), *parts]
            stack.extend(reversed(parts))

    def note_dropped(self, obj: str, spool: SearchSpool) -> None:
        """Count and log the older versions :meth:`SearchSpool.records` left out."""
        if spool.dropped:
            self.stats.duplicates_collapsed += spool.dropped
            log.info(
                "%s: %s: %d older version(s) of records modified during the run dropped", SOURCE, obj, spool.dropped
            )

    # -- associations ------------------------------------------------------------------------------
    def associations(self, src: str, dst: str, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(ids))
        for b in range(0, len(unique), ASSOCIATION_BATCH):
            pending = [{"id": i} for i in unique[b : b + ASSOCIATION_BATCH]]
            number = self._association_batches[src, dst] = self._association_batches.get((src, dst), 0) + 1
            n = 0
            while pending:
                n += 1
                body = self.call(
                    "POST",
                    f"crm/v4/associations/{src}/{dst}/batch/read",
                    json={"inputs": pending},
                    land_as=f"associations/{src}-{dst}/batch-{number:04d}-{n:02d}.json",
                )
                pending = []
                for res in body.get("results") or []:
                    fid = str((res.get("from") or {}).get("id"))
                    for to in res.get("to") or []:
                        out.setdefault(fid, []).append(str(to.get("toObjectId")))
                    nxt = ((res.get("paging") or {}).get("next") or {}).get("after")
                    if nxt:
                        pending.append({"id": fid, "after": nxt})
        return out


# ----------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _text(v: Any) -> Any:
    return None if _blank(v) else v


def _number(v: Any) -> Any:
    if _blank(v):
        return None
    if isinstance(v, int | float) and not isinstance(v, bool):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return v  # as received: the gate judges it


def _boolean(v: Any) -> Any:
    if _blank(v):
        return None
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    return {"true": True, "false": False}.get(text, v)


def map_buying_role(value: Any, title: Any, roles: RoleMapper) -> str:
    """``hs_buying_role`` (``;``-separated multi-select) -> one contract role."""
    found = set()
    for part in str(value).split(";") if not _blank(value) else []:
        mapped = roles.map(part.strip(), None)
        if mapped != roles.default:
            found.add(mapped)
    for role in ROLE_STRENGTH:
        if role in found:
            return role
    return roles.from_title(title) or roles.default


def map_owner(o: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(str(p).strip() for p in (o.get("firstName"), o.get("lastName")) if not _blank(p)) or None
    teams = o.get("teams") or []
    primary = next((t for t in teams if t.get("primary")), teams[0] if teams else None)
    archived = o.get("archived")
    return {
        "owner_id": _text(o.get("id")),
        "owner_name": name,
        "team": primary.get("name") if primary else None,
        "is_active": None if archived is None else not archived,
        "updated_at": o.get("updatedAt"),
    }


def map_company(r: dict[str, Any]) -> dict[str, Any]:
    p = r.get("properties") or {}
    return {
        "account_id": _text(r.get("id")),
        "account_name": _text(p.get("name")),
        "segment": _text(p.get("segment")),
        "region": _text(p.get("region")),
        "tier": _text(p.get("tier")),
        "arr": _number(p.get("arr")),
        "owner_id": _text(p.get("hubspot_owner_id")),
        "renewal_date": _text(p.get("renewal_date")),
        "is_active": _boolean(p.get("active")),
        "is_deleted": bool(r.get("archived", False)),
        "created_at": _text(p.get("createdate")) or r.get("createdAt"),
        "updated_at": _text(p.get("hs_lastmodifieddate")) or r.get("updatedAt"),
    }


def map_contact(r: dict[str, Any], roles: RoleMapper, key: bytes) -> dict[str, Any]:
    p = r.get("properties") or {}
    email = p.get("email")
    has_email = not _blank(email)
    role_source = p.get("hs_buying_role")
    return {
        "contact_id": _text(r.get("id")),
        "account_id": _text(p.get("associatedcompanyid")),
        "email_hash": email_hash(email, key) if has_email else None,
        "email_domain_valid": is_valid_email(email) if has_email else None,
        "title": _text(p.get("jobtitle")),
        "buying_role": map_buying_role(role_source, p.get("jobtitle"), roles),
        "buying_role_source": _text(role_source),
        "is_active": _boolean(p.get("active")),
        "opted_out": _boolean(p.get("hs_email_optout")),
        "is_deleted": bool(r.get("archived", False)),
        "updated_at": _text(p.get("lastmodifieddate")) or r.get("updatedAt"),
    }


def map_task_status(status: Any) -> Any:
    if _blank(status):
        return None
    return TASK_STATUS.get(str(status).strip().upper(), status)


def map_task(
    r: dict[str, Any], contacts: dict[str, list[str]], companies: dict[str, list[str]]
) -> dict[str, Any]:
    p = r.get("properties") or {}
    rid = str(r.get("id"))
    return {
        "follow_up_id": _text(r.get("id")),
        "response_id": _text(p.get("survey_response_id")),
        "account_id": (companies.get(rid) or [None])[0],
        "contact_id": (contacts.get(rid) or [None])[0],
        "owner_id": _text(p.get("hubspot_owner_id")),
        "created_at": _text(p.get("hs_createdate")) or r.get("createdAt"),
        "first_contact_at": _text(p.get("first_contact_at")),
        "closed_at": _text(p.get("hs_task_completion_date")),
        "status": map_task_status(p.get("hs_task_status")),
        "updated_at": _text(p.get("hs_lastmodifieddate")) or r.get("updatedAt"),
    }


def _utc_date(v: Any) -> Any:
    """A HubSpot date/datetime property as its UTC date (YYYY-MM-DD); unparseable: as received."""
    if _blank(v):
        return None
    ms = _ms(v)
    if ms is None:
        return v
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def map_deal(r: dict[str, Any], companies: dict[str, list[str]]) -> dict[str, Any]:
    p = r.get("properties") or {}
    rid = str(r.get("id"))
    return {
        "renewal_id": _text(r.get("id")),
        "account_id": (companies.get(rid) or [None])[0],
        "renewal_type": _text(p.get("dealtype")),
        "stage_name": _text(p.get("dealstage")),
        "amount": _number(p.get("amount")),
        "previous_amount": _number(p.get("previous_arr")),
        "close_date": _utc_date(p.get("closedate")),
        "is_closed": _boolean(p.get("hs_is_closed")),
        "is_won": _boolean(p.get("hs_is_closed_won")),
        "is_deleted": bool(r.get("archived", False)),
        "created_at": _text(p.get("createdate")) or r.get("createdAt"),
        "updated_at": _text(p.get("hs_lastmodifieddate")) or r.get("updatedAt"),
    }


def parse_dealtypes(option: Any = None) -> tuple[str, ...]:
    """The renewal deal types: the ``renewal_dealtypes`` option (comma-separated) or the default."""
    if option is None or (isinstance(option, str) and not option.strip()):
        return DEFAULT_HUBSPOT_RENEWAL_DEALTYPES
    values = option.split(",") if isinstance(option, str) else list(option)
    out = tuple(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    return out or DEFAULT_HUBSPOT_RENEWAL_DEALTYPES


def _in_range(r: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    t = _ms(r.get("updatedAt"))
    if t is None:
        return True
    lo, hi = _to_ms(start), _to_ms(end)
    return (lo is None or t >= lo) and (hi is None or t < hi)


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


def extract_hubspot(
    base_url: str,
    token: str,
    landing_dir: Path | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    window: timedelta | None = None,
    retry: RetryPolicy | None = None,
    role_mapper: RoleMapper | None = None,
    entities: tuple[str, ...] = ENTITIES,
    page_size: int = SEARCH_PAGE_MAX,
    max_results: int = RESULT_CAP,
    search_rate: tuple[int, float] | None = (4, 1.0),
    request_rate: tuple[int, float] | None = (100, 10.0),
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    stats: dict[str, Any] | None = None,
    sink: ChunkSink | None = None,
    chunk_rows: int = 100_000,
    spool_dir: Path | None = None,
    renewal_dealtypes: tuple[str, ...] | str | None = None,
) -> dict[str, pd.DataFrame] | None:
    """Extract the CRM entities from HubSpot (or the demo server) into canonical frames.

    ``base_url`` is the API root (``https://api.hubapi.com`` or the demo server's URL); ``token``
    a private app's access token. ``start``/``end`` bound the last-modified time of the records
    read (``[start, end)``, UTC; owners are always read whole); ``window`` cuts that range into
    windows of that width up front (otherwise one window, split on demand). ``max_results`` is
    the search API's result cap (10,000), ``search_rate``/``request_rate`` the client-side
    limits as ``(requests, seconds)`` (None: no limit). ``stats``, when given, receives the
    request counts. Requires ``CXLOOP_PII_KEY`` when contacts are extracted.
    With ``sink`` (the pipeline, through :func:`land_hubspot`) nothing is held whole: every
    ``chunk_rows`` rows of an entity go to ``sink(entity, text table, maxima)`` in their landed
    text form as the pages arrive, and nothing is returned. ``spool_dir`` is where the search
    spool's temporary folder is made (default: the system's temporary folder).
    ``renewal_dealtypes``: the ``dealtype`` values that are renewals (default ``renewal``).
    """
    unknown = [e for e in entities if e not in TIMESTAMPS]
    if unknown:
        raise ValueError(f"{SOURCE}: unknown entity {unknown[0]!r}; known: {', '.join(ENTITIES)}")
    roles = role_mapper or configured_role_mapper("hubspot", HUBSPOT_ROLE_PICKLIST)  # config mappings
    key = pii_key() if "contacts" in entities else b""  # fail fast, before any request
    if sink is None:
        buffers: dict[str, Any] = {e: FrameCollector(e, TIMESTAMPS[e]) for e in entities}
    else:
        buffers = {e: ChunkBuffer(e, sink, TIMESTAMPS[e], rows=chunk_rows) for e in entities}
    client = HubSpotClient(
        base_url,
        token,
        landing_dir=landing_dir,
        retry=retry,
        page_size=page_size,
        max_results=max_results,
        search_rate=search_rate,
        request_rate=request_rate,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    dealtypes = parse_dealtypes(renewal_dealtypes)
    spool_root = Path(tempfile.mkdtemp(prefix="cxloop-hubspot-", dir=spool_dir))  # 0700
    try:
        for entity in entities:
            t0 = time.monotonic()
            try:
                n = _stream_entity(
                    client, entity, buffers[entity], start, end, window, roles, key, spool_root, dealtypes
                )
            except HubSpotError:
                raise
            except SourceHTTPError as e:
                raise HubSpotError(entity, e) from None
            buffers[entity].flush()
            client.stats.by_object[entity] = n
            log.info("%s: %s: %d rows in %.2fs", SOURCE, entity, n, time.monotonic() - t0)
    finally:
        client.close()
        shutil.rmtree(spool_root, ignore_errors=True)
        if stats is not None:
            stats.update(vars(client.stats))
            stats["http_requests"] = client.http.stats.requests
            stats["http_retries"] = client.http.stats.retries
            stats["rate_limit_waited"] = client.search_limiter.waited if client.search_limiter else 0.0
    return None if sink is not None else {e: b.frame() for e, b in buffers.items()}


def _stream_entity(
    client: HubSpotClient,
    entity: str,
    buffer: Any,
    start: datetime | None,
    end: datetime | None,
    window: timedelta | None,
    roles: RoleMapper,
    key: bytes,
    spool_root: Path,
    dealtypes: tuple[str, ...] = DEFAULT_HUBSPOT_RENEWAL_DEALTYPES,
) -> int:
    """One entity's rows, mapped, into ``buffer`` (``add_rows``) in the order read; the count."""
    n = 0
    if entity == "owners":
        for page in client.owner_pages():
            buffer.add_rows([map_owner(o) for o in page])
            n += len(page)
        return n
    obj = ENTITY_OBJECT[entity]
    spool = SearchSpool(spool_root, obj)
    if entity == "follow_ups":
        has_response = [{"propertyName": "survey_response_id", "operator": "HAS_PROPERTY"}]
        client.search("tasks", spool, start, end, window, has_response)
        for group in _groups(spool.records(), ASSOCIATION_BATCH):
            ids = [str(r.get("id")) for r in group]
            contacts = client.associations("tasks", "contacts", ids)
            companies = client.associations("tasks", "companies", ids)
            buffer.add_rows([map_task(r, contacts, companies) for r in group])
            n += len(group)
        client.note_dropped(obj, spool)
        return n  # archived tasks are not follow-ups
    if entity == "renewals":
        renewal = [{"propertyName": "dealtype", "operator": "IN", "values": list(dealtypes)}]
        client.search("deals", spool, start, end, window, renewal)
        wanted = {t.lower() for t in dealtypes}

        def deal_rows(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
            companies = client.associations("deals", "companies", [str(r.get("id")) for r in group]) if group else {}
            return [map_deal(r, companies) for r in group]

        for group in _groups(spool.records(), ASSOCIATION_BATCH):
            buffer.add_rows(deal_rows(group))
            n += len(group)
        client.note_dropped(obj, spool)
        for page in client.archived_pages(obj):  # search never returns archived deals
            kept = [
                r for r in page
                if _in_range(r, start, end) and str((r.get("properties") or {}).get("dealtype") or "").lower() in wanted
            ]  # fmt: skip
            buffer.add_rows(deal_rows(kept))
            n += len(kept)
        return n

    def mapped(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if entity == "accounts":
            return [map_company(r) for r in records]
        return [map_contact(r, roles, key) for r in records]

    client.search(obj, spool, start, end, window)
    for group in _groups(spool.records(), SEARCH_PAGE_MAX):
        buffer.add_rows(mapped(group))
        n += len(group)
    client.note_dropped(obj, spool)
    for page in client.archived_pages(obj):  # search never returns archived records
        rows = mapped([r for r in page if _in_range(r, start, end)])
        buffer.add_rows(rows)
        n += len(rows)
    return n


def land_hubspot(base_url: str, token: str, sink: ChunkSink, **options: Any) -> None:
    """:func:`extract_hubspot` streamed into ``sink`` (the same ``options``)."""
    extract_hubspot(base_url, token, sink=sink, **options)


__all__ = [
    "ENTITIES",
    "HUBSPOT_ROLE_PICKLIST",
    "TASK_STATUS",
    "HubSpotClient",
    "HubSpotError",
    "RateLimiter",
    "SearchSpool",
    "extract_hubspot",
    "hubspot_error",
    "map_deal",
    "land_hubspot",
]
