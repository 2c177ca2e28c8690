"""The ``landed`` source: connector tables another tool already synced into a database
(Fivetran's Salesforce, HubSpot and Qualtrics schemas; Airbyte's Salesforce and HubSpot streams,
:mod:`cxloop.extract.landed_hubspot` for HubSpot), read with SQL and mapped onto the landing
contract.

Configuration (``options.landed`` in config/sources.yml, or ``CXLOOP_LANDED_OPT_<KEY>``):

- ``database``: a DuckDB file (opened read-only; relative to the project home) or a Postgres
  connection (``postgresql://user@host:5432/db`` or a libpq ``host=.. dbname=..`` string; a
  password comes from the Airflow connection ``cx_landed`` / ``CXLOOP_LANDED_TOKEN`` or libpq's own
  ``PGPASSWORD``/``.pgpass``, and is never logged);
- ``crm_schema`` + ``crm_flavour`` (``fivetran_salesforce``, ``fivetran_hubspot``,
  ``airbyte_salesforce``, ``airbyte_hubspot``) and ``survey_schema`` +
  ``survey_flavour`` (``fivetran_qualtrics``): the schema each domain reads;
- Salesforce: ``buying_role_field`` (the Contact field, as for the HTTP connector; written either
  as the API name ``Buying_Role__c`` or as the landed column ``buying_role_c``),
  ``renewal_types``; Qualtrics: ``nps_question_id`` or ``nps_question_type`` (``NPS_GROUP``, or any
  ``question_type`` / ``selector`` of the ``question`` table), ``comment_question_id``,
  ``relationship_pattern``, ``directory_id``.

Schema names and the buying-role field are checked against :data:`IDENTIFIER` and always quoted;
table names are the flavour's own; every value (windows, types, question ids) is a bound
parameter. Nothing from the configuration is ever pasted into SQL unchecked.

**Windows.** Each entity is read over the half-open window ``[since, as_of)`` of the tables'
sync clock, ``_fivetran_synced`` or ``_airbyte_extracted_at`` (``since`` = the entity's
watermark minus the lookback, as for the HTTP connectors). An entity built from several tables
(a contact and its contact roles, a response and its question responses) is re-read whole for
every key that any of its tables changed in the window; rows synced at or after ``as_of`` are
never read. The batch's cursor for the entity is the greatest sync time read, so the watermark
moves on the sync clock.

**Deletes and history mode.** ``_fivetran_deleted``, Airbyte's ``_ab_cdc_deleted_at`` (and the
source's ``is_deleted`` / ``archived``) make a tombstone where the contract has one: accounts,
contacts and renewals land with ``is_deleted = true``; a deleted user lands as an inactive
owner and a deleted survey as an inactive survey. Deleted tasks, distribution contacts and
responses are not read (as the HTTP connectors do not read them). In a history-mode table
(``_fivetran_active``) only the active version of each record is read; in an append-mode
Airbyte stream only the latest extracted. Table and column names are matched as :func:`norm`
does (Fivetran's and Airbyte's spellings).

**Messages.** :func:`relabel_outcome` rewrites the gate's reasons so each names the landed table,
the row's key and the landed column (``salesforce.contact row key '003..' column email: ..``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cxloop.contract import DEFAULT_RENEWAL_TYPES, ENTITIES
from cxloop.extract.frames import ChunkSink, text_table

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FLAVOURS: dict[str, str] = {
    "fivetran_salesforce": "crm",
    "fivetran_hubspot": "crm",
    "airbyte_salesforce": "crm",
    "airbyte_hubspot": "crm",
    "fivetran_qualtrics": "survey",
}
#: documented in docs/landed-sources.md; refused with one line naming them
NOT_SUPPORTED: tuple[str, ...] = ()
SYNCED = "_fivetran_synced"
MANIFEST = "_landed.json"

TIMESTAMPS = {
    "owners": ("updated_at",),
    "accounts": ("created_at", "updated_at"),
    "contacts": ("updated_at",),
    "follow_ups": ("created_at", "first_contact_at", "closed_at", "updated_at"),
    "renewals": ("created_at", "updated_at"),
    "surveys": ("updated_at",),
    "invitations": ("sent_at",),
    "responses": ("recorded_at",),
}


class LandedConfigError(ValueError):
    """The landed source's configuration cannot be used; the message is one line."""


def identifier(value: Any, what: str) -> str:
    """``value`` if it is a plain SQL identifier (letters, digits, underscores), else one line."""
    text = "" if value is None else str(value)
    if not IDENTIFIER.match(text):
        raise LandedConfigError(f"landed: {what} {text[:40]!r} is not a plain identifier (letters, digits, _)")
    return text


def quote(name: str) -> str:
    """A checked identifier, double-quoted (the check leaves no quote to escape)."""
    return '"' + identifier(name, "name") + '"'


def sf_column(field_name: str) -> str:
    """A Salesforce API field name as Fivetran lands it: ``Buying_Role__c`` -> ``buying_role_c``,
    ``AnnualRecurringRevenue__c`` -> ``annual_recurring_revenue_c``; a name already in snake case
    is kept."""
    name = str(field_name).strip()
    if name != name.lower():
        name = name.replace("__c", "_c")
        name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
        name = re.sub(r"_+", "_", name)
    return identifier(name, "buying_role_field")


# --------------------------------------------------------------------------- the database


def is_postgres(database: str) -> bool:
    text = database.strip()
    return text.startswith(("postgresql://", "postgres://")) or bool(re.search(r"\b(host|dbname)=", text))


class Db:
    """One read-only connection to the database holding the landed schemas (DuckDB or Postgres).
    SQL is written with ``%(name)s`` parameters (rewritten to ``$name`` for DuckDB)."""

    def __init__(self, database: str, home: Path, password: str = ""):
        if not database or not str(database).strip():
            raise LandedConfigError("source landed: option database is not configured")
        self.postgres = is_postgres(str(database))
        if self.postgres:
            import psycopg2

            kwargs = {"password": password} if password else {}
            self.conn = psycopg2.connect(str(database), **kwargs)
            self.conn.set_session(readonly=True)
            with self.conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
            self.conn.commit()  # a SET inside a transaction rolled back later would be undone
            self.label = "the Postgres database"
        else:
            import duckdb

            path = Path(database).expanduser()
            path = path if path.is_absolute() else home / path
            if not path.is_file():
                raise LandedConfigError(f"source landed: database {path} does not exist")
            self.conn = duckdb.connect(str(path), read_only=True)
            self.label = str(path)
        self._columns: dict[tuple[str, str], set[str] | None] = {}
        self._tables: dict[str, list[str]] | None = None

    def _sql(self, sql: str) -> str:
        return sql if self.postgres else re.sub(r"%\((\w+)\)s", r"$\1", sql)

    def _params(self, sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
        used = set(re.findall(r"%\((\w+)\)s", sql))
        return {k: v for k, v in params.items() if k in used}

    def rows(self, sql: str, params: Mapping[str, Any], size: int) -> Iterator[tuple[list[str], list[tuple]]]:
        """(column names, up to ``size`` rows) at a time."""
        p = self._params(sql, params)
        if self.postgres:
            cur = self.conn.cursor(name="cxloop_landed")  # server-side: never the whole result at once
            cur.itersize = size
        else:
            cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), p)
            names: list[str] | None = None
            while True:
                batch = cur.fetchmany(size)
                if names is None:
                    names = [d[0] for d in cur.description]
                if not batch:
                    return
                yield names, batch
        finally:
            cur.close()
            if self.postgres:
                self.conn.rollback()

    def scalar(self, sql: str, params: Mapping[str, Any]) -> Any:
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), self._params(sql, params))
            row = cur.fetchone()
            return row[0] if row else None
        finally:
            cur.close()

    def columns(self, schema: str, table: str) -> set[str] | None:
        """The table's column names (as the database spells them), None when there is no such
        table (its name matched as :meth:`table_name` does)."""
        table = self.table_name(schema, table) or table
        key = (schema, table)
        if key not in self._columns:
            cur = self.conn.cursor()
            try:
                cur.execute(
                    self._sql(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = %(s)s AND table_name = %(t)s"
                    ),
                    {"s": schema, "t": table},
                )
                found = {str(r[0]) for r in cur.fetchall()}
            finally:
                cur.close()
            self._columns[key] = found or None
        return self._columns[key]

    def table_name(self, schema: str, table: str) -> str | None:
        """The table of ``schema`` whose name is ``table`` as :func:`norm` compares names (Fivetran's
        ``opportunity_contact_role``, Airbyte's ``OpportunityContactRole``); an exact match first."""
        if self._tables is None or schema not in self._tables:
            cur = self.conn.cursor()
            try:
                cur.execute(
                    self._sql("SELECT table_name FROM information_schema.tables WHERE table_schema = %(s)s"),
                    {"s": schema},
                )
                names = sorted(str(r[0]) for r in cur.fetchall())
            finally:
                cur.close()
            self._tables = {**(self._tables or {}), schema: names}
        names = self._tables[schema]
        if table in names:
            return table
        return next((n for n in names if norm(n) == norm(table)), None)

    def close(self) -> None:
        self.conn.close()


def norm(name: str) -> str:
    """A table or column name compared across tools: lower case, no underscores (Fivetran's
    ``system_modstamp`` / ``opportunity_contact_role`` and Airbyte's ``SystemModstamp`` /
    ``OpportunityContactRole``, or their lower-cased forms, are the same name)."""
    return str(name).lower().replace("_", "")


#: the sync-clock column and the tool's own soft-delete columns, per tool
TOOLS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # tool: (sync column, boolean delete columns, timestamp delete columns: deleted when not null)
    "fivetran": (SYNCED, ("_fivetran_deleted",), ()),
    "airbyte": ("_airbyte_extracted_at", (), ("_ab_cdc_deleted_at",)),
}


@dataclass
class Table:
    """One landed table under an alias: column references that exist, NULL for those that do not.
    Names are matched as :func:`norm` does, so one read serves Fivetran's and Airbyte's spelling.
    ``key`` (Airbyte): the primary key column; with it only the latest extracted version of a key
    is current (an append-mode stream holds every version)."""

    schema: str
    name: str
    alias: str
    cols: set[str]
    tool: str = "fivetran"
    key: str | None = None

    def __post_init__(self) -> None:
        self._actual = {norm(c): c for c in sorted(self.cols)}

    def copy(self, alias: str) -> Table:
        return Table(self.schema, self.name, alias, self.cols, self.tool, self.key)

    @property
    def ref(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)} {self.alias}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def sync(self) -> str:
        return TOOLS[self.tool][0]

    def actual(self, column: str) -> str | None:
        return self._actual.get(norm(column))

    def has(self, column: str) -> bool:
        return self.actual(column) is not None

    def c(self, column: str) -> str:
        found = self.actual(column)
        return f"{self.alias}.{quote(found)}" if found is not None else "NULL"

    def deleted(self, *flags: str) -> str:
        """True when any delete flag is: the tool's own (``_fivetran_deleted``; Airbyte's CDC
        ``_ab_cdc_deleted_at`` set) and the given source columns (``is_deleted``, ``archived``)."""
        booleans, stamps = TOOLS[self.tool][1:]
        parts = [f"coalesce({self.c(f)}, false)" for f in (*booleans, *flags) if self.has(f)]
        parts += [f"{self.c(f)} IS NOT NULL" for f in stamps if self.has(f)]
        return "(" + " OR ".join(parts) + ")" if parts else "false"

    def current(self) -> str:
        """The rows known at ``as_of``: synced before it, the active version in history mode, and
        (Airbyte, with ``key``) the latest version extracted before it."""
        conds = [f"{self.c(self.sync)} < %(until)s"] if self.has(self.sync) else []
        if self.has("_fivetran_active"):
            conds.append(f"coalesce({self.c('_fivetran_active')}, true)")
        if self.key and self.has(self.key) and self.has(self.sync):
            v = self.copy(f"{self.alias}_v")
            conds.append(
                f"NOT EXISTS (SELECT 1 FROM {v.ref} WHERE {v.c(self.key)} = {self.c(self.key)} "
                f"AND {v.c(self.sync)} < %(until)s AND ({v.c(self.sync)} > {self.c(self.sync)} "
                f"OR ({v.c(self.sync)} = {self.c(self.sync)} "
                f"AND {v.c('_airbyte_raw_id')} > {self.c('_airbyte_raw_id')})))"
            )
        return " AND ".join(conds) if conds else "true"

    def in_window(self) -> str:
        s = self.c(self.sync)
        return f"{s} >= %(since)s AND {s} < %(until)s" if self.has(self.sync) else "true"


class Schema:
    def __init__(self, db: Db, schema: str, flavour: str):
        self.db, self.schema, self.flavour = db, schema, flavour
        self.tool = flavour.split("_", 1)[0]

    def table(self, name: str, alias: str, *, required: bool = False, key: str | None = None) -> Table | None:
        actual = self.db.table_name(self.schema, name)
        cols = self.db.columns(self.schema, actual) if actual else None
        if cols is None:
            if required:
                raise LandedConfigError(
                    f"source landed ({self.flavour}): table {self.schema}.{name} is not in {self.db.label}"
                )
            return None
        return Table(self.schema, actual, alias, cols, self.tool, key if self.tool == "airbyte" else None)

    def json_first(self, expr: str, path: str = "") -> str:
        """The first element of a JSON array column (``path``: a key of that element), as text."""
        if self.db.postgres:
            return f"(CAST({expr} AS jsonb)->0->>'{path}')" if path else f"(CAST({expr} AS jsonb)->>0)"
        return f"json_extract_string(CAST({expr} AS VARCHAR), '$[0]{'.' + path if path else ''}')"


# --------------------------------------------------------------------------- reading one entity


@dataclass
class EntityRead:
    """One entity's SQL: the full read, the keys that changed in a window, the sync maxima."""

    entity: str
    sql: str  # with {changed} where the window restriction goes
    key: str  # the driving expression the changed keys are matched on
    changed: list[str]  # SELECT <key> FROM .. WHERE <in window> per table
    synced: list[str]  # SELECT max(_fivetran_synced) FROM .. WHERE <current> per table
    labels: dict[str, str] = field(default_factory=dict)  # contract column -> landed table.column
    table: str = ""


def _read(db: Db, spec: EntityRead, since: datetime | None, params: dict[str, Any], size: int):
    if since is None:
        where = "true"
    else:
        where = f"{spec.key} IN (" + " UNION ".join(spec.changed) + ")"
    sql = spec.sql.replace("{changed}", where)
    yield from db.rows(sql, {**params, "since": since}, size)


def _synced_part(t: Table, since: datetime | None, extra: str = "true") -> str:
    window = "true" if since is None else f"{t.c(t.sync)} >= %(since)s"
    return f"SELECT max({t.c(t.sync)}) AS m FROM {t.ref} WHERE {t.current()} AND {window} AND {extra}"


# --------------------------------------------------------------------------- Fivetran Salesforce


def salesforce_reads(s: Schema, options: Mapping[str, Any], since: Mapping[str, datetime]) -> list[EntityRead]:
    u = s.table("user", "u", required=True, key="id")
    a = s.table("account", "a", required=True, key="id")
    c = s.table("contact", "c", required=True, key="id")
    t = s.table("task", "t", key="id")
    o = s.table("opportunity", "o", key="id")
    acr = s.table("account_contact_relation", "r", key="id")
    ocr = s.table("opportunity_contact_role", "cr", key="id")
    role_col = sf_column(options.get("buying_role_field") or "Buying_Role__c")
    reads: list[EntityRead] = []

    def part(tab: Table, entity: str, extra: str = "true") -> str:
        return _synced_part(tab, since.get(entity), extra)

    assert u is not None and a is not None and c is not None
    reads.append(
        EntityRead(
            "owners",
            f"SELECT {u.c('id')} AS owner_id, {u.c('name')} AS owner_name, {u.c('department')} AS team, "
            f"CASE WHEN {u.deleted()} THEN false ELSE {u.c('is_active')} END AS is_active, "
            f"{u.c('system_modstamp')} AS updated_at FROM {u.ref} WHERE {u.current()} AND {{changed}} "
            f"ORDER BY {u.c('id')}",
            u.c("id"),
            [f"SELECT {u.c('id')} FROM {u.ref} WHERE {u.in_window()}"],
            [part(u, "owners")],
            {"owner_id": "id", "owner_name": "name", "team": "department", "is_active": "is_active",
             "updated_at": "system_modstamp"},
            u.label,
        )
    )  # fmt: skip
    reads.append(
        EntityRead(
            "accounts",
            f"SELECT {a.c('id')} AS account_id, {a.c('name')} AS account_name, {a.c('segment_c')} AS segment, "
            f"{a.c('region_c')} AS region, {a.c('tier_c')} AS tier, {a.c('annual_recurring_revenue_c')} AS arr, "
            f"{a.c('owner_id')} AS owner_id, {a.c('renewal_date_c')} AS renewal_date, "
            f"{a.c('active_c')} AS is_active, {a.deleted('is_deleted')} AS is_deleted, "
            f"{a.c('created_date')} AS created_at, {a.c('system_modstamp')} AS updated_at "
            f"FROM {a.ref} WHERE {a.current()} AND {{changed}} ORDER BY {a.c('id')}",
            a.c("id"),
            [f"SELECT {a.c('id')} FROM {a.ref} WHERE {a.in_window()}"],
            [part(a, "accounts")],
            {"account_id": "id", "account_name": "name", "segment": "segment_c", "region": "region_c",
             "tier": "tier_c", "arr": "annual_recurring_revenue_c", "owner_id": "owner_id",
             "renewal_date": "renewal_date_c", "is_active": "active_c", "is_deleted": "is_deleted",
             "created_at": "created_date", "updated_at": "system_modstamp"},
            a.label,
        )
    )  # fmt: skip
    relation_role = "NULL"
    opportunity_role = "NULL"
    changed = [f"SELECT {c.c('id')} FROM {c.ref} WHERE {c.in_window()}"]
    synced = [part(c, "contacts")]
    if acr is not None and acr.has("roles"):
        relation_role = (
            f"(SELECT split_part({acr.c('roles')}, ';', 1) FROM {acr.ref} WHERE {acr.c('contact_id')} = {c.c('id')} "
            f"AND {acr.c('account_id')} = {c.c('account_id')} AND {acr.current()} AND NOT {acr.deleted('is_deleted')} "
            f"AND coalesce({acr.c('roles')}, '') <> '' ORDER BY {acr.c('id')} LIMIT 1)"
        )
        changed.append(f"SELECT {acr.c('contact_id')} FROM {acr.ref} WHERE {acr.in_window()}")
        synced.append(part(acr, "contacts"))
    if ocr is not None and ocr.has("role"):
        primary = f"coalesce({ocr.c('is_primary')}, false) DESC, " if ocr.has("is_primary") else ""
        opportunity_role = (
            f"(SELECT {ocr.c('role')} FROM {ocr.ref} WHERE {ocr.c('contact_id')} = {c.c('id')} AND {ocr.current()} "
            f"AND NOT {ocr.deleted('is_deleted')} AND coalesce({ocr.c('role')}, '') <> '' "
            f"ORDER BY {primary}{ocr.c('system_modstamp')} DESC, {ocr.c('id')} LIMIT 1)"
        )
        changed.append(f"SELECT {ocr.c('contact_id')} FROM {ocr.ref} WHERE {ocr.in_window()}")
        synced.append(part(ocr, "contacts"))
    reads.append(
        EntityRead(
            "contacts",
            f"SELECT {c.c('id')} AS contact_id, {c.c('account_id')} AS account_id, {c.c('email')} AS email, "
            f"{c.c('title')} AS title, {c.c(role_col)} AS role_field, {relation_role} AS relation_role, "
            f"{opportunity_role} AS opportunity_role, {c.c('active_c')} AS is_active, "
            f"{c.c('has_opted_out_of_email')} AS opted_out, {c.deleted('is_deleted')} AS is_deleted, "
            f"{c.c('system_modstamp')} AS updated_at FROM {c.ref} WHERE {c.current()} AND {{changed}} "
            f"ORDER BY {c.c('id')}",
            c.c("id"),
            changed,
            synced,
            {"contact_id": "id", "account_id": "account_id", "email_hash": "email",
             "email_domain_valid": "email", "title": "title",
             "buying_role": f"{role_col} / account_contact_relation.roles / opportunity_contact_role.role",
             "buying_role_source": role_col, "is_active": "active_c", "opted_out": "has_opted_out_of_email",
             "is_deleted": "is_deleted", "updated_at": "system_modstamp"},
            c.label,
        )
    )  # fmt: skip
    if t is not None:
        link = f"{t.c('survey_response_id_c')} IS NOT NULL AND NOT {t.deleted('is_deleted')}"
        reads.append(
            EntityRead(
                "follow_ups",
                f"SELECT {t.c('id')} AS follow_up_id, {t.c('survey_response_id_c')} AS response_id, "
                f"{t.c('what_id')} AS account_id, {t.c('who_id')} AS contact_id, {t.c('owner_id')} AS owner_id, "
                f"{t.c('created_date')} AS created_at, {t.c('first_contact_at_c')} AS first_contact_at, "
                f"{t.c('completed_date_time')} AS closed_at, {t.c('status')} AS status, "
                f"{t.c('system_modstamp')} AS updated_at FROM {t.ref} WHERE {t.current()} AND {link} "
                f"AND {{changed}} ORDER BY {t.c('id')}",
                t.c("id"),
                [f"SELECT {t.c('id')} FROM {t.ref} WHERE {t.in_window()}"],
                [part(t, "follow_ups")],
                {"follow_up_id": "id", "response_id": "survey_response_id_c", "account_id": "what_id",
                 "contact_id": "who_id", "owner_id": "owner_id", "created_at": "created_date",
                 "first_contact_at": "first_contact_at_c", "closed_at": "completed_date_time", "status": "status",
                 "updated_at": "system_modstamp"},
                t.label,
            )
        )  # fmt: skip
    if o is not None:
        types = _renewal_types(options.get("renewal_types"))
        marks = ", ".join(f"%(type{i})s" for i in range(len(types)))
        reads.append(
            EntityRead(
                "renewals",
                f"SELECT {o.c('id')} AS renewal_id, {o.c('account_id')} AS account_id, {o.c('type')} AS renewal_type, "
                f"{o.c('stage_name')} AS stage_name, {o.c('amount')} AS amount, "
                f"{o.c('previous_arr_c')} AS previous_amount, {o.c('close_date')} AS close_date, "
                f"{o.c('is_closed')} AS is_closed, {o.c('is_won')} AS is_won, {o.deleted('is_deleted')} AS is_deleted, "
                f"{o.c('created_date')} AS created_at, {o.c('system_modstamp')} AS updated_at FROM {o.ref} "
                f"WHERE {o.current()} AND {o.c('type')} IN ({marks}) AND {{changed}} ORDER BY {o.c('id')}",
                o.c("id"),
                [f"SELECT {o.c('id')} FROM {o.ref} WHERE {o.in_window()}"],
                [part(o, "renewals")],
                {"renewal_id": "id", "account_id": "account_id", "renewal_type": "type", "stage_name": "stage_name",
                 "amount": "amount", "previous_amount": "previous_arr_c", "close_date": "close_date",
                 "is_closed": "is_closed", "is_won": "is_won", "is_deleted": "is_deleted",
                 "created_at": "created_date", "updated_at": "system_modstamp"},
                o.label,
            )
        )  # fmt: skip
    by_label = {tab.label: tab for tab in (u, a, c, t, o) if tab is not None}
    for spec in reads:  # name each column as this schema spells it (Airbyte: the API names)
        tab = by_label.get(spec.table)
        if tab is not None:
            spec.labels = {k: tab.actual(v) or v for k, v in spec.labels.items()}
    return reads


def _dealtypes(option: Any) -> tuple[str, ...]:
    from cxloop.extract.hubspot import parse_dealtypes

    return parse_dealtypes(option)


def crm_account_lookup(crm: Schema | None):
    """For the survey domain: a function of a CRM contact id expression -> that contact's account
    (SQL), from the CRM schema of the same database; None without one."""
    if crm is None:
        return None
    if crm.flavour.endswith("_hubspot"):
        from cxloop.extract.landed_hubspot import account_lookup

        return account_lookup(crm)
    cc = crm.table("contact", "cc", key="id")
    if cc is None:
        return None

    def lookup(contact_expr: str) -> str:
        return (
            f"(SELECT {cc.c('account_id')} FROM {cc.ref} WHERE {cc.c('id')} = {contact_expr} AND {cc.current()} "
            f"ORDER BY {cc.c('account_id')} LIMIT 1)"
        )

    return lookup


def _renewal_types(option: Any) -> tuple[str, ...]:
    from cxloop.extract.salesforce import parse_renewal_types

    return parse_renewal_types(option) or DEFAULT_RENEWAL_TYPES


# --------------------------------------------------------------------------- Fivetran Qualtrics


def qualtrics_reads(
    s: Schema, options: Mapping[str, Any], since: Mapping[str, datetime], crm: Schema | None
) -> list[EntityRead]:
    sv = s.table("survey", "sv", required=True)
    d = s.table("distribution", "d", required=True)
    dc = s.table("distribution_contact", "dc", required=True)
    xc = s.table("directory_contact", "xc", required=True)
    r = s.table("survey_response", "sr", required=True)
    q = s.table("question_response", "qr", required=True)
    qq = s.table("question", "qq")
    e = s.table("survey_embedded_data", "ed")
    lookup = crm_account_lookup(crm)

    def crm_account(contact_expr: str) -> str:
        return "NULL" if lookup is None else lookup(contact_expr)
    assert sv is not None and d is not None and dc is not None and xc is not None and r is not None and q is not None
    reads: list[EntityRead] = []

    def part(tab: Table, entity: str, extra: str = "true") -> str:
        return _synced_part(tab, since.get(entity), extra)

    reads.append(
        EntityRead(
            "surveys",
            f"SELECT {sv.c('id')} AS survey_id, {sv.c('survey_name')} AS survey_name, "
            f"CASE WHEN {sv.deleted()} THEN false ELSE {sv.c('is_active')} END AS is_active, "
            f"{sv.c('last_modified')} AS updated_at FROM {sv.ref} WHERE {sv.current()} AND {{changed}} "
            f"ORDER BY {sv.c('id')}",
            sv.c("id"),
            [f"SELECT {sv.c('id')} FROM {sv.ref} WHERE {sv.in_window()}"],
            [part(sv, "surveys")],
            {"survey_id": "id", "survey_name": "survey_name", "survey_type": "survey_name",
             "is_active": "is_active", "updated_at": "last_modified"},
            sv.label,
        )
    )  # fmt: skip

    directory = (
        ' AND xc2."directory_id" = %(directory_id)s' if options.get("directory_id") and xc.has("directory_id") else ""
    )
    xc2 = xc.copy("xc2")

    def ext_ref(contact_expr: str) -> str:
        order = f"{xc2.c('directory_id')}, " if xc2.has("directory_id") else ""
        return (
            f"(SELECT {xc2.c('ext_ref')} FROM {xc2.ref} WHERE {xc2.c('id')} = {contact_expr} AND {xc2.current()} "
            f"AND NOT {xc2.deleted()}{directory} ORDER BY {order}{xc2.c('ext_ref')} LIMIT 1)"
        )

    def embedded(response_expr: str, key: str) -> str:
        if e is None:
            return "NULL"
        e2 = e.copy(f"ed_{key.lower()}")
        return (
            f"(SELECT {e2.c('value')} FROM {e2.ref} WHERE {e2.c('response_id')} = {response_expr} "
            f"AND {e2.c('key')} = '{key}' AND {e2.current()} AND NOT {e2.deleted()} "
            f"ORDER BY {e2.c('import_id')} LIMIT 1)"
        )

    # invitations: one distribution contact of a (not deleted) distribution
    inner = (
        f"SELECT {dc.c('distribution_id')} AS distribution_id, {dc.c('contact_id')} AS q_contact_id, "
        f"{d.c('survey_link_survey_id')} AS survey_id, {ext_ref(dc.c('contact_id'))} AS contact_id, "
        f"{dc.c('sent_at')} AS sent_at, {dc.c('status')} AS status, "
        f"{embedded(dc.c('response_id'), 'AccountId')} AS response_account "
        f"FROM {dc.ref} JOIN {d.ref} ON {d.c('id')} = {dc.c('distribution_id')} AND {d.current()} "
        f"AND NOT {d.deleted()} WHERE {dc.current()} AND NOT {dc.deleted()} AND {{changed}}"
    )
    key = f"{dc.c('distribution_id')} || ':' || {dc.c('contact_id')}"
    reads.append(
        EntityRead(
            "invitations",
            f"SELECT i.*, coalesce({crm_account('i.contact_id')}, i.response_account) AS account_id "
            f"FROM ({inner}) i ORDER BY i.distribution_id, i.q_contact_id",
            key,
            [
                f"SELECT {key} FROM {dc.ref} WHERE {dc.in_window()}",
                f"SELECT {key} FROM {dc.ref} JOIN {d.ref} ON {d.c('id')} = {dc.c('distribution_id')} "
                f"WHERE {d.in_window()}",
                f"SELECT {key} FROM {dc.ref} JOIN {xc.ref} ON {xc.c('id')} = {dc.c('contact_id')} "
                f"WHERE {xc.in_window()}",
            ],
            [part(dc, "invitations"), part(d, "invitations")],
            {"invitation_id": "distribution_id:contact_id", "distribution_id": "distribution_id",
             "survey_id": "distribution.survey_link_survey_id", "contact_id": "directory_contact.ext_ref",
             "account_id": "contact.account_id / survey_embedded_data.AccountId", "sent_at": "sent_at",
             "delivery_status": "status", "source_status": "status"},
            dc.label,
        )
    )  # fmt: skip

    # responses: the question responses of the NPS and comment questions
    def answer(question_filter: str) -> str:
        q2 = q.copy("qr2")
        order = [f"{q2.c(col)} NULLS FIRST" for col in ("sub_question_key", "loop_id") if q2.has(col)]
        order.append(q2.c("_fivetran_id") if q2.has("_fivetran_id") else q2.c("value"))
        return (
            f"(SELECT {q2.c('value')} FROM {q2.ref} WHERE {q2.c('response_id')} = {r.c('id')} "
            f"AND {q2.current()} AND NOT {q2.deleted()} AND {question_filter.replace('{q}', 'qr2')} "
            f"ORDER BY {', '.join(order)} LIMIT 1)"
        )

    nps_type = options.get("nps_question_type")
    if nps_type and qq is not None:
        nps_filter = (
            f'{{q}}."question_id" IN (SELECT {qq.c("id")} FROM {qq.ref} WHERE {qq.c("survey_id")} = {r.c("survey_id")} '
            f"AND {qq.current()} AND NOT {qq.deleted()} AND (upper({qq.c('question_type')}) = upper(%(nps_type)s) "
            f"OR upper({qq.c('selector')}) = upper(%(nps_type)s)))"
        )
    else:
        nps_filter = '{q}."question_id" = %(nps_qid)s'
    comment_filter = '{q}."question_id" IN (%(comment_qid)s, %(comment_base)s)'
    dc2 = dc.copy("dc2")

    def invitation_part(column: str) -> str:
        return (
            f"(SELECT {dc2.c(column)} FROM {dc2.ref} WHERE {dc2.c('response_id')} = {r.c('id')} AND {dc2.current()} "
            f"AND NOT {dc2.deleted()} ORDER BY {dc2.c('distribution_id')}, {dc2.c('contact_id')} LIMIT 1)"
        )

    inner = (
        f"SELECT {r.c('id')} AS response_id, {r.c('survey_id')} AS survey_id, {r.c('recorded_date')} AS recorded_at, "
        f"{r.c('finished')} AS is_finished, {answer(nps_filter)} AS nps_score, {answer(comment_filter)} AS comment, "
        f"coalesce({invitation_part('distribution_id')}, {embedded(r.c('id'), 'DistributionId')}) AS inv_distribution, "
        f"coalesce({invitation_part('contact_id')}, {embedded(r.c('id'), 'ContactId')}) AS inv_contact, "
        f"{embedded(r.c('id'), 'AccountId')} AS response_account "
        f"FROM {r.ref} WHERE {r.current()} AND NOT {r.deleted()} AND {{changed}}"
    )
    changed = [
        f"SELECT {r.c('id')} FROM {r.ref} WHERE {r.in_window()}",
        f"SELECT {q.c('response_id')} FROM {q.ref} WHERE {q.in_window()}",
        f"SELECT {dc.c('response_id')} FROM {dc.ref} WHERE {dc.in_window()}",
    ]
    synced = [part(r, "responses"), part(q, "responses")]
    if e is not None:
        changed.append(f"SELECT {e.c('response_id')} FROM {e.ref} WHERE {e.in_window()}")
        synced.append(part(e, "responses"))
    reads.append(
        EntityRead(
            "responses",
            f"SELECT i.*, {ext_ref('i.inv_contact')} AS contact_id FROM ({inner}) i "
            f"ORDER BY i.response_id",
            r.c("id"),
            changed,
            synced,
            {"response_id": "id", "invitation_id": "distribution_contact.response_id",
             "survey_id": "survey_id", "contact_id": "directory_contact.ext_ref",
             "account_id": "survey_embedded_data.AccountId / contact.account_id", "recorded_at": "recorded_date",
             "nps_score": "question_response.value", "is_finished": "finished",
             "has_comment": "question_response.value"},
            r.label,
        )
    )  # fmt: skip
    if lookup is not None:  # a response without an AccountId: its contact's CRM account
        spec = reads[-1]
        spec.sql = (
            f"SELECT j.*, coalesce(j.response_account, {crm_account('j.contact_id')}) AS account_id "
            f"FROM ({spec.sql}) j ORDER BY j.response_id"
        )
    else:
        reads[-1].sql = f"SELECT j.*, j.response_account AS account_id FROM ({reads[-1].sql}) j ORDER BY j.response_id"
    return reads


# --------------------------------------------------------------------------- rows -> contract


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _flag(v: Any) -> Any:
    """A landed boolean (bool, 0/1, "true"/"1"...) as a bool; anything else as received."""
    if isinstance(v, bool) or v is None:
        return v
    text = str(v).strip().lower()
    if text in ("1", "true", "t", "yes"):
        return True
    if text in ("0", "false", "f", "no"):
        return False
    return v


class Mapper:
    def __init__(self, options: Mapping[str, Any], entities: set[str], hubspot: bool = False):
        from cxloop.extract.qualtrics import map_delivery_status
        from cxloop.extract.salesforce import map_task_status

        self.delivery = map_delivery_status
        self.task_status = map_task_status
        self.hubspot = hubspot
        if hubspot:
            from cxloop.extract.hubspot import map_task_status as hubspot_status

            self.task_status = hubspot_status
        self.pattern = re.compile(str(options.get("relationship_pattern") or "(?i)relationship"))
        self.key = b""
        self.roles = None
        if "contacts" in entities:
            from cxloop.extract.pseudonymise import pii_key
            from cxloop.extract.roles import configured_role_mapper

            self.key = pii_key()  # fail before any row is read
            if hubspot:
                from cxloop.extract.hubspot import HUBSPOT_ROLE_PICKLIST

                self.roles = configured_role_mapper("landed", HUBSPOT_ROLE_PICKLIST)
            else:
                self.roles = configured_role_mapper("landed")

    def columns(self, entity: str, names: list[str], rows: list[tuple]) -> dict[str, list[Any]]:
        cols = {n: [row[i] for row in rows] for i, n in enumerate(names)}
        if entity == "contacts":
            from cxloop.extract.pseudonymise import email_hash, is_valid_email

            emails = cols.pop("email")
            cols["email_hash"] = [None if _blank(m) else email_hash(m, self.key) for m in emails]
            cols["email_domain_valid"] = [None if _blank(m) else is_valid_email(m) for m in emails]
            sources = [
                next((v for v in (f, rel, opp) if not _blank(v)), None)
                for f, rel, opp in zip(
                    cols.pop("role_field"), cols.pop("relation_role"), cols.pop("opportunity_role"), strict=True
                )
            ]
            assert self.roles is not None
            if self.hubspot:  # a multi-select of internal values: the strongest role, as over HTTP
                from cxloop.extract.hubspot import map_buying_role

                roles = self.roles
                cols["buying_role"] = [
                    map_buying_role(src, t, roles) for src, t in zip(sources, cols["title"], strict=True)
                ]
            else:
                cols["buying_role"] = [self.roles.map(src, t) for src, t in zip(sources, cols["title"], strict=True)]
            cols["buying_role_source"] = [None if _blank(v) else v for v in sources]
        elif entity == "follow_ups":
            cols["status"] = [self.task_status(v) for v in cols["status"]]
        elif entity == "surveys":
            cols["survey_type"] = [
                "relationship" if self.pattern.search(str(n or "")) else "transactional" for n in cols["survey_name"]
            ]
        elif entity == "invitations":
            q_contacts = cols.pop("q_contact_id")
            cols["invitation_id"] = [f"{dd}:{cc}" for dd, cc in zip(cols["distribution_id"], q_contacts, strict=True)]
            cols["source_status"] = cols.pop("status")
            cols["delivery_status"] = [self.delivery(v) for v in cols["source_status"]]
            cols.pop("response_account", None)
        elif entity == "responses":
            dists, contacts = cols.pop("inv_distribution"), cols.pop("inv_contact")
            cols["invitation_id"] = [
                f"{dd}:{cc}" if not _blank(dd) and not _blank(cc) else None
                for dd, cc in zip(dists, contacts, strict=True)
            ]
            cols["has_comment"] = [not _blank(v) for v in cols.pop("comment")]
            cols["is_finished"] = [_flag(v) for v in cols["is_finished"]]
            cols.pop("response_account", None)
        return cols


# --------------------------------------------------------------------------- the connector


@dataclass(frozen=True)
class DomainConfig:
    domain: str
    schema: str
    flavour: str


def domain_config(options: Mapping[str, Any], domain: str) -> DomainConfig:
    flavour = str(options.get(f"{domain}_flavour") or "").strip()
    if not flavour:
        raise LandedConfigError(f"source landed: option {domain}_flavour is not configured")
    if flavour in NOT_SUPPORTED:
        raise LandedConfigError(
            f"source landed: {domain}_flavour {flavour} is not supported yet (docs/landed-sources.md); "
            f"supported: {', '.join(FLAVOURS)}"
        )
    if FLAVOURS.get(flavour) != domain:
        known = ", ".join(f for f, d in FLAVOURS.items() if d == domain)
        raise LandedConfigError(f"source landed: {domain}_flavour {flavour[:40]!r} is not one of {known}")
    schema = identifier(options.get(f"{domain}_schema"), f"{domain}_schema")
    return DomainConfig(domain, schema, flavour)


def land_landed(
    options: Mapping[str, Any],
    sink: ChunkSink,
    *,
    entities: tuple[str, ...],
    since: Mapping[str, datetime],
    until: datetime,
    home: Path,
    raw_dir: Path | None = None,
    password: str = "",
    chunk_rows: int = 100_000,
) -> dict[str, int]:
    """Read the landed tables of the domains ``entities`` belong to and hand each entity's rows
    to ``sink`` in chunks (contract columns, landed text form). Returns rows per entity."""
    from cxloop.extract.private import private_dir, write_private

    domains = sorted({ENTITIES[e].domain for e in entities})
    configs = {d: domain_config(options, d) for d in domains}
    if "buying_role_field" in options and "contacts" in entities:
        identifier(options["buying_role_field"], "buying_role_field")
        sf_column(options["buying_role_field"])
    if options.get("directory_id"):
        identifier(options["directory_id"], "directory_id")
    db = Db(str(options.get("database") or ""), home, password)
    counts: dict[str, int] = {}
    try:
        reads: list[EntityRead] = []
        dealtypes = _dealtypes(options.get("renewal_dealtypes"))
        if "crm" in configs:
            crm_schema = Schema(db, configs["crm"].schema, configs["crm"].flavour)
            if configs["crm"].flavour.endswith("_hubspot"):
                from cxloop.extract.landed_hubspot import hubspot_reads

                reads += hubspot_reads(crm_schema, options, since, dealtypes)
            else:
                reads += salesforce_reads(crm_schema, options, since)
        if "survey" in configs:
            crm = None
            crm_schema = options.get("crm_schema")
            crm_flavour = str(options.get("crm_flavour") or "")
            if crm_schema and FLAVOURS.get(crm_flavour) == "crm":
                crm = Schema(db, identifier(crm_schema, "crm_schema"), crm_flavour)
            reads += qualtrics_reads(
                Schema(db, configs["survey"].schema, configs["survey"].flavour), options, since, crm
            )
        comment = str(options.get("comment_question_id") or "QID2_TEXT")
        params: dict[str, Any] = {
            "until": until,
            "nps_qid": str(options.get("nps_question_id") or "QID1"),
            "nps_type": str(options.get("nps_question_type") or ""),
            "comment_qid": comment,
            "comment_base": comment[: -len("_TEXT")] if comment.upper().endswith("_TEXT") else comment,
            "directory_id": str(options.get("directory_id") or ""),
        }
        for i, t in enumerate(_renewal_types(options.get("renewal_types"))):
            params[f"type{i}"] = t
        for i, t in enumerate(dealtypes):
            params[f"dealtype{i}"] = t
        mapper = Mapper(options, set(entities), str(options.get("crm_flavour") or "").endswith("_hubspot"))
        manifest: dict[str, Any] = {}
        for spec in reads:
            if spec.entity not in entities:
                continue
            start = since.get(spec.entity)
            cursor = db.scalar(
                "SELECT max(m) FROM (" + " UNION ALL ".join(spec.synced) + ") x", {**params, "since": start}
            )
            n = 0
            for names, rows in _read(db, spec, start, params, chunk_rows):
                cols = mapper.columns(spec.entity, names, rows)
                table, _ = text_table(spec.entity, cols, TIMESTAMPS[spec.entity])
                sink(spec.entity, table, _cursor(spec.entity, cursor))
                n += len(rows)
            if n == 0:
                from cxloop.extract.frames import text_schema

                empty = text_schema(spec.entity).empty_table()
                sink(spec.entity, empty, _cursor(spec.entity, cursor))
            counts[spec.entity] = n
            manifest[spec.entity] = {"table": spec.table, "columns": spec.labels}
            log.info("landed: %s from %s: %d rows", spec.entity, spec.table, n)
        if raw_dir is not None:
            private_dir(raw_dir)
            write_private(raw_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    finally:
        db.close()
    return counts


def _cursor(entity: str, value: Any) -> dict[str, Any]:
    """The batch's cursor for ``entity``: the greatest sync time read, under the entity's cursor key."""
    from cxloop.extract.frames import parse_utc
    from cxloop.extract.registry import CURSOR_COLUMNS

    if value is None or entity not in CURSOR_COLUMNS:
        return {}  # surveys are read whole, as from Qualtrics: no cursor
    import numpy as np

    return {CURSOR_COLUMNS[entity]: np.datetime64(parse_utc(value), "us")}


# --------------------------------------------------------------------------- messages


def load_manifest(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def relabel_outcome(outcome: Any, manifest: Mapping[str, Any], origin: Mapping[str, str]) -> Any:
    """Rewrite the gate's reasons of a landed batch: ``"<origin> row <n> field <f>"`` becomes
    ``"<table> row key <key> column <landed column>"`` (the key is the row's contract key, as
    derived from the landed table's key). Changes ``outcome`` in place and returns it."""
    from cxloop.gate.messages import show_value

    def fix(frame: Any) -> None:
        if frame is None or frame.empty:
            return
        out = []
        for entity, row, fld, pk, reason in zip(
            frame["entity"], frame["row_number"], frame["field"], frame["primary_key"], frame["reason"], strict=True
        ):
            info = manifest.get(entity)
            if not info:
                out.append(reason)
                continue
            column = (info.get("columns") or {}).get(fld, fld)
            label = f"{info['table']} row key {show_value(pk)} column {column}"
            prefix = f"{origin.get(entity, entity)} row {int(row)} field {fld}"
            if reason.startswith(prefix):
                reason = label + reason[len(prefix) :]
            else:
                plain = f"{origin.get(entity, entity)} row {int(row)}"
                rest = reason[len(plain) :] if reason.startswith(plain) else f": {reason}"
                reason = label + rest
            out.append(reason)
        frame["reason"] = out

    fix(outcome.quarantine)
    fix(outcome.warnings)
    return outcome
