"""Quarantine release: rows quarantined only because their parent had not arrived yet (a contact
edited before its account, a follow-up for a response the survey source has not loaded yet)
are retried with every later batch of their entity, and by a release pass of their own after
each load, until the parent arrives. Superseded rows (their key arrived again, or is stored)
are closed as such. Every decision is recorded in ``raw.quarantine_releases``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cxloop.config import Settings
from cxloop.contract import ENTITY_ORDER
from cxloop.gate.landed import find_landed, read_landed
from cxloop.gate.validation import validate_batch

log = logging.getLogger(__name__)


@dataclass
class Pending:
    """Quarantined rows of one entity retried with this batch, appended after its own rows."""

    offset: int  # rows of the batch itself; retried rows are at row_number offset+1 ...
    rows: list[tuple[str, int, str | None]]  # (batch_id, row_number, primary key) in frame order
    frame: object = None  # the retried rows, when the batch itself is a landed file (validated in chunks)


def add_pending(db, frames: dict, entities: list[str], stored, settings: Settings, batch_id: str):
    """Append the still-pending quarantined rows of ``entities`` (waiting for a parent) to the
    frames, so they are validated again now that more parents may be loaded. Pending rows whose
    key arrives again in this batch, or is already stored, are superseded instead.

    ``frames``: entity -> DataFrame, or the landed file's path (then the retried rows are kept in
    ``Pending.frame``, to be validated after the file's own rows); ``stored``: the stored keys
    (``validation.KnownKeys``, or a dict of sets)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cxloop.contract import ENTITIES
    from cxloop.store.base import KnownKeys, SetKnownKeys
    from cxloop.store.state import pending_rows, record_releases

    known = stored if isinstance(stored, KnownKeys) else SetKnownKeys(stored)
    pending: dict[str, Pending] = {}
    for entity_name in entities:
        ent = ENTITIES[entity_name]
        source = frames[entity_name]
        is_file = not isinstance(source, pd.DataFrame)
        columns = pq.ParquetFile(source).schema_arrow.names if is_file else list(source.columns)
        if ent.primary_key not in columns:
            continue  # structurally broken: the gate rejects the batch before anything loads
        found = pending_rows(db, entity_name, ent.references, exclude_batch=batch_id)
        if not found:
            continue
        keys = sorted({k for _, _, k in found if k is not None})
        if is_file:
            column = pq.read_table(source, columns=[ent.primary_key]).column(0)
            hits = pc.is_in(column, value_set=pa.array(keys, type=pa.string()))
            fresh = set(pc.unique(pc.filter(column, hits)).to_pylist())
        else:
            fresh = set(source[ent.primary_key].dropna())
        in_store = known.contains(entity_name, [k for k in keys if k not in fresh]) if known.has(entity_name) else set()
        superseded, retry, seen = [], [], set()
        for b, n, key in sorted(found, key=lambda r: (r[0], r[1]), reverse=True):  # newest batch first
            if key is None or key in fresh or key in in_store or key in seen:
                superseded.append((b, n, key, "superseded"))
            else:
                seen.add(key)
                retry.append((b, n, key))
        record_releases(db, entity_name, superseded, batch_id)
        if not retry:
            continue
        parts = []
        for b in sorted({r[0] for r in retry}):
            path = find_landed(settings.landing_dir, b, entity_name)
            if path is None:
                log.warning("quarantined %s rows of batch %s: landed file not found; left pending", entity_name, b)
                continue
            landed = read_landed(path)
            positions = [n - 1 for bb, n, _ in retry if bb == b and 0 < n <= len(landed)]
            part = landed.iloc[positions]
            parts.append((b, positions, part))
        if not parts:
            continue
        offset = pq.ParquetFile(source).metadata.num_rows if is_file else len(source)
        rows = [(b, p + 1, None) for b, positions, _ in parts for p in positions]
        keys = [k for _, _, part in parts for k in part[ent.primary_key].tolist()]
        retried = pd.concat([part for _, _, part in parts], ignore_index=True)
        pending[entity_name] = Pending(offset, [(b, n, k) for (b, n, _), k in zip(rows, keys, strict=True)])
        if is_file:
            pending[entity_name].frame = retried
        else:
            frames[entity_name] = pd.concat([source, retried], ignore_index=True)
    return pending


def split_pending(
    outcome, pending: dict[str, Pending], valid_keys_of: dict[str, set] | None = None
) -> dict[str, list[tuple[str, int, str | None, str]]]:
    """Take the retried rows out of the batch's own bookkeeping: released ones are loaded (and
    recorded as releases), the rest stay pending under their original batch. ``valid_keys_of``:
    entity -> keys of the retried rows that passed (default: from ``outcome.valid``)."""
    from cxloop.contract import ENTITIES

    releases: dict[str, list] = {}
    q = outcome.quarantine
    for entity_name, p in pending.items():
        pk = ENTITIES[entity_name].primary_key
        if valid_keys_of is not None:
            valid_keys = valid_keys_of.get(entity_name, set())
        else:
            valid_keys = set(outcome.valid[entity_name][pk].dropna()) if entity_name in outcome.valid else set()
        released = [(b, n, k, "released") for b, n, k in p.rows if k in valid_keys]
        releases[entity_name] = released
        retried = (q["entity"] == entity_name) & (q["row_number"].astype(int) > p.offset)
        q = q[~retried]
        c = outcome.counts[entity_name]
        c["received"] -= len(p.rows)
        c["loaded"] -= len(released)
        c["quarantined"] -= len(p.rows) - len(released)
        c["released"] = len(released)
    outcome.quarantine = q.reset_index(drop=True)
    return releases


def release_pass(
    store, settings: Settings, as_of: datetime, skip: set[str], context=None, mappings=None
) -> dict[str, int]:
    """Retry the pending quarantined rows of entities this run did not carry (a follow-up
    waiting for a response that the survey ingestion has just loaded), so they do not
    wait for their own source's next run. Each pass is a small batch of its own, loaded
    through ``store`` (a :class:`cxloop.store.base.Store`) as one transaction. ``mappings``
    (the config's, :func:`cxloop.extract.mapping.load_mappings`) are applied to the retried
    rows as to the source's own batches: a row read with a declared date format must not fail
    on its retry."""
    import pandas as pd

    from cxloop.contract import ENTITIES
    from cxloop.store.state import pending_entities, record_releases

    released: dict[str, int] = {}
    for entity_name, source in sorted(pending_entities(store.db), key=lambda p: ENTITY_ORDER.index(p[0])):
        if entity_name in skip:
            continue
        batch_id = f"release-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        frames = {entity_name: pd.DataFrame(columns=ENTITIES[entity_name].column_names, dtype=object)}
        with store.batch_loader(batch_id, source, datetime.now(UTC).replace(tzinfo=None)) as loader:
            known = loader.keys()
            pending = add_pending(loader.db, frames, [entity_name], known, settings, batch_id)
            releases: dict[str, list] = {}
            if entity_name in pending:
                outcome = validate_batch(
                    frames,
                    batch_id=batch_id,
                    source=source,
                    as_of=as_of,
                    known_keys=known,
                    suites_dir=settings.expectations_dir,
                    context=context,
                    mapping=mappings.for_source(source) if mappings is not None else None,
                )
                releases = split_pending(outcome, pending)
            if not releases.get(entity_name):
                loader.finish(None)  # keeps what add_pending closed as superseded
                continue
            for name, frame in outcome.valid.items():
                loader.merge(name, frame)
            record_releases(loader.db, entity_name, releases[entity_name], batch_id)
            loader.finish(outcome)
        released[entity_name] = len(releases[entity_name])
    return released
