"""Source connectors: each extracts one source system over HTTP and maps it onto the canonical
entities of :mod:`cxloop.contract`.

- :mod:`cxloop.sources.http_client` — the one shared HTTP layer (timeouts, retries, auth, redaction).
- :mod:`cxloop.sources.salesforce` — ``extract_salesforce`` (owners, accounts, contacts, follow_ups).
- :mod:`cxloop.sources.qualtrics` — ``extract_qualtrics`` (surveys, invitations, responses).
- :mod:`cxloop.sources.roles` — CRM buying-role picklist / job-title mapping.

Connectors return plain pandas frames with exactly the contract's columns; values are passed
through as received (datetimes normalised to UTC) and the validation gate coerces and
quarantines. Everything received is also written raw to a landing directory when one is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from cxloop.contract import ENTITIES


def parse_utc(value: Any) -> datetime | None:
    """An ISO-8601 datetime (``Z``, ``+0000`` or ``+00:00`` offsets; naive = UTC) as naive UTC.

    Raises ValueError when the text is not a datetime."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and "T" in text:
            text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def timestamp_series(values: list[Any]) -> pd.Series:
    """Source datetimes -> naive UTC ``datetime64[us]``.

    When some value is not a datetime it is kept as received: the column is then ``object`` and
    holds ISO-8601 UTC strings for the good values and the raw text for the bad ones, so the gate
    can quarantine exactly those rows."""
    if all(v is None or isinstance(v, str) for v in values):
        try:  # the fast path: every value is ISO-8601 text (or null)
            texts = [None if v is None or not v.strip() else v for v in values]
            fast = pd.to_datetime(pd.Series(texts, dtype=object), utc=True, format="ISO8601")
            return fast.dt.tz_localize(None).astype("datetime64[us]")
        except (ValueError, TypeError, OverflowError):
            pass
    parsed: list[datetime | None] = []
    bad = False
    for v in values:
        if _is_null(v) or (isinstance(v, str) and not v.strip()):
            parsed.append(None)
            continue
        try:
            parsed.append(parse_utc(v))
        except (ValueError, TypeError, OverflowError):
            parsed.append(v)
            bad = True
    if not bad:
        return pd.Series(pd.to_datetime(parsed), dtype="datetime64[us]")
    out = [p.isoformat() + "Z" if isinstance(p, datetime) else p for p in parsed]
    return pd.Series(out, dtype=object)


def value_series(values: list[Any]) -> pd.Series:
    """Values as received, in the narrowest nullable dtype that holds all of them unchanged."""
    nonnull = [v for v in values if not _is_null(v)]
    clean = [None if _is_null(v) else v for v in values]
    if not nonnull:
        return pd.Series(clean, dtype=object)
    if all(isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="boolean"))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="Int64"))
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in nonnull):
        return pd.Series(pd.array(clean, dtype="Float64"))
    if all(isinstance(v, str) for v in nonnull):
        return pd.Series(clean, dtype="str")
    return pd.Series(clean, dtype=object)


def build_frame(
    entity: str, rows: list[Mapping[str, Any]], timestamp_columns: Iterable[str] = ()
) -> pd.DataFrame:
    """A frame with exactly the contract's columns of ``entity`` (missing ones all null)."""
    ts = set(timestamp_columns)
    columns = ENTITIES[entity].column_names
    data = {}
    for c in columns:
        vals = [r.get(c) for r in rows]
        data[c] = timestamp_series(vals) if c in ts else value_series(vals)
    return pd.DataFrame(data, columns=columns)


class Landing:
    """Writes every page or file received, raw, under ``root/<source>/...``; a no-op without root."""

    def __init__(self, root: Path | None, source: str):
        self.dir = Path(root) / source if root is not None else None
        self.files: list[Path] = []

    def write(self, relative: str, content: bytes) -> Path | None:
        if self.dir is None:
            return None
        path = self.dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(content)
        tmp.replace(path)
        self.files.append(path)
        return path


def safe_name(text: str) -> str:
    """A path component from a source id (ids are alphanumeric; anything else is replaced)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text)) or "_"
