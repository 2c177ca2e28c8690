"""Buying roles: CRM picklist values and job titles -> the contract's roles.

CRM admins spell the buying-role picklist their own way; :data:`DEFAULT_PICKLIST` holds the
usual Salesforce spellings. When the picklist is blank (or holds a value we do not know) the
job title decides through :data:`DEFAULT_TITLE_RULES` (first matching regex wins), else the role
is ``unknown``. Both tables are plain data: pass your own to :class:`RoleMapper` (or load them
from configuration with :meth:`RoleMapper.from_config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cxloop.contract import BUYING_ROLES

DEFAULT_PICKLIST: dict[str, str] = {
    "Decision Maker": "decision_maker",
    "Economic Buyer": "decision_maker",
    "Influencer": "influencer",
    "Technical Evaluator": "influencer",
    "End User": "user",
    "Other": "other",
}

# (regex, role) searched case-insensitively in the title; first match wins, none -> unknown.
# Only decision makers, influencers and users can be told from a title. "Director" and
# "Head of" are deliberately absent: in B2B CRMs they are as often influencers as buyers.
DEFAULT_TITLE_RULES: tuple[tuple[str, str], ...] = (
    (
        r"\b(chief|ceo|cfo|coo|cio|cto|cro|cmo|ciso|president|founder|vp|svp|evp|vice[- ]president)\b",
        "decision_maker",
    ),
    (r"\b(manager|lead|architect|principal)\b", "influencer"),
    (
        r"\b(analyst|engineer|developer|specialist|coordinator|administrator|admin|"
        r"representative|agent|technician)\b",
        "user",
    ),
)


def _norm(value: object) -> str:
    if value is None:
        return ""
    text = str(value).strip()
    return "" if text.lower() in {"nan", "none", "null"} else text


@dataclass
class RoleMapper:
    picklist: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PICKLIST))
    title_rules: Iterable[tuple[str, str]] = DEFAULT_TITLE_RULES
    default: str = "unknown"

    def __post_init__(self) -> None:
        self._picklist = {_norm(k).lower(): v for k, v in self.picklist.items()}
        self._rules = [(re.compile(p, re.IGNORECASE), r) for p, r in self.title_rules]
        for role in [*self._picklist.values(), *(r for _, r in self._rules), self.default]:
            if role not in BUYING_ROLES:
                raise ValueError(f"role mapping targets {role!r}, not one of {BUYING_ROLES}")

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> RoleMapper:
        """``{"picklist": {spelling: role}, "title_rules": [[regex, role], ...]}``.

        Missing keys use the defaults."""
        picklist = config.get("picklist", DEFAULT_PICKLIST)
        rules = config.get("title_rules", DEFAULT_TITLE_RULES)
        return cls(dict(picklist), tuple((str(p), str(r)) for p, r in rules))  # type: ignore[arg-type]

    def from_title(self, title: object) -> str | None:
        text = _norm(title)
        if not text:
            return None
        for rx, role in self._rules:
            if rx.search(text):
                return role
        return None

    def map(self, picklist_value: object, title: object = None) -> str:
        key = _norm(picklist_value).lower()
        if key and key in self._picklist:
            return self._picklist[key]
        return self.from_title(title) or self.default


def configured_role_mapper(source: str, picklist: Mapping[str, str] | None = None) -> RoleMapper:
    """The source's role mapper: ``picklist`` (default :data:`DEFAULT_PICKLIST`) extended by the
    ``mappings.<source>.buying_role`` map, and ``mappings.<source>.title_rules`` (default
    :data:`DEFAULT_TITLE_RULES`) of the configuration file."""
    from cxloop.extract.mapping import load_mappings

    m = load_mappings().for_source(source)
    merged = {**dict(DEFAULT_PICKLIST if picklist is None else picklist), **m.values.get("buying_role", {})}
    return RoleMapper(merged, tuple(m.title_rules))
