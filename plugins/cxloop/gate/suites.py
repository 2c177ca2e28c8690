"""The expectation suites: ``expectations/<entity>.json`` as stored, as GX suites, and the GX
context a run validates them in."""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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


# -- one configuration per expectation per validation -----------------------------------------
# GX's ``Expectation.configuration`` is a property that rebuilds an ExpectationConfiguration
# (a pydantic ``dict()`` of the expectation, a camel-to-snake regex, a new object) on every
# read, and one validation reads it about 1,300 times per suite: building the metric graph,
# not computing metrics, was a third of the gate's time on small batches (8.6 s of 23.5 s over
# twelve bad-input cases). Inside :func:`memoised_configurations` each expectation object
# builds it once. The memo lives for one ``validate`` call in one thread and is dropped after:
# suite parameters ($max_timestamp) are substituted into the configurations GX builds for that
# call, so no configuration may outlive it. Outside the block the property is GX's own.
_MEMO = threading.local()
_GX_CONFIGURATION: list[Any] = []  # GX's own getter, once the property is wrapped


def _configuration_once(expectation: Any) -> Any:
    table = getattr(_MEMO, "table", None)
    if table is None:
        return _GX_CONFIGURATION[0](expectation)
    hit = table.get(id(expectation))
    if hit is None or hit[0] is not expectation:  # the object is held, so its id is not reused
        hit = (expectation, _GX_CONFIGURATION[0](expectation))
        table[id(expectation)] = hit
    return hit[1]


@contextmanager
def memoised_configurations() -> Iterator[None]:
    """Within the block, each GX expectation object builds its configuration once."""
    from great_expectations.expectations.expectation import Expectation

    if not _GX_CONFIGURATION:
        _GX_CONFIGURATION.append(Expectation.configuration.fget)
        Expectation.configuration = property(_configuration_once, doc=Expectation.configuration.__doc__)
    _MEMO.table = {}
    try:
        yield
    finally:
        _MEMO.table = None
