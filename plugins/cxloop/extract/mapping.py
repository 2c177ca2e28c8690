"""Mapping a team's source values onto the contract: the ``mappings:`` section of config/sources.yml.

Per source (files, salesforce, hubspot, qualtrics)::

    mappings:
      files:
        buying_role: {system_admin: user}        # value maps: source spelling -> contract value
        segment: {Enterprize: enterprise}
        title_rules:                             # ordered (regex, role); first match wins
          - ['\\b(chief|ceo)\\b', decision_maker]
        timestamp_formats: {responses.recorded_at: "%m/%d/%Y"}   # strptime, per entity.column

Value maps exist for :data:`MAPPED_COLUMNS`. Keys are matched after trimming and case folding
(``" System_Admin "`` finds ``system_admin``); targets must be contract values as written. A value
that already is a contract value (after trimming and case folding) needs no entry. The gate
applies the maps of the batch's source before it validates (:func:`cxloop.gate.validation`).
No fuzzy matching is done: a near miss ("Direcor") is reported, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxloop.contract import BUYING_ROLES, DELIVERY_STATUSES, ENTITIES, SURVEY_TYPES
from cxloop.extract.roles import DEFAULT_TITLE_RULES

MAPPING_SOURCES = ("files", "salesforce", "hubspot", "qualtrics", "landed")
#: column -> (entity, closed vocabulary or None: open text that becomes closed once mapped)
MAPPED_COLUMNS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "buying_role": ("contacts", BUYING_ROLES),
    "tier": ("accounts", None),
    "segment": ("accounts", None),
    "survey_type": ("surveys", SURVEY_TYPES),
    "delivery_status": ("invitations", DELIVERY_STATUSES),
}
SOURCE_KEYS = (*MAPPED_COLUMNS, "title_rules", "timestamp_formats")


def fold(value: object) -> str:
    return str(value).strip().casefold()


@dataclass(frozen=True)
class SourceMapping:
    source: str
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> {folded key: target}
    title_rules: tuple[tuple[str, str], ...] = DEFAULT_TITLE_RULES
    timestamp_formats: dict[tuple[str, str], str] = field(default_factory=dict)

    def vocabulary(self, column: str) -> tuple[str, ...] | None:
        """The closed vocabulary of ``column`` (for tier / segment: the map's targets, if mapped)."""
        closed = MAPPED_COLUMNS[column][1]
        if closed is not None:
            return closed
        targets = tuple(sorted(set(self.values.get(column, {}).values())))
        return targets or None

    def map_value(self, column: str, value: object) -> tuple[str | None, bool]:
        """(contract value, known): the mapped or already-canonical value, else (None, False)."""
        key = fold(value)
        table = self.values.get(column, {})
        if key in table:
            return table[key], True
        vocab = self.vocabulary(column)
        if vocab is None:
            return str(value), True
        for v in vocab:
            if fold(v) == key:
                return v, True
        return None, False

    def hint(self, column: str, value: object) -> str:
        vocab = self.vocabulary(column) or ()
        return f"mappings.{self.source}.{column}: add '{str(value).strip()}: <one of {', '.join(vocab)}>'"

    def role_from_title(self, title: object) -> str | None:
        if title is None:
            return None
        text = str(title).strip()
        if not text:
            return None
        for rx, role in _compiled(self.title_rules):
            if rx.search(text):
                return role
        return None


_CACHE: dict[tuple[tuple[str, str], ...], list[tuple[re.Pattern, str]]] = {}


def _compiled(rules: tuple[tuple[str, str], ...]) -> list[tuple[re.Pattern, str]]:
    if rules not in _CACHE:
        _CACHE[rules] = [(re.compile(p, re.IGNORECASE), r) for p, r in rules]
    return _CACHE[rules]


@dataclass(frozen=True)
class Mappings:
    sources: dict[str, SourceMapping] = field(default_factory=dict)

    def for_source(self, source: str) -> SourceMapping:
        return self.sources.get(source) or SourceMapping(source)


def _source(source: str, data: object) -> SourceMapping:
    where = f"mappings.{source}"
    if data is None:
        return SourceMapping(source)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be a mapping of {', '.join(SOURCE_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in SOURCE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(SOURCE_KEYS)}")
    values: dict[str, dict[str, str]] = {}
    for column, (_, closed) in MAPPED_COLUMNS.items():
        table = data.get(column)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ValueError(f"{where}.{column}: must map source values to contract values")
        out = {}
        for k, v in table.items():
            if closed is not None and v not in closed:
                raise ValueError(f"{where}.{column}: {k!r} maps to {v!r}, not one of {', '.join(closed)}")
            if v is None or not str(v).strip():
                raise ValueError(f"{where}.{column}: {k!r} maps to an empty value")
            out[fold(k)] = str(v)
        values[column] = out
    rules = DEFAULT_TITLE_RULES
    if data.get("title_rules") is not None:
        raw = data["title_rules"]
        if not isinstance(raw, list):
            raise ValueError(f"{where}.title_rules: must be a list of [regex, role] pairs")
        parsed = []
        for i, pair in enumerate(raw, 1):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"{where}.title_rules rule {i}: must be a [regex, role] pair")
            pattern, role = str(pair[0]), str(pair[1])
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{where}.title_rules rule {i}: invalid regular expression ({exc})") from None
            if role not in BUYING_ROLES:
                raise ValueError(f"{where}.title_rules rule {i}: role {role!r} is not one of {', '.join(BUYING_ROLES)}")
            parsed.append((pattern, role))
        rules = tuple(parsed)
    formats: dict[tuple[str, str], str] = {}
    raw_formats = data.get("timestamp_formats") or {}
    if not isinstance(raw_formats, dict):
        raise ValueError(f"{where}.timestamp_formats: must map entity.column to a strptime format")
    for name, fmt in raw_formats.items():
        entity, _, column = str(name).partition(".")
        e = ENTITIES.get(entity)
        if e is None or column not in e.column_names:
            raise ValueError(f"{where}.timestamp_formats: {name!r} is not an entity.column of the contract")
        if e.column(column).type not in ("date", "timestamp"):
            raise ValueError(f"{where}.timestamp_formats: {name} is not a date or timestamp column")
        if not isinstance(fmt, str) or "%" not in fmt:
            raise ValueError(f"{where}.timestamp_formats.{name}: {fmt!r} is not a strptime format")
        formats[(entity, column)] = fmt
    return SourceMapping(source, values, rules, formats)


def load_mappings(raw: Mapping[str, Any] | None = None) -> Mappings:
    """The ``mappings:`` section of ``raw`` (the parsed config file), or of the configured file
    (``CXLOOP_SOURCES_CONFIG`` or ``config/sources.yml`` under the project home) when None.
    Raises ValueError with one line naming the bad key or value."""
    if raw is None:
        import os
        from pathlib import Path

        import yaml

        from cxloop.config import project_home

        path = Path(os.environ.get("CXLOOP_SOURCES_CONFIG") or project_home() / "config" / "sources.yml")
        raw = {}
        if path.exists():
            try:
                raw = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                raise ValueError(f"{path}: not valid YAML") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    section = raw.get("mappings")
    if section is None:
        return Mappings()
    if not isinstance(section, dict):
        raise ValueError("mappings: must map source names to their mappings")
    unknown = sorted(str(k) for k in section if k not in MAPPING_SOURCES)
    if unknown:
        raise ValueError(f"mappings: unknown source {unknown[0]!r}; known: {', '.join(MAPPING_SOURCES)}")
    return Mappings({s: _source(s, section.get(s)) for s in MAPPING_SOURCES if s in section})
