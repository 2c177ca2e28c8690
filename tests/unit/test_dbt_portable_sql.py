"""The dbt package's SQL builds on DuckDB, Postgres and Spark: type names that one engine lacks
(Spark has no ``text`` or ``float8``) go through the dispatched ``cxloop_type()`` macro, never
spelled out in a model. Only the default__/duckdb__/postgres__ macro bodies may spell them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "dbt_project" / "models"
ENGINE_TYPES = re.compile(r"(?:\bas\s+|::)(text|float8)\b", re.IGNORECASE)


def engine_type_spellings(sql: str) -> list[str]:
    """The ``as text`` / ``::float8`` spellings in ``sql`` outside Jinja comments."""
    sql = re.sub(r"\{#.*?#\}", "", sql, flags=re.DOTALL)
    return [m.group(0) for m in ENGINE_TYPES.finditer(sql)]


def test_the_check_finds_a_spelled_out_type():
    assert engine_type_spellings("select cast(a as text) as a, b::float8 from t") == ["as text", "::float8"]
    assert engine_type_spellings("select cast(a as {{ cxloop_type('text') }}) as a") == []
    assert engine_type_spellings("{# cast(a as text) #} select 1") == []


def test_no_model_spells_an_engine_specific_type():
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted(MODELS.rglob("*.sql"))
        if (found := engine_type_spellings(path.read_text()))
    }
    assert not offenders, f"use {{{{ cxloop_type('text') }}}} instead: {offenders}"
