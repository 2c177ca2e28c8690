"""Guard rails for sources that suddenly hand over nothing: a ``warn`` result in
``raw.validation_results`` (so ``marts.data_quality`` shows it) and one log line naming the source
and entity. A file drop is read whole every run, so an entity with 0 rows after earlier batches
of the source had rows, or a drop folder without any data file, is suspicious. API sources
read changes since their watermark, where an empty window is normal: they are not checked."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from cxloop.gate.outcome import EMPTY_SOURCE_EXPECTATION

log = logging.getLogger(__name__)
WHOLE_READ_SOURCES = ("files",)
DROP_ENTITY = "drop"


def _row(batch_id: str, source: str, entity: str, checked_at: dt.datetime) -> dict[str, Any]:
    return {
        "batch_id": batch_id, "source": source, "entity": entity, "expectation": EMPTY_SOURCE_EXPECTATION,
        "column": None, "severity": "warn", "success": False, "rows_checked": 0, "unexpected_count": 1,
        "checked_at": checked_at,
    }


def emptied_entities(db: Any, batch_id: str, source: str, received: Mapping[str, int],
                     checked_at: dt.datetime) -> list[dict[str, Any]]:
    """Result rows for the entities of ``received`` with 0 rows whose earlier batches had rows."""
    if source not in WHOLE_READ_SOURCES:
        return []
    rows = []
    for entity, n in received.items():
        if n:
            continue
        before = db.execute(
            "SELECT max(received) FROM raw.batches WHERE source = ? AND entity = ? AND batch_id <> ?",
            [source, entity, batch_id],
        )
        previous = before[0][0] if before else None
        if previous:
            log.warning("%s: %s has 0 rows in this batch; earlier batches had up to %s", source, entity, previous)
            rows.append(_row(batch_id, source, entity, checked_at))
    return rows


def record_empty_drop(db: Any, batch_id: str, source: str, checked_at: dt.datetime) -> str:
    """A whole-read source that landed no entity at all: one warn result (rerun-safe) and its line."""
    message = f"{source}: the drop held no data file; nothing was loaded"
    log.warning(message)
    db.execute("DELETE FROM raw.validation_results WHERE batch_id = ? AND expectation = ?",
               [batch_id, EMPTY_SOURCE_EXPECTATION])
    r = _row(batch_id, source, DROP_ENTITY, checked_at)
    db.execute(
        'INSERT INTO raw.validation_results (batch_id, source, entity, expectation, "column", severity, success, '
        "rows_checked, unexpected_count, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [r["batch_id"], r["source"], r["entity"], r["expectation"], r["column"], r["severity"], r["success"],
         r["rows_checked"], r["unexpected_count"], r["checked_at"]],
    )
    return message
