"""The connectors by source name, behind one interface.

A connector knows the entities it lands (``entities``) and has one entry point,
``land(ctx, sink)``: read the source within the context's windows and hand every chunk to
``sink(entity, text table, maxima)`` (:class:`cxloop.extract.landing.BatchWriter.write`) as it
arrives. :func:`cxloop.extract.run.extract` looks the connector up here and lands whatever it
streams: there is no other way to land a batch.

Connector modules (pandas, pyarrow, requests) are imported inside ``land``: this module is cheap
to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cxloop.contract import ENTITY_ORDER

if TYPE_CHECKING:
    from cxloop.extract.frames import ChunkSink

CHUNK_ROWS = 100_000  # rows per chunk handed to the sink (a Parquet row group)

# The change timestamp that drives each entity's incremental window and watermark.
CURSOR_COLUMNS = {
    "owners": "updated_at",
    "accounts": "updated_at",
    "contacts": "updated_at",
    "follow_ups": "updated_at",
    "renewals": "updated_at",
    "invitations": "sent_at",
    "responses": "recorded_at",
}


@dataclass(frozen=True)
class ExtractContext:
    """What one extraction of one source needs. ``since`` maps an entity to the start of its
    window (its watermark minus the lookback; absent: from the beginning); every window ends at
    ``as_of`` (exclusive). ``raw_dir`` is the batch's folder for raw pages. ``home`` resolves
    relative folders in ``options``."""

    source: str
    base_url: str
    token: str = field(repr=False)
    options: dict[str, Any]
    raw_dir: Path
    since: dict[str, datetime]
    as_of: datetime
    home: Path
    chunk_rows: int = CHUNK_ROWS
    #: the entities asked for (one domain's, from the DAG); None: all the connector lands
    entities: tuple[str, ...] | None = None

    def option(self, key: str) -> Any:
        """A required option: a missing one fails naming the source and the option."""
        value = self.options.get(key)
        if not value:
            raise ValueError(f"source {self.source}: option {key} is not configured")
        return value


class Connector(Protocol):
    name: str
    entities: tuple[str, ...]
    #: True: every entity lands, an empty file when nothing came; False: only those received
    every_entity: bool

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None: ...


class Salesforce:
    name = "salesforce"
    entities = ("owners", "accounts", "contacts", "follow_ups", "renewals")
    every_entity = True

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None:
        from cxloop.extract.salesforce import land_salesforce

        land_salesforce(
            ctx.base_url,
            ctx.token,
            sink,
            landing_dir=ctx.raw_dir,
            api_version=ctx.options.get("api_version", "v60.0"),
            role_field=ctx.options.get("buying_role_field", "Buying_Role__c"),
            renewal_types=ctx.options.get("renewal_types"),
            bulk_threshold=ctx.options.get("bulk_threshold", 10_000),
            since=ctx.since,
            until=ctx.as_of,
            chunk_rows=ctx.chunk_rows,
        )


class Qualtrics:
    name = "qualtrics"
    entities = ("surveys", "invitations", "responses")
    every_entity = True

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None:
        from cxloop.extract.qualtrics import land_qualtrics

        land_qualtrics(
            ctx.base_url,
            ctx.token,
            ctx.option("directory_id"),
            sink,
            landing_dir=ctx.raw_dir,
            nps_question_id=ctx.options.get("nps_question_id", "QID1"),
            comment_question_id=ctx.options.get("comment_question_id", "QID2_TEXT"),
            relationship_pattern=ctx.options.get("relationship_pattern", "(?i)relationship"),
            start=ctx.since.get("responses"),
            end=ctx.as_of,
            invitations_since=ctx.since.get("invitations"),
            export_windows=int(ctx.options.get("export_windows", 4)),
            chunk_rows=ctx.chunk_rows,
        )


class HubSpot:
    """One search window serves every object, so the run starts from the earliest of the
    entities' windows, and from the beginning unless all of them have one."""

    name = "hubspot"
    entities = ("owners", "accounts", "contacts", "follow_ups", "renewals")
    every_entity = True

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None:
        from cxloop.extract.hubspot import land_hubspot

        crm_since = [ctx.since[e] for e in self.entities if e in ctx.since]
        start = min(crm_since) if len(crm_since) == len(self.entities) else None
        land_hubspot(
            ctx.base_url,
            ctx.token,
            sink,
            landing_dir=ctx.raw_dir,
            start=start,
            end=ctx.as_of,
            chunk_rows=ctx.chunk_rows,
            renewal_dealtypes=ctx.options.get("renewal_dealtypes"),
        )


class FileDrop:
    """A folder of ``<entity>.{csv,jsonl,parquet}`` files. :func:`cxloop.extract.files.extract_files`
    reads the drop whole (a broken file rejects the drop: nothing lands); each frame then goes to
    the sink in ``chunk_rows`` slices, so the landing is the same as for the API sources. Only
    the entities the drop holds land."""

    name = "files"
    entities = ENTITY_ORDER
    every_entity = False

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None:
        from cxloop.extract.files import extract_files

        drop = Path(ctx.option("drop_dir"))
        drop_dir = drop if drop.is_absolute() else ctx.home / drop
        result = extract_files(drop_dir, landing_dir=ctx.raw_dir)
        result.raise_for_problems()
        for entity in list(result.frames):
            frame = result.frames.pop(entity)  # let go of each frame once it is landed
            for lo in range(0, max(len(frame), 1), ctx.chunk_rows):
                part = frame.iloc[lo : lo + ctx.chunk_rows]
                sink(entity, _text_table(part), _frame_maxima(entity, part))


def _text_table(frame: Any) -> Any:
    from cxloop.extract.landing import frame_as_text

    return frame_as_text(frame)


def _frame_maxima(entity: str, frame: Any) -> dict[str, Any]:
    """The greatest parseable value of the entity's cursor column (the batch's cursor)."""
    import pandas as pd

    col = CURSOR_COLUMNS.get(entity)
    if col is None or col not in frame or frame.empty:
        return {}
    values = pd.to_datetime(frame[col], utc=True, errors="coerce", format="mixed")
    if not values.notna().any():
        return {}
    return {col: values.max().tz_convert("UTC").tz_localize(None)}


class Landed:
    """Connector tables another tool already synced (Fivetran's Salesforce and Qualtrics schemas)
    into a DuckDB file or a Postgres database: :mod:`cxloop.extract.landed_tables`. Feeds either
    domain or both; only the domains of the entities asked for are read."""

    name = "landed"
    entities = ENTITY_ORDER
    every_entity = False

    def land(self, ctx: ExtractContext, sink: ChunkSink) -> None:
        from cxloop.extract.landed_tables import land_landed

        land_landed(
            ctx.options,
            sink,
            entities=tuple(e for e in self.entities if ctx.entities is None or e in ctx.entities),
            since=ctx.since,
            until=ctx.as_of,
            home=ctx.home,
            raw_dir=ctx.raw_dir,
            password=ctx.token,
            chunk_rows=ctx.chunk_rows,
        )


CONNECTORS: dict[str, Connector] = {
    c.name: c for c in (Salesforce(), HubSpot(), Qualtrics(), FileDrop(), Landed())
}


def connector(name: str) -> Connector:
    """The connector of source ``name``; an unknown name fails naming the known ones."""
    try:
        return CONNECTORS[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(CONNECTORS)}") from None
