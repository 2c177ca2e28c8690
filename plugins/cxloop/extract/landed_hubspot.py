"""HubSpot CRM tables as Fivetran (``fivetran_hubspot``) and Airbyte (``airbyte_hubspot``) land
them, read by the ``landed`` source (:mod:`cxloop.extract.landed_tables`) into the same
entities as the HubSpot HTTP connector (:mod:`cxloop.extract.hubspot`).

- Fivetran: ``owner`` (+ ``owner_team`` / ``team`` for the primary team), ``company``,
  ``contact`` (+ ``contact_company``), ``engagement`` + ``engagement_task`` (+
  ``engagement_contact``, ``engagement_company``), ``deal`` (+ ``deal_company``); properties as
  ``property_<name>`` columns.
- Airbyte: the streams ``owners``, ``companies``, ``contacts``, ``engagements_tasks``, ``deals``;
  properties as ``properties_<name>`` columns, associations as JSON arrays of ids (``companies``,
  ``contacts``).

**Merged records.** A company lists the companies merged into it in ``hs_merged_object_ids``
(``;``-separated ids), a contact in ``hs_calculated_merged_vids`` (``<id>:<epoch ms>;...``). A
merged-away record still in the table lands as a tombstone (``is_deleted = true``) so it is never
its own account or contact, and every reference to it (a contact's company, a task's contact and
company, a deal's company) is resolved to the surviving record (one level of merge).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cxloop.extract.landed_tables import EntityRead, Schema, Table, _synced_part, identifier

DEFAULT_ROLE_PROPERTY = "hs_buying_role"


def _txt(expr: str) -> str:
    return f"CAST({expr} AS VARCHAR)"


class _Names:
    """The flavour's spelling of a property column and of an object's id column."""

    def __init__(self, tool: str):
        self.prefix = "property_" if tool == "fivetran" else "properties_"

    def prop(self, t: Table, name: str) -> str:
        return t.c(self.prefix + name)

    def label(self, name: str) -> str:
        return self.prefix + name


def _merged(t: Table, id_col: str, merged_prop: str, names: _Names, window: bool = False) -> str | None:
    """SELECT old_id, new_id of every record merged into a (current, live) row of ``t``; with
    ``window`` only from the rows changed in the window. None when the table has no merge column."""
    column = names.label(merged_prop)
    if not t.has(column):
        return None
    m = t.copy(f"{t.alias}_mg")
    where = m.in_window() if window else f"{m.current()} AND NOT {m.deleted('is_deleted', 'archived')}"
    return (
        f"SELECT split_part(trim(x.v), ':', 1) AS old_id, x.sid AS new_id FROM (SELECT {_txt(m.c(id_col))} AS sid, "
        f"unnest(string_to_array({names.prop(m, merged_prop)}, ';')) AS v FROM {m.ref} WHERE {where} "
        f"AND {names.prop(m, merged_prop)} IS NOT NULL) x WHERE trim(x.v) <> ''"
    )


def _resolver(merged: str | None) -> Callable[[str], str]:
    """An id expression resolved to the surviving record's id (as text)."""

    def resolve(expr: str) -> str:
        if merged is None:
            return _txt(expr)
        return (
            f"coalesce((SELECT mg.new_id FROM ({merged}) mg WHERE mg.old_id = {_txt(expr)} "
            f"ORDER BY mg.new_id LIMIT 1), {_txt(expr)})"
        )

    return resolve


def _tables(s: Schema) -> dict[str, Table | None]:
    if s.tool == "fivetran":
        return {
            "owner": s.table("owner", "o", required=True),
            "owner_team": s.table("owner_team", "ot"),
            "team": s.table("team", "tm"),
            "company": s.table("company", "a", required=True),
            "contact": s.table("contact", "c", required=True),
            "contact_company": s.table("contact_company", "cco"),
            "engagement": s.table("engagement", "e"),
            "task": s.table("engagement_task", "t"),
            "task_contact": s.table("engagement_contact", "tc"),
            "task_company": s.table("engagement_company", "tco"),
            "deal": s.table("deal", "d"),
            "deal_company": s.table("deal_company", "dco"),
        }
    return {
        "owner": s.table("owners", "o", required=True, key="id"),
        "company": s.table("companies", "a", required=True, key="id"),
        "contact": s.table("contacts", "c", required=True, key="id"),
        "task": s.table("engagements_tasks", "t", key="id"),
        "deal": s.table("deals", "d", key="id"),
    }


def company_of_contact(s: Schema, names: _Names, tabs: dict[str, Table | None], c: Table) -> str:
    """The contact's company as landed (before merges): ``associatedcompanyid``, else the primary
    (then first) contact-company association."""
    assoc = "NULL"
    cco = tabs.get("contact_company")
    if s.tool == "fivetran" and cco is not None:
        x = cco.copy("cco_a")
        primary = f"CASE WHEN {x.c('type_id')} = 1 THEN 0 ELSE 1 END, " if x.has("type_id") else ""
        assoc = (
            f"(SELECT {_txt(x.c('company_id'))} FROM {x.ref} WHERE {_txt(x.c('contact_id'))} = {_txt(c.c('id'))} "
            f"AND {x.current()} AND NOT {x.deleted()} ORDER BY {primary}{_txt(x.c('company_id'))} LIMIT 1)"
        )
    elif s.tool == "airbyte" and c.has("companies"):
        assoc = s.json_first(c.c("companies"))
    return f"coalesce({_txt(names.prop(c, 'associatedcompanyid'))}, {assoc})"


def account_lookup(crm: Schema) -> Callable[[str], str] | None:
    """For the survey domain: a contact id expression -> its (merge-resolved) company."""
    names = _Names(crm.tool)
    tabs = _tables(crm)
    c = tabs["contact"]
    a = tabs["company"]
    assert c is not None and a is not None
    c2 = c.copy("cc")
    resolve_company = _resolver(_merged(a, "id", "hs_merged_object_ids", names))

    def lookup(contact_expr: str) -> str:
        return (
            f"(SELECT {resolve_company(company_of_contact(crm, names, tabs, c2))} FROM {c2.ref} "
            f"WHERE {_txt(c2.c('id'))} = {_txt(contact_expr)} AND {c2.current()} LIMIT 1)"
        )

    return lookup


def hubspot_reads(
    s: Schema, options: Mapping[str, Any], since: Mapping[str, datetime], dealtypes: tuple[str, ...]
) -> list[EntityRead]:
    names = _Names(s.tool)
    tabs = _tables(s)
    o, a, c = tabs["owner"], tabs["company"], tabs["contact"]
    assert o is not None and a is not None and c is not None
    role = identifier(options.get("buying_role_field") or DEFAULT_ROLE_PROPERTY, "buying_role_field")
    fivetran = s.tool == "fivetran"
    reads: list[EntityRead] = []
    P = names.prop  # noqa: N806

    def part(tab: Table, entity: str, extra: str = "true") -> str:
        return _synced_part(tab, since.get(entity), extra)

    # owners
    oid = "owner_id" if fivetran else "id"
    team = "NULL"
    changed = [f"SELECT {_txt(o.c(oid))} FROM {o.ref} WHERE {o.in_window()}"]
    synced = [part(o, "owners")]
    ot, tm = tabs.get("owner_team"), tabs.get("team")
    if fivetran and ot is not None and tm is not None:
        primary = f"coalesce({ot.c('primary')}, false) DESC, " if ot.has("primary") else ""
        team = (
            f"(SELECT {tm.c('name')} FROM {ot.ref} JOIN {tm.ref} ON {_txt(tm.c('id'))} = {_txt(ot.c('team_id'))} "
            f"AND {tm.current()} WHERE {_txt(ot.c('owner_id'))} = {_txt(o.c(oid))} AND {ot.current()} "
            f"ORDER BY {primary}{_txt(ot.c('team_id'))} LIMIT 1)"
        )
        changed.append(f"SELECT {_txt(ot.c('owner_id'))} FROM {ot.ref} WHERE {ot.in_window()}")
        synced.append(part(ot, "owners"))
    elif not fivetran and o.has("teams"):
        team = s.json_first(o.c("teams"), "name")
    active = o.c("is_active") if o.has("is_active") else "true"
    reads.append(
        EntityRead(
            "owners",
            f"SELECT {_txt(o.c(oid))} AS owner_id, nullif(concat_ws(' ', nullif(trim({o.c('first_name')}), ''), "
            f"nullif(trim({o.c('last_name')}), '')), '') AS owner_name, {team} AS team, "
            f"CASE WHEN {o.deleted('archived')} THEN false ELSE {active} END AS is_active, "
            f"{o.c('updated_at')} AS updated_at FROM {o.ref} WHERE {o.current()} AND {{changed}} ORDER BY 1",
            _txt(o.c(oid)),
            changed,
            synced,
            {"owner_id": oid, "owner_name": "first_name / last_name", "team": "team.name" if fivetran else "teams",
             "is_active": "is_active / archived", "updated_at": "updated_at"},
            o.label,
        )
    )  # fmt: skip

    # accounts: merged-away companies are tombstones
    merged_a = _merged(a, "id", "hs_merged_object_ids", names)
    merged_a_win = _merged(a, "id", "hs_merged_object_ids", names, window=True)
    resolve_company = _resolver(merged_a)
    away = f" OR {_txt(a.c('id'))} IN (SELECT old_id FROM ({merged_a}) ma)" if merged_a else ""
    changed = [f"SELECT {_txt(a.c('id'))} FROM {a.ref} WHERE {a.in_window()}"]
    if merged_a_win:
        changed.append(f"SELECT old_id FROM ({merged_a_win}) maw")
    reads.append(
        EntityRead(
            "accounts",
            f"SELECT {_txt(a.c('id'))} AS account_id, {P(a, 'name')} AS account_name, {P(a, 'segment')} AS segment, "
            f"{P(a, 'region')} AS region, {P(a, 'tier')} AS tier, {P(a, 'arr')} AS arr, "
            f"{_txt(P(a, 'hubspot_owner_id'))} AS owner_id, {P(a, 'renewal_date')} AS renewal_date, "
            f"{P(a, 'active')} AS is_active, ({a.deleted('is_deleted', 'archived')}{away}) AS is_deleted, "
            f"coalesce({P(a, 'createdate')}, {a.c('created_at')}) AS created_at, "
            f"coalesce({P(a, 'hs_lastmodifieddate')}, {a.c('updated_at')}) AS updated_at "
            f"FROM {a.ref} WHERE {a.current()} AND {{changed}} ORDER BY 1",
            _txt(a.c("id")),
            changed,
            [part(a, "accounts")],
            {"account_id": "id", "account_name": names.label("name"), "segment": names.label("segment"),
             "region": names.label("region"), "tier": names.label("tier"), "arr": names.label("arr"),
             "owner_id": names.label("hubspot_owner_id"), "renewal_date": names.label("renewal_date"),
             "is_active": names.label("active"), "is_deleted": f"is_deleted / {names.label('hs_merged_object_ids')}",
             "created_at": names.label("createdate"), "updated_at": names.label("hs_lastmodifieddate")},
            a.label,
        )
    )  # fmt: skip

    # contacts: merged-away contacts are tombstones; the company resolved through merges
    merged_c = _merged(c, "id", "hs_calculated_merged_vids", names)
    merged_c_win = _merged(c, "id", "hs_calculated_merged_vids", names, window=True)
    resolve_contact = _resolver(merged_c)
    away = f" OR {_txt(c.c('id'))} IN (SELECT old_id FROM ({merged_c}) mc)" if merged_c else ""
    raw_company = company_of_contact(s, names, tabs, c)
    changed = [f"SELECT {_txt(c.c('id'))} FROM {c.ref} WHERE {c.in_window()}"]
    synced = [part(c, "contacts")]
    if merged_c_win:
        changed.append(f"SELECT old_id FROM ({merged_c_win}) mcw")
    if merged_a_win:  # a company merged in the window: its contacts now point at the survivor
        changed.append(
            f"SELECT {_txt(c.c('id'))} FROM {c.ref} WHERE {raw_company} IN (SELECT old_id FROM ({merged_a_win}) maw)"
        )
    cco = tabs.get("contact_company")
    if fivetran and cco is not None:
        changed.append(f"SELECT {_txt(cco.c('contact_id'))} FROM {cco.ref} WHERE {cco.in_window()}")
        synced.append(part(cco, "contacts"))
    reads.append(
        EntityRead(
            "contacts",
            f"SELECT {_txt(c.c('id'))} AS contact_id, {resolve_company(raw_company)} AS account_id, "
            f"{P(c, 'email')} AS email, {P(c, 'jobtitle')} AS title, {P(c, role)} AS role_field, "
            f"NULL AS relation_role, NULL AS opportunity_role, {P(c, 'active')} AS is_active, "
            f"{P(c, 'hs_email_optout')} AS opted_out, ({c.deleted('is_deleted', 'archived')}{away}) AS is_deleted, "
            f"coalesce({P(c, 'lastmodifieddate')}, {c.c('updated_at')}) AS updated_at "
            f"FROM {c.ref} WHERE {c.current()} AND {{changed}} ORDER BY 1",
            _txt(c.c("id")),
            changed,
            synced,
            {"contact_id": "id",
             "account_id": f"{names.label('associatedcompanyid')} / {'contact_company' if fivetran else 'companies'}",
             "email_hash": names.label("email"), "email_domain_valid": names.label("email"),
             "title": names.label("jobtitle"), "buying_role": names.label(role),
             "buying_role_source": names.label(role), "is_active": names.label("active"),
             "opted_out": names.label("hs_email_optout"),
             "is_deleted": f"is_deleted / {names.label('hs_calculated_merged_vids')}",
             "updated_at": names.label("lastmodifieddate")},
            c.label,
        )
    )  # fmt: skip

    # follow-ups: tasks with a survey link
    t = tabs.get("task")
    if t is not None:
        e = tabs.get("engagement") if fivetran else None
        tid = "engagement_id" if fivetran else "id"
        if fivetran:
            tc, tco = tabs.get("task_contact"), tabs.get("task_company")

            def first(link: Table | None, col: str) -> str:
                if link is None:
                    return "NULL"
                x = link.copy(f"{link.alias}_f")
                return (
                    f"(SELECT {_txt(x.c(col))} FROM {x.ref} WHERE {_txt(x.c('engagement_id'))} = {_txt(t.c(tid))} "
                    f"AND {x.current()} ORDER BY {_txt(x.c(col))} LIMIT 1)"
                )

            contact, company = first(tc, "contact_id"), first(tco, "company_id")
        else:
            contact = s.json_first(t.c("contacts")) if t.has("contacts") else "NULL"
            company = s.json_first(t.c("companies")) if t.has("companies") else "NULL"
        join = ""
        owner = _txt(P(t, "hubspot_owner_id"))
        created = P(t, "hs_createdate")
        updated = P(t, "hs_lastmodifieddate")
        gone = t.deleted("is_deleted", "archived")
        changed = [f"SELECT {_txt(t.c(tid))} FROM {t.ref} WHERE {t.in_window()}"]
        synced = [part(t, "follow_ups")]
        if e is not None:
            join = f" JOIN {e.ref} ON {_txt(e.c('id'))} = {_txt(t.c(tid))} AND {e.current()}"
            owner = f"coalesce({owner}, {_txt(e.c('owner_id'))})"
            created = f"coalesce({created}, {e.c('created_at')})"
            updated = f"coalesce({updated}, {e.c('last_updated')})"
            gone = f"({gone} OR {e.deleted('is_deleted')})"
            changed.append(f"SELECT {_txt(e.c('id'))} FROM {e.ref} WHERE {e.in_window()}")
            synced.append(part(e, "follow_ups"))
        if fivetran:
            for link in (tabs.get("task_contact"), tabs.get("task_company")):
                if link is not None:
                    changed.append(f"SELECT {_txt(link.c('engagement_id'))} FROM {link.ref} WHERE {link.in_window()}")
                    synced.append(part(link, "follow_ups"))
        link = f"coalesce(trim({P(t, 'survey_response_id')}), '') <> '' AND NOT {gone}"
        reads.append(
            EntityRead(
                "follow_ups",
                f"SELECT {_txt(t.c(tid))} AS follow_up_id, {P(t, 'survey_response_id')} AS response_id, "
                f"{resolve_company(company)} AS account_id, {resolve_contact(contact)} AS contact_id, "
                f"{owner} AS owner_id, {created} AS created_at, {P(t, 'first_contact_at')} AS first_contact_at, "
                f"{P(t, 'hs_task_completion_date')} AS closed_at, {P(t, 'hs_task_status')} AS status, "
                f"{updated} AS updated_at FROM {t.ref}{join} WHERE {t.current()} AND {link} AND {{changed}} "
                f"ORDER BY 1",
                _txt(t.c(tid)),
                changed,
                synced,
                {"follow_up_id": tid, "response_id": names.label("survey_response_id"),
                 "account_id": "engagement_company.company_id" if fivetran else "companies",
                 "contact_id": "engagement_contact.contact_id" if fivetran else "contacts",
                 "owner_id": names.label("hubspot_owner_id"), "created_at": names.label("hs_createdate"),
                 "first_contact_at": names.label("first_contact_at"),
                 "closed_at": names.label("hs_task_completion_date"), "status": names.label("hs_task_status"),
                 "updated_at": names.label("hs_lastmodifieddate")},
                t.label,
            )
        )  # fmt: skip

    # renewals: deals of the renewal deal types
    d = tabs.get("deal")
    if d is not None:
        did = "deal_id" if fivetran else "id"
        dco = tabs.get("deal_company")
        changed = [f"SELECT {_txt(d.c(did))} FROM {d.ref} WHERE {d.in_window()}"]
        synced = [part(d, "renewals")]
        if fivetran and dco is not None:
            x = dco.copy("dco_f")
            company = (
                f"(SELECT {_txt(x.c('company_id'))} FROM {x.ref} WHERE {_txt(x.c('deal_id'))} = {_txt(d.c(did))} "
                f"AND {x.current()} ORDER BY {_txt(x.c('company_id'))} LIMIT 1)"
            )
            changed.append(f"SELECT {_txt(dco.c('deal_id'))} FROM {dco.ref} WHERE {dco.in_window()}")
            synced.append(part(dco, "renewals"))
        elif not fivetran and d.has("companies"):
            company = s.json_first(d.c("companies"))
        else:
            company = "NULL"
        marks = ", ".join(f"lower(%(dealtype{i})s)" for i in range(len(dealtypes)))
        reads.append(
            EntityRead(
                "renewals",
                f"SELECT {_txt(d.c(did))} AS renewal_id, {resolve_company(company)} AS account_id, "
                f"{P(d, 'dealtype')} AS renewal_type, {P(d, 'dealstage')} AS stage_name, {P(d, 'amount')} AS amount, "
                f"{P(d, 'previous_arr')} AS previous_amount, CAST({P(d, 'closedate')} AS DATE) AS close_date, "
                f"{P(d, 'hs_is_closed')} AS is_closed, {P(d, 'hs_is_closed_won')} AS is_won, "
                f"{d.deleted('is_deleted', 'archived')} AS is_deleted, "
                f"coalesce({P(d, 'createdate')}, {d.c('created_at')}) AS created_at, "
                f"coalesce({P(d, 'hs_lastmodifieddate')}, {d.c('updated_at')}) AS updated_at FROM {d.ref} "
                f"WHERE {d.current()} AND lower({P(d, 'dealtype')}) IN ({marks}) AND {{changed}} ORDER BY 1",
                _txt(d.c(did)),
                changed,
                synced,
                {"renewal_id": did, "account_id": "deal_company.company_id" if fivetran else "companies",
                 "renewal_type": names.label("dealtype"), "stage_name": names.label("dealstage"),
                 "amount": names.label("amount"), "previous_amount": names.label("previous_arr"),
                 "close_date": names.label("closedate"), "is_closed": names.label("hs_is_closed"),
                 "is_won": names.label("hs_is_closed_won"), "is_deleted": "is_deleted / archived",
                 "created_at": names.label("createdate"), "updated_at": names.label("hs_lastmodifieddate")},
                d.label,
            )
        )  # fmt: skip
    return reads
