"""The demo generator: a synthetic B2B world of Salesforce and Qualtrics records, with its truth.

:func:`generate` writes, under ``out_dir`` (layout in ``docs/demo-sources.md``):

- ``source/salesforce/{User,Account,Contact,Task,Opportunity}.json`` - records with Salesforce field
  names;
- ``source/qualtrics/surveys.json``, ``directory_contacts.json``, ``distributions.json``,
  ``distribution_history.json`` and ``responses/<surveyId>.json`` - Qualtrics v3 shapes;
- ``truth/<entity>.parquet`` - the clean canonical rows the warehouse must end up holding
  (the columns of :data:`cxloop.contract.ENTITIES`, planted faults removed);
- ``truth/faults.parquet`` - one row per planted fault;
- ``ground_truth.json`` - parameters (seed, scale, as_of, start, n_accounts), per-entity counts
  ``{served, expected_loaded, expected_quarantined}`` under ``counts`` (also ``entities``),
  planted fault counts under ``faults`` and a few summary figures under ``summary``.

Beyond the documented fields, XM Directory contacts carry ``embeddedData.AccountId`` (the CRM
account of the contact), which the Qualtrics connector uses for ``invitations.account_id``.
The truth leaves ``contacts.email_hash`` null: the hash needs the deployment's secret key.

Everything is drawn from one ``numpy`` generator seeded with ``seed``: the same seed, scale,
``as_of`` and ``start`` give byte-identical files. ``scale`` 1 is 200 accounts. The renewal
opportunities alone come from a second generator seeded with ``(seed, RENEWAL_STREAM)``, drawn
after the rest of the world is built: adding them changed no other file of a world.

The world: owners in CSM teams own accounts (segment, region, tier, ARR, renewal date, a latent
health score); accounts have contacts with CRM buying-role picklists and job titles. A quarterly
relationship survey goes to every active contact; two transactional surveys go weekly to a few
contacts. Response probability and score depend on account health and buying role; detractor
responses get CRM follow-up tasks with realistic delays, and a completed follow-up makes the
contact's later answers a little kinder (so recovery can be measured). Every account renews
yearly on the anniversary of its ``Renewal_Date__c``: the past renewals are closed Salesforce
Opportunities of ``Type`` Renewal, won with a probability that rises with the account's health
(so NPS predicts renewal), an inactive account's last one lost at its churn date; the next
renewal is open when it is due within 180 days. A few ``Existing Customer - Upgrade``
opportunities are served too: they are not renewals and the truth leaves them out.

Planted faults (about 1 % of the affected entity, at least one each): an Account record served
twice, contacts whose AccountId points nowhere, a response exported twice, responses with an
NPS answer outside 0-10.

The role mapping used for the truth is public (:data:`ROLE_PICKLIST`, :data:`TITLE_ROLE_RULES`,
:func:`canonical_buying_role`), as are the Qualtrics status and Salesforce Task status mappings
(:data:`QUALTRICS_STATUS_MAP`, :data:`TASK_STATUS_MAP`).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cxloop.contract import ENTITIES, ENTITY_ORDER

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Public constants: parameters and the mapping rules the connectors share with the truth.
# --------------------------------------------------------------------------------------------

DEFAULT_SEED = 42
DEFAULT_AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
DEFAULT_START = date(2025, 1, 1)
ACCOUNTS_PER_SCALE = 200  # scale 1.0 = 200 accounts
FAULT_RATE = 0.01  # planted faults per affected entity (at least one of each kind)

#: Salesforce ``Buying_Role__c`` picklist spellings -> contract buying role. Blank -> title.
ROLE_PICKLIST: dict[str, str] = {
    "Decision Maker": "decision_maker",
    "Economic Buyer": "decision_maker",
    "Influencer": "influencer",
    "Technical Evaluator": "influencer",
    "End User": "user",
    "Other": "other",
}

#: Job-title fallback when the picklist is blank: (regex, role), searched case-insensitively in
#: order, first match wins; no match -> ``unknown``. Only decision makers, influencers and
#: users can be told from a title.
TITLE_ROLE_RULES: tuple[tuple[str, str], ...] = (
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

UNKNOWN_ROLE = "unknown"

#: Qualtrics distribution-history status -> contract delivery status.
QUALTRICS_STATUS_MAP: dict[str, str] = {
    "Success": "delivered",
    "Opened": "delivered",
    "SurveyStarted": "delivered",
    "SurveyPartiallyFinished": "delivered",
    "SurveyFinished": "delivered",
    "SurveyScreenedOut": "delivered",
    "SessionExpired": "delivered",
    "SoftBounce": "bounced",
    "HardBounce": "bounced",
    "Failure": "failed",
    "Error": "failed",
    "Blocked": "opted_out",
    "Skipped": "opted_out",
    "Complaint": "opted_out",
}

#: Salesforce Task ``Status`` -> contract follow-up status.
TASK_STATUS_MAP: dict[str, str] = {
    "Not Started": "open",
    "In Progress": "in_progress",
    "Completed": "completed",
    "Deferred": "cancelled",
}

#: The seed of the renewal generator is (seed, RENEWAL_STREAM): a stream of its own.
RENEWAL_STREAM = 17_017
#: P(renewal won) = 1 / (1 + exp(-(a + b * health))) for a renewal that is not a churn.
RENEWAL_WIN_LOGIT = (1.0, 2.5)
RENEWAL_TYPE = "Renewal"
UPGRADE_TYPE = "Existing Customer - Upgrade"
RENEWAL_OPEN_DAYS = 180  # the next renewal is an open opportunity this many days before it is due

#: Survey names containing this pattern are relationship surveys, the rest transactional.
RELATIONSHIP_PATTERN = "Relationship"

RELATIONSHIP_SURVEY = "Relationship NPS"
TRANSACTIONAL_SURVEYS = ("Support Case NPS", "Onboarding NPS")

TEAMS = {"enterprise": "Enterprise CSM", "mid_market": "Mid-Market CSM", "smb": "SMB Success"}
SEGMENTS = ("enterprise", "mid_market", "smb")
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
TIERS = ("A", "B", "C")


@lru_cache(maxsize=1)
def _compiled_rules() -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(p, re.IGNORECASE), r) for p, r in TITLE_ROLE_RULES)


def _blank(value: object) -> bool:
    return value is None or not str(value).strip()


def role_from_title(title: object) -> str | None:
    """The role a job title reveals under :data:`TITLE_ROLE_RULES`, or None."""
    if _blank(title):
        return None
    for rx, role in _compiled_rules():
        if rx.search(str(title)):
            return role
    return None


_PICKLIST_LOWER = {k.lower(): v for k, v in ROLE_PICKLIST.items()}


def canonical_buying_role(picklist: object, title: object = None) -> str:
    """Contract buying role: the picklist value if known, else the title fallback, else unknown."""
    if not _blank(picklist):
        role = _PICKLIST_LOWER.get(str(picklist).strip().lower())
        if role is not None:
            return role
    return role_from_title(title) or UNKNOWN_ROLE


def survey_type_of(name: str, pattern: str = RELATIONSHIP_PATTERN) -> str:
    return "relationship" if pattern.lower() in name.lower() else "transactional"


# --------------------------------------------------------------------------------------------
# Vocabulary for names and titles (all invented).
# --------------------------------------------------------------------------------------------

# fmt: off
FIRST_NAMES = (
    "Ava", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jonas",
    "Kavya", "Liam", "Mei", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Vera", "Wen", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Carmen", "Dmitri",
    "Esme", "Felix", "Giulia", "Hamid", "Ingrid", "Jamal", "Keiko", "Lucas", "Maya", "Nikhil",
)
LAST_NAMES = (
    "Adams", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito",
    "Jansen", "Kowalski", "Lopez", "Moreau", "Nakamura", "Okafor", "Patel", "Quispe", "Rossi",
    "Schmidt", "Tanaka", "Usman", "Virtanen", "Walsh", "Xu", "Yilmaz", "Zhang", "Almeida",
    "Brennan", "Chen", "Diaz", "Evans", "Fontaine", "Gupta", "Hansen", "Iyer", "Jones",
    "Kim", "Larsen", "Mendes", "Novak",
)
COMPANY_WORDS = (
    "Northwind", "Bluefin", "Cedar", "Dunmore", "Elmstead", "Foxglove", "Granite", "Harbor",
    "Ironwood", "Juniper", "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchard", "Pinecrest",
    "Quarry", "Redwood", "Silverline", "Tidewater", "Upland", "Vantage", "Westbrook", "Yardley",
    "Zephyr", "Alder", "Beacon", "Copper", "Driftwood", "Evergreen",
)
COMPANY_KINDS = (
    "Logistics", "Analytics", "Health", "Foods", "Energy", "Robotics", "Freight", "Media",
    "Insurance", "Retail", "Pharma", "Systems", "Telecom", "Capital", "Manufacturing",
    "Biotech", "Travel", "Education", "Software", "Materials",
)
COMPANY_SUFFIXES = ("Inc", "Ltd", "GmbH", "SA", "LLC", "BV", "Pty Ltd", "KK", "AB", "SAS")

# Titles that reveal the role under TITLE_ROLE_RULES (and under the usual CRM conventions).
REVEALING_TITLES: dict[str, tuple[str, ...]] = {
    "decision_maker": (
        "CFO", "Chief Operating Officer", "VP Procurement", "VP of Operations", "CIO",
        "Chief Technology Officer", "SVP Customer Operations", "President",
    ),
    "influencer": (
        "Operations Manager", "Solutions Architect", "Support Team Lead", "Finance Manager",
        "Principal Engineer", "IT Manager", "Engineering Manager",
    ),
    "user": (
        "Support Specialist", "Data Analyst", "Systems Administrator",
        "Customer Service Representative", "Software Engineer", "Operations Coordinator",
        "Field Technician",
    ),
}
# Titles the rules cannot classify (None = no title on file).
UNREVEALING_TITLES: tuple[str | None, ...] = (
    None, "Team Member", "Contractor", "Legal Counsel", "Accounts Payable", "Intern", "Staff",
)
# Titles of contacts whose picklist is filled in (the title is then not consulted).
PICKLIST_TITLES: dict[str, tuple[str | None, ...]] = {
    "decision_maker": REVEALING_TITLES["decision_maker"] + ("Director of IT", "Head of Procurement"),
    "influencer": REVEALING_TITLES["influencer"] + ("Director, Customer Support", "Procurement Manager"),
    "user": REVEALING_TITLES["user"] + ("Associate", "Consultant"),
    "other": ("Legal Counsel", "Executive Assistant", "Paralegal", "Office Administrator", None),
}
PICKLIST_SPELLINGS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "decision_maker": (("Decision Maker", "Economic Buyer"), (0.7, 0.3)),
    "influencer": (("Influencer", "Technical Evaluator"), (0.7, 0.3)),
    "user": (("End User",), (1.0,)),
    "other": (("Other",), (1.0,)),
}
TRUE_ROLES = ("decision_maker", "influencer", "user", "other")
# fmt: on

COMMENTS = {
    "detractor": (
        "Support takes far too long to respond to tickets.",
        "The last release broke our reporting and nobody warned us.",
        "Pricing went up again without any new value for us.",
        "Our account manager changed three times this year.",
        "Onboarding was confusing and the documentation is out of date.",
        "Too many outages this quarter.",
        "The integration with our ERP still does not work reliably.",
    ),
    "passive": (
        "Solid product, but the roadmap is unclear.",
        "Works well for us, support could be faster.",
        "Good value, though the admin console is clunky.",
        "Fine overall. Reporting needs more flexibility.",
        "We are mostly happy, training could be better.",
    ),
    "promoter": (
        "Great team, always quick to help.",
        "The product saves my team hours every week.",
        "Excellent onboarding and a very responsive CSM.",
        "Reliable, easy to use, and keeps getting better.",
        "Best vendor we work with.",
    ),
    "none": ("No comment.", "Will answer later.", "n/a"),
}

# --------------------------------------------------------------------------------------------
# Small helpers.
# --------------------------------------------------------------------------------------------

NA = np.int64(-1)  # missing timestamp (all real timestamps are > 0 epoch seconds)
DAY = 86_400
HOUR = 3_600
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _qualtrics_ids(rng: np.random.Generator, prefix: str, n: int, used: set[str]) -> list[str]:
    """n distinct Qualtrics-style ids (prefix + 15 base62 characters), never in ``used``."""
    out: list[str] = []
    while len(out) < n:
        need = n - len(out)
        codes = _ALPHABET[rng.integers(0, 62, size=(need, 15))]
        raw = np.frombuffer(codes.tobytes(), dtype="S15").astype("U15")
        for s in np.char.add(prefix, raw).tolist():
            if s not in used:
                used.add(s)
                out.append(s)
    return out


def _sf_ids(prefix: str, first: int, n: int) -> list[str]:
    """Salesforce-style 15-character ids: key prefix + pod + zero-padded counter."""
    return [f"{prefix}5g{i:010d}" for i in range(first, first + n)]


def _fmt_ts(ts: np.ndarray, style: str) -> list[str | None]:
    """Epoch seconds -> ISO strings (``sf``: 2025-01-03T10:00:00.000+0000, ``q``: ...Z)."""
    ts = np.asarray(ts, dtype=np.int64)
    mask = ts == NA
    text = np.datetime_as_string(np.where(mask, 0, ts).astype("datetime64[s]"), unit="s").tolist()
    suffix = ".000+0000" if style == "sf" else "Z"
    out: list[str | None] = [t + suffix for t in text]
    for i in np.flatnonzero(mask).tolist():
        out[i] = None
    return out


def _fmt_date(days: np.ndarray) -> list[str]:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]")).tolist()


def _uniform_ts(rng: np.random.Generator, lo: np.ndarray | int, hi: np.ndarray | int, n: int) -> np.ndarray:
    """Integer epoch seconds uniform in [lo, hi) (hi > lo assumed, elementwise)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.maximum(np.asarray(hi, dtype=np.int64), lo + 1)
    return lo + np.floor(rng.random(n) * (hi - lo)).astype(np.int64)


def _n_faults(n: int) -> int:
    return max(1, int(round(FAULT_RATE * n)))


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


def _write_json_list(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """A JSON array with one record per line: valid JSON, diff-friendly, deterministic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("[")
        first = True
        for rec in records:
            fh.write("\n" if first else ",\n")
            fh.write(_ENCODER.encode(rec))
            first = False
        fh.write("\n]\n")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


def _arrow_column(values: Any, logical: str) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.cast(_ARROW_TYPES[logical])
    if logical == "timestamp":
        ts = np.asarray(values, dtype=np.int64)
        mask = ts == NA
        micros = pa.array(np.where(mask, 0, ts) * 1_000_000, type=pa.int64(), mask=mask)
        return micros.cast(pa.timestamp("us"))
    if logical == "date":
        days = np.asarray(values, dtype=np.int64)
        return pa.array(days.astype(np.int32), type=pa.int32()).cast(pa.date32())
    if logical == "int":
        arr = np.asarray(values, dtype=np.int64)
        return pa.array(arr, type=pa.int64())
    return pa.array(values, type=_ARROW_TYPES[logical])


def _truth_table(
    entity_name: str, columns: dict[str, Any], masks: dict[str, np.ndarray] | None = None
) -> pa.Table:
    """A pyarrow table with exactly the contract columns of ``entity_name``, in contract order."""
    ent = ENTITIES[entity_name]
    masks = masks or {}
    arrays, fields = [], []
    for col in ent.columns:
        logical = col.type
        if col.name not in columns:
            raise KeyError(f"truth table {entity_name}: column {col.name} not generated")
        arr = _arrow_column(columns[col.name], logical)
        if col.name in masks:  # null where mask is true
            arr = pc.if_else(pa.array(masks[col.name]), pa.nulls(len(arr), arr.type), arr)
        arrays.append(arr)
        fields.append(pa.field(col.name, _ARROW_TYPES[logical], nullable=not col.required))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------
# The world.
# --------------------------------------------------------------------------------------------


@dataclass
class _Params:
    seed: int
    scale: float
    as_of: datetime
    start: date
    as_of_ts: int
    start_ts: int
    n_accounts: int
    contact_density: float = 1.0  # multiplies the contacts drawn per account (tier 3-21 at 1.0)


class _World:
    """Arrays of the generated world (numpy, one row per entity), built stage by stage."""

    def __init__(self, p: _Params) -> None:
        self.p = p
        self.rng = np.random.default_rng(p.seed)
        self.used_ids: set[str] = set()

    def qids(self, prefix: str, n: int) -> list[str]:
        return _qualtrics_ids(self.rng, prefix, n, self.used_ids)

    # ---- owners ------------------------------------------------------------------------
    def build_owners(self) -> None:
        rng, p = self.rng, self.p
        n = p.n_accounts // 15 + 3
        seg_idx = np.concatenate([np.arange(3), rng.choice(3, size=n - 3, p=[0.3, 0.35, 0.35])])
        seg_idx.sort(kind="stable")
        active = rng.random(n) >= 0.08
        first_of_team = np.r_[True, seg_idx[1:] != seg_idx[:-1]]
        active |= first_of_team  # every team keeps at least one active owner
        first = rng.integers(0, len(FIRST_NAMES), n)
        last = rng.integers(0, len(LAST_NAMES), n)
        names = [
            f"{FIRST_NAMES[f]} {LAST_NAMES[la]}" for f, la in zip(first.tolist(), last.tolist(), strict=True)
        ]
        emails, seen = [], set()
        for f, la in zip(first.tolist(), last.tolist(), strict=True):
            base = f"{FIRST_NAMES[f]}.{LAST_NAMES[la]}".lower()
            e, k = base, 1
            while e in seen:
                k += 1
                e = f"{base}{k}"
            seen.add(e)
            emails.append(f"{e}@cxloop-demo.example.com")
        self.o_id = _sf_ids("005", 1, n)
        self.o_name = names
        self.o_email = emails
        self.o_seg = seg_idx
        self.o_team = [TEAMS[SEGMENTS[s]] for s in seg_idx.tolist()]
        self.o_active = active
        self.o_mod = _uniform_ts(rng, p.start_ts - 400 * DAY, p.as_of_ts - DAY, n)

    # ---- accounts ----------------------------------------------------------------------
    def build_accounts(self) -> None:
        rng, p = self.rng, self.p
        n = p.n_accounts
        tier = rng.choice(3, size=n, p=[0.15, 0.35, 0.50])
        seg_given_tier = np.array([[0.70, 0.25, 0.05], [0.20, 0.55, 0.25], [0.05, 0.25, 0.70]])
        u = rng.random(n)
        seg = (u[:, None] > np.cumsum(seg_given_tier[tier], axis=1)).sum(axis=1)
        seg = np.minimum(seg, 2)
        region = rng.choice(4, size=n, p=[0.45, 0.30, 0.15, 0.10])
        median = np.array([220_000.0, 55_000.0, 11_000.0])[seg] * np.array([1.6, 1.0, 0.7])[tier]
        arr = np.round(median * rng.lognormal(0.0, 0.55, n), 2)
        inactive = rng.random(n) < 0.05
        health = rng.normal(0.0, 1.0, n) - 0.7 * inactive
        churn = np.where(
            inactive,
            _uniform_ts(rng, p.start_ts + 90 * DAY, p.as_of_ts - 30 * DAY, n),
            np.iinfo(np.int64).max,
        )
        # owners: an active owner of the segment's team mostly, anyone otherwise
        owner = np.empty(n, dtype=np.int64)
        pick_any = rng.random(n) < 0.05
        r_owner = rng.random(n)
        for s in range(3):
            pool = np.flatnonzero((self.o_seg == s) & self.o_active)
            sel = seg == s
            owner[sel] = pool[np.floor(r_owner[sel] * len(pool)).astype(int)]
        owner[pick_any] = np.floor(r_owner[pick_any] * len(self.o_id)).astype(int)
        created = p.start_ts - _uniform_ts(rng, 30 * DAY, 6 * 365 * DAY, n)
        as_of_day = p.as_of_ts // DAY
        renewal_day = np.where(inactive, churn // DAY, as_of_day + rng.integers(1, 549, n)).astype(np.int64)
        mod_lo = np.where(inactive, churn, np.maximum(created, p.start_ts))
        mod = _uniform_ts(rng, mod_lo, p.as_of_ts - 1, n)
        # names and domains
        w = rng.integers(0, len(COMPANY_WORDS), n)
        k = rng.integers(0, len(COMPANY_KINDS), n)
        sfx = rng.integers(0, len(COMPANY_SUFFIXES), n)
        names, domains, seen = [], [], {}
        for wi, ki, si in zip(w.tolist(), k.tolist(), sfx.tolist(), strict=True):
            base = f"{COMPANY_WORDS[wi]} {COMPANY_KINDS[ki]}"
            count = seen.get(base, 0) + 1
            seen[base] = count
            label = base if count == 1 else f"{base} {count}"
            names.append(f"{label} {COMPANY_SUFFIXES[si]}")
            domains.append(label.lower().replace(" ", "-") + ".example.com")
        self.a_id = _sf_ids("001", 1, n)
        self.a_name, self.a_domain = names, domains
        self.a_tier, self.a_seg, self.a_region, self.a_arr = tier, seg, region, arr
        self.a_active, self.a_health, self.a_end = ~inactive, health, churn
        self.a_owner, self.a_created, self.a_mod, self.a_renewal_day = owner, created, mod, renewal_day

    # ---- contacts ----------------------------------------------------------------------
    def build_contacts(self) -> None:
        rng, p = self.rng, self.p
        d = p.contact_density
        lo = np.round(np.array([12, 6, 3]) * d).astype(int)[self.a_tier]
        hi = np.round(np.array([21, 13, 8]) * d).astype(int)[self.a_tier]
        counts = rng.integers(lo, hi)
        acct = np.repeat(np.arange(len(self.a_id)), counts)
        n_real = len(acct)
        n_orphan = _n_faults(n_real)
        # orphans: contacts whose AccountId names no account (they are appended at the end)
        acct = np.concatenate([acct, np.full(n_orphan, -1)])
        n = len(acct)
        orphan = acct < 0
        role = rng.choice(4, size=n, p=[0.16, 0.26, 0.46, 0.12])
        blank = rng.random(n) < 0.15
        revealing = blank & (rng.random(n) < 0.5) & (role != 3)
        r_title, r_spell, r_null_title = rng.random(n), rng.random(n), rng.random(n)
        titles: list[str | None] = []
        picklist: list[str | None] = []
        for i in range(n):
            rname = TRUE_ROLES[role[i]]
            if not blank[i]:
                opts = PICKLIST_TITLES[rname]
                t = opts[int(r_title[i] * len(opts))]
                titles.append(None if r_null_title[i] < 0.05 else t)
                spellings, probs = PICKLIST_SPELLINGS[rname]
                picklist.append(spellings[0] if r_spell[i] < probs[0] else spellings[-1])
            elif revealing[i]:
                opts = REVEALING_TITLES[rname]
                titles.append(opts[int(r_title[i] * len(opts))])
                picklist.append(None)
            else:
                titles.append(UNREVEALING_TITLES[int(r_title[i] * len(UNREVEALING_TITLES))])
                picklist.append(None)
        cache: dict[tuple[str | None, str | None], str] = {}
        canon = []
        for pk, t in zip(picklist, titles, strict=True):
            key = (pk, t)
            if key not in cache:
                cache[key] = canonical_buying_role(pk, t)
            canon.append(cache[key])
        inactive = rng.random(n) < 0.08
        end = np.where(
            inactive, _uniform_ts(rng, p.start_ts + 30 * DAY, p.as_of_ts - DAY, n), np.iinfo(np.int64).max
        )
        opted = rng.random(n) < 0.05
        bad_email = rng.random(n) < 0.02
        propensity = rng.normal(0.0, 0.8, n)
        bias = rng.normal(0.0, 1.0, n)
        mod_lo = np.where(inactive, end, p.start_ts)
        mod = _uniform_ts(rng, mod_lo, p.as_of_ts - 1, n)
        first = rng.integers(0, len(FIRST_NAMES), n).tolist()
        last = rng.integers(0, len(LAST_NAMES), n).tolist()
        emails: list[str] = []
        seen: set[str] = set()
        for i in range(n):
            domain = self.a_domain[acct[i]] if acct[i] >= 0 else f"former-customer-{i}.example.com"
            local = f"{FIRST_NAMES[first[i]]}.{LAST_NAMES[last[i]]}".lower()
            e, k = f"{local}@{domain}", 1
            while e in seen:
                k += 1
                e = f"{local}{k}@{domain}"
            seen.add(e)
            emails.append(e)
        self.c_id = _sf_ids("003", 1, n)
        self.c_cid = self.qids("CID_", n)
        self.c_lookup = self.qids("CGC_", n)
        self.c_acct, self.c_orphan = acct, orphan
        self.c_true_role, self.c_picklist, self.c_title, self.c_role = role, picklist, titles, canon
        self.c_active, self.c_end, self.c_opted, self.c_bad_email = ~inactive, end, opted, bad_email
        self.c_propensity, self.c_bias, self.c_mod = propensity, bias, mod
        self.c_first = [FIRST_NAMES[f] for f in first]
        self.c_last = [LAST_NAMES[la] for la in last]
        self.c_email = emails
        self.orphan_account_ids = [f"0015g9{i:09d}" for i in range(1, n_orphan + 1)]
        self.c_account_id = [
            self.a_id[a] if a >= 0 else self.orphan_account_ids[j]
            for j, a in zip(np.cumsum(orphan) - 1, acct.tolist(), strict=True)
        ]

    # ---- surveys and distributions -----------------------------------------------------
    def build_surveys(self) -> None:
        rng, p = self.rng, self.p
        names = (RELATIONSHIP_SURVEY, *TRANSACTIONAL_SURVEYS)
        n = len(names)
        self.s_id = self.qids("SV_", n)
        self.s_owner = self.qids("UR_", 1) * n
        self.s_name = list(names)
        self.s_type = [survey_type_of(x) for x in names]
        self.s_created = p.start_ts - _uniform_ts(rng, 10 * DAY, 60 * DAY, n)
        self.s_mod = _uniform_ts(
            rng, self.s_created + DAY, np.minimum(p.start_ts + 30 * DAY, p.as_of_ts - 1), n
        )
        self.s_active = np.ones(n, dtype=bool)

    def _eligible(self, t: int) -> np.ndarray:
        ok = ~self.c_orphan & (self.c_end > t)
        acct = np.where(self.c_orphan, 0, self.c_acct)
        return ok & (self.a_end[acct] > t)

    def build_invitations(self) -> None:
        rng, p = self.rng, self.p
        d_survey, d_send = [], []
        inv_dist, inv_contact = [], []
        # relationship: one wave per calendar quarter, in the first two weeks of the quarter
        q = date(p.start.year, 3 * ((p.start.month - 1) // 3) + 1, 1)
        while _epoch(q) < p.as_of_ts:
            send = _epoch(q) + int(rng.integers(3, 15)) * DAY + 14 * HOUR + int(rng.integers(0, HOUR))
            if p.start_ts <= send < p.as_of_ts:
                members = np.flatnonzero(self._eligible(send) & (rng.random(len(self.c_id)) < 0.95))
                if len(members):
                    inv_dist.append(np.full(len(members), len(d_send)))
                    inv_contact.append(members)
                    d_survey.append(0)
                    d_send.append(send)
            q = date(q.year + (q.month + 2) // 12, (q.month + 2) % 12 + 1, 1)
        # transactional: weekly distributions to a random few contacts
        rates = (0.06, 0.015)  # invitations per account per week
        monday = p.start_ts + ((7 - p.start.weekday()) % 7) * DAY
        week = monday
        while week < p.as_of_ts:
            for s, rate in enumerate(rates, start=1):
                send = week + int(rng.integers(0, 5)) * DAY + 9 * HOUR + int(rng.integers(0, 8 * HOUR))
                k = int(rng.poisson(rate * p.n_accounts))
                if send >= p.as_of_ts or k == 0:
                    continue
                pool = np.flatnonzero(self._eligible(send))
                k = min(k, len(pool))
                if k == 0:
                    continue
                members = np.sort(rng.choice(pool, size=k, replace=False))
                inv_dist.append(np.full(k, len(d_send)))
                inv_contact.append(members)
                d_survey.append(s)
                d_send.append(send)
            week += 7 * DAY
        order = np.argsort(np.asarray(d_send), kind="stable")  # distributions in send order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        self.d_survey = np.asarray(d_survey)[order]
        self.d_send = np.asarray(d_send, dtype=np.int64)[order]
        self.d_id = self.qids("EMD_", len(order))
        self.d_created = self.d_send - _uniform_ts(rng, HOUR, 3 * DAY, len(order))
        dist = rank[np.concatenate(inv_dist)]
        contact = np.concatenate(inv_contact)
        o = np.lexsort((contact, dist))
        self.i_dist, self.i_contact = dist[o], contact[o]
        n = len(o)
        self.i_survey = self.d_survey[self.i_dist]
        sent = self.d_send[self.i_dist] + rng.integers(0, 900, n)
        self.i_sent = np.minimum(sent, p.as_of_ts - 1)
        # delivery
        u = rng.random(n)
        status = np.full(n, "", dtype=object)
        opted = self.c_opted[contact[o]]
        bad = self.c_bad_email[contact[o]]
        status[opted] = "Blocked"
        status[~opted & bad] = "HardBounce"
        rest = ~opted & ~bad
        status[rest & (u < 0.02)] = "SoftBounce"
        status[rest & (u >= 0.02) & (u < 0.026)] = "Failure"
        self.i_delivered = rest & (u >= 0.026)
        self.i_status = status  # delivered statuses are set once responses are known

    # ---- responses ---------------------------------------------------------------------
    def build_responses(self) -> None:
        rng, p = self.rng, self.p
        n = len(self.i_contact)
        c = self.i_contact
        a = self.c_acct[c]
        s = self.i_survey
        role = self.c_true_role[c]
        base = np.where(s == 0, 0.85, -0.5)
        logit = (
            base + np.array([-0.35, 0.0, 0.15, -0.1])[role] + 0.3 * self.a_health[a] + self.c_propensity[c]
        )
        responds = self.i_delivered & (rng.random(n) < 1.0 / (1.0 + np.exp(-logit)))
        late = rng.random(n) < 0.05
        lag = np.where(
            late,
            rng.uniform(31 * DAY, 60 * DAY, n),
            np.clip(rng.lognormal(np.log(1.5 * DAY), 1.2, n), 300, 29.5 * DAY),
        ).astype(np.int64)
        recorded = self.i_sent + lag
        responds &= recorded < p.as_of_ts
        idx = np.flatnonzero(responds)
        idx = idx[np.argsort(recorded[idx], kind="stable")]
        m = len(idx)
        rec = recorded[idx]
        sent = self.i_sent[idx]
        finished = rng.random(m) >= 0.08
        skip = np.where(finished, rng.random(m) < 0.03, rng.random(m) < 0.30)
        duration = rng.integers(40, 900, m)
        start = np.where(
            finished, np.maximum(sent + 30, rec - duration), np.maximum(sent + 30, rec - 7 * DAY)
        )
        end = np.where(finished, rec, np.minimum(start + rng.integers(30, 600, m), rec))
        progress = np.where(finished, 100, np.where(skip, rng.integers(5, 40, m), rng.integers(50, 95, m)))
        # latent score (before recovery boosts)
        rc, ra, rs = c[idx], a[idx], s[idx]
        latent = (
            8.0
            + 1.2 * self.a_health[ra]
            + np.array([-0.6, -0.25, 0.0, 0.1])[self.c_true_role[rc]]
            + np.array([0.0, -0.4, 0.3])[rs]
            + self.c_bias[rc]
            + rng.normal(0.0, 1.3, m)
        )
        self.r_inv, self.r_contact, self.r_acct, self.r_survey = idx, rc, ra, rs
        self.r_rec, self.r_start, self.r_end = rec, start, end
        self.r_finished, self.r_has_score, self.r_progress = finished, ~skip, progress
        self.r_id = self.qids("R_", m)
        # planted faults: out-of-range answers and a duplicated export row
        scored = np.flatnonzero(~skip)
        n_oor = _n_faults(m)
        self.r_oor = np.zeros(m, dtype=bool)
        self.r_oor[rng.choice(scored, size=min(n_oor, len(scored)), replace=False)] = True
        self.r_oor_value = np.where(self.r_oor, rng.choice(np.array([11, -1, 12]), m), 0)
        self.r_dup = np.zeros(m, dtype=bool)
        self.r_dup[rng.choice(np.flatnonzero(~self.r_oor), size=_n_faults(m), replace=False)] = True
        self._scores_and_follow_ups(latent)
        # comments
        cls = np.where(
            ~self.r_has_score, 3, np.where(self.r_score <= 6, 0, np.where(self.r_score <= 8, 1, 2))
        )
        p_comment = np.array([0.55, 0.30, 0.30, 0.10])[cls]
        has_comment = rng.random(m) < p_comment
        long = has_comment & (rng.random(m) < 0.03)
        pick = rng.random((m, 12))
        keys = ("detractor", "passive", "promoter", "none")
        comments: list[str | None] = [None] * m
        for i in np.flatnonzero(has_comment).tolist():
            pool = COMMENTS[keys[cls[i]]]
            if long[i]:
                k = 6 + int(pick[i, 0] * 6)
                comments[i] = " ".join(pool[int(x * len(pool))] for x in pick[i, 1 : k + 1]) + (
                    " We have raised this in several reviews and would like a concrete plan with dates."
                )
            else:
                comments[i] = pool[int(pick[i, 1] * len(pool))]
        self.r_comment = comments
        # delivery statuses of delivered invitations, now that responses are known
        st = self.i_status
        resp_of_inv = np.full(n, -1)
        resp_of_inv[idx] = np.arange(m)
        self.i_response = resp_of_inv
        st[idx[finished]] = "SurveyFinished"
        st[idx[~finished]] = "SurveyPartiallyFinished"
        quiet = np.flatnonzero(self.i_delivered & (resp_of_inv < 0))
        uq = rng.random(len(quiet))
        st[quiet] = np.where(
            uq < 0.45,
            "Success",
            np.where(uq < 0.90, "Opened", np.where(uq < 0.95, "SurveyStarted", "SessionExpired")),
        )
        self.i_status = st
        # opened / started timestamps for the history elements
        opened = np.full(n, NA, dtype=np.int64)
        started = np.full(n, NA, dtype=np.int64)
        opened[idx] = sent + ((start - sent) * rng.uniform(0.1, 0.9, m)).astype(np.int64)
        started[idx] = start
        engaged = quiet[uq >= 0.45]
        op = self.i_sent[engaged] + rng.integers(60, 3 * DAY, len(engaged))
        opened[engaged] = np.minimum(op, p.as_of_ts - 1)
        began = quiet[uq >= 0.90]
        started[began] = np.minimum(opened[began] + rng.integers(30, 600, len(began)), p.as_of_ts - 1)
        self.i_opened, self.i_started = opened, started
        self.i_session = np.full(n, None, dtype=object)
        has_session = np.flatnonzero(started != NA)
        self.i_session[has_session] = self.qids("FS_", len(has_session))

    def _scores_and_follow_ups(self, latent: np.ndarray) -> None:
        """Scores in time order, month by month, with follow-up tasks for detractors.

        A completed follow-up may raise the contact's later scores (recovery), so the scores of
        a month depend on the tasks closed before it.
        """
        rng, p = self.rng, self.p
        m = len(self.r_id)
        rec = self.r_rec
        month = rec.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
        bounds = np.flatnonzero(np.r_[True, month[1:] != month[:-1], True])
        big = np.iinfo(np.int64).max
        first_closed = np.full(len(self.c_id), big, dtype=np.int64)
        boost_val = np.zeros(len(self.c_id))
        score = np.zeros(m, dtype=np.int64)
        t_resp, t_created, t_first, t_closed, t_status, t_owner = [], [], [], [], [], []
        active_owners = np.flatnonzero(self.o_active)
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            c = self.r_contact[lo:hi]
            boost = np.where(first_closed[c] < rec[lo:hi], boost_val[c], 0.0)
            score[lo:hi] = np.clip(np.rint(latent[lo:hi] + boost), 0, 10).astype(np.int64)
            det = self.r_has_score[lo:hi] & (score[lo:hi] <= 6) & ~self.r_oor[lo:hi]
            di = lo + np.flatnonzero(det)
            k = len(di)
            if k == 0:
                continue
            r = rec[di]
            created = r + rng.integers(60, 1800, k)
            has_task = (rng.random(k) < 0.85) & (created < p.as_of_ts)
            contacted = rng.random(k) < 0.90
            delay = np.exp(rng.normal(np.log(20.0), 1.1, k)) * HOUR
            first = r + np.maximum(delay.astype(np.int64), created - r + 300)
            contacted &= first < p.as_of_ts
            first = np.where(contacted, first, NA)
            u = rng.random(k)
            closed = first + rng.integers(2 * DAY, 20 * DAY, k)
            completed = contacted & (u < 0.78) & (closed < p.as_of_ts)
            deferred = np.where(contacted, (u >= 0.78) & (u < 0.83), u < 0.15)
            status = np.where(
                completed,
                "Completed",
                np.where(deferred, "Deferred", np.where(contacted, "In Progress", "Not Started")),
            )
            closed = np.where(completed, closed, NA)
            acct_owner = self.a_owner[self.r_acct[di]]
            other = active_owners[rng.integers(0, len(active_owners), k)]
            owner = np.where(rng.random(k) < 0.88, acct_owner, other)
            sel = np.flatnonzero(has_task)
            t_resp.append(di[sel])
            t_created.append(created[sel])
            t_first.append(first[sel])
            t_closed.append(closed[sel])
            t_status.append(status[sel])
            t_owner.append(owner[sel])
            # recovery state: the first completed follow-up of a contact
            done = sel[completed[sel]]
            if len(done):
                cc = self.r_contact[di[done]]
                before = first_closed[cc].copy()
                np.minimum.at(first_closed, cc, closed[done])
                newly = np.unique(cc[before == big])
                draws = np.where(rng.random(len(newly)) < 0.65, rng.uniform(1.5, 4.0, len(newly)), 0.0)
                boost_val[newly] = draws
        self.r_score = score

        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        resp = cat(t_resp, np.int64)
        created = cat(t_created, np.int64)
        o = np.argsort(created, kind="stable")
        self.t_resp, self.t_created = resp[o], created[o]
        self.t_first = cat(t_first, np.int64)[o]
        self.t_closed = cat(t_closed, np.int64)[o]
        self.t_status = cat(t_status, object)[o]
        self.t_owner = cat(t_owner, np.int64)[o]
        nt = len(o)
        last = (
            np.maximum.reduce([self.t_created, self.t_first, self.t_closed]) if nt else np.zeros(0, np.int64)
        )
        self.t_mod = np.minimum(last + rng.integers(0, HOUR, nt), p.as_of_ts - 1)
        self.t_id = _sf_ids("00T", 1, nt)

    # ---- account duplicates ------------------------------------------------------------
    # ---- renewal opportunities (their own generator: the rest of the world is untouched) -----
    def build_renewals(self) -> None:
        p = self.p
        rng = np.random.default_rng([p.seed, RENEWAL_STREAM])
        as_of_day, start_day = p.as_of_ts // DAY, p.start_ts // DAY
        a_lo, a_hi = RENEWAL_WIN_LOGIT
        rows: list[tuple] = []  # (account, type, close_day, is_closed, is_won, previous, amount)
        for i in range(len(self.a_id)):
            due = int(self.a_renewal_day[i])
            arr = float(self.a_arr[i])
            health = float(self.a_health[i])
            created_day = int(self.a_created[i] // DAY)
            past: list[tuple[int, bool]] = []  # most recent first: (close_day, churned here)
            if not self.a_active[i]:
                past.append((due, True))
            k = 1
            while True:
                d = due - 365 * k
                if d < max(start_day, created_day + 30):
                    break
                if d < as_of_day:
                    past.append((d, False))
                k += 1
            current = arr
            for d, churned in past:
                growth = float(np.clip(0.04 + 0.06 * health + rng.normal(0.0, 0.04), -0.3, 0.5))
                if churned:
                    won, previous = False, round(current, 2)
                else:
                    won = bool(rng.random() < 1.0 / (1.0 + np.exp(-(a_lo + a_hi * health))))
                    previous = round(current / (1.0 + growth), 2)
                amount = round(current, 2) if won else previous
                rows.append((i, RENEWAL_TYPE, d, True, won, previous, amount))
                current = previous
            if self.a_active[i] and due - as_of_day <= RENEWAL_OPEN_DAYS:
                rows.append((i, RENEWAL_TYPE, due, False, False, round(arr, 2), round(arr, 2)))
            if rng.random() < 0.15:  # an upsell: not a renewal
                d = int(rng.integers(max(start_day, created_day + 1), as_of_day))
                extra = round(arr * float(rng.uniform(0.05, 0.3)), 2)
                rows.append((i, UPGRADE_TYPE, d, True, True, None, extra))
        rows.sort(key=lambda r: (r[0], r[2], r[1]))
        n = len(rows)
        close = np.array([r[2] for r in rows], dtype=np.int64)
        closed = np.array([r[3] for r in rows], dtype=bool)
        created = np.minimum(
            close * DAY - _uniform_ts(rng, 60 * DAY, 150 * DAY, n), p.as_of_ts - 2 * DAY
        ) + rng.integers(0, DAY, n)
        mod_closed = close * DAY + _uniform_ts(rng, 8 * HOUR, 3 * DAY, n)
        mod_open = _uniform_ts(rng, created + 1, p.as_of_ts - 1, n)
        mod = np.minimum(np.where(closed, mod_closed, mod_open), p.as_of_ts - 1)
        mod = np.maximum(mod, created + 1)
        stage_open = np.array(["Prospecting", "Negotiation/Review"])[rng.integers(0, 2, n)]
        self.o_opp_id = _sf_ids("006", 1, n)
        self.o_opp_account = np.array([r[0] for r in rows], dtype=np.int64)
        self.o_opp_type = [r[1] for r in rows]
        self.o_opp_close = close
        self.o_opp_closed = closed
        self.o_opp_won = np.array([r[4] for r in rows], dtype=bool)
        self.o_opp_previous = [r[5] for r in rows]
        self.o_opp_amount = np.array([r[6] for r in rows], dtype=np.float64)
        self.o_opp_stage = [
            ("Closed Won" if w else "Closed Lost") if c else str(so)
            for c, w, so in zip(closed.tolist(), self.o_opp_won.tolist(), stage_open.tolist(), strict=True)
        ]
        self.o_opp_created, self.o_opp_mod = created, mod

    def plant_account_duplicates(self) -> None:
        n = len(self.a_id)
        self.a_dup = np.zeros(n, dtype=bool)
        self.a_dup[self.rng.choice(n, size=_n_faults(n), replace=False)] = True


# --------------------------------------------------------------------------------------------
# Writing the sources.
# --------------------------------------------------------------------------------------------


def _write_salesforce(w: _World, root: Path) -> dict[str, int]:
    sf = root / "source" / "salesforce"
    users = [
        {
            "Id": w.o_id[i],
            "Name": w.o_name[i],
            "Email": w.o_email[i],
            "Department": w.o_team[i],
            "IsActive": bool(w.o_active[i]),
            "SystemModstamp": mod,
        }
        for i, mod in enumerate(_fmt_ts(w.o_mod, "sf"))
    ]
    _write_json_list(sf / "User.json", users)

    created, mod = _fmt_ts(w.a_created, "sf"), _fmt_ts(w.a_mod, "sf")
    renewal = _fmt_date(w.a_renewal_day)
    accounts = []
    for i in range(len(w.a_id)):
        rec = {
            "Id": w.a_id[i],
            "Name": w.a_name[i],
            "Segment__c": SEGMENTS[w.a_seg[i]],
            "Region__c": REGIONS[w.a_region[i]],
            "Tier__c": TIERS[w.a_tier[i]],
            "AnnualRecurringRevenue__c": float(w.a_arr[i]),
            "OwnerId": w.o_id[w.a_owner[i]],
            "Renewal_Date__c": renewal[i],
            "Active__c": bool(w.a_active[i]),
            "IsDeleted": False,
            "CreatedDate": created[i],
            "SystemModstamp": mod[i],
        }
        accounts.append(rec)
        if w.a_dup[i]:
            accounts.append(dict(rec))  # the same record served twice
    _write_json_list(sf / "Account.json", accounts)

    cmod = _fmt_ts(w.c_mod, "sf")
    contacts = [
        {
            "Id": w.c_id[i],
            "AccountId": w.c_account_id[i],
            "Email": w.c_email[i],
            "Title": w.c_title[i],
            "Buying_Role__c": w.c_picklist[i],
            "Active__c": bool(w.c_active[i]),
            "HasOptedOutOfEmail": bool(w.c_opted[i]),
            "IsDeleted": False,
            "SystemModstamp": cmod[i],
        }
        for i in range(len(w.c_id))
    ]
    _write_json_list(sf / "Contact.json", contacts)

    t_created, t_first = _fmt_ts(w.t_created, "sf"), _fmt_ts(w.t_first, "sf")
    t_closed, t_mod = _fmt_ts(w.t_closed, "sf"), _fmt_ts(w.t_mod, "sf")
    tasks = []
    for j in range(len(w.t_id)):
        r = w.t_resp[j]
        tasks.append(
            {
                "Id": w.t_id[j],
                "WhatId": w.a_id[w.r_acct[r]],
                "WhoId": w.c_id[w.r_contact[r]],
                "OwnerId": w.o_id[w.t_owner[j]],
                "Subject": f"NPS follow-up: {w.s_name[w.r_survey[r]]} detractor ({w.r_score[r]}/10)",
                "Status": w.t_status[j],
                "Survey_Response_Id__c": w.r_id[r],
                "First_Contact_At__c": t_first[j],
                "CompletedDateTime": t_closed[j],
                "CreatedDate": t_created[j],
                "IsDeleted": False,
                "SystemModstamp": t_mod[j],
            }
        )
    _write_json_list(sf / "Task.json", tasks)

    o_created, o_mod = _fmt_ts(w.o_opp_created, "sf"), _fmt_ts(w.o_opp_mod, "sf")
    o_close = _fmt_date(w.o_opp_close)
    opportunities = []
    for j in range(len(w.o_opp_id)):
        a = int(w.o_opp_account[j])
        renewal = w.o_opp_type[j] == RENEWAL_TYPE
        opportunities.append(
            {
                "Id": w.o_opp_id[j],
                "AccountId": w.a_id[a],
                "Name": f"{w.a_name[a]} - {'Renewal' if renewal else 'Upgrade'} {o_close[j][:4]}",
                "Type": w.o_opp_type[j],
                "StageName": w.o_opp_stage[j],
                "Amount": float(w.o_opp_amount[j]),
                "Previous_ARR__c": w.o_opp_previous[j],
                "CloseDate": o_close[j],
                "IsClosed": bool(w.o_opp_closed[j]),
                "IsWon": bool(w.o_opp_won[j]),
                "OwnerId": w.o_id[w.a_owner[a]],
                "IsDeleted": False,
                "CreatedDate": o_created[j],
                "SystemModstamp": o_mod[j],
            }
        )
    _write_json_list(sf / "Opportunity.json", opportunities)
    return {
        "owners": len(users),
        "accounts": len(accounts),
        "contacts": len(contacts),
        "follow_ups": len(tasks),
        "renewals": sum(1 for t in w.o_opp_type if t == RENEWAL_TYPE),
    }


def _write_qualtrics(w: _World, root: Path) -> dict[str, int]:
    q = root / "source" / "qualtrics"
    s_created, s_mod = _fmt_ts(w.s_created, "q"), _fmt_ts(w.s_mod, "q")
    surveys = [
        {
            "id": w.s_id[i],
            "name": w.s_name[i],
            "ownerId": w.s_owner[i],
            "isActive": bool(w.s_active[i]),
            "creationDate": s_created[i],
            "lastModified": s_mod[i],
        }
        for i in range(len(w.s_id))
    ]
    _write_json_list(q / "surveys.json", surveys)

    directory = [
        {
            "contactId": w.c_cid[i],
            "firstName": w.c_first[i],
            "lastName": w.c_last[i],
            "email": w.c_email[i],
            "phone": None,
            "extRef": w.c_id[i],
            "language": "EN",
            "unsubscribed": bool(w.c_opted[i]),
            "embeddedData": {"AccountId": w.c_account_id[i]},
        }
        for i in range(len(w.c_id))
    ]
    _write_json_list(q / "directory_contacts.json", directory)

    # distribution history, grouped by distribution (invitations are sorted by distribution)
    n_inv = len(w.i_contact)
    sent, opened = _fmt_ts(w.i_sent, "q"), _fmt_ts(w.i_opened, "q")
    started = _fmt_ts(w.i_started, "q")
    completed_ts = np.full(n_inv, NA, dtype=np.int64)
    has_resp = w.i_response >= 0
    resp_idx = w.i_response[has_resp]
    completed_ts[has_resp] = np.where(w.r_finished[resp_idx], w.r_rec[resp_idx], NA)
    completed = _fmt_ts(completed_ts, "q")
    base_link = "https://cxloop-demo.qualtrics.example/jfe/form/"
    bounds = np.flatnonzero(np.r_[True, w.i_dist[1:] != w.i_dist[:-1], True]) if n_inv else np.array([0])
    hpath = q / "distribution_history.json"
    with hpath.open("w", encoding="utf-8", newline="\n") as fh:  # streamed, one element a line
        fh.write("{")
        for j, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
            d = int(w.i_dist[lo])
            did, sid = w.d_id[d], w.s_id[w.d_survey[d]]
            elems = []
            for i in range(lo, hi):
                c = w.i_contact[i]
                r = w.i_response[i]
                elem = {
                    "contactId": w.c_cid[c],
                    "contactLookupId": w.c_lookup[c],
                    "distributionId": did,
                    "status": w.i_status[i],
                    "surveyLink": f"{base_link}{sid}?Q_CHL=email&Q_DL={did}_{w.c_cid[c]}",
                    "responseId": w.r_id[r] if r >= 0 else None,
                    "responseCompletedAt": completed[i],
                    "sentAt": sent[i],
                    "openedAt": opened[i],
                    "responseStartedAt": started[i],
                    "surveySessionId": w.i_session[i],
                }
                elems.append(_ENCODER.encode(elem))
            fh.write("\n" if j == 0 else ",\n")
            fh.write(json.dumps(did) + ": [\n" + ",\n".join(elems) + "\n]")
        fh.write("\n}\n")
    # distribution stats as Qualtrics reports them, from the history statuses
    st = w.i_status
    stat_masks = {
        "sent": ~np.isin(st, ["Blocked", "HardBounce", "SoftBounce", "Failure"]),
        "failed": st == "Failure",
        "started": np.isin(
            st, ["SurveyStarted", "SessionExpired", "SurveyPartiallyFinished", "SurveyFinished"]
        ),
        "bounced": np.isin(st, ["HardBounce", "SoftBounce"]),
        "opened": np.isin(
            st, ["Opened", "SurveyStarted", "SessionExpired", "SurveyPartiallyFinished", "SurveyFinished"]
        ),
        "skipped": np.zeros(n_inv, dtype=bool),
        "finished": st == "SurveyFinished",
        "complaints": np.zeros(n_inv, dtype=bool),
        "blocked": st == "Blocked",
    }
    stats_per_dist: dict[int, dict[str, int]] = {}
    if n_inv:
        sums = {k: np.add.reduceat(v.astype(np.int64), bounds[:-1]).tolist() for k, v in stat_masks.items()}
        for j, lo in enumerate(bounds[:-1].tolist()):
            stats_per_dist[int(w.i_dist[lo])] = {k: int(v[j]) for k, v in sums.items()}

    d_send, d_created = _fmt_ts(w.d_send, "q"), _fmt_ts(w.d_created, "q")
    d_expire = _fmt_ts(w.d_send + 60 * DAY, "q")
    mailing_list, library = "CG_" + w.qids("ML_", 1)[0][3:], w.qids("UR_", 1)[0].replace("UR_", "GR_")
    messages = w.qids("MS_", len(w.s_id))
    distributions = []
    for d in range(len(w.d_id)):
        s = int(w.d_survey[d])
        distributions.append(
            {
                "id": w.d_id[d],
                "parentDistributionId": None,
                "ownerId": w.s_owner[s],
                "organizationId": "cxloopdemo",
                "requestStatus": "Done",
                "requestType": "Invite",
                "sendDate": d_send[d],
                "createdDate": d_created[d],
                "modifiedDate": d_send[d],
                "headers": {
                    "fromEmail": "noreply@cxloop-demo.example.com",
                    "replyToEmail": "cx@cxloop-demo.example.com",
                    "fromName": "Customer Experience",
                    "subject": f"How are we doing? ({w.s_name[s]})",
                },
                "recipients": {
                    "mailingListId": mailing_list,
                    "contactId": None,
                    "libraryId": library,
                    "sampleId": None,
                },
                "message": {"libraryId": library, "messageId": messages[s], "messageText": None},
                "surveyLink": {
                    "surveyId": w.s_id[s],
                    "expirationDate": d_expire[d],
                    "linkType": "Individual",
                },
                "embeddedData": None,
                "stats": stats_per_dist.get(d, {}),
            }
        )
    _write_json_list(q / "distributions.json", distributions)

    # responses, one export file per survey, ordered by recordedDate; duplicates appended
    r_start, r_end, r_rec = _fmt_ts(w.r_start, "q"), _fmt_ts(w.r_end, "q"), _fmt_ts(w.r_rec, "q")

    def response_object(r: int) -> dict[str, Any]:
        inv = w.r_inv[r]
        c = w.r_contact[r]
        fin = bool(w.r_finished[r])
        values: dict[str, Any] = {
            "startDate": r_start[r],
            "endDate": r_end[r],
            "status": 0,
            "progress": int(w.r_progress[r]),
            "duration": int(w.r_end[r] - w.r_start[r]),
            "finished": fin,
            "recordedDate": r_rec[r],
            "_recordId": w.r_id[r],
            "distributionChannel": "email",
            "userLanguage": "EN",
            "externalDataReference": w.c_id[c],
        }
        labels: dict[str, Any] = {"status": "IP Address", "finished": "True" if fin else "False"}
        if w.r_has_score[r]:
            val = int(w.r_oor_value[r]) if w.r_oor[r] else int(w.r_score[r])
            values["QID1"] = val
            labels["QID1"] = str(val)
        if w.r_comment[r] is not None:
            values["QID2_TEXT"] = w.r_comment[r]
        values["AccountId"] = w.a_id[w.r_acct[r]]
        values["DistributionId"] = w.d_id[w.i_dist[inv]]
        values["ContactId"] = w.c_cid[c]
        return {"responseId": w.r_id[r], "values": values, "labels": labels}

    served = 0
    for s, sid in enumerate(w.s_id):
        mine = np.flatnonzero(w.r_survey == s)  # already in recordedDate order
        twice = mine[w.r_dup[mine]]  # exported a second time, at the end of the file
        served += len(mine) + len(twice)
        rows = (response_object(r) for r in np.concatenate([mine, twice]).tolist())
        _write_json_list(q / "responses" / f"{sid}.json", rows)
    return {"surveys": len(surveys), "invitations": n_inv, "responses": served}


# --------------------------------------------------------------------------------------------
# Truth.
# --------------------------------------------------------------------------------------------


def _truth(w: _World) -> dict[str, pa.Table]:
    t: dict[str, pa.Table] = {}
    t["owners"] = _truth_table(
        "owners",
        {
            "owner_id": w.o_id,
            "owner_name": w.o_name,
            "team": w.o_team,
            "is_active": w.o_active,
            "updated_at": w.o_mod,
        },
    )
    n_a = len(w.a_id)
    t["accounts"] = _truth_table(
        "accounts",
        {
            "account_id": w.a_id,
            "account_name": w.a_name,
            "segment": [SEGMENTS[x] for x in w.a_seg.tolist()],
            "region": [REGIONS[x] for x in w.a_region.tolist()],
            "tier": [TIERS[x] for x in w.a_tier.tolist()],
            "arr": w.a_arr,
            "owner_id": [w.o_id[x] for x in w.a_owner.tolist()],
            "renewal_date": w.a_renewal_day,
            "is_active": w.a_active,
            "is_deleted": np.zeros(n_a, dtype=bool),
            "created_at": w.a_created,
            "updated_at": w.a_mod,
        },
    )
    keep = np.flatnonzero(~w.c_orphan)
    t["contacts"] = _truth_table(
        "contacts",
        {
            "contact_id": [w.c_id[i] for i in keep],
            "account_id": [w.c_account_id[i] for i in keep],
            "email_hash": pa.nulls(len(keep), pa.string()),
            "email_domain_valid": np.ones(len(keep), dtype=bool),
            "title": [w.c_title[i] for i in keep],
            "buying_role": [w.c_role[i] for i in keep],
            "buying_role_source": [w.c_picklist[i] for i in keep],
            "is_active": w.c_active[keep],
            "opted_out": w.c_opted[keep],
            "is_deleted": np.zeros(len(keep), dtype=bool),
            "updated_at": w.c_mod[keep],
        },
    )
    t["surveys"] = _truth_table(
        "surveys",
        {
            "survey_id": w.s_id,
            "survey_name": w.s_name,
            "survey_type": w.s_type,
            "is_active": w.s_active,
            "updated_at": w.s_mod,
        },
    )
    ic = w.i_contact
    inv_ids = [f"{w.d_id[d]}:{w.c_cid[c]}" for d, c in zip(w.i_dist.tolist(), ic.tolist(), strict=True)]
    t["invitations"] = _truth_table(
        "invitations",
        {
            "invitation_id": inv_ids,
            "distribution_id": [w.d_id[d] for d in w.i_dist.tolist()],
            "survey_id": [w.s_id[s] for s in w.i_survey.tolist()],
            "contact_id": [w.c_id[c] for c in ic.tolist()],
            "account_id": [w.a_id[w.c_acct[c]] for c in ic.tolist()],
            "sent_at": w.i_sent,
            "delivery_status": [QUALTRICS_STATUS_MAP[s] for s in w.i_status.tolist()],
            "source_status": w.i_status.tolist(),
        },
    )
    ok = np.flatnonzero(~w.r_oor)
    t["responses"] = _truth_table(
        "responses",
        {
            "response_id": [w.r_id[r] for r in ok],
            "invitation_id": [inv_ids[w.r_inv[r]] for r in ok],
            "survey_id": [w.s_id[w.r_survey[r]] for r in ok],
            "contact_id": [w.c_id[w.r_contact[r]] for r in ok],
            "account_id": [w.a_id[w.r_acct[r]] for r in ok],
            "recorded_at": w.r_rec[ok],
            "nps_score": w.r_score[ok],
            "is_finished": w.r_finished[ok],
            "has_comment": np.array([w.r_comment[r] is not None for r in ok], dtype=bool),
        },
        masks={"nps_score": ~w.r_has_score[ok]},
    )
    tr = w.t_resp
    t["follow_ups"] = _truth_table(
        "follow_ups",
        {
            "follow_up_id": w.t_id,
            "response_id": [w.r_id[r] for r in tr.tolist()],
            "account_id": [w.a_id[w.r_acct[r]] for r in tr.tolist()],
            "contact_id": [w.c_id[w.r_contact[r]] for r in tr.tolist()],
            "owner_id": [w.o_id[o] for o in w.t_owner.tolist()],
            "created_at": w.t_created,
            "first_contact_at": w.t_first,
            "closed_at": w.t_closed,
            "status": [TASK_STATUS_MAP[s] for s in w.t_status.tolist()],
            "updated_at": w.t_mod,
        },
    )
    ren = [j for j, kind in enumerate(w.o_opp_type) if kind == RENEWAL_TYPE]
    t["renewals"] = _truth_table(
        "renewals",
        {
            "renewal_id": [w.o_opp_id[j] for j in ren],
            "account_id": [w.a_id[int(w.o_opp_account[j])] for j in ren],
            "renewal_type": [w.o_opp_type[j] for j in ren],
            "stage_name": [w.o_opp_stage[j] for j in ren],
            "amount": w.o_opp_amount[ren],
            "previous_amount": np.array([w.o_opp_previous[j] for j in ren], dtype=np.float64),
            "close_date": w.o_opp_close[ren],
            "is_closed": w.o_opp_closed[ren],
            "is_won": w.o_opp_won[ren],
            "is_deleted": np.zeros(len(ren), dtype=bool),
            "created_at": w.o_opp_created[ren],
            "updated_at": w.o_opp_mod[ren],
        },
    )
    return t


FAULT_COLUMNS = ("entity", "key", "kind", "field", "value", "expected_reason")


def _faults(w: _World) -> pa.Table:
    rows: list[tuple[str, str, str, str, str, str]] = []
    for i in np.flatnonzero(w.a_dup).tolist():
        rows.append(
            (
                "accounts",
                w.a_id[i],
                "duplicate",
                "account_id",
                w.a_id[i],
                "duplicate primary key: the record is served twice; one copy loads, the other is quarantined",
            )
        )
    for i in np.flatnonzero(w.c_orphan).tolist():
        rows.append(
            (
                "contacts",
                w.c_id[i],
                "orphan",
                "account_id",
                w.c_account_id[i],
                "account_id references no account (orphan contact)",
            )
        )
    for r in np.flatnonzero(w.r_dup).tolist():
        rows.append(
            (
                "responses",
                w.r_id[r],
                "duplicate",
                "response_id",
                w.r_id[r],
                "duplicate primary key: the response appears twice in the export; one copy loads",
            )
        )
    for r in np.flatnonzero(w.r_oor).tolist():
        rows.append(
            (
                "responses",
                w.r_id[r],
                "out_of_range",
                "nps_score",
                str(int(w.r_oor_value[r])),
                "nps_score outside 0-10",
            )
        )
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in FAULT_COLUMNS]
    return pa.Table.from_arrays(
        [pa.array(list(c), type=pa.string()) for c in cols], names=list(FAULT_COLUMNS)
    )


# --------------------------------------------------------------------------------------------
# Entry points.
# --------------------------------------------------------------------------------------------


def generate(
    out_dir: Path | str,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    as_of: datetime = DEFAULT_AS_OF,
    start: date = DEFAULT_START,
    contact_density: float = 1.0,
) -> dict[str, Any]:
    """Write the demo sources, truth tables and ground_truth.json under ``out_dir``.

    Returns the ground-truth dict (also written as ``ground_truth.json``). Deterministic for
    (seed, scale, as_of, start, contact_density). ``as_of`` is exclusive: every timestamp
    written is before it. ``contact_density`` multiplies the contacts per account (and with
    them the relationship-survey invitations): the bench's large preset uses 1.9 for the
    ~15 contacts per account of a large enterprise program.
    """
    t0 = time.perf_counter()
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if contact_density <= 0:
        raise ValueError(f"contact_density must be positive, got {contact_density}")
    as_of = _utc(as_of)
    if isinstance(start, datetime):
        start = start.date()
    as_of_ts, start_ts = int(as_of.timestamp()), _epoch(start)
    if start_ts + 30 * DAY >= as_of_ts:
        raise ValueError(f"start {start} must be at least 30 days before as_of {as_of.isoformat()}")
    p = _Params(
        seed,
        float(scale),
        as_of,
        start,
        as_of_ts,
        start_ts,
        max(5, int(round(ACCOUNTS_PER_SCALE * scale))),
        float(contact_density),
    )
    out = Path(out_dir)
    w = _World(p)
    w.build_owners()
    w.build_accounts()
    w.build_contacts()
    w.build_surveys()
    w.build_invitations()
    w.build_responses()
    w.plant_account_duplicates()
    w.build_renewals()  # last, from its own generator
    log.info(
        "demo world built: %d accounts, %d invitations, %d responses",
        len(w.a_id),
        len(w.i_contact),
        len(w.r_id),
    )

    served = {**_write_salesforce(w, out), **_write_qualtrics(w, out)}
    truth = _truth(w)
    faults = _faults(w)
    tdir = out / "truth"
    tdir.mkdir(parents=True, exist_ok=True)
    for name in ENTITY_ORDER:
        pq.write_table(truth[name], tdir / f"{name}.parquet")
    pq.write_table(faults, tdir / "faults.parquet")

    kinds = faults.column("kind").to_pylist()
    ents = faults.column("entity").to_pylist()
    by_entity: dict[str, dict[str, int]] = {}
    for e, k in zip(ents, kinds, strict=True):
        by_entity.setdefault(e, {}).setdefault(k, 0)
        by_entity[e][k] += 1
    entities = {}
    for name in ENTITY_ORDER:
        loaded = truth[name].num_rows
        entities[name] = {
            "served": served[name],
            "expected_loaded": loaded,
            "expected_quarantined": served[name] - loaded,
        }
    rel = w.i_survey == 0
    delivered_rel = int((w.i_delivered & rel).sum())
    resp_rel = int((w.r_survey == 0).sum())
    scored = w.r_has_score & ~w.r_oor
    gt: dict[str, Any] = {
        "seed": p.seed,
        "scale": p.scale,
        "as_of": as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start": start.isoformat(),
        "n_accounts": p.n_accounts,
        "contact_density": p.contact_density,
        "counts": entities,
        "entities": entities,  # the same per-entity counts under a second name
        "faults": {
            "total": faults.num_rows,
            "by_kind": {k: kinds.count(k) for k in ("duplicate", "orphan", "out_of_range")},
            "by_entity": by_entity,
        },
        "summary": {
            "relationship_delivered": delivered_rel,
            "relationship_responses": resp_rel,
            "scored_responses": int(scored.sum()),
            "detractor_responses": int((scored & (w.r_score <= 6)).sum()),
            "follow_ups": len(w.t_id),
            "closed_renewals": int(truth["renewals"].column("is_closed").to_numpy().sum()),
            "won_renewals": int(truth["renewals"].column("is_won").to_numpy().sum()),
        },
    }
    _write_json(out / "ground_truth.json", gt)
    log.info("demo sources written to %s in %.2fs", out, time.perf_counter() - t0)
    return gt


def _parse_as_of(text: str) -> datetime:
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cxloop.demo.generator", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--scale", type=float, default=1.0, help="1.0 = 200 accounts")
    ap.add_argument(
        "--as-of", type=_parse_as_of, default=DEFAULT_AS_OF, help="ISO timestamp, UTC (exclusive)"
    )
    ap.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START, help="first day of the data")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    t0 = time.perf_counter()
    gt = generate(args.out, seed=args.seed, scale=args.scale, as_of=args.as_of, start=args.start)
    e = gt["entities"]
    print(
        f"demo sources in {args.out}: {e['accounts']['expected_loaded']} accounts, "
        f"{e['contacts']['expected_loaded']} contacts, {e['invitations']['served']} invitations, "
        f"{e['responses']['served']} responses, {e['follow_ups']['served']} follow-ups, "
        f"{gt['faults']['total']} planted faults ({time.perf_counter() - t0:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
