"""One source's extraction: the window of each entity from its watermark (minus a lookback) up to
``as_of``, the connector that reads it (:mod:`cxloop.extract.registry`), and the immutable
landed batch (:class:`cxloop.extract.landing.BatchWriter`) it streams into.

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.source_config``, ``cxloop.store``
(watermarks). The connectors themselves import neither the gate nor the store.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cxloop.config import Settings, SourceSettings
from cxloop.extract.registry import CONNECTORS, CURSOR_COLUMNS, ExtractContext, connector
from cxloop.source_config import SourceConfig, load_source_config

log = logging.getLogger(__name__)

SOURCES = tuple(CONNECTORS)
__all__ = ["CURSOR_COLUMNS", "SOURCES", "extract", "lookbacks", "new_batch_id", "read_watermarks"]


def new_batch_id(source: str, extracted_at: datetime) -> str:
    return f"{source}-{extracted_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def lookbacks(config: SourceConfig | None = None) -> dict[str, timedelta]:
    """How far before its watermark each entity's next window starts. Late edits inside the
    overlap are re-read and merge idempotently. Invitations look back much further: a
    distribution's delivery statuses keep changing for weeks after it is sent."""
    config = config or load_source_config()
    out = {e: timedelta(hours=config.lookback_hours) for e in CURSOR_COLUMNS}
    out["invitations"] = timedelta(days=config.invitation_lookback_days)
    return out


def read_watermarks(settings: Settings, source: str) -> dict[str, datetime]:
    """The source's watermarks, read without taking the warehouse's write lock."""
    from cxloop.store import read_watermarks as read

    return read(settings, source)


def extract(
    source: SourceSettings,
    settings: Settings,
    as_of: datetime,
    *,
    entities: tuple[str, ...] | None = None,
    full_refresh: bool = False,
    config: SourceConfig | None = None,
    watermarks: dict[str, datetime] | None = None,
) -> dict:
    """Pull one source's changes since its watermarks (minus a lookback) up to ``as_of``, and
    land them as an immutable batch. ``entities`` limits the source to one domain's entities
    (a file drop can feed both domains); ``full_refresh`` ignores the watermarks;
    ``watermarks`` passes them in when a step that may hold the warehouse read them."""
    conn = connector(source.name)  # an unknown source fails before anything is made
    config = config or load_source_config()
    settings.ensure_dirs()
    extracted_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = new_batch_id(source.name, extracted_at)
    if full_refresh:
        watermarks = {}
    elif watermarks is None:
        watermarks = read_watermarks(settings, source.name)
    windows_back = lookbacks(config)
    since = {e: wm - windows_back[e] for e, wm in watermarks.items() if e in CURSOR_COLUMNS}
    ctx = ExtractContext(
        source=source.name,
        base_url=source.base_url,
        token=source.token,
        options={**config.options_for(source.name), **source.options},
        raw_dir=settings.landing_dir / f"source={source.name}" / "raw" / batch_id,
        since=since,
        as_of=as_of,
        home=settings.home,
    )
    from cxloop.extract.landing import BatchWriter
    from cxloop.extract.private import private_dir

    private_dir(settings.landing_dir)  # raw pages and landed batches hold personal data
    wanted = [e for e in conn.entities if entities is None or e in entities]
    ctx = replace(ctx, entities=tuple(wanted))
    with BatchWriter(
        landing_dir=settings.landing_dir,
        source=source.name,
        batch_id=batch_id,
        extracted_at=extracted_at,
        as_of=as_of,
        entities=wanted,
        cursor_columns=CURSOR_COLUMNS,
        every_entity=conn.every_entity,
    ) as writer:
        conn.land(ctx, writer.write)
        windows = {
            e: [since[e].isoformat() if e in since else None, as_of.isoformat()] for e in wanted if e in CURSOR_COLUMNS
        }
        batch = writer.finish(windows)
    log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
    return batch.to_dict()
