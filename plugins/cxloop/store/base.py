"""What every warehouse store offers the other stages: the layout of the gate's bookkeeping tables
and the stored-key lookup the gate's reference checks ask.

The store knows nothing of the gate or the connectors: they import from here, never the other way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# raw.quarantine: one row per (quarantined or warned row, failed check)
QUARANTINE_COLUMNS = [
    "batch_id",
    "source",
    "entity",
    "primary_key",
    "row_number",
    "field",
    "expectation",
    "severity",
    "reason",
    "record_json",
]
RESULT_COLUMNS = [
    "batch_id",
    "source",
    "entity",
    "expectation",
    "column",
    "severity",
    "success",
    "rows_checked",
    "unexpected_count",
    "checked_at",
]


class KnownKeys:
    """Keys already in the warehouse, asked for only the values a chunk references (so a run
    never reads every stored key). ``cxloop.store.duckdb_store`` and ``cxloop.store.postgres_store`` implement
    it on their connection; :class:`SetKnownKeys` on plain sets."""

    def has(self, entity: str) -> bool:  # the entity's keys can be asked for
        return True

    def contains(self, entity: str, values: list[str]) -> set[str]:  # the stored ones among values
        raise NotImplementedError

    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:  # invitation_id -> stored sent_at
        raise NotImplementedError


class SetKnownKeys(KnownKeys):
    def __init__(self, keys: Mapping[str, Any] | None, sent_at: Mapping[str, Any] | None = None):
        self.keys = {k: {str(x) for x in v} for k, v in (keys or {}).items()}
        self.sent = {str(k): v for k, v in (sent_at or {}).items()}

    def has(self, entity: str) -> bool:
        return entity in self.keys

    def contains(self, entity: str, values: list[str]) -> set[str]:
        keys = self.keys.get(entity, set())
        return {v for v in values if v in keys}

    def sent_at(self, invitation_ids: list[str]) -> dict[str, Any]:
        return {i: self.sent[i] for i in invitation_ids if i in self.sent}
