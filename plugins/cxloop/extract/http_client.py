"""The shared HTTP layer of the source connectors.

One :class:`HttpClient` per source and run wraps a :class:`requests.Session` with

- connect and read timeouts on every request;
- retries with exponential backoff and jitter on 5xx answers, connection errors and timeouts;
- ``429 Too Many Requests`` honoured: the ``Retry-After`` delay (seconds or an HTTP date) is
  waited, capped at ``retry_after_cap``;
- ``POST`` retried only when the caller marks it ``retry_safe`` (a 429, which means the server did
  not process the request, and a connect timeout, which means it was never sent, are retried
  for any method);
- the bearer token sent in the ``Authorization`` header, and only to the base URL's origin
  (a ``nextPage`` URL pointing elsewhere is refused rather than handed the token);
- secrets never in log lines or exception messages: URLs are shown without secret-looking
  query parameters, the token text is scrubbed from anything echoed back, and the requests
  exception (whose text carries the full URL) is not chained.

- every response body read streamed and refused past ``max_response_bytes`` (default: the
  ``limits.response_bytes`` of ``config/sources.yml``): a declared ``Content-Length`` above it is
  refused before reading, a body that grows past it (chunked, or inflated from gzip) is cut off
  where it crosses the limit; the error names the source, the endpoint and the limit, never the
  body.

Errors raise :class:`SourceHTTPError` naming the method, the safe URL, the status and the
source's own error message (extracted by a per-source ``error_parser``). A 400, 401, 403 or 404
raises its subclass :class:`PermanentSourceError` (source, endpoint path, status, and what to fix):
no retry can heal it, so the DAG glue fails the task at once instead of retrying.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

try:  # msgspec (an Airflow dependency) decodes JSON pages a good deal faster than the stdlib
    import msgspec

    _fast_json: Callable[[bytes], Any] | None = msgspec.json.Decoder().decode
    _FastJsonError: type[Exception] = msgspec.DecodeError
except ImportError:  # pragma: no cover - the standard decoder then
    _fast_json, _FastJsonError = None, ValueError

log = logging.getLogger(__name__)

SECRET_PARAM_WORDS = ("token", "key", "secret", "password", "passwd", "sig", "signature", "auth", "session")
RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_MESSAGE_CHARS = 500


class _TooLarge(Exception):
    pass


class SourceHTTPError(RuntimeError):
    """A request to a source failed for good. ``str()`` carries no secrets."""

    def __init__(self, method: str, url: str, status: int | None, message: str, attempts: int = 1):
        self.method = method
        self.url = url
        self.status = status
        self.source_message = message
        self.attempts = attempts
        status_text = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{method} {url} failed ({status_text}, {attempts} attempt(s)): {message}")


#: answers that no retry can heal: the request, the credentials or the endpoint must change
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})
_PERMANENT_WHAT = {
    400: "request rejected",
    401: "token rejected",
    403: "token rejected (no permission)",
    404: "endpoint not found",
}


def permanent_fix(source: str, status: int | None) -> str:
    """What to change after a permanent answer from ``source`` (no secrets, one phrase)."""
    name = source.upper()
    if status in (401, 403):
        return (
            f"set a valid token in CXLOOP_{name}_TOKEN or the password of the Airflow connection cx_{source}"
            + (" (and give it read access)" if status == 403 else "")
        )
    if status == 404:
        return f"check the base URL in CXLOOP_{name}_BASE_URL or the host of the Airflow connection cx_{source}"
    return f"check the options of {source} in config/sources.yml (or CXLOOP_{name}_OPT_*) and the source's message"


class PermanentSourceError(SourceHTTPError):
    """A 400/401/403/404 from a source: retrying cannot help. Carries ``source``, ``endpoint``
    (the URL path, never its query) and ``status``; :meth:`one_line` says what to fix."""

    def __init__(self, source: str, method: str, url: str, status: int, message: str, attempts: int = 1):
        super().__init__(method, url, status, message, attempts)
        self.source = source
        self.endpoint = urlsplit(url).path or "/"

    @property
    def what(self) -> str:
        return _PERMANENT_WHAT.get(self.status or 0, f"HTTP {self.status}")

    def one_line(self) -> str:
        text = (
            f"{self.source}: {self.method} {self.endpoint} answered HTTP {self.status} ({self.what}): "
            f"{permanent_fix(self.source, self.status)}; the source said: {self.source_message}"
        )
        return " ".join(text.split())


def as_permanent(exc: BaseException, source: str) -> PermanentSourceError | None:
    """``exc`` as a :class:`PermanentSourceError` when it is one, or a :class:`SourceHTTPError`
    (a connector's own subclass wrapping one) with a permanent status; else None."""
    if isinstance(exc, PermanentSourceError):
        return exc
    if isinstance(exc, SourceHTTPError) and exc.status in PERMANENT_STATUSES:
        return PermanentSourceError(source, exc.method, exc.url, exc.status, exc.source_message, exc.attempts)
    return None


def safe_url(url: str, max_query_chars: int = 300) -> str:
    """The URL with the values of secret-looking query parameters replaced and a long query cut."""
    parts = urlsplit(url)
    if not parts.query:
        return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
    pairs = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if any(w in k.lower() for w in SECRET_PARAM_WORDS) and k.lower() != "skiptoken":
            v = "REDACTED"
        pairs.append((k, v))
    query = urlencode(pairs)
    if len(query) > max_query_chars:
        query = query[:max_query_chars] + "..."
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, query, ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _default_error_parser(response: requests.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:200] or None
    return str(body)[:200]


@dataclass
class RetryPolicy:
    max_retries: int = 5  # retries after the first attempt
    backoff_base: float = 0.5  # seconds; delay n is base * 2**n, jittered
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0
    jitter: float = 0.5  # the delay is drawn from [d * (1 - jitter), d]

    @classmethod
    def configured(cls) -> RetryPolicy:
        """The policy of ``config/sources.yml``'s ``retry:`` section (and CXLOOP_RETRY_*)."""
        from cxloop.source_config import load_retry

        return cls.from_settings(load_retry())

    @classmethod
    def from_settings(cls, r) -> RetryPolicy:
        """From a :class:`cxloop.source_config.RetrySettings`."""
        return cls(
            max_retries=r.max_retries,
            backoff_base=r.backoff_base_seconds,
            backoff_max=r.backoff_max_seconds,
            retry_after_cap=r.retry_after_cap_seconds,
        )

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2**retry_number))
        return delay * (1 - self.jitter * rng.random())


@dataclass
class RequestStats:
    requests: int = 0  # attempts sent
    retries: int = 0
    sleeps: list[float] = field(default_factory=list)
    bytes_received: int = 0


class HttpClient:
    """A bearer-token HTTP client for one source.

    ``base_url`` is the source's API root (``http://host:port/API/v3``); request paths are joined
    onto it, absolute URLs (``nextPage``, ``nextRecordsUrl``) must share its origin.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        source: str = "source",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        error_parser: Callable[[requests.Response], str | None] | None = None,
        headers: dict[str, str] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_response_bytes: int | None = None,
    ):
        if not base_url:
            raise ValueError(f"{source}: base_url is empty")
        self.base_url = base_url.rstrip("/") + "/"
        self._origin = urlsplit(self.base_url)[:2]
        self._token = token or ""
        self.source = source
        self.timeout = (connect_timeout, read_timeout)
        if retry is None or max_response_bytes is None:  # one read of config/sources.yml for both
            from cxloop.source_config import load_source_config

            config = load_source_config()
            retry = retry or RetryPolicy.from_settings(config.retry)
            if max_response_bytes is None:
                max_response_bytes = config.limits.response_bytes
        self.retry = retry
        self.error_parser = error_parser or _default_error_parser
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = RequestStats()
        self.max_response_bytes = int(max_response_bytes)
        own_session = session is None
        self.session = session or requests.Session()
        if own_session:
            # Every request goes to the one origin: resolve the environment's proxy and CA
            # settings once here instead of on every request (requests re-reads them per call,
            # which costs about a millisecond a request on a paged extraction).
            self.session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if ca_bundle:
                self.session.verify = ca_bundle
            self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Accept": "application/json", "User-Agent": "cxloop-connector"})
        if headers:
            self.session.headers.update(headers)

    # -- helpers -------------------------------------------------------------------------
    def url(self, path_or_url: str) -> str:
        url = urljoin(self.base_url, path_or_url)  # "x" joins the base, "/x" the origin
        if urlsplit(url)[:2] != self._origin:
            # Never hand the token to another host, whatever a paging link says.
            raise SourceHTTPError(
                "GET", safe_url(url), None, f"{self.source}: refusing a URL outside {self._origin[1]}"
            )
        return url

    def scrub(self, text: str) -> str:
        if self._token and self._token in text:
            text = text.replace(self._token, "***")
        return text

    def _message(self, response: requests.Response) -> str:
        try:
            msg = self.error_parser(response)
        except Exception:  # noqa: BLE001 - a broken error body must not hide the status
            msg = None
        msg = msg or response.reason or "error"
        return self.scrub(str(msg))[:MAX_MESSAGE_CHARS]

    def _read_body(self, response: requests.Response) -> None:
        """Read the body into ``response.content``, at most ``max_response_bytes`` of it
        (counted after content decoding, so a gzip bomb stops where it crosses the limit)."""
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.strip().isdigit() and int(declared) > limit:
            response.close()
            raise _TooLarge(f"declared Content-Length {int(declared)}")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=1 << 16):
            size += len(chunk)
            if size > limit:
                response.close()
                raise _TooLarge(f"more than {limit} bytes received")
            chunks.append(chunk)
        # hand the bounded body to the usual accessors (.content, .json(), .text)
        response._content = b"".join(chunks)  # noqa: SLF001 - requests' own cache of the body
        response._content_consumed = True  # noqa: SLF001

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request loop ----------------------------------------------------------------
    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> requests.Response:
        """Send one request with the retry policy; return the 2xx response or raise SourceHTTPError.

        ``retry_safe`` defaults to True for GET/HEAD/OPTIONS and False otherwise.
        """
        method = method.upper()
        url = self.url(path_or_url)
        shown = safe_url(url if not params else f"{url}{'&' if '?' in url else '?'}{urlencode(params)}")
        if retry_safe is None:
            retry_safe = method in {"GET", "HEAD", "OPTIONS"}
        req_headers = {"Authorization": f"Bearer {self._token}"}
        if headers:
            req_headers.update(headers)
        retries = 0
        while True:
            self.stats.requests += 1
            attempt = retries + 1
            wait: float | None = None
            try:
                response = self.session.request(
                    method, url, params=params, json=json, headers=req_headers, timeout=self.timeout, stream=True
                )
                self._read_body(response)
            except _TooLarge as exc:
                raise SourceHTTPError(
                    method,
                    shown,
                    response.status_code,
                    f"{self.source}: response body larger than the limit response_bytes={self.max_response_bytes} "
                    f"({exc}); raise limits.response_bytes in config/sources.yml if the source is right",
                    attempt,
                ) from None
            except requests.exceptions.ConnectTimeout:
                reason, status, retryable = "connect timeout", None, True
            except requests.exceptions.Timeout:
                reason, status, retryable = "read timeout", None, retry_safe
            except requests.exceptions.ConnectionError as exc:
                # A reset after sending may have been processed: only retry when safe.
                kind = "connection refused" if "refused" in str(exc).lower() else "connection error"
                reason, status, retryable = kind, None, retry_safe or kind == "connection refused"
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
                # the body was cut short (the connection dropped mid-transfer): ask again when safe
                reason, status, retryable = "response body cut short", None, retry_safe
            except requests.exceptions.RequestException as exc:
                raise SourceHTTPError(method, shown, None, type(exc).__name__, attempt) from None
            else:
                status = response.status_code
                if status < 400:
                    self.stats.bytes_received += len(response.content)
                    return response
                reason = self._message(response)
                if status == 429:
                    retryable = True
                    ra = parse_retry_after(response.headers.get("Retry-After"))
                    if ra is not None:
                        wait = min(ra, self.retry.retry_after_cap)
                elif status in RETRY_STATUSES or 500 <= status < 600:
                    retryable = retry_safe
                else:
                    retryable = False
                response.close()
            if status in PERMANENT_STATUSES:
                raise PermanentSourceError(self.source, method, shown, status, reason, attempt) from None
            if not retryable or retries >= self.retry.max_retries:
                raise SourceHTTPError(method, shown, status, reason, attempt) from None
            if wait is None:
                wait = self.retry.backoff(retries, self._rng)
            log.warning(
                "%s: %s %s -> %s; retry %d/%d in %.2fs",
                self.source,
                method,
                shown,
                status if status is not None else reason,
                retries + 1,
                self.retry.max_retries,
                wait,
            )
            self.stats.retries += 1
            self.stats.sleeps.append(wait)
            self._sleep(wait)
            retries += 1

    def get(self, path_or_url: str, **kw: Any) -> requests.Response:
        return self.request("GET", path_or_url, **kw)

    def post(self, path_or_url: str, *, retry_safe: bool = False, **kw: Any) -> requests.Response:
        return self.request("POST", path_or_url, retry_safe=retry_safe, **kw)

    def get_json(self, path_or_url: str, **kw: Any) -> tuple[Any, bytes]:
        """GET and decode JSON; returns (decoded, raw bytes) so the caller can land the raw page."""
        response = self.get(path_or_url, **kw)
        return self.decode(response), response.content

    def decode(self, response: requests.Response) -> Any:
        if _fast_json is not None:
            try:
                return _fast_json(response.content)
            except _FastJsonError:
                pass  # not UTF-8 JSON msgspec takes (NaN, huge numbers, ...): the standard decoder
        try:
            return response.json()
        except ValueError:
            raise SourceHTTPError(
                response.request.method or "GET",
                safe_url(response.url),
                response.status_code,
                "response body is not JSON",
            ) from None
