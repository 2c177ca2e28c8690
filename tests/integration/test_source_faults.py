"""The connectors against a faulty network: a loopback proxy in front of the demo server
injects the failures real APIs produce (429 with Retry-After, 500s, truncated bodies, a
failure in the middle of paging). Extraction must retry what is safe, fail loudly on what
is not, never land a partial batch, leave the watermarks alone, and a rerun must complete
with exactly the rows of a clean extraction: no duplicates, no gaps."""

from __future__ import annotations

import http.client
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pandas as pd
import pytest
from cxloop.config import Settings, SourceSettings
from cxloop.demo.generator import generate
from cxloop.demo.server import DemoServer
from cxloop.extract.http_client import SourceHTTPError
from cxloop.pipeline import extract, read_watermarks, validate_and_load

AS_OF = datetime(2026, 10, 1)


@dataclass
class Fault:
    pattern: str  # regex on the request path (with query)
    action: str  # "500", "429", "truncate"
    times: int = 1  # how many matching requests get the fault (-1: all)
    hits: int = 0


@dataclass
class FaultPlan:
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)  # (path, what was served)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if re.search(f.pattern, path) and (f.times < 0 or f.hits < f.times):
                    f.hits += 1
                    self.log.append((path, f.action))
                    return f.action
            self.log.append((path, "ok"))
            return None


class FaultProxy:
    """Forwards every request to the upstream demo server unless the plan says otherwise;
    rewrites absolute upstream URLs in bodies (Qualtrics nextPage) to point at itself."""

    def __init__(self, upstream: str, plan: FaultPlan):
        self.upstream = urlsplit(upstream)
        self.plan = plan
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output quiet
                pass

            def _forward(self):
                action = proxy.plan.pick(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if action == "500":
                    return self._send(500, b'{"message": "injected server error"}')
                if action == "429":
                    return self._send(429, b'{"message": "slow down"}', {"Retry-After": "1"})
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                ctype = resp.getheader("Content-Type", "application/json")
                if "json" in ctype:
                    data = data.replace(proxy.upstream_base.encode(), proxy.base_url.encode())
                if action == "truncate":
                    # announce the whole body, send half of it, and hang up
                    self.send_response(resp.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                return self._send(resp.status, data, {"Content-Type": ctype})

            def _send(self, status, data, headers=None):
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _forward
            do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.upstream_base = f"{self.upstream.scheme}://{self.upstream.netloc}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate(out, seed=31, scale=0.2, as_of=AS_OF)
    token = secrets.token_urlsafe(12)
    # small pages, so that paging has a middle to fail in
    with DemoServer(out / "source", token=token, page_size=200) as base_url:
        yield base_url, token


def sources(base_url: str, token: str) -> dict[str, SourceSettings]:
    return {
        "salesforce": SourceSettings("salesforce", base_url, token),
        "qualtrics": SourceSettings("qualtrics", base_url, token, {"directory_id": "POOL_cxloopdemo"}),
    }


def landed_frames(batch: dict) -> dict[str, pd.DataFrame]:
    from cxloop.gate.landed import read_landed

    return {e: read_landed(p).sort_values(list(read_landed(p).columns)[:1]).reset_index(drop=True)
            for e, p in batch["files"].items()}


@pytest.fixture(scope="module")
def clean(demo, tmp_path_factory):
    base_url, token = demo
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path_factory.mktemp("clean"))})
    return {name: landed_frames(extract(src, settings, AS_OF)) for name, src in sources(base_url, token).items()}


def assert_same_rows(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    assert set(got) == set(want)
    for entity_name in want:
        g, w = got[entity_name], want[entity_name]
        key = g.columns[0]
        assert not g[key].duplicated().any() or w[key].duplicated().any(), f"{entity_name}: duplicates"
        pd.testing.assert_frame_equal(g, w, obj=entity_name)


@pytest.mark.parametrize(
    ("name", "faults"),
    [
        ("salesforce", [Fault(r"/query(All)?/", "429", times=1)]),
        ("salesforce", [Fault(r"/query(All)?/", "500", times=2)]),
        ("salesforce", [Fault(r"/query", "truncate", times=1)]),
        ("qualtrics", [Fault(r"/history", "500", times=2), Fault(r"/surveys\?|/surveys$", "429", times=1)]),
        ("qualtrics", [Fault(r"/directories/", "truncate", times=1)]),
    ],
    ids=["sf-429-retry-after", "sf-500-mid-paging", "sf-truncated-page", "q-500-and-429", "q-truncated-page"],
)
def test_transient_faults_are_retried_without_loss(demo, clean, tmp_path, name, faults):
    base_url, token = demo
    plan = FaultPlan(faults=faults)
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path)})
    with FaultProxy(base_url, plan) as proxy:
        batch = extract(sources(proxy.base_url, token)[name], settings, AS_OF)
    assert all(f.hits == f.times for f in faults), f"faults not all injected: {faults}"
    injected = [path for path, what in plan.log if what != "ok"]
    for path in injected:  # every failed request was asked again
        assert sum(1 for p, w in plan.log if p == path and w == "ok") >= 1, path
    assert_same_rows(landed_frames(batch), clean[name])


def test_a_failure_mid_paging_fails_the_run_and_a_rerun_completes(demo, clean, tmp_path, monkeypatch):
    base_url, token = demo
    # the retry policy of config/sources.yml's retry: section, through its environment override:
    # three retries with short backoffs (the shipped 5 from 0.5 s wait about 15 s before giving up)
    monkeypatch.setenv("CXLOOP_RETRY_MAX_RETRIES", "3")
    monkeypatch.setenv("CXLOOP_RETRY_BACKOFF_BASE_SECONDS", "0.05")
    settings = Settings.from_env({"CXLOOP_VAR": str(tmp_path)})
    src = sources(base_url, token)
    validate_and_load([extract(src["salesforce"], settings, datetime(2025, 6, 1))], settings, datetime(2025, 6, 1))
    marks = read_watermarks(settings, "salesforce")
    assert marks
    # every request for the second page of any Salesforce query keeps failing
    plan = FaultPlan(faults=[Fault(r"/query(All)?/[^?]+-\d+", "500", times=-1)])
    with FaultProxy(base_url, plan) as proxy:
        with pytest.raises(SourceHTTPError) as err:
            extract(sources(proxy.base_url, token)["salesforce"], settings, AS_OF)
    message = str(err.value)
    assert "HTTP 500" in message and "/queryAll/" in message
    assert err.value.attempts == 4, "the configured policy: the first attempt and 3 retries"
    assert token not in message
    assert not list(settings.landing_dir.glob("source=salesforce/load_date=*/batch=*/_batch.json"))[1:], (
        "a failed extraction must not land a batch"
    )
    assert read_watermarks(settings, "salesforce") == marks, "a failed run moved the watermarks"
    rerun = extract(src["salesforce"], settings, AS_OF)
    validate_and_load([rerun], settings, AS_OF)
    assert read_watermarks(settings, "salesforce")["accounts"] > marks["accounts"]
