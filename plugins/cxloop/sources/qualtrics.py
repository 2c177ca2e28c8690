"""Qualtrics connector: v3 API -> surveys, invitations, responses.

- surveys <- ``GET /surveys`` (survey type from the name: ``relationship_pattern`` matches ->
  relationship, else transactional).
- invitations <- ``GET /distributions?surveyId=`` then ``GET /distributions/{id}/history`` per
  distribution; ``invitation_id = <distributionId>:<contactId>``; contact_id and account_id from the
  XM Directory contact (``extRef`` = CRM contact id, ``embeddedData.AccountId``), read once with
  ``GET /directories/{directoryId}/contacts?includeEmbedded=true``; when the contact has no
  AccountId the invitation's response's ``values.AccountId`` is used, else it stays null.
- responses <- the response export per survey (start, poll, download zip); contact_id =
  ``values.externalDataReference``, account_id = ``values.AccountId``, invitation_id from the
  history element carrying the responseId; ``nps_score`` = ``values[nps_question_id]`` as
  received (null when absent); ``has_comment`` = the comment question has non-blank text.

Every page is landed raw under ``<landing_dir>/qualtrics/`` (``surveys/page-0001.json``,
``directory_contacts/page-0001.json``, ``distributions/<surveyId>/page-0001.json``,
``distribution_history/<distributionId>/page-0001.json``, ``responses/<surveyId>.zip``).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from cxloop.sources import Landing, build_frame, parse_utc, safe_name
from cxloop.sources.http_client import HttpClient, RetryPolicy, SourceHTTPError, safe_url

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
        poll_interval: float = 0.25,
        poll_max_interval: float = 5.0,
        export_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ):
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
        params = dict(params or {})
        if self.page_size:
            params["pageSize"] = self.page_size
        body, raw = self.http.get_json(path, params=params)
        n = 1
        seen_pages = set()
        while True:
            self.landing.write(f"{land_as}/page-{n:04d}.json", raw)
            result = self._result(body, path)
            yield from result.get("elements") or []
            next_page = result.get("nextPage")
            if not next_page:
                return
            if next_page in seen_pages:
                raise SourceHTTPError("GET", safe_url(next_page), 200, "nextPage repeats: paging loop")
            seen_pages.add(next_page)
            body, raw = self.http.get_json(next_page)
            n += 1

    def export_responses(
        self, survey_id: str, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        """Run the response export for one survey; returns the ``responses`` list of the file."""
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
        deadline = time.monotonic() + self.export_timeout
        interval = self.poll_interval
        status = result.get("status")
        file_id = result.get("fileId")
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
            self._sleep(interval)
            interval = min(self.poll_max_interval, interval * 2)
            body, _ = self.http.get_json(f"{base}/{progress_id}")
            result = self._result(body, base)
            status, file_id = result.get("status"), result.get("fileId")
        blob = self.http.get(
            f"{base}/{file_id}/file", headers={"Accept": "application/zip, application/json"}
        )
        content = blob.content
        self.landing.write(f"responses/{safe_name(survey_id)}.zip", content)
        return _read_export(content, survey_id)

    def close(self) -> None:
        self.http.close()


def _read_export(content: bytes, survey_id: str) -> list[dict[str, Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".json")]
            if not names:
                raise ValueError("no .json member")
            responses: list[dict[str, Any]] = []
            for name in names:
                doc = json.loads(zf.read(name))
                responses.extend(doc.get("responses", []) if isinstance(doc, dict) else doc)
            return responses
    except (zipfile.BadZipFile, ValueError) as e:
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


def _has_text(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, list):
        return any(_has_text(x) for x in v)
    return bool(str(v).strip())


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
    poll_interval: float = 0.25,
) -> dict[str, pd.DataFrame]:
    """Extract surveys, invitations and responses into canonical frames.

    ``base_url`` is the data-centre root (``https://iad1.qualtrics.com``) or the demo server's URL
    (``/API/v3`` is appended unless present). ``start``/``end`` bound the response export by
    recorded date (start inclusive, end exclusive). Surveys are read whole; invitations are read
    from the distributions sent at or after ``invitations_since`` and before ``end`` (a
    distribution's history keeps changing after it is sent, as bounces and responses arrive, so
    the caller passes a generous lookback).
    A response names its invitation through its embedded ``DistributionId`` and ``ContactId``
    (the invitation's key), falling back to the distribution history's ``responseId``.
    """
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
    )
    t0 = time.monotonic()
    try:
        surveys = list(client.elements("surveys", "surveys"))
        survey_rows = [
            {
                "survey_id": s.get("id"),
                "survey_name": s.get("name"),
                "survey_type": "relationship"
                if pattern.search(str(s.get("name") or ""))
                else "transactional",
                "is_active": s.get("isActive"),
                "updated_at": s.get("lastModified"),
            }
            for s in surveys
        ]

        contacts: dict[str, dict[str, Any]] = {}
        for c in client.elements(
            f"directories/{directory_id}/contacts", "directory_contacts", {"includeEmbedded": "true"}
        ):
            contacts[c.get("contactId")] = c

        invitation_rows: list[dict[str, Any]] = []
        invitation_of_response: dict[str, str] = {}
        response_rows: list[dict[str, Any]] = []
        for s in surveys:
            survey_id = s.get("id")
            sid = safe_name(survey_id)
            for d in client.elements("distributions", f"distributions/{sid}", {"surveyId": survey_id}):
                dist_id = d.get("id")
                if not _in_window(d.get("sendDate"), inv_since, inv_until):
                    continue
                for h in client.elements(
                    f"distributions/{dist_id}/history", f"distribution_history/{safe_name(dist_id)}"
                ):
                    cid = h.get("contactId")
                    contact = contacts.get(cid) or {}
                    embedded = contact.get("embeddedData") or {}
                    inv_id = f"{h.get('distributionId') or dist_id}:{cid}"
                    if h.get("responseId"):
                        invitation_of_response[h["responseId"]] = inv_id
                    invitation_rows.append(
                        {
                            "invitation_id": inv_id,
                            "distribution_id": h.get("distributionId") or dist_id,
                            "survey_id": survey_id,
                            "contact_id": contact.get("extRef"),
                            "account_id": embedded.get("AccountId"),
                            "sent_at": h.get("sentAt"),
                            "delivery_status": map_delivery_status(h.get("status")),
                            "source_status": h.get("status"),
                            "_response_id": h.get("responseId"),
                        }
                    )
            for r in client.export_responses(survey_id, start, end):
                values = r.get("values") or {}
                dist, cid = values.get("DistributionId"), values.get("ContactId")
                response_rows.append(
                    {
                        "_invitation_id": f"{dist}:{cid}" if dist and cid else None,
                        "response_id": r.get("responseId"),
                        "survey_id": survey_id,
                        "contact_id": values.get("externalDataReference"),
                        "account_id": values.get("AccountId"),
                        "recorded_at": values.get("recordedDate"),
                        "nps_score": values.get(nps_question_id),
                        "is_finished": values.get("finished"),
                        "has_comment": _has_text(values.get(comment_question_id)),
                    }
                )
        account_of_response: dict[str, Any] = {}
        for row in response_rows:
            row["invitation_id"] = row.pop("_invitation_id") or invitation_of_response.get(row["response_id"])
            if row["account_id"] is not None:
                account_of_response.setdefault(row["response_id"], row["account_id"])
        # Fallback when the directory contact carries no embeddedData.AccountId: the account the
        # invitation's response recorded (unanswered invitations then stay null for the gate).
        for row in invitation_rows:
            rid = row.pop("_response_id")
            if row["account_id"] is None and rid is not None:
                row["account_id"] = account_of_response.get(rid)
    finally:
        client.close()
    out = {
        "surveys": build_frame("surveys", survey_rows, ("updated_at",)),
        "invitations": build_frame("invitations", invitation_rows, ("sent_at",)),
        "responses": build_frame("responses", response_rows, ("recorded_at",)),
    }
    log.info(
        "qualtrics: %d surveys, %d invitations, %d responses in %.2fs",
        len(survey_rows),
        len(invitation_rows),
        len(response_rows),
        time.monotonic() - t0,
    )
    return out
