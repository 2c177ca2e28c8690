"""Expensive fixtures that do their work in subprocesses start early, in background processes.

The Airflow runs of test_e2e, the bench smoke run and the dbt builds of test_dbt_project
spend their time in child processes (`airflow dags test`, the bench's stages, `dbt`), so on a
2-core machine they can run while the pytest process works through the other tests. A module
registers such a fixture body with :func:`prestart`; when collection has selected a test that
uses the fixture, tests/conftest.py submits the body to a pool of two worker processes
(spawned: the two Airflow runs of test_e2e start together, much of their time is process
start-up and HubSpot's rate limit, not CPU) and moves the tests that use it to the end of the
run. Processes, not threads: nothing of the background work (the demo server, the generator,
pandas) allocates in the pytest process, whose memory some tests measure (tracemalloc), nor
holds its GIL. Bodies return small picklable values (paths, counts), never big frames. The
fixture then takes the body's result with :func:`result`, which runs the body right away
when it was not started (e.g. the hook did not run), so a selected test never depends on the
early start, and an unselected one never pays for it.

The bodies run exactly what the fixtures ran before; only when (and in which process) they
start changes. They get a copy of ``os.environ`` taken before the first test runs
(:data:`ENV`), never the live one, which tests change with monkeypatch.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

ENV: dict[str, str] = {}
_WORKDIR: list[Path] = []
# fixture name -> (function of the fixture's param (None if not parametrized) -> result)
_BODIES: dict[str, Callable[[Any], Any]] = {}
_FUTURES: dict[tuple[str, Any], Future] = {}
_LOCK = threading.Lock()
_POOL: list[ProcessPoolExecutor] = []
# (fixture name, param) -> (seconds after the pool started when the body began, its seconds)
TIMES: dict[tuple[str, Any], tuple[float, float]] = {}
_STARTED: list[float] = []


def _pool() -> ProcessPoolExecutor:
    if not _POOL:
        _STARTED.append(time.time())
        _POOL.append(
            ProcessPoolExecutor(
                max_workers=2,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(dict(ENV), list(_WORKDIR)),
            )
        )
    return _POOL[0]


def _timed(body: Callable[[Any], Any], param: Any) -> tuple[Any, float, float]:
    """In a worker: the body's value, with when it began (epoch seconds) and how long it took."""
    began = time.time()
    value = body(param)
    return value, began, time.time() - began


def _init_worker(env: dict[str, str], workdir: list[Path]) -> None:
    """In a worker: the session's environment snapshot and folder."""
    ENV.clear()
    ENV.update(env)
    _WORKDIR[:] = workdir


def prestart(fixture_name: str):
    """Decorator: ``body(param)`` computes the fixture's value and may run in the background."""

    def register(body: Callable[[Any], Any]) -> Callable[[Any], Any]:
        _BODIES[fixture_name] = body
        return body

    return register


def registered() -> set[str]:
    return set(_BODIES)


def submit(fixture_name: str, param: Any = None) -> Future:
    with _LOCK:
        key = (fixture_name, param)
        if key not in _FUTURES:
            if not ENV:
                snapshot_env()
            _FUTURES[key] = _pool().submit(_timed, _BODIES[fixture_name], param)
        return _FUTURES[key]


def result(fixture_name: str, param: Any = None) -> Any:
    """The fixture body's value for ``param``: started now unless it was started early."""
    value, began, seconds = submit(fixture_name, param).result()
    TIMES[(fixture_name, param)] = (began - _STARTED[0], seconds)
    return value


def timings_report() -> list[str]:
    """One line per body whose value a test took: when it began after the pool started, and how
    long it ran (for tuning what starts when: the pytest process must not wait on these)."""
    return [
        f"{began:6.1f} s +{seconds:5.1f} s  {name}{'' if param is None else f'[{param}]'}"
        for (name, param), (began, seconds) in sorted(TIMES.items(), key=lambda kv: kv[1][0])
    ]


def snapshot_env() -> None:
    ENV.clear()
    ENV.update(os.environ)


def set_workdir(path: Path) -> None:
    _WORKDIR[:] = [path]


def workdir(name: str) -> Path:
    """A new folder for one fixture body (under the session's folder when conftest set it)."""
    import tempfile

    base = _WORKDIR[0] if _WORKDIR else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


def cancel_pending() -> None:
    with _LOCK:
        for future in _FUTURES.values():
            future.cancel()  # only those not running yet
