"""The gate fed in chunks (as the pipeline feeds landed files) gives exactly the outcome of one
whole-frame validation: quarantine rows, messages, row numbers, results and counts, including a
duplicate key whose first occurrence is in an earlier chunk."""

from __future__ import annotations

import copy
import datetime as dt
import json
import sys
from pathlib import Path

import pandas as pd

try:
    import cxloop  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

from cxloop.contract import ENTITIES, ENTITY_ORDER
from cxloop.gate.coerce import coerce_key
from cxloop.gate.validation import Gate, duplicate_keys, validate_batch
from cxloop.store.base import SetKnownKeys

DATA = Path(__file__).resolve().parents[1] / "data"
CLEAN = json.loads((DATA / "bad_inputs" / "clean_batch.json").read_text(encoding="utf-8"))
AS_OF = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)
ORIGIN = {e: f"{e}.parquet" for e in ENTITY_ORDER}


def _frames():
    rows = copy.deepcopy(CLEAN["frames"])
    rows["responses"].append(dict(rows["responses"][0], nps_score="10"))  # duplicate of row 1, last row
    rows["responses"][1]["nps_score"] = "7.5"
    rows["accounts"][1]["is_active"] = "maybe"  # cascades
    return {e: pd.DataFrame(r, columns=list(r[0]), dtype=object) for e, r in rows.items()}


def _chunked(frames, size):
    known = {e: set() for e in ENTITY_ORDER}
    gate = Gate(batch_id="b", source="demo", as_of=AS_OF, known=SetKnownKeys(known, {}), origin=ORIGIN)
    gate.check_structure({e: (list(f.columns), len(f)) for e, f in frames.items()})
    valid = {}
    for e in ENTITY_ORDER:
        f = frames[e]
        pk = ENTITIES[e].primary_key
        gate.begin(e, duplicate_keys(coerce_key(f[pk])[0]))
        parts = []
        for start in range(0, len(f), size):
            parts.append(gate.validate(e, f.iloc[start : start + size], start))
        valid[e] = pd.concat(parts, ignore_index=True)
    return gate.outcome(valid)


def test_chunked_gate_equals_whole_frame_gate():
    frames = _frames()
    whole = validate_batch(
        frames, batch_id="b", source="demo", as_of=AS_OF, origin=ORIGIN, known_keys={e: set() for e in ENTITY_ORDER}
    )
    parts = _chunked(frames, 1)
    cols = ["entity", "row_number", "field", "expectation", "reason", "record_json", "primary_key"]

    def rows(q, columns=cols):
        return sorted(map(tuple, q[columns].astype(str).values.tolist()))

    assert rows(parts.quarantine) == rows(whole.quarantine)
    assert any("first seen at row 1" in r for r in whole.quarantine.reason)
    assert parts.counts == whole.counts
    rcols = ["entity", "expectation", "column", "severity", "success", "rows_checked", "unexpected_count"]
    assert rows(parts.results, rcols) == rows(whole.results, rcols)
    for e in ENTITY_ORDER:
        pd.testing.assert_frame_equal(parts.valid[e], whole.valid[e])
