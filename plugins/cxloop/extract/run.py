"""One source's extraction: the window of each entity from its watermark (minus a lookback) up to
``as_of``, the connector that reads it, and the immutable landed batch it writes.

May import: ``cxloop.config``, ``cxloop.contract``, ``cxloop.source_config``, ``cxloop.store``
(watermarks). The connectors themselves import neither the gate nor the store.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cxloop.config import Settings, SourceSettings
from cxloop.extract.landing import land_frames
from cxloop.source_config import SourceConfig, load_source_config

log = logging.getLogger(__name__)


SOURCES = ("salesforce", "hubspot", "qualtrics", "files")


def new_batch_id(source: str, extracted_at: datetime) -> str:
    return f"{source}-{extracted_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# The change timestamp that drives each entity's incremental window and watermark.
CURSOR_COLUMNS = {
    "owners": "updated_at",
    "accounts": "updated_at",
    "contacts": "updated_at",
    "follow_ups": "updated_at",
    "invitations": "sent_at",
    "responses": "recorded_at",
}


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


def _cursors(frames: dict) -> dict[str, str]:
    import pandas as pd

    out = {}
    for entity_name, frame in frames.items():
        col = CURSOR_COLUMNS.get(entity_name)
        if col is None or col not in frame or frame.empty:
            continue
        values = pd.to_datetime(frame[col], utc=True, errors="coerce", format="mixed")
        if values.notna().any():
            out[entity_name] = values.max().tz_convert("UTC").tz_localize(None).isoformat()
    return out


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
    config = config or load_source_config()
    settings.ensure_dirs()
    extracted_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = new_batch_id(source.name, extracted_at)
    raw_dir = settings.landing_dir / f"source={source.name}" / "raw" / batch_id
    if full_refresh:
        watermarks = {}
    elif watermarks is None:
        watermarks = read_watermarks(settings, source.name)
    windows_back = lookbacks(config)
    since = {e: wm - windows_back[e] for e, wm in watermarks.items() if e in CURSOR_COLUMNS}
    opts = {**config.options_for(source.name), **source.options}
    # Salesforce and Qualtrics stream: page-sized chunks are landed as Parquet row groups as they
    # arrive, so no entity is ever held in memory whole (the entities each lands).
    from cxloop.extract import qualtrics, salesforce

    streamed = {"salesforce": salesforce.ENTITIES, "qualtrics": qualtrics.ENTITIES}

    def windows_of(names) -> dict[str, list[str | None]]:  # entity -> [since, until) of this batch
        return {
            e: [since[e].isoformat() if e in since else None, as_of.isoformat()] for e in names if e in CURSOR_COLUMNS
        }

    if source.name in streamed:
        from cxloop.extract.landing import BatchWriter

        wanted = [e for e in streamed[source.name] if entities is None or e in entities]
        with BatchWriter(
            landing_dir=settings.landing_dir,
            source=source.name,
            batch_id=batch_id,
            extracted_at=extracted_at,
            as_of=as_of,
            entities=wanted,
            cursor_columns=CURSOR_COLUMNS,
        ) as writer:
            _extract_frames(source, opts, settings, raw_dir, since, as_of, sink=writer.write)
            batch = writer.finish(windows_of(wanted))
        log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
        return batch.to_dict()
    frames = _extract_frames(source, opts, settings, raw_dir, since, as_of)
    if entities is not None:
        frames = {e: f for e, f in frames.items() if e in entities}
    batch = land_frames(
        frames,
        landing_dir=settings.landing_dir,
        source=source.name,
        batch_id=batch_id,
        extracted_at=extracted_at,
        as_of=as_of,
        windows=windows_of(frames),
        cursors=_cursors(frames),
    )
    log.info("extracted %s: %s", source.name, ", ".join(f"{e}={n}" for e, n in batch.rows.items()))
    return batch.to_dict()


def _extract_frames(
    source: SourceSettings, opts: dict, settings: Settings, raw_dir: Path, since: dict, as_of, sink=None
):
    """The source's entities: Salesforce and Qualtrics stream into ``sink`` (``sink(entity, text
    table, maxima)``, see :class:`cxloop.extract.landing.BatchWriter`) and return row counts; HubSpot
    and file drops return whole frames."""
    if source.name == "salesforce":
        from cxloop.extract.salesforce import land_salesforce

        return land_salesforce(
            source.base_url,
            source.token,
            sink,
            landing_dir=raw_dir,
            api_version=opts.get("api_version", "v60.0"),
            role_field=opts.get("buying_role_field", "Buying_Role__c"),
            since=since,
            until=as_of,
        )
    if source.name == "qualtrics":
        from cxloop.extract.qualtrics import land_qualtrics

        directory_id = opts.get("directory_id")
        if not directory_id:
            raise ValueError("source qualtrics: option directory_id is not configured")
        return land_qualtrics(
            source.base_url,
            source.token,
            directory_id,
            sink,
            landing_dir=raw_dir,
            nps_question_id=opts.get("nps_question_id", "QID1"),
            comment_question_id=opts.get("comment_question_id", "QID2_TEXT"),
            relationship_pattern=opts.get("relationship_pattern", "(?i)relationship"),
            start=since.get("responses"),
            end=as_of,
            invitations_since=since.get("invitations"),
        )
    if source.name == "hubspot":
        from cxloop.extract.hubspot import extract_hubspot

        crm_since = [since[e] for e in ("owners", "accounts", "contacts", "follow_ups") if e in since]
        start = min(crm_since) if len(crm_since) == 4 else None  # one window for every object
        return extract_hubspot(source.base_url, source.token, landing_dir=raw_dir, start=start, end=as_of)
    if source.name == "files":
        from cxloop.extract.files import extract_files

        drop = opts.get("drop_dir")
        if not drop:
            raise ValueError("source files: option drop_dir is not configured")
        drop_dir = Path(drop) if Path(drop).is_absolute() else settings.home / drop
        result = extract_files(drop_dir, landing_dir=raw_dir)
        result.raise_for_problems()  # a broken file rejects the drop: nothing lands
        return result.frames
    raise ValueError(f"unknown source {source.name!r}; known: {', '.join(SOURCES)}")
