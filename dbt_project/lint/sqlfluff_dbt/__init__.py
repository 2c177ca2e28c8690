"""The dbt context sqlfluff's jinja templater lacks, for `make lint` only (see ../../.sqlfluff).

sqlfluff renders the models with plain Jinja plus its dbt builtins (ref, source, config, is_incremental,
return); the project's macros also use var, adapter.dispatch, exceptions, modules, execute and
target. This package gives them just enough to render the real macros as dbt would on DuckDB: the
vars of dbt_project.yml (plus as_of) and the duckdb__ (else default__) implementation of every
dispatched macro.
Nothing here runs in dbt.
"""

from pathlib import Path

import yaml

from . import adapter, exceptions, modules  # noqa: F401  (jinja context: adapter.dispatch, ...)

_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project.yml"
_VARS = {**(yaml.safe_load(_PROJECT.read_text()).get("vars") or {}), "as_of": "2026-10-01T00:00:00"}

execute = True
project_name = "cxloop"  # the root project: the lint renders cxloop's own build


class _Target:
    type = "duckdb"
    name = "duckdb"
    schema = "main"


target = _Target()


def var(name, default=None):
    return _VARS.get(name, default)
