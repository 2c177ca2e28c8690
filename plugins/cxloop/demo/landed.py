"""The demo world as Fivetran would have landed it: a DuckDB file with a ``salesforce`` and a
``qualtrics`` schema (the tables and columns of docs/landed-sources.md), written from the
generator's ``source/`` files, for ``cxloop demo --crm landed --survey landed``.

Every table carries ``_fivetran_synced`` (the record's change time: ``SystemModstamp``, a
survey's ``lastModified``, a distribution's send time, a response's recorded time; directory
contacts the world's start) and, where Fivetran has one, ``_fivetran_deleted`` (false). A record
the APIs serve twice (a planted duplicate) is one row here, as a landed table has one row per
primary key; the other planted faults (orphan contacts, out-of-range answers) land as they are.
The landed source reads only rows synced before a run's ``as_of``, so one file serves every
``--as-of``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

DEMO_LANDED_FILE = "landed.duckdb"
CRM_SCHEMA = "salesforce"
SURVEY_SCHEMA = "qualtrics"


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
