"""Test environment: an Airflow home and project folders private to the test session."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

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
