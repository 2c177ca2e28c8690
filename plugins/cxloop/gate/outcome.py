"""What the gate hands back, and how it fails: the outcome of one batch, the gate's errors, and
the names of the gate's own (non-GX) checks as they appear in ``raw.validation_results``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cxloop.gate.messages import cut
from cxloop.store.base import RESULT_COLUMNS

TYPE_EXPECTATION = "cxloop_column_values_match_logical_type"
EXTRA_COLUMNS_EXPECTATION = "cxloop_no_unexpected_columns"
CASCADE_EXPECTATION = "cxloop_parent_not_quarantined"
MAPPING_EXPECTATION = "cxloop_value_mapped"  # a source value the mappings: section does not map
EMPTY_SOURCE_EXPECTATION = "cxloop_source_not_empty"  # a drop or an entity with no rows after rows before
STRUCTURE_EXPECTATION = "expect_table_columns_to_match_set"
UNIQUE_EXPECTATION = "expect_column_values_to_be_unique"


class GateError(RuntimeError):
    """The gate itself could not do its job (suite missing, GX could not evaluate a check)."""


class ReconciliationError(GateError):
    """received != loaded + quarantined for an entity."""


class BatchRejected(Exception):
    """A structural failure: the whole batch is rejected, nothing of it may be loaded.

    ``problems`` lists ``{entity, file, missing, unexpected}`` per offending file; ``results``
    holds the failed structural expectation rows (same columns as the outcome's results) so
    the caller can still record them in ``raw.validation_results``.
    """

    def __init__(self, batch_id: str, problems: list[dict[str, Any]], results: pd.DataFrame):
        self.batch_id = batch_id
        self.problems = problems
        self.results = results
        parts = []
        for p in problems:
            text = f"{p['file']}: "
            bits = []
            if p.get("unknown_entity"):
                bits.append(f"unknown entity {cut(str(p['entity']))!r}")
            if p["missing"]:
                bits.append("missing contract column(s) " + ", ".join(map(cut, p["missing"])))
            if p.get("duplicated"):
                bits.append("duplicated column(s) " + ", ".join(map(cut, p["duplicated"])))
            if p["unexpected"] and (p["missing"] or p.get("duplicated")):
                hint = " (renamed?)" if p["missing"] else ""
                bits.append("unexpected column(s) " + ", ".join(map(cut, p["unexpected"])) + hint)
            parts.append(text + "; ".join(bits))
        super().__init__(f"batch {batch_id} rejected: " + " | ".join(parts))


@dataclass
class ValidationOutcome:
    batch_id: str
    source: str
    as_of: dt.datetime
    checked_at: dt.datetime
    valid: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    results: pd.DataFrame
    counts: dict[str, dict[str, int]]
    warnings: pd.DataFrame  # rows failing warn-severity checks (kept and loaded); quarantine columns
    gx_results: dict[str, Any] = field(default_factory=dict)  # entity -> ExpectationSuiteValidationResult
    skipped: list[str] = field(default_factory=list)  # reference checks without any parent keys to use
    timings: dict[str, float] = field(default_factory=dict)  # seconds, per step/entity


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    return df.astype(
        {
            "success": "boolean",
            "rows_checked": "int64",
            "unexpected_count": "int64",
            "checked_at": "datetime64[us]",
        }
    )
