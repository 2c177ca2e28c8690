"""Qualtrics connector: v3 API -> surveys, invitations, responses.

- surveys <- ``GET /surveys`` (survey type from the name: ``relationship_pattern`` matches ->
  relationship, else transactional).
- invitations <- ``GET /distributions?surveyId=`` then ``GET /distributions/{id}/history`` per
  distribution; ``invitation_id = <distributionId>:<contactId>``; contact_id and account_id from the
  XM Directory contact (``extRef`` = CRM contact id, ``embeddedData.AccountId``), read whole with
  ``GET /directories/{directoryId}/contacts?includeEmbedded=true`` on a full extraction and kept
  in the source's landing state (``<landing>/source=qualtrics/state/directory_contacts.json``);
  an incremental extraction reads only the contacts changed since the last read (Search
  Directory Contacts, ``lastModifiedDate`` filter, one hour of overlap) into that mapping, and
  reads the directory whole again when the search refuses (its 10,000-contact depth), the
  state is missing, unreadable or of another directory, or older than ``directory_full_days``
  (deleted contacts leave the mapping then); when the contact has no
  AccountId the invitation's response's ``values.AccountId`` is used, else it stays null.
- responses <- the response export per survey (start, poll, download zip), in up to
  ``export_windows`` recorded-date windows at once (``startDate``/``endDate``; a window spans at
  least ``min_window_days``): every window's export is started before any is read, the files are
  downloaded ahead while earlier ones are parsed, and the responses are merged window after
  window (a response recorded on a boundary second is kept once); contact_id =
  ``values.externalDataReference``, account_id = ``values.AccountId``, invitation_id from the
  history element carrying the responseId; ``nps_score`` = ``values[nps_question_id]`` as
  received (null when absent); ``has_comment`` = the comment question has non-blank text.

Every page is landed raw under ``<landing_dir>/qualtrics/`` (``surveys/page-0001.json``,
``directory_contacts/page-0001.json``, ``distributions/<surveyId>/page-0001.json``,
``distribution_history/<distributionId>/page-0001.json``, ``responses/<surveyId>.zip``, or
``responses/<surveyId>/window-01.zip`` ... when the export ran in windows).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from cxloop.extract.frames import ChunkBuffer, ChunkSink, FrameCollector, Landing, parse_utc, safe_name
from cxloop.extract.http_client import HttpClient, RetryPolicy, SourceHTTPError, safe_url
from cxloop.source_config import Limits

log = logging.getLogger(__name__)

DELIVERY_STATUS: dict[str, str] = {
    **dict.fromkeys(
        [
            "Success",
            "Opened",
            "SurveyStarted",
            "SurveyPartiallyFinished",
            "SurveyFinished",
            "SurveyScreenedOut",
            "SessionExpired",
        ],
        "delivered",
    ),
    **dict.fromkeys(["SoftBounce", "HardBounce"], "bounced"),
    **dict.fromkeys(["Failure", "Error"], "failed"),
    **dict.fromkeys(["Blocked", "Skipped", "Complaint"], "opted_out"),
}


def qualtrics_error(response: requests.Response) -> str | None:
    """``{"meta": {"error": {"errorMessage", "errorCode"}}}`` -> ``"code: message"``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or None
    err = (body.get("meta") or {}).get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"{err.get('errorCode', 'ERROR')}: {err.get('errorMessage', '')}"
    return None


def map_delivery_status(status: Any) -> Any:
    """Distribution-history status -> delivery status; an unknown spelling passes through."""
    if status is None:
        return None
    return DELIVERY_STATUS.get(str(status).strip(), status)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    dt = parse_utc(value) if not isinstance(value, datetime) else value
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class QualtricsClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        landing_dir: Path | None = None,
        page_size: int | None = None,
        retry: RetryPolicy | None = None,
        poll_interval: float = 0.05,
        poll_max_interval: float = 5.0,
        export_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        limits: Limits | None = None,
    ):
        if limits is None:
            from cxloop.source_config import load_limits

            limits = load_limits()
        self.limits = limits
        root = base_url.rstrip("/")
        if not root.endswith("/API/v3"):
            root += "/API/v3"
        self.http = HttpClient(
            root + "/",
            token,
            source="qualtrics",
            error_parser=qualtrics_error,
            retry=retry,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_response_bytes=limits.response_bytes,
        )
        self.landing = Landing(landing_dir, "qualtrics")
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.poll_max_interval = poll_max_interval
        self.export_timeout = export_timeout
        self._sleep = sleep

    def _result(self, body: Any, url: str) -> Any:
        if not isinstance(body, dict) or "result" not in body:
            raise SourceHTTPError("GET", safe_url(url), 200, "no 'result' in the Qualtrics envelope")
        return body["result"]

    def elements(self, path: str, land_as: str, params: dict[str, Any] | None = None) -> Iterator[dict]:
        """All elements of a paged list, following ``nextPage``.

        Each page is landed as ``<land_as>/page-NNNN.json``."""
        for page in self.element_pages(path, land_as, params):
            yield from page

    def element_pages(self, path: str, land_as: str, params: dict[str, Any] | None = None) -> Iterator[list[dict]]:
        """:meth:`elements` a page at a time."""
        params = dict(params or {})
        if self.page_size:
            params["pageSize"] = self.page_size
        body, raw = self.http.get_json(path, params=params)
        n = 1
        seen_pages = set()
        while True:
            self.landing.write(f"{land_as}/page-{n:04d}.json", raw)
            result = self._result(body, path)
            yield list(result.get("elements") or [])
            next_page = result.get("nextPage")
            if not next_page:
                return
            if next_page in seen_pages:
                raise SourceHTTPError("GET", safe_url(next_page), 200, "nextPage repeats: paging loop")
            seen_pages.add(next_page)
            body, raw = self.http.get_json(next_page)
            n += 1

    def search_pages(
        self, path: str, body: dict[str, Any], land_as: str, params: dict[str, Any] | None = None
    ) -> Iterator[list[dict]]:
        """The element pages of a POSTed search (the next page POSTed to ``nextPage`` with the
        same body), each landed as ``<land_as>/page-NNNN.json``."""
        params = dict(params or {})
        if self.page_size:
            params["pageSize"] = self.page_size
        url, n, seen = path, 1, set()
        while True:
            response = self.http.post(url, json=body, params=params if n == 1 else None, retry_safe=True)
            raw = response.content
            self.landing.write(f"{land_as}/page-{n:04d}.json", raw)
            result = self._result(self.http.decode(response), path)
            yield list(result.get("elements") or [])
            next_page = result.get("nextPage")
            if not next_page:
                return
            if next_page in seen:
                raise SourceHTTPError("POST", safe_url(next_page), 200, "nextPage repeats: paging loop")
            seen.add(next_page)
            url, n = next_page, n + 1

    def start_export(
        self, survey_id: str, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> str:
        """Start the response export of one survey; returns its progressId."""
        payload: dict[str, Any] = {"format": "json"}
        if start is not None:
            payload["startDate"] = _iso(start)
        if end is not None:
            payload["endDate"] = _iso(end)
        base = f"surveys/{survey_id}/export-responses"
        # Starting an export twice only costs the server a second job: safe to retry.
        started = self.http.decode(self.http.post(base, json=payload, retry_safe=True))
        result = self._result(started, base)
        progress_id = result.get("progressId")
        if not progress_id:
            raise SourceHTTPError(
                "POST", safe_url(self.http.url(base)), 200, "export started without a progressId"
            )
        return progress_id

    def finish_export(self, survey_id: str, progress_id: str, land_as: str | None = None) -> bytes:
        """Poll a started export until it is complete (short first waits, then doubling up to
        ``poll_max_interval``) and download its file (landed raw); returns the zip."""
        base = f"surveys/{survey_id}/export-responses"
        deadline = time.monotonic() + self.export_timeout
        interval = self.poll_interval
        status, file_id, result = None, None, {}
        first = True
        while status != "complete" or not file_id:
            if status == "failed":
                raise SourceHTTPError(
                    "GET", safe_url(self.http.url(base)), 200, f"export {progress_id} failed"
                )
            if time.monotonic() > deadline:
                raise SourceHTTPError(
                    "GET",
                    safe_url(self.http.url(base)),
                    200,
                    f"export {progress_id} not complete after "
                    f"{self.export_timeout:.0f}s ({result.get('percentComplete')}%)",
                )
            if not first:
                self._sleep(interval)
                interval = min(self.poll_max_interval, interval * 2)
            first = False
            body, _ = self.http.get_json(f"{base}/{progress_id}")
            result = self._result(body, base)
            status, file_id = result.get("status"), result.get("fileId")
        blob = self.http.get(
            f"{base}/{file_id}/file", headers={"Accept": "application/zip, application/json"}
        )
        content = blob.content
        self.landing.write(land_as or f"responses/{safe_name(survey_id)}.zip", content)
        return content

    def export_file(
        self, survey_id: str, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> bytes:
        """Run the response export for one survey (start, poll, download); returns the zip."""
        return self.finish_export(survey_id, self.start_export(survey_id, start, end))

    def export_responses(
        self, survey_id: str, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        """Run the response export for one survey; returns the ``responses`` list of the file."""
        return list(iter_export(self.export_file(survey_id, start, end), survey_id, self.limits))

    def close(self) -> None:
        self.http.close()


def _read_export(content: bytes, survey_id: str) -> list[dict[str, Any]]:
    return list(iter_export(content, survey_id))


_WS = " \t\n\r"


def _int_literal(text: str) -> int | str:
    """A JSON integer: a Python int while it is an ordinary one, else its written text, so a
    20-digit (or 5000-digit) value lands exactly as sent and the gate decides; no overflow."""
    return int(text) if len(text) <= 18 else text


def _float_literal(text: str) -> float | str:
    """A JSON number with a fraction or exponent: a float when its text form is exactly what was
    written (``9.5``), else the written text (``1e2``, ``0.1000000000000000055``)."""
    value = float(text)
    return value if repr(value) == text else text


def _constant_literal(text: str) -> str:
    return text  # NaN, Infinity, -Infinity: not JSON, kept as the text the gate rejects


_DECODER = json.JSONDecoder(parse_int=_int_literal, parse_float=_float_literal, parse_constant=_constant_literal)
#: an export member smaller than this is never refused for its compression ratio (tiny files
#: compress erratically)
RATIO_FLOOR_BYTES = 1 << 20
_READ_BYTES = 1 << 20


class _Unstreamable(Exception):
    """The export document is not the plain ``{"responses": [...]}`` (or ``[...]``) shape."""


def _stream_array(stream: Any, max_record: int | None = None) -> Iterator[Any]:
    """The elements of the ``responses`` array of an export document, decoded one at a time
    from a binary stream, so the whole document is never held in memory. Raises
    :class:`_Unstreamable` (before yielding anything) when the document has another shape, and
    :class:`_TooBig` when one element grows past ``max_record`` characters."""
    buf = ""
    pos = 0
    eof = False
    pending = b""

    def more() -> bool:
        nonlocal buf, pos, eof, pending
        if eof:
            return False
        chunk = stream.read(_READ_BYTES)
        if not chunk:
            eof = True
            if pending:
                raise ValueError("export file is not UTF-8 text")
            return False
        data = pending + chunk
        try:
            text = data.decode("utf-8")
            pending = b""
        except UnicodeDecodeError as e:
            if e.start < len(data) - 3:  # not just a character cut at the block's end
                raise ValueError("export file is not UTF-8 text") from None
            text, pending = data[: e.start].decode("utf-8"), data[e.start :]
        buf = buf[pos:] + text
        pos = 0
        return True

    def skip_ws() -> bool:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos < len(buf):
                return True
            if not more():
                return False

    def expect(token: str) -> None:
        nonlocal pos
        if not skip_ws():
            raise _Unstreamable
        while len(buf) - pos < len(token) and more():
            pass
        if buf[pos : pos + len(token)] != token:
            raise _Unstreamable
        pos += len(token)

    if not skip_ws():
        raise _Unstreamable
    if buf.startswith("\ufeff", pos):
        raise _Unstreamable
    if buf[pos] == "{":
        pos += 1
        expect('"responses"')
        expect(":")
        wrapped = True
    else:
        wrapped = False
    expect("[")
    first = True
    while True:
        if not skip_ws():
            raise ValueError("export file ends inside the responses list")
        if buf[pos] == "]":
            pos += 1
            break
        if not first:
            if buf[pos] != ",":
                raise ValueError(f"expected ',' in the responses list at character {pos}")
            pos += 1
            if not skip_ws():
                raise ValueError("export file ends inside the responses list")
        while True:  # an element is taken only when text follows it (a cut one never parses whole)
            try:
                value, end = _DECODER.raw_decode(buf, pos)
                if end < len(buf) or eof:
                    break
            except json.JSONDecodeError:
                if eof:
                    raise
            if max_record is not None and len(buf) - pos > max_record:
                raise _TooBig(f"holds a response larger than the limit record_bytes={max_record}")
            if not more():
                value, end = _DECODER.raw_decode(buf, pos)
                break
        pos = end
        first = False
        yield value
    if wrapped:
        if not skip_ws() or buf[pos] != "}":
            # more keys after the list ({"responses": [...], "other": ...}): nothing else is read
            # from an export, but a second "responses" key would replace the first; refuse
            raise ValueError("export document has keys after the responses list")
        pos += 1
    if skip_ws():
        raise ValueError("extra data after the export document")


class _TooBig(Exception):
    pass


class _Inflating(io.RawIOBase):
    """A zip member read through a byte count: past ``limit`` bytes it raises _TooBig, so a zip
    bomb is stopped where it crosses the limit, whatever its header declared."""

    def __init__(self, member: Any, limit: int, why: str):
        self._m = member
        self.limit = limit
        self.why = why
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._m.read(len(b))
        n = len(data)
        self.count += n
        if self.count > self.limit:
            raise _TooBig(f"{self.why} (stopped after {self.count} inflated bytes)")
        b[:n] = data
        return n


def _member_budget(info: zipfile.ZipInfo, limits: Limits, used: int) -> tuple[int, str]:
    """How many inflated bytes the member may have, and the limit that sets it; raises _TooBig
    when its declared sizes already break a limit."""
    left = limits.uncompressed_bytes - used
    if info.file_size > left:
        raise _TooBig(
            f"declares {info.file_size} bytes uncompressed: more than the limit "
            f"uncompressed_bytes={limits.uncompressed_bytes}"
        )
    by_ratio = max(limits.compression_ratio * max(info.compress_size, 1), RATIO_FLOOR_BYTES)
    if info.file_size > by_ratio:
        raise _TooBig(
            f"declares {info.file_size} bytes from {info.compress_size} compressed: beyond the limit "
            f"compression_ratio={limits.compression_ratio}"
        )
    if by_ratio < left:
        return by_ratio, f"inflates beyond the limit compression_ratio={limits.compression_ratio}"
    return left, f"inflates beyond the limit uncompressed_bytes={limits.uncompressed_bytes}"


def iter_export(content: bytes, survey_id: str, limits: Limits | None = None) -> Iterator[dict[str, Any]]:
    """The responses of an export file (a zip of JSON documents), one at a time.

    Each document is decoded as it is decompressed (:func:`_stream_array`); a document of an
    unexpected shape is decoded whole instead, as before. Numbers keep their written text where a
    Python number would not reproduce it (:func:`_int_literal`, :func:`_float_literal`), NaN stays
    the text ``NaN``. ``limits`` (default: ``config/sources.yml``) bound the inflated size of the
    members, checked on their declared sizes and again on the bytes counted while inflating."""
    if limits is None:
        from cxloop.source_config import load_limits

        limits = load_limits()
    used = 0
    name = "?"
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            infos = [i for i in zf.infolist() if i.filename.lower().endswith(".json")]
            if not infos:
                raise ValueError("no .json member")
            for info in infos:
                name = safe_name(info.filename)[:100]
                budget, why = _member_budget(info, limits, used)
                try:
                    with zf.open(info) as member:
                        counted = _Inflating(member, budget, why)
                        stream = io.BufferedReader(counted, buffer_size=_READ_BYTES)
                        yield from _stream_array(stream, limits.record_bytes)
                    used += counted.count
                    continue
                except _Unstreamable:
                    pass
                # another shape is decoded whole: bounded by record_bytes
                whole = min(budget, limits.record_bytes)
                with zf.open(info) as member:
                    counted = _Inflating(
                        member,
                        whole,
                        why if whole == budget else f"is not a plain responses list and is larger than the "
                        f"limit record_bytes={limits.record_bytes} (such a document is decoded whole)",
                    )
                    doc = _DECODER.decode(io.BufferedReader(counted).read().decode("utf-8"))
                used += counted.count
                yield from (doc.get("responses", []) if isinstance(doc, dict) else doc)
    except _TooBig as e:
        raise SourceHTTPError(
            "GET", f"export file of {survey_id}", 200, f"qualtrics: export member {name} {e}; refused"
        ) from None
    except (zipfile.BadZipFile, ValueError, RecursionError) as e:
        if isinstance(e, UnicodeDecodeError):
            e = ValueError("export file is not UTF-8 text")
        elif isinstance(e, RecursionError):
            e = ValueError("nested too deeply")
        raise SourceHTTPError("GET", f"export file of {survey_id}", 200, f"unreadable export: {e}") from None


def _as_utc(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _in_window(send_date: Any, since: datetime | None, until: datetime | None) -> bool:
    """A distribution whose send date is unreadable is always read (never silently skipped)."""
    if since is None and until is None:
        return True
    try:
        sent = _as_utc(send_date)
    except (ValueError, TypeError):
        return True
    if sent is None:
        return True
    return (since is None or sent >= since) and (until is None or sent < until)


def window_bounds(
    start: datetime | None, end: datetime | None, floor: datetime | None, windows: int, min_days: float
) -> list[tuple[datetime | None, datetime | None]]:
    """The recorded-date windows one survey's responses are exported in: [start, end) cut into at
    most ``windows`` contiguous pieces of at least ``min_days`` each, on whole seconds. The first
    keeps ``start`` (None: open, so nothing before ``floor`` - the survey's creation - is lost) and
    the last keeps ``end``. Without an end, or too short a span: one window."""
    lo = start or floor
    if windows <= 1 or lo is None or end is None or end <= lo:
        return [(start, end)]
    span = (end - lo).total_seconds()
    n = int(min(windows, span // (min_days * 86400) if min_days > 0 else windows))
    if n <= 1:
        return [(start, end)]
    edges = [lo + (end - lo) * k / n for k in range(1, n)]
    edges = [e.replace(microsecond=0) for e in edges]
    bounds: list[datetime | None] = [start, *edges, end]
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


def _has_text(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, list):
        return any(_has_text(x) for x in v)
    return bool(str(v).strip())


def _downloads(
    client: QualtricsClient, plans: list[tuple], progress: list[str], workers: int
) -> Iterator[tuple[str, int, int, datetime | None, datetime | None, bytes]]:
    """(survey, window k, of windows, lo, hi, zip) in plan order; up to ``workers`` exports are
    polled and downloaded ahead of the one being parsed."""

    def fetch(i: int) -> bytes:
        sid, k, of = plans[i][:3]
        land = f"responses/{safe_name(sid)}/window-{k + 1:02d}.zip" if of > 1 else None
        return client.finish_export(sid, progress[i], land)

    if workers <= 1 or len(plans) <= 1:
        for i, plan in enumerate(plans):
            yield (*plan, fetch(i))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qualtrics-export") as pool:
        futures = {i: pool.submit(fetch, i) for i in range(min(workers, len(plans)))}
        try:
            for i, plan in enumerate(plans):
                blob = futures.pop(i).result()
                if i + workers < len(plans):
                    futures[i + workers] = pool.submit(fetch, i + workers)
                yield (*plan, blob)
        finally:
            for f in futures.values():
                f.cancel()


DIRECTORY_STATE = "directory_contacts.json"
#: Contact -> (extRef, AccountId): all an invitation needs of its directory contact
ContactMap = dict[Any, tuple[Any, Any]]


def directory_state_path(landing_dir: Path | None) -> Path | None:
    """Where the directory mapping is kept: ``<landing>/source=qualtrics/state/`` beside the
    ``raw/<batch>`` folder the extraction lands its pages in; None outside that layout."""
    if landing_dir is None:
        return None
    landing_dir = Path(landing_dir)
    if landing_dir.parent.name != "raw" or not landing_dir.parent.parent.name.startswith("source="):
        return None
    return landing_dir.parent.parent / "state" / DIRECTORY_STATE


def _load_state(path: Path, directory_id: str) -> dict[str, Any] | None:
    """The kept mapping, or None (absent, unreadable, another directory); never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            state = json.loads(f.read())
        if not isinstance(state, dict) or state.get("directory_id") != directory_id:
            return None
        state["read_at"] = datetime.fromisoformat(state["read_at"])
        state["full_at"] = datetime.fromisoformat(state["full_at"])
        contacts = {c[0]: (c[1], c[2]) for c in state["contacts"]}
    except (ValueError, KeyError, TypeError, IndexError, OSError):
        log.warning("qualtrics: directory state %s unreadable: the directory is read whole", path.name)
        return None
    state["contacts"] = contacts
    return state


def _save_state(path: Path, directory_id: str, contacts: ContactMap, read_at: datetime, full_at: datetime) -> None:
    """Written whole to a temporary file, then renamed over the old state (mode 0600)."""
    from cxloop.extract.private import private_dir, write_private

    private_dir(path.parent)
    doc = {
        "directory_id": directory_id,
        "read_at": read_at.isoformat(),
        "full_at": full_at.isoformat(),
        "contacts": [[cid, ext, acct] for cid, (ext, acct) in sorted(contacts.items(), key=lambda kv: str(kv[0]))],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_private(tmp, json.dumps(doc, separators=(",", ":")).encode())
    os.replace(tmp, path)


def read_directory(
    client: QualtricsClient,
    directory_id: str,
    *,
    state_path: Path | None,
    incremental: bool,
    lookback: timedelta = timedelta(hours=1),
    full_days: float = 7.0,
    now: datetime | None = None,
) -> tuple[ContactMap, str]:
    """The directory's contact -> (extRef, AccountId) mapping and how it was read (``full`` or
    ``incremental``): only the contacts changed since the kept mapping's read when
    ``incremental`` and the state allows, else every page. The mapping is kept again."""
    now = now or datetime.now(UTC)
    base = f"directories/{directory_id}/contacts"
    state = _load_state(state_path, directory_id) if state_path is not None and incremental else None
    if state is not None and now - state["full_at"] > timedelta(days=full_days):
        state = None  # a periodic whole read: contacts deleted from the directory leave the mapping
    contacts: ContactMap
    mode = "full"
    if state is not None:
        contacts = state["contacts"]
        since = state["read_at"] - lookback
        body = {"filter": {"filterType": "lastModifiedDate", "comparison": "gte", "value": _iso(since)}}
        try:
            changed: ContactMap = {}
            for page in client.search_pages(
                f"{base}/search", body, "directory_search", {"includeEmbedded": "true"}
            ):
                for c in page:
                    changed[c.get("contactId")] = (c.get("extRef"), (c.get("embeddedData") or {}).get("AccountId"))
            contacts.update(changed)
            mode = "incremental"
            log.info("qualtrics: %d directory contacts changed since %s", len(changed), _iso(since))
        except SourceHTTPError as e:
            if e.status != 400:
                raise
            log.warning("qualtrics: directory search refused (%s): the directory is read whole", e.source_message)
            state = None
    if state is None:
        contacts = {}
        for page in client.element_pages(base, "directory_contacts", {"includeEmbedded": "true"}):
            for c in page:
                contacts[c.get("contactId")] = (c.get("extRef"), (c.get("embeddedData") or {}).get("AccountId"))
    if state_path is not None:
        _save_state(state_path, directory_id, contacts, now, state["full_at"] if state is not None else now)
    return contacts, mode


_END = object()
QUEUED_PAGES = 32  # pages a history fetcher may run ahead of the consumer


def _history_pages(client: QualtricsClient, dists: list[str], workers: int) -> Iterator[tuple[str, list[dict]]]:
    """(distribution id, one page of its history's elements), distribution after distribution in
    the given order. Up to ``workers`` histories are fetched at once (each is an independent paged
    resource); a fetcher waits when it is ``QUEUED_PAGES`` pages ahead, so memory stays bounded
    however big one distribution is."""

    def pages(dist_id: str) -> Iterator[list[dict]]:
        return client.element_pages(f"distributions/{dist_id}/history", f"distribution_history/{safe_name(dist_id)}")

    if workers <= 1:
        for d in dists:
            for page in pages(d):
                yield d, page
        return
    stop = threading.Event()

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def fetch(dist_id: str, q: queue.Queue) -> None:
        try:
            for page in pages(dist_id):
                if not put(q, page):
                    return
            put(q, _END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put(q, e)

    ahead = workers * 2
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qualtrics") as pool:
        queues: list[queue.Queue] = []

        def submit(dist_id: str) -> None:
            q: queue.Queue = queue.Queue(maxsize=QUEUED_PAGES)
            queues.append(q)
            pool.submit(fetch, dist_id, q)

        try:
            for d in dists[:ahead]:
                submit(d)
            for i, d in enumerate(dists):
                if i + ahead < len(dists):
                    submit(dists[i + ahead])
                q = queues[i]
                while True:
                    item = q.get()
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield d, item
                queues[i] = None  # type: ignore[call-overload]
        finally:
            stop.set()  # a failure (or an abandoned generator): the fetchers stop


def _run(
    base_url: str,
    token: str,
    directory_id: str,
    landing_dir: Path | None,
    nps_question_id: str,
    relationship_pattern: str,
    start: datetime | str | None,
    end: datetime | str | None,
    *,
    buffers: dict[str, Any],
    comment_question_id: str,
    invitations_since: datetime | None,
    page_size: int | None,
    retry: RetryPolicy | None,
    poll_interval: float,
    workers: int,
    limits: Limits | None = None,
    windows: int = 4,
    min_window_days: float = 7.0,
    directory_state: Path | None = None,
    directory_full_days: float = 7.0,
) -> dict[str, int]:
    inv_since = _as_utc(invitations_since)
    inv_until = _as_utc(end)
    pattern = re.compile(relationship_pattern)
    client = QualtricsClient(
        base_url,
        token,
        landing_dir=landing_dir,
        page_size=page_size,
        retry=retry,
        poll_interval=poll_interval,
        limits=limits,
    )
    counts = {"surveys": 0, "invitations": 0, "responses": 0}
    try:
        surveys = list(client.elements("surveys", "surveys"))
        buffers["surveys"].add(
            {
                "survey_id": [s.get("id") for s in surveys],
                "survey_name": [s.get("name") for s in surveys],
                "survey_type": [
                    "relationship" if pattern.search(str(s.get("name") or "")) else "transactional" for s in surveys
                ],
                "is_active": [s.get("isActive") for s in surveys],
                "updated_at": [s.get("lastModified") for s in surveys],
            }
        )
        counts["surveys"] = len(surveys)

        # Start every survey's exports now, window by window: the server prepares them (several
        # at once) while the directory is read.
        start_utc, end_utc = _as_utc(start), _as_utc(end)
        plans: list[tuple[str, int, int, datetime | None, datetime | None]] = []  # survey, k, of, lo, hi
        for s in surveys:
            try:
                floor = _as_utc(s.get("creationDate"))
            except (ValueError, TypeError):
                floor = None
            cuts = window_bounds(start_utc, end_utc, floor, windows, min_window_days)
            plans.extend((s.get("id"), k, len(cuts), lo, hi) for k, (lo, hi) in enumerate(cuts))
        progress = [
            client.start_export(sid, lo if k else start, hi if k < of - 1 else end) for sid, k, of, lo, hi in plans
        ]

        # contactId -> (extRef, embeddedData.AccountId): all an invitation needs of its contact
        contacts, directory_mode = read_directory(
            client,
            directory_id,
            state_path=directory_state if directory_state is not None else directory_state_path(landing_dir),
            incremental=start is not None or invitations_since is not None,
            full_days=directory_full_days,
        )

        # Responses first (the exports), streamed. A response names its invitation by its embedded
        # DistributionId and ContactId; the few that do not wait for the distribution histories
        # (whose responseId names it). The account a response recorded is kept only where an
        # invitation may need it: when its contact has no AccountId in the directory.
        log.info("qualtrics: %d directory contacts (%s read)", len(contacts), directory_mode)
        deferred: list[dict[str, Any]] = []
        deferred_ids: set[Any] = set()
        account_of_response: dict[Any, Any] = {}
        for survey_id, k, of, lo, hi, blob in _downloads(client, plans, progress, workers):
            page: list[dict[str, Any]] = []
            if k == 0:
                edge_seen: set[Any] = set()  # responses on the boundary second before this window
            edge = _iso(hi)[:19] if hi is not None and k < of - 1 else None
            on_edge: set[Any] = set()
            for r in iter_export(blob, survey_id, client.limits):
                values = r.get("values") or {}
                if k or edge:  # windows meet on a second: a response recorded on it is kept once
                    recorded = str(values.get("recordedDate") or "")[:19]
                    if k and r.get("responseId") in edge_seen and recorded == _iso(lo)[:19]:
                        continue
                    if edge and recorded == edge:
                        on_edge.add(r.get("responseId"))
                dist, cid = values.get("DistributionId"), values.get("ContactId")
                row = {
                    "response_id": r.get("responseId"),
                    "invitation_id": f"{dist}:{cid}" if dist and cid else None,
                    "survey_id": survey_id,
                    "contact_id": values.get("externalDataReference"),
                    "account_id": values.get("AccountId"),
                    "recorded_at": values.get("recordedDate"),
                    "nps_score": values.get(nps_question_id),
                    "is_finished": values.get("finished"),
                    "has_comment": _has_text(values.get(comment_question_id)),
                }
                counts["responses"] += 1
                if row["account_id"] is not None and (cid is None or (contacts.get(cid) or (None, None))[1] is None):
                    account_of_response.setdefault(row["response_id"], row["account_id"])
                if row["invitation_id"] is None:
                    deferred.append(row)
                    deferred_ids.add(row["response_id"])
                    continue
                page.append(row)
                if len(page) >= 5000:
                    buffers["responses"].add_rows(page)
                    page = []
            buffers["responses"].add_rows(page)
            edge_seen = on_edge

        log.info("qualtrics: %d responses read (%d wait for their invitation)", counts["responses"], len(deferred))
        invitation_of_response: dict[Any, str] = {}
        for s in surveys:
            survey_id = s.get("id")
            sid = safe_name(survey_id)
            dists = [
                d.get("id")
                for d in client.elements("distributions", f"distributions/{sid}", {"surveyId": survey_id})
                if _in_window(d.get("sendDate"), inv_since, inv_until)
            ]
            for dist_id, history in _history_pages(client, dists, workers):
                n = len(history)
                cols: dict[str, list[Any]] = {
                    "invitation_id": [None] * n,
                    "distribution_id": [None] * n,
                    "survey_id": [survey_id] * n,
                    "contact_id": [None] * n,
                    "account_id": [None] * n,
                    "sent_at": [None] * n,
                    "delivery_status": [None] * n,
                    "source_status": [None] * n,
                }
                for i, h in enumerate(history):
                    cid = h.get("contactId")
                    ext_ref, account = contacts.get(cid) or (None, None)
                    d_id = h.get("distributionId") or dist_id
                    inv_id = f"{d_id}:{cid}"
                    rid = h.get("responseId")
                    if rid and rid in deferred_ids:
                        invitation_of_response[rid] = inv_id
                    if account is None and rid is not None:
                        # the directory contact has no AccountId: the account its response recorded
                        account = account_of_response.get(rid)
                    status = h.get("status")
                    cols["invitation_id"][i] = inv_id
                    cols["distribution_id"][i] = d_id
                    cols["contact_id"][i] = ext_ref
                    cols["account_id"][i] = account
                    cols["sent_at"][i] = h.get("sentAt")
                    cols["delivery_status"][i] = map_delivery_status(status)
                    cols["source_status"][i] = status
                counts["invitations"] += n
                buffers["invitations"].add(cols)
        for row in deferred:
            row["invitation_id"] = invitation_of_response.get(row["response_id"])
        buffers["responses"].add_rows(deferred)
        for b in buffers.values():
            b.flush()
    finally:
        client.close()
    return counts


def extract_qualtrics(
    base_url: str,
    token: str,
    directory_id: str,
    landing_dir: Path | None = None,
    nps_question_id: str = "QID1",
    relationship_pattern: str = "(?i)relationship",
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    *,
    comment_question_id: str = "QID2_TEXT",
    invitations_since: datetime | None = None,
    page_size: int | None = None,
    retry: RetryPolicy | None = None,
    poll_interval: float = 0.05,
    workers: int = 4,
    sink: ChunkSink | None = None,
    chunk_rows: int = 100_000,
    limits: Limits | None = None,
    export_windows: int = 4,
    min_window_days: float = 7.0,
    directory_state: Path | None = None,
    directory_full_days: float = 7.0,
) -> dict[str, pd.DataFrame] | dict[str, int]:
    """Extract surveys, invitations and responses into canonical frames.

    ``base_url`` is the data-centre root (``https://iad1.qualtrics.com``) or the demo server's URL
    (``/API/v3`` is appended unless present). ``start``/``end`` bound the response export by
    recorded date (start inclusive, end exclusive). Surveys are read whole; invitations are read
    from the distributions sent at or after ``invitations_since`` and before ``end`` (a
    distribution's history keeps changing after it is sent, as bounces and responses arrive, so
    the caller passes a generous lookback).
    A response names its invitation through its embedded ``DistributionId`` and ``ContactId``
    (the invitation's key), falling back to the distribution history's ``responseId``.
    ``workers``: how many distribution histories (and response export files) are fetched at once.
    ``export_windows``: how many recorded-date windows one survey's responses are exported in at
    once (each at least ``min_window_days`` long; 1: one export per survey).
    ``directory_state``: the file the directory mapping is kept in (default: beside
    ``landing_dir``'s ``raw/<batch>`` folder, see :func:`directory_state_path`; none outside that
    layout: the directory is then read whole). An extraction with a window (``start`` or
    ``invitations_since``) reads only the changed contacts into it; ``directory_full_days``: how
    old the last whole read may be before the directory is read whole again.
    With ``sink`` (the pipeline, through :func:`land_qualtrics`) nothing is held whole: every
    ``chunk_rows`` rows of an entity go to ``sink(entity, text table, maxima)`` in their landed
    text form (:func:`cxloop.extract.frames.text_table`) as they arrive, and the row counts per
    entity are returned instead of frames. ``limits``: the response and export size limits
    (default: the ``limits:`` of ``config/sources.yml``).
    """
    if sink is None:
        buffers: dict[str, Any] = {e: FrameCollector(e, TIMESTAMPS[e]) for e in ENTITIES}
    else:
        buffers = {e: ChunkBuffer(e, sink, TIMESTAMPS[e], rows=chunk_rows) for e in ENTITIES}
    t0 = time.monotonic()
    counts = _run(
        base_url,
        token,
        directory_id,
        landing_dir,
        nps_question_id,
        relationship_pattern,
        start,
        end,
        buffers=buffers,
        comment_question_id=comment_question_id,
        invitations_since=invitations_since,
        page_size=page_size,
        retry=retry,
        poll_interval=poll_interval,
        workers=workers,
        limits=limits,
        windows=export_windows,
        min_window_days=min_window_days,
        directory_state=directory_state,
        directory_full_days=directory_full_days,
    )
    _log_counts(counts, t0)
    return counts if sink is not None else {e: c.frame() for e, c in buffers.items()}


def land_qualtrics(base_url: str, token: str, directory_id: str, sink: ChunkSink, **options: Any) -> dict[str, int]:
    """:func:`extract_qualtrics` streamed into ``sink`` (the same ``options``); the row counts."""
    return extract_qualtrics(base_url, token, directory_id, sink=sink, **options)


ENTITIES = ("surveys", "invitations", "responses")
TIMESTAMPS = {"surveys": ("updated_at",), "invitations": ("sent_at",), "responses": ("recorded_at",)}


def _log_counts(counts: dict[str, int], t0: float) -> None:
    log.info(
        "qualtrics: %d surveys, %d invitations, %d responses in %.2fs",
        counts["surveys"],
        counts["invitations"],
        counts["responses"],
        time.monotonic() - t0,
    )
