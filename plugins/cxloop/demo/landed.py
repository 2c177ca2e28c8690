"""The demo world as Fivetran and Airbyte would have landed it: a DuckDB file with one schema per
connector flavour (the tables and columns of docs/landed-sources.md), written from the
generator's ``source/`` files, for ``cxloop demo --crm landed --survey landed`` (and
``--landed-crm-flavour``):

- ``salesforce`` (``fivetran_salesforce``), ``hubspot`` (``fivetran_hubspot``), ``qualtrics``
  (``fivetran_qualtrics``): Fivetran's tables, each with ``_fivetran_synced`` (the record's change
  time: ``SystemModstamp``, a survey's ``lastModified``, a distribution's send time, a response's
  recorded time; directory contacts the world's start) and, where Fivetran has one,
  ``_fivetran_deleted`` (false);
- ``airbyte_salesforce`` (``airbyte_salesforce``), ``airbyte_hubspot`` (``airbyte_hubspot``):
  Airbyte's streams (destinations v2: ``_airbyte_raw_id``, ``_airbyte_extracted_at`` = the
  change time, ``_airbyte_meta``, ``_airbyte_generation_id``).

The HubSpot schemas hold the objects the demo's HubSpot API serves
(:func:`cxloop.demo.hubspot_api.derive`), so they read as that API reads. A record the APIs serve
twice (a planted duplicate) is one row here, as a landed table has one row per primary key; the
other planted faults (orphan contacts, out-of-range answers) land as they are. The landed source
reads only rows synced before a run's ``as_of``, so one file serves every ``--as-of``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

DEMO_LANDED_FILE = "landed.duckdb"
CRM_SCHEMA = "salesforce"
SURVEY_SCHEMA = "qualtrics"
#: CRM flavour -> the demo file's schema holding it
CRM_SCHEMAS = {
    "fivetran_salesforce": CRM_SCHEMA,
    "fivetran_hubspot": "hubspot",
    "airbyte_salesforce": "airbyte_salesforce",
    "airbyte_hubspot": "airbyte_hubspot",
}
CRM_FLAVOURS = tuple(CRM_SCHEMAS)


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    dt = datetime.fromisoformat(text)
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


def _date(value: Any) -> Any:
    if value in (None, ""):
        return None
    return datetime.fromisoformat(str(value)[:10]).date()


def _unique(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    out = []
    for r in records:
        if r.get(key) in seen:
            continue
        seen.add(r.get(key))
        out.append(r)
    return out


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# column -> (arrow type, value of a source record)
_SF: dict[str, dict[str, tuple[pa.DataType, Any]]] = {
    "user": {
        "id": (pa.string(), lambda r: r["Id"]),
        "name": (pa.string(), lambda r: r.get("Name")),
        "email": (pa.string(), lambda r: r.get("Email")),
        "department": (pa.string(), lambda r: r.get("Department")),
        "is_active": (pa.bool_(), lambda r: r.get("IsActive")),
        "system_modstamp": (pa.timestamp("us"), lambda r: _ts(r.get("SystemModstamp"))),
    },
    "account": {
        "id": (pa.string(), lambda r: r["Id"]),
        "name": (pa.string(), lambda r: r.get("Name")),
        "segment_c": (pa.string(), lambda r: r.get("Segment__c")),
        "region_c": (pa.string(), lambda r: r.get("Region__c")),
        "tier_c": (pa.string(), lambda r: r.get("Tier__c")),
        "annual_recurring_revenue_c": (pa.float64(), lambda r: r.get("AnnualRecurringRevenue__c")),
        "owner_id": (pa.string(), lambda r: r.get("OwnerId")),
        "renewal_date_c": (pa.date32(), lambda r: _date(r.get("Renewal_Date__c"))),
        "active_c": (pa.bool_(), lambda r: r.get("Active__c")),
        "is_deleted": (pa.bool_(), lambda r: r.get("IsDeleted", False)),
        "created_date": (pa.timestamp("us"), lambda r: _ts(r.get("CreatedDate"))),
        "system_modstamp": (pa.timestamp("us"), lambda r: _ts(r.get("SystemModstamp"))),
    },
    "contact": {
        "id": (pa.string(), lambda r: r["Id"]),
        "account_id": (pa.string(), lambda r: r.get("AccountId")),
        "email": (pa.string(), lambda r: r.get("Email")),
        "title": (pa.string(), lambda r: r.get("Title")),
        "buying_role_c": (pa.string(), lambda r: r.get("Buying_Role__c")),
        "active_c": (pa.bool_(), lambda r: r.get("Active__c")),
        "has_opted_out_of_email": (pa.bool_(), lambda r: r.get("HasOptedOutOfEmail")),
        "is_deleted": (pa.bool_(), lambda r: r.get("IsDeleted", False)),
        "system_modstamp": (pa.timestamp("us"), lambda r: _ts(r.get("SystemModstamp"))),
    },
    "task": {
        "id": (pa.string(), lambda r: r["Id"]),
        "what_id": (pa.string(), lambda r: r.get("WhatId")),
        "who_id": (pa.string(), lambda r: r.get("WhoId")),
        "owner_id": (pa.string(), lambda r: r.get("OwnerId")),
        "subject": (pa.string(), lambda r: r.get("Subject")),
        "status": (pa.string(), lambda r: r.get("Status")),
        "survey_response_id_c": (pa.string(), lambda r: r.get("Survey_Response_Id__c")),
        "first_contact_at_c": (pa.timestamp("us"), lambda r: _ts(r.get("First_Contact_At__c"))),
        "completed_date_time": (pa.timestamp("us"), lambda r: _ts(r.get("CompletedDateTime"))),
        "created_date": (pa.timestamp("us"), lambda r: _ts(r.get("CreatedDate"))),
        "is_deleted": (pa.bool_(), lambda r: r.get("IsDeleted", False)),
        "system_modstamp": (pa.timestamp("us"), lambda r: _ts(r.get("SystemModstamp"))),
    },
    "opportunity": {
        "id": (pa.string(), lambda r: r["Id"]),
        "account_id": (pa.string(), lambda r: r.get("AccountId")),
        "name": (pa.string(), lambda r: r.get("Name")),
        "type": (pa.string(), lambda r: r.get("Type")),
        "stage_name": (pa.string(), lambda r: r.get("StageName")),
        "amount": (pa.float64(), lambda r: r.get("Amount")),
        "previous_arr_c": (pa.float64(), lambda r: r.get("Previous_ARR__c")),
        "close_date": (pa.date32(), lambda r: _date(r.get("CloseDate"))),
        "is_closed": (pa.bool_(), lambda r: r.get("IsClosed")),
        "is_won": (pa.bool_(), lambda r: r.get("IsWon")),
        "owner_id": (pa.string(), lambda r: r.get("OwnerId")),
        "is_deleted": (pa.bool_(), lambda r: r.get("IsDeleted", False)),
        "created_date": (pa.timestamp("us"), lambda r: _ts(r.get("CreatedDate"))),
        "system_modstamp": (pa.timestamp("us"), lambda r: _ts(r.get("SystemModstamp"))),
    },
}
_SF_FILES = {"user": "User", "account": "Account", "contact": "Contact", "task": "Task", "opportunity": "Opportunity"}


def _table(spec: dict[str, tuple[pa.DataType, Any]], records: list[dict[str, Any]], synced, deleted=True) -> pa.Table:
    arrays = {c: pa.array([f(r) for r in records], type=t) for c, (t, f) in spec.items()}
    if deleted:
        arrays["_fivetran_deleted"] = pa.array([False] * len(records), type=pa.bool_())
    arrays["_fivetran_synced"] = pa.array([synced(r) for r in records], type=pa.timestamp("us"))
    return pa.table(arrays)


def landed_tables(source_dir: Path, start: datetime) -> dict[tuple[str, str], pa.Table]:
    """(schema, table) -> the landed table, from a generator's ``source/`` folder."""
    src = Path(source_dir)
    out: dict[tuple[str, str], pa.Table] = {}
    for table, sobject in _SF_FILES.items():
        records = _unique(_load(src / "salesforce" / f"{sobject}.json"), "Id")
        out[(CRM_SCHEMA, table)] = _table(_SF[table], records, lambda r: _ts(r.get("SystemModstamp")))
    # contact roles: the demo org keeps roles on the Contact field; the tables exist, empty
    out[(CRM_SCHEMA, "account_contact_relation")] = pa.table(
        {
            "id": pa.array([], pa.string()), "account_id": pa.array([], pa.string()),
            "contact_id": pa.array([], pa.string()), "roles": pa.array([], pa.string()),
            "is_active": pa.array([], pa.bool_()), "is_deleted": pa.array([], pa.bool_()),
            "_fivetran_deleted": pa.array([], pa.bool_()), "_fivetran_synced": pa.array([], pa.timestamp("us")),
        }
    )  # fmt: skip
    out[(CRM_SCHEMA, "opportunity_contact_role")] = pa.table(
        {
            "id": pa.array([], pa.string()), "opportunity_id": pa.array([], pa.string()),
            "contact_id": pa.array([], pa.string()), "role": pa.array([], pa.string()),
            "is_primary": pa.array([], pa.bool_()), "is_deleted": pa.array([], pa.bool_()),
            "system_modstamp": pa.array([], pa.timestamp("us")),
            "_fivetran_deleted": pa.array([], pa.bool_()), "_fivetran_synced": pa.array([], pa.timestamp("us")),
        }
    )  # fmt: skip

    out.update(_airbyte_salesforce(src))
    out.update(_hubspot_tables(src))

    q = src / "qualtrics"
    surveys = _load(q / "surveys.json")
    out[(SURVEY_SCHEMA, "survey")] = _table(
        {
            "id": (pa.string(), lambda r: r["id"]),
            "survey_name": (pa.string(), lambda r: r.get("name")),
            "owner_id": (pa.string(), lambda r: r.get("ownerId")),
            "is_active": (pa.bool_(), lambda r: r.get("isActive")),
            "last_modified": (pa.timestamp("us"), lambda r: _ts(r.get("lastModified"))),
        },
        surveys,
        lambda r: _ts(r.get("lastModified")),
    )
    questions = [
        {"id": qid, "survey_id": s["id"], "type": qtype, "selector": sel, "tag": tag}
        for s in surveys
        for qid, qtype, sel, tag in (("QID1", "MC", "NPS", "NPS"), ("QID2", "TE", "ML", "Comment"))
    ]
    out[(SURVEY_SCHEMA, "question")] = _table(
        {
            "id": (pa.string(), lambda r: r["id"]),
            "survey_id": (pa.string(), lambda r: r["survey_id"]),
            "question_type": (pa.string(), lambda r: r["type"]),
            "selector": (pa.string(), lambda r: r["selector"]),
            "data_export_tag": (pa.string(), lambda r: r["tag"]),
        },
        questions,
        lambda r: start,
    )
    contacts = _unique(_load(q / "directory_contacts.json"), "contactId")
    out[(SURVEY_SCHEMA, "directory_contact")] = _table(
        {
            "id": (pa.string(), lambda r: r["contactId"]),
            "directory_id": (pa.string(), lambda r: "POOL_cxloopdemo"),
            "email": (pa.string(), lambda r: r.get("email")),
            "ext_ref": (pa.string(), lambda r: r.get("extRef")),
            "first_name": (pa.string(), lambda r: r.get("firstName")),
            "last_name": (pa.string(), lambda r: r.get("lastName")),
            "directory_unsubscribed": (pa.bool_(), lambda r: r.get("unsubscribed")),
        },
        contacts,
        lambda r: start,
        deleted=False,  # Fivetran captures this table's deletes by removing the row
    )
    dists = _unique(_load(q / "distributions.json"), "id")
    out[(SURVEY_SCHEMA, "distribution")] = _table(
        {
            "id": (pa.string(), lambda r: r["id"]),
            "survey_link_survey_id": (pa.string(), lambda r: (r.get("surveyLink") or {}).get("surveyId")),
            "request_type": (pa.string(), lambda r: r.get("requestType")),
            "request_status": (pa.string(), lambda r: r.get("requestStatus")),
            "recipient_mailing_list_id": (pa.string(), lambda r: (r.get("recipients") or {}).get("mailingListId")),
            "send_date": (pa.timestamp("us"), lambda r: _ts(r.get("sendDate"))),
            "created_date": (pa.timestamp("us"), lambda r: _ts(r.get("createdDate"))),
            "modified_date": (pa.timestamp("us"), lambda r: _ts(r.get("modifiedDate"))),
        },
        dists,
        lambda r: _ts(r.get("sendDate")),
    )
    history = _load(q / "distribution_history.json")
    elements = [h for d in sorted(history) for h in history[d]]
    out[(SURVEY_SCHEMA, "distribution_contact")] = _table(
        {
            "distribution_id": (pa.string(), lambda r: r.get("distributionId")),
            "contact_id": (pa.string(), lambda r: r.get("contactId")),
            "contact_lookup_id": (pa.string(), lambda r: r.get("contactLookupId")),
            "status": (pa.string(), lambda r: r.get("status")),
            "survey_link": (pa.string(), lambda r: r.get("surveyLink")),
            "response_id": (pa.string(), lambda r: r.get("responseId")),
            "sent_at": (pa.timestamp("us"), lambda r: _ts(r.get("sentAt"))),
            "opened_at": (pa.timestamp("us"), lambda r: _ts(r.get("openedAt"))),
            "response_started_at": (pa.timestamp("us"), lambda r: _ts(r.get("responseStartedAt"))),
            "response_completed_at": (pa.timestamp("us"), lambda r: _ts(r.get("responseCompletedAt"))),
        },
        elements,
        lambda r: _ts(r.get("sentAt")),
        deleted=False,
    )
    responses: list[dict[str, Any]] = []
    for s in surveys:
        path = q / "responses" / f"{s['id']}.json"
        if path.is_file():
            responses += [dict(r, _survey=s["id"]) for r in _load(path)]
    responses = _unique(responses, "responseId")
    v = lambda r, k: (r.get("values") or {}).get(k)  # noqa: E731
    out[(SURVEY_SCHEMA, "survey_response")] = _table(
        {
            "id": (pa.string(), lambda r: r["responseId"]),
            "survey_id": (pa.string(), lambda r: r["_survey"]),
            "recorded_date": (pa.timestamp("us"), lambda r: _ts(v(r, "recordedDate"))),
            "start_date": (pa.timestamp("us"), lambda r: _ts(v(r, "startDate"))),
            "end_date": (pa.timestamp("us"), lambda r: _ts(v(r, "endDate"))),
            "finished": (pa.bool_(), lambda r: v(r, "finished")),
            "progress": (pa.int64(), lambda r: v(r, "progress")),
            "status": (pa.string(), lambda r: None if v(r, "status") is None else str(v(r, "status"))),
            "distribution_channel": (pa.string(), lambda r: v(r, "distributionChannel")),
        },
        responses,
        lambda r: _ts(v(r, "recordedDate")),
        deleted=False,
    )
    answers = []
    embedded = []
    for r in responses:
        rid, at = r["responseId"], _ts(v(r, "recordedDate"))
        if v(r, "QID1") is not None:
            answers.append({"response_id": rid, "question_id": "QID1", "value": str(v(r, "QID1")), "at": at})
        if v(r, "QID2_TEXT") is not None:
            answers.append({"response_id": rid, "question_id": "QID2", "value": str(v(r, "QID2_TEXT")), "at": at})
        for key in ("AccountId", "DistributionId", "ContactId"):
            if v(r, key) is not None:
                embedded.append({"response_id": rid, "key": key, "value": str(v(r, key)), "at": at})
    out[(SURVEY_SCHEMA, "question_response")] = _table(
        {
            "_fivetran_id": (pa.string(), lambda a: f"{a['response_id']}:{a['question_id']}"),
            "response_id": (pa.string(), lambda a: a["response_id"]),
            "question_id": (pa.string(), lambda a: a["question_id"]),
            "question": (pa.string(), lambda a: a["question_id"]),
            "sub_question_key": (pa.string(), lambda a: None),
            "loop_id": (pa.string(), lambda a: None),
            "value": (pa.string(), lambda a: a["value"]),
        },
        answers,
        lambda a: a["at"],
        deleted=False,
    )
    out[(SURVEY_SCHEMA, "survey_embedded_data")] = _table(
        {
            "import_id": (pa.string(), lambda a: a["key"]),
            "response_id": (pa.string(), lambda a: a["response_id"]),
            "key": (pa.string(), lambda a: a["key"]),
            "value": (pa.string(), lambda a: a["value"]),
        },
        embedded,
        lambda a: a["at"],
        deleted=False,
    )
    return out


# Salesforce field API names of the landed snake-case columns (Airbyte keeps the API names)
_API = {
    "id": "Id", "name": "Name", "email": "Email", "department": "Department", "is_active": "IsActive",
    "system_modstamp": "SystemModstamp", "segment_c": "Segment__c", "region_c": "Region__c", "tier_c": "Tier__c",
    "annual_recurring_revenue_c": "AnnualRecurringRevenue__c", "owner_id": "OwnerId",
    "renewal_date_c": "Renewal_Date__c", "active_c": "Active__c", "is_deleted": "IsDeleted",
    "created_date": "CreatedDate", "account_id": "AccountId", "title": "Title", "buying_role_c": "Buying_Role__c",
    "has_opted_out_of_email": "HasOptedOutOfEmail", "what_id": "WhatId", "who_id": "WhoId", "subject": "Subject",
    "status": "Status", "survey_response_id_c": "Survey_Response_Id__c", "first_contact_at_c": "First_Contact_At__c",
    "completed_date_time": "CompletedDateTime", "type": "Type", "stage_name": "StageName", "amount": "Amount",
    "previous_arr_c": "Previous_ARR__c", "close_date": "CloseDate", "is_closed": "IsClosed", "is_won": "IsWon",
    "opportunity_id": "OpportunityId", "contact_id": "ContactId", "roles": "Roles", "role": "Role",
    "is_primary": "IsPrimary",
}  # fmt: skip
_AIRBYTE_META = json.dumps({"sync_id": 1, "changes": []})


def _airbyte(table: pa.Table, stream: str, key: str, extracted: list[Any]) -> pa.Table:
    """``table`` with Airbyte's destinations v2 columns: a raw id (a UUID, derived from the stream
    and key so the file is the same every time), the extraction time, the meta and generation."""
    keys = table.column(key).to_pylist() if table.num_rows else []
    raw = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"cxloop-demo/{stream}/{k}")) for k in keys]
    return (
        table.append_column("_airbyte_raw_id", pa.array(raw, pa.string()))
        .append_column("_airbyte_extracted_at", pa.array(extracted, pa.timestamp("us")))
        .append_column("_airbyte_meta", pa.array([_AIRBYTE_META] * table.num_rows, pa.string()))
        .append_column("_airbyte_generation_id", pa.array([0] * table.num_rows, pa.int64()))
    )


def _airbyte_salesforce(src: Path) -> dict[tuple[str, str], pa.Table]:
    """Airbyte's Salesforce streams: one table per SObject (``Account``...), the API field names."""
    schema = CRM_SCHEMAS["airbyte_salesforce"]
    out = {}
    for table, sobject in _SF_FILES.items():
        records = _unique(_load(src / "salesforce" / f"{sobject}.json"), "Id")
        spec = {_API[c]: v for c, v in _SF[table].items()}
        t = pa.table({c: pa.array([f(r) for r in records], type=ty) for c, (ty, f) in spec.items()})
        out[(schema, sobject)] = _airbyte(t, sobject, "Id", [_ts(r.get("SystemModstamp")) for r in records])
    empty = {
        "AccountContactRelation": ("Id", "AccountId", "ContactId", "Roles", "IsActive", "IsDeleted", "SystemModstamp"),
        "OpportunityContactRole": ("Id", "OpportunityId", "ContactId", "Role", "IsPrimary", "IsDeleted",
                                   "SystemModstamp"),
    }  # fmt: skip
    types = {
        "IsActive": pa.bool_(), "IsDeleted": pa.bool_(), "IsPrimary": pa.bool_(), "SystemModstamp": pa.timestamp("us"),
    }  # fmt: skip
    for stream, cols in empty.items():
        t = pa.table({c: pa.array([], types.get(c, pa.string())) for c in cols})
        out[(schema, stream)] = _airbyte(t, stream, "Id", [])
    return out


def _num(v: Any) -> float | None:
    try:
        return None if v in (None, "") else float(v)
    except (TypeError, ValueError):
        return None


def _bool(v: Any) -> bool | None:
    return None if v in (None, "") else str(v).lower() == "true"


# HubSpot property -> arrow type (anything else: text)
_HS_TYPES = {
    "arr": pa.float64(), "amount": pa.float64(), "previous_arr": pa.float64(),
    "active": pa.bool_(), "hs_email_optout": pa.bool_(), "hs_is_closed": pa.bool_(), "hs_is_closed_won": pa.bool_(),
    "renewal_date": pa.date32(),
    "createdate": pa.timestamp("us"), "hs_createdate": pa.timestamp("us"), "lastmodifieddate": pa.timestamp("us"),
    "hs_lastmodifieddate": pa.timestamp("us"), "hs_timestamp": pa.timestamp("us"),
    "hs_task_completion_date": pa.timestamp("us"), "first_contact_at": pa.timestamp("us"),
    "closedate": pa.timestamp("us"),
}  # fmt: skip
_HS_PROPS = {
    "companies": ("name", "segment", "region", "tier", "arr", "hubspot_owner_id", "renewal_date", "active",
                  "createdate", "hs_lastmodifieddate", "hs_merged_object_ids"),
    "contacts": ("email", "jobtitle", "hs_buying_role", "associatedcompanyid", "hs_email_optout", "active",
                 "createdate", "lastmodifieddate", "hs_calculated_merged_vids"),
    "tasks": ("hs_task_subject", "hs_task_status", "hs_task_type", "hs_timestamp", "hs_task_completion_date",
              "survey_response_id", "first_contact_at", "hubspot_owner_id", "hs_createdate", "hs_lastmodifieddate"),
    "deals": ("dealname", "dealtype", "pipeline", "dealstage", "amount", "closedate", "hs_is_closed",
              "hs_is_closed_won", "previous_arr", "hubspot_owner_id", "createdate", "hs_lastmodifieddate"),
}  # fmt: skip


def _prop_value(name: str, value: Any) -> Any:
    kind = _HS_TYPES.get(name)
    if kind == pa.float64():
        return _num(value)
    if kind == pa.bool_():
        return _bool(value)
    if kind == pa.date32():
        return _date(value)
    if kind == pa.timestamp("us"):
        return _ts(value)
    return value


def _props(objects: list[dict[str, Any]], obj: str, prefix: str) -> dict[str, pa.Array]:
    return {
        prefix + p: pa.array(
            [_prop_value(p, (o.get("properties") or {}).get(p)) for o in objects], _HS_TYPES.get(p, pa.string())
        )
        for p in _HS_PROPS[obj]
    }


def _hubspot_tables(src: Path) -> dict[tuple[str, str], pa.Table]:
    """The demo's HubSpot objects as Fivetran's ``hubspot`` schema and Airbyte's HubSpot streams."""
    from cxloop.demo.hubspot_api import derive

    files = {n: _unique(_load(src / "salesforce" / f"{n}.json"), "Id") for n in _SF_FILES.values()}
    objects = derive(lambda name: files[name])
    objects = {k: _unique(v, "id") for k, v in objects.items()}
    ts = pa.timestamp("us")
    upd = {k: [_ts(o.get("updatedAt")) for o in v] for k, v in objects.items()}
    out: dict[tuple[str, str], pa.Table] = {}

    def fivetran(cols: dict[str, pa.Array], synced: list[Any], deleted: list[bool] | None = None) -> pa.Table:
        if deleted is not None:
            cols["_fivetran_deleted"] = pa.array(deleted, pa.bool_())
        cols["_fivetran_synced"] = pa.array(synced, ts)
        return pa.table(cols)

    f = CRM_SCHEMAS["fivetran_hubspot"]
    owners = objects["owners"]
    out[(f, "owner")] = fivetran(
        {
            "owner_id": pa.array([o["id"] for o in owners], pa.string()),
            "email": pa.array([o.get("email") for o in owners], pa.string()),
            "first_name": pa.array([o.get("firstName") for o in owners], pa.string()),
            "last_name": pa.array([o.get("lastName") for o in owners], pa.string()),
            "type": pa.array([o.get("type") for o in owners], pa.string()),
            "is_active": pa.array([not o.get("archived") for o in owners], pa.bool_()),
            "created_at": pa.array([_ts(o.get("createdAt")) for o in owners], ts),
            "updated_at": pa.array(upd["owners"], ts),
        },
        upd["owners"],
        [False] * len(owners),
    )
    teams = {t["id"]: t for o in owners for t in o.get("teams") or []}
    out[(f, "team")] = fivetran(
        {"id": pa.array(sorted(teams), pa.string()), "name": pa.array([teams[k]["name"] for k in sorted(teams)])},
        [min(x for x in upd["owners"] if x is not None)] * len(teams),  # teams exist before their members
    )
    links = [
        (o["id"], t["id"], bool(t.get("primary")), _ts(o.get("updatedAt")))
        for o in owners
        for t in o.get("teams") or []
    ]
    out[(f, "owner_team")] = fivetran(
        {
            "owner_id": pa.array([x[0] for x in links], pa.string()),
            "team_id": pa.array([x[1] for x in links], pa.string()),
            "primary": pa.array([x[2] for x in links], pa.bool_()),
        },
        [x[3] for x in links],
    )
    comp = objects["companies"]
    out[(f, "company")] = fivetran(
        {"id": pa.array([o["id"] for o in comp], pa.string()),
         "is_deleted": pa.array([bool(o.get("archived")) for o in comp], pa.bool_()),
         **_props(comp, "companies", "property_")},
        upd["companies"],
    )  # fmt: skip
    cont = objects["contacts"]
    out[(f, "contact")] = fivetran(
        {"id": pa.array([o["id"] for o in cont], pa.string()), **_props(cont, "contacts", "property_")},
        upd["contacts"],
        [bool(o.get("archived")) for o in cont],
    )
    pairs = [(o["id"], cid, _ts(o.get("updatedAt"))) for o in cont for cid in o["associations"].get("companies", [])]
    out[(f, "contact_company")] = fivetran(
        {"contact_id": pa.array([p[0] for p in pairs], pa.string()),
         "company_id": pa.array([p[1] for p in pairs], pa.string()),
         "type_id": pa.array([1] * len(pairs), pa.int64()),
         "category": pa.array(["HUBSPOT_DEFINED"] * len(pairs), pa.string())},
        [p[2] for p in pairs],
    )  # fmt: skip
    tasks = objects["tasks"]
    out[(f, "engagement")] = fivetran(
        {"id": pa.array([o["id"] for o in tasks], pa.string()),
         "type": pa.array(["TASK"] * len(tasks), pa.string()),
         "owner_id": pa.array([(o.get("properties") or {}).get("hubspot_owner_id") for o in tasks], pa.string()),
         "created_at": pa.array([_ts(o.get("createdAt")) for o in tasks], ts),
         "last_updated": pa.array(upd["tasks"], ts),
         "active": pa.array([not o.get("archived") for o in tasks], pa.bool_())},
        upd["tasks"],
        [bool(o.get("archived")) for o in tasks],
    )  # fmt: skip
    out[(f, "engagement_task")] = fivetran(
        {"engagement_id": pa.array([o["id"] for o in tasks], pa.string()), **_props(tasks, "tasks", "property_")},
        upd["tasks"],
    )
    for name, target in (("engagement_contact", "contacts"), ("engagement_company", "companies")):
        pairs = [(o["id"], x, _ts(o.get("updatedAt"))) for o in tasks for x in o["associations"].get(target, [])]
        out[(f, name)] = fivetran(
            {"engagement_id": pa.array([p[0] for p in pairs], pa.string()),
             f"{target[:-1] if target == 'contacts' else 'company'}_id": pa.array([p[1] for p in pairs], pa.string())},
            [p[2] for p in pairs],
        )  # fmt: skip
    deals = objects["deals"]
    out[(f, "deal")] = fivetran(
        {"deal_id": pa.array([o["id"] for o in deals], pa.string()),
         "is_deleted": pa.array([bool(o.get("archived")) for o in deals], pa.bool_()),
         "owner_id": pa.array([(o.get("properties") or {}).get("hubspot_owner_id") for o in deals], pa.string()),
         **_props(deals, "deals", "property_")},
        upd["deals"],
    )  # fmt: skip
    pairs = [(o["id"], x, _ts(o.get("updatedAt"))) for o in deals for x in o["associations"].get("companies", [])]
    out[(f, "deal_company")] = fivetran(
        {"deal_id": pa.array([p[0] for p in pairs], pa.string()),
         "company_id": pa.array([p[1] for p in pairs], pa.string()),
         "type_id": pa.array([5] * len(pairs), pa.int64())},
        [p[2] for p in pairs],
    )  # fmt: skip

    a = CRM_SCHEMAS["airbyte_hubspot"]
    out[(a, "owners")] = _airbyte(
        pa.table({
            "id": pa.array([o["id"] for o in owners], pa.string()),
            "email": pa.array([o.get("email") for o in owners], pa.string()),
            "firstName": pa.array([o.get("firstName") for o in owners], pa.string()),
            "lastName": pa.array([o.get("lastName") for o in owners], pa.string()),
            "userId": pa.array([o.get("userId") for o in owners], pa.int64()),
            "createdAt": pa.array([_ts(o.get("createdAt")) for o in owners], ts),
            "updatedAt": pa.array(upd["owners"], ts),
            "archived": pa.array([bool(o.get("archived")) for o in owners], pa.bool_()),
            "teams": pa.array([json.dumps(o.get("teams") or []) for o in owners], pa.string()),
        }),
        "owners", "id", upd["owners"],
    )  # fmt: skip
    for stream, obj, assoc in (
        ("companies", "companies", ()), ("contacts", "contacts", ("companies",)),
        ("engagements_tasks", "tasks", ("contacts", "companies")), ("deals", "deals", ("companies",)),
    ):  # fmt: skip
        objs = objects[obj]
        cols = {
            "id": pa.array([o["id"] for o in objs], pa.string()),
            "createdAt": pa.array([_ts(o.get("createdAt")) for o in objs], ts),
            "updatedAt": pa.array(upd[obj], ts),
            "archived": pa.array([bool(o.get("archived")) for o in objs], pa.bool_()),
            **_props(objs, obj, "properties_"),
        }
        for name in assoc:
            cols[name] = pa.array([json.dumps(o["associations"].get(name, [])) for o in objs], pa.string())
        out[(a, stream)] = _airbyte(pa.table(cols), stream, "id", upd[obj])
    return out


def write_landed(demo_dir: Path | str, path: Path | str, start: datetime | None = None) -> Path:
    """Write the landed DuckDB file at ``path`` (replacing one the demo wrote) from the world in
    ``demo_dir``."""
    import duckdb

    from cxloop.demo.generator import DEFAULT_START

    start = start or datetime.combine(DEFAULT_START, datetime.min.time())
    target = Path(path)
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link: the demo never writes through links")
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tables = landed_tables(Path(demo_dir) / "source", start)
    con = duckdb.connect(str(tmp))
    try:
        for schema in sorted({s for s, _ in tables}):
            con.execute(f'CREATE SCHEMA "{schema}"')
        for (schema, name), table in sorted(tables.items()):
            con.register("landed_arrow", table)
            con.execute(f'CREATE TABLE "{schema}"."{name}" AS SELECT * FROM landed_arrow')
            con.unregister("landed_arrow")
    finally:
        con.close()
    tmp.replace(target)
    return target
