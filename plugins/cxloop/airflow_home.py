"""The embedded Airflow home: SQLite metadata inside the project, this project's DAGs and plugins.

Only environment variables are produced here; Airflow itself runs in a subprocess.

OpenLineage (the Airflow provider): every task's START and COMPLETE (or FAIL) event and each DAG
run's are written, one JSON document a line, to ``var/lineage/events.jsonl`` (the provider's
file transport; namespace ``cxloop``). A deployment sends them to a lineage backend instead by
setting ``AIRFLOW__OPENLINEAGE__TRANSPORT`` itself (e.g. ``{"type": "http", "url": ...}``):
a value already in the environment is kept.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cxloop.config import Settings


def airflow_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    home = settings.var_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    lineage = lineage_path(settings)
    lineage.parent.mkdir(parents=True, exist_ok=True)
    env.setdefault(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(lineage), "append": True})
    )
    env.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", LINEAGE_NAMESPACE)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.home / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(settings.logs_dir / "airflow"),
            # plain text in the console log and in the task log files the UI shows (no ANSI codes)
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": env.get("AIRFLOW__CORE__UNIT_TEST_MODE", "False"),
            "CXLOOP_HOME": str(settings.home),
            "CXLOOP_VAR": str(settings.var_dir),
            "CXLOOP_WAREHOUSE": str(settings.warehouse_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    # Airflow's own subprocesses (standalone, task runners) call `airflow` from the PATH.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    plugins = str(settings.home / "plugins")
    env["PYTHONPATH"] = plugins + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


LINEAGE_NAMESPACE = "cxloop"


def lineage_path(settings: Settings) -> Path:
    """The demo home's OpenLineage events (JSON lines, appended by every Airflow process)."""
    return settings.var_dir / "lineage" / "events.jsonl"


def airflow_bin() -> Path:
    """The ``airflow`` console script of this interpreter's environment."""
    return Path(sys.executable).with_name("airflow")
