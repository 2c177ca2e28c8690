"""Test environment: an Airflow home and project folders private to the test session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cxloop-tests-"))

# Before anything imports airflow: its configuration is read at import time.
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}")
os.environ.setdefault("CXLOOP_PII_KEY", "test-only-key-not-a-secret")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
(_SESSION_DIR / "airflow").mkdir(parents=True, exist_ok=True)

for extra in (ROOT / "plugins", ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


@pytest.fixture(scope="session")
def demo_warehouse():
    """The session's demo warehouse (tests/_warehouse_fixture.py): built once per session, in a
    background process started at collection, shared by every test that only reads it. Tests
    that change a warehouse take a copy."""
    from _warehouse_fixture import built_warehouse

    return built_warehouse()


# -- expensive fixtures that work in subprocesses start early (tests/_background.py) -----------

SHARED = "demo_warehouse"  # the fixture many modules wait on: its build is submitted first


def pytest_collection_modifyitems(session, config, items):
    """Modules with a prestarted fixture run last, and their fixtures start now in background
    processes, in the order their tests will need them; the other tests run meanwhile."""
    import _background
    import _warehouse_fixture  # noqa: F401 - registers the shared warehouse's build

    names = _background.registered()
    if not names:
        return
    _background.snapshot_env()  # before any test can change os.environ
    _background.set_workdir(_SESSION_DIR / "background")

    def used(item) -> list[str]:
        return [n for n in getattr(item, "fixturenames", ()) if n in names]

    late_modules: dict[str, set[str]] = {}
    for item in items:
        if used(item):
            late_modules.setdefault(item.module.__name__, set()).update(used(item))
    early = [item for item in items if item.module.__name__ not in late_modules]
    # among the late ones, the modules that wait only on the shared warehouse (built first, in
    # well under the early tests' time) run before those that wait on the longer Airflow runs
    late = sorted(
        (item for item in items if item.module.__name__ in late_modules),
        key=lambda item: late_modules[item.module.__name__] != {SHARED},
    )
    items[:] = early + late
    if config.option.collectonly:
        return
    wanted = [(SHARED, None)] if any(SHARED in used(item) for item in late) else []
    for item in late:
        params = getattr(item, "callspec", None)
        wanted += [(name, params.params.get(name) if params else None) for name in used(item)]
    for name, param in wanted:
        _background.submit(name, param)


def pytest_terminal_summary(terminalreporter):
    import _background

    lines = _background.timings_report()
    if lines:
        terminalreporter.write_sep("-", "background fixtures (began after the pool started, ran for)")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    """Background work not yet started is dropped (e.g. after -x stopped the run)."""
    import _background

    _background.cancel_pending()


@pytest.fixture
def webhook():
    """A real alert webhook on loopback: (its URL, the JSON bodies POSTed to it so far)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
