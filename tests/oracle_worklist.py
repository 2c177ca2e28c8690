"""Independent computation of account_team_worklist (tests/oracle.py's inputs and follow-up
rows; docs/metric-decisions.md "Account-team worklists"). Plain Python over the cleaned inputs:
current CRM attributes (the oracle has no type-2 history), the latest period's coverage per
role, the open required follow-ups, and promoter decision makers to activate. item_rank is not
computed here (an ordering, checked by the dbt unit tests); the rows and their fields are."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandas as pd

COLUMNS = [
    "item_kind", "account_id", "role", "response_id", "owner_id", "status", "next_step", "contact_id",
    "follow_up_id", "required", "n_on_file", "n_invited", "n_responded", "shortfall",
]  # fmt: skip


def worklist(data: Any, follow_ups: list[dict], coverage_slots: dict, counted: list[dict], promoter_days: int = 365):
    from oracle import SLOT_ROLES, is_true

    periods = data.periods()
    rows: list[dict] = []
    if periods:
        latest = periods[-1]
        invited: dict[tuple, set] = defaultdict(set)
        for inv in data.invitations:
            if inv["delivery_status"] == "delivered" and inv["period_start"] == latest:
                invited[(inv["account_id"], data.role_of(inv["contact_id"]))].add(inv["contact_id"])
        responded: dict[tuple, set] = defaultdict(set)
        for r in data.responses:
            if r["nps_score"] is not None and r["period_start"] == latest:
                responded[(r["account_id"], r["role"])].add(r["contact_id"])
        for account in data.active_accounts():
            aid = account["account_id"]
            slots = coverage_slots.get(account["tier"]) or coverage_slots["C"]
            for role in SLOT_ROLES:
                need = int(slots.get(role, 0))
                contacts = data.contacts_of(aid)
                on_file = sum(1 for c in contacts if is_true(c["is_active"]) and data.role_of(c["contact_id"]) == role)
                n_inv, n_resp = len(invited[(aid, role)]), len(responded[(aid, role)])
                for status, have, step in (
                    ("on_file", on_file, "recruit"), ("invited", n_inv, "invite"),
                    ("responded", n_resp, "chase_response"),
                ):  # fmt: skip
                    if have < need:
                        rows.append(dict(
                            item_kind="coverage_gap", account_id=aid, role=role, response_id=None,
                            owner_id=account["owner_id"], status=status, next_step=step, contact_id=None,
                            follow_up_id=None, required=need, n_on_file=on_file, n_invited=n_inv,
                            n_responded=n_resp, shortfall=need - have,
                        ))  # fmt: skip
                        break
    role_of_response = {r["response_id"]: r["role"] for r in data.responses}
    for f in follow_ups:
        if f["closed_at"] is not None:
            continue
        if f["first_contact_at"] is None:
            status, step = ("due" if f["sla_status"] == "active" else "overdue"), "first_contact"
        else:
            status, step = ("overdue" if f["is_completion_due"] else "due"), "close"
        rows.append(dict(
            item_kind="follow_up", account_id=f["account_id"], role=role_of_response[f["response_id"]],
            response_id=f["response_id"], owner_id=f["owner_id"], status=status, next_step=step,
            contact_id=f["contact_id"], follow_up_id=f["follow_up_id"],
        ))  # fmt: skip
    latest_of: dict[Any, dict] = {}
    for r in counted:
        if r["survey_type"] != "relationship":
            continue
        cur = latest_of.get(r["contact_id"])
        if cur is None or (r["recorded_at"], str(r["response_id"])) > (cur["recorded_at"], str(cur["response_id"])):
            latest_of[r["contact_id"]] = r
    since = data.as_of - pd.Timedelta(days=promoter_days)
    for cid, r in latest_of.items():
        contact = data.contacts.get(cid)
        account = data.accounts.get(r["account_id"])
        if (
            r["score_class"] == "promoter" and r["role"] == "decision_maker" and r["recorded_at"] >= since
            and contact is not None and contact["account_id"] == r["account_id"] and is_true(contact["is_active"])
            and not is_true(contact["opted_out"]) and account is not None and is_true(account["is_active"])
        ):  # fmt: skip
            rows.append(dict(
                item_kind="promoter_activation", account_id=r["account_id"], role="decision_maker",
                response_id=r["response_id"], owner_id=account["owner_id"], status="promoter",
                next_step="ask_advocacy", contact_id=cid, follow_up_id=None,
            ))  # fmt: skip
    frame = pd.DataFrame([{c: row.get(c) for c in COLUMNS} for row in rows], columns=COLUMNS)
    for col in ("required", "n_on_file", "n_invited", "n_responded", "shortfall"):
        frame[col] = frame[col].astype("Int64")
    return frame
