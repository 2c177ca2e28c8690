"""The expectation suites: ``expectations/<entity>.json`` as stored, as GX suites, and the GX
context a run validates them in."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from cxloop.gate.outcome import GateError

EXPECTATIONS_DIR_ENV = "CXLOOP_EXPECTATIONS_DIR"


def expectations_dir() -> Path:
    env = os.environ.get(EXPECTATIONS_DIR_ENV)
    if env:
        return Path(env)
    from cxloop.config import project_home

    return project_home() / "expectations"


@lru_cache(maxsize=32)
def _load_suite_config_cached(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_suite_config(entity_name: str, directory: Path | None = None) -> dict[str, Any]:
    """The JSON suite of an entity (a fresh deep copy: callers may modify it)."""
    path = (directory or expectations_dir()) / f"{entity_name}.json"
    if not path.exists():
        raise GateError(f"no expectation suite for entity {entity_name!r} at {path}")
    return copy.deepcopy(_load_suite_config_cached(str(path), path.stat().st_mtime))


def build_suite(config: Mapping[str, Any]):
    """A GX ExpectationSuite from a suite config (as stored in expectations/<entity>.json)."""
    import great_expectations as gx

    return gx.ExpectationSuite(
        name=config["name"],
        expectations=[dict(e) for e in config["expectations"]],
        meta=dict(config.get("meta") or {}),
        notes=config.get("notes"),
    )


def gx_context():
    """One ephemeral GX context (progress bars off); a run creates one and passes it to each Gate."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    _skip_pandas_fingerprint()
    return context


def _skip_pandas_fingerprint() -> None:
    """GX marks every pandas batch with an md5 over a hash of every value of the frame (its
    ``pandas_data_fingerprint`` batch marker; it skips frames over ``HASH_THRESHOLD`` bytes).
    The gate never reads that marker, and on the large bench computing it took 7 s of the
    validation: set the threshold to 0 so GX skips it, as it does for big frames. Validation
    itself is untouched."""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
