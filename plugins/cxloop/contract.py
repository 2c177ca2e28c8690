"""The landing contract: the canonical shape every source connector produces.

Each source (Qualtrics, Salesforce, the demo generator, later HubSpot and file drops) is
mapped by its connector onto these entities. The validation gate coerces the values to the
logical types below, quarantines what does not fit, and loads the rest into the warehouse
schema ``raw`` as table ``raw.<entity>``. dbt's staging layer reads those tables.

Logical types: ``string``, ``int``, ``float``, ``bool``, ``date``, ``timestamp`` (UTC,
stored without a zone). Raw e-mail addresses never reach the warehouse: connectors hash
them with :func:`cxloop.extract.pseudonymise.email_hash` into ``email_hash``.

Every raw table also carries the lineage columns of :data:`LINEAGE_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOGICAL_TYPES = ("string", "int", "float", "bool", "date", "timestamp")

BUYING_ROLES = ("decision_maker", "influencer", "user", "other", "unknown")
DELIVERY_STATUSES = ("delivered", "bounced", "failed", "opted_out")
SURVEY_TYPES = ("relationship", "transactional")
FOLLOW_UP_STATUSES = ("open", "in_progress", "completed", "cancelled")
#: Salesforce Opportunity ``Type`` values read as renewals unless the source option
#: ``renewal_types`` says otherwise (comma-separated); HubSpot ``dealtype`` values likewise
#: (option ``renewal_dealtypes``; ``renewal`` is a custom option of the editable property).
DEFAULT_RENEWAL_TYPES = ("Renewal",)
DEFAULT_HUBSPOT_RENEWAL_DEALTYPES = ("renewal",)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = False  # not null
    description: str = ""

    def __post_init__(self) -> None:
        if self.type not in LOGICAL_TYPES:
            raise ValueError(f"column {self.name}: unknown logical type {self.type!r}")


@dataclass(frozen=True)
class Entity:
    name: str
    domain: str  # "crm" or "survey"
    primary_key: str
    columns: tuple[Column, ...]
    description: str = ""
    references: dict[str, str] = field(default_factory=dict)  # column -> referenced entity

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"entity {self.name} has no column {name!r}")


LINEAGE_COLUMNS: tuple[Column, ...] = (
    Column("_batch_id", "string", True, "extraction batch that delivered the row"),
    Column("_source", "string", True, "source system: qualtrics, salesforce, hubspot, files, demo"),
    Column("_extracted_at", "timestamp", True, "when the batch was extracted (UTC)"),
    Column("_loaded_at", "timestamp", True, "when the row was loaded into the warehouse (UTC)"),
)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "owners",
            "crm",
            "owner_id",
            (
                Column("owner_id", "string", True),
                Column("owner_name", "string", True, "PII: display name of the CRM user"),
                Column("team", "string"),
                Column("is_active", "bool"),
                Column("updated_at", "timestamp"),
            ),
            "CRM users who own accounts and follow-up tasks",
        ),
        Entity(
            "accounts",
            "crm",
            "account_id",
            (
                Column("account_id", "string", True),
                Column("account_name", "string", True),
                Column("segment", "string"),
                Column("region", "string"),
                Column("tier", "string"),
                Column("arr", "float"),
                Column("owner_id", "string"),
                Column("renewal_date", "date"),
                Column("is_active", "bool", True),
                Column("is_deleted", "bool"),
                Column("created_at", "timestamp"),
                Column("updated_at", "timestamp", True),
            ),
            "customer accounts (companies)",
            {"owner_id": "owners"},
        ),
        Entity(
            "contacts",
            "crm",
            "contact_id",
            (
                Column("contact_id", "string", True),
                Column("account_id", "string", True),
                Column("email_hash", "string", description="HMAC-SHA256 of the lower-cased e-mail"),
                Column("email_domain_valid", "bool", description="the source e-mail had a valid format"),
                Column("title", "string"),
                Column("buying_role", "string", True, "decision_maker/influencer/user/other/unknown"),
                Column("buying_role_source", "string", description="role value as the source spelled it"),
                Column("is_active", "bool", True),
                Column("opted_out", "bool"),
                Column("is_deleted", "bool"),
                Column("updated_at", "timestamp", True),
            ),
            "people at customer accounts, with their buying role",
            {"account_id": "accounts"},
        ),
        Entity(
            "surveys",
            "survey",
            "survey_id",
            (
                Column("survey_id", "string", True),
                Column("survey_name", "string", True),
                Column("survey_type", "string", True, "relationship or transactional"),
                Column("is_active", "bool"),
                Column("updated_at", "timestamp"),
            ),
            "survey definitions",
        ),
        Entity(
            "invitations",
            "survey",
            "invitation_id",
            (
                Column("invitation_id", "string", True),
                Column("distribution_id", "string"),
                Column("survey_id", "string", True),
                Column("contact_id", "string", True),
                Column("account_id", "string", True),
                Column("sent_at", "timestamp", True),
                Column("delivery_status", "string", True, "delivered/bounced/failed/opted_out"),
                Column("source_status", "string", description="status as the survey tool spelled it"),
            ),
            "one survey invitation sent to one contact",
            {"survey_id": "surveys", "contact_id": "contacts", "account_id": "accounts"},
        ),
        Entity(
            "responses",
            "survey",
            "response_id",
            (
                Column("response_id", "string", True),
                Column("invitation_id", "string"),
                Column("survey_id", "string", True),
                Column("contact_id", "string", True),
                Column("account_id", "string", True),
                Column("recorded_at", "timestamp", True),
                Column("nps_score", "int", description="0-10, null when the question was skipped"),
                Column("is_finished", "bool"),
                Column("has_comment", "bool", description="free text was given (text stays in the raw files)"),
            ),
            "survey responses; the NPS question's answer in nps_score",
            {
                "invitation_id": "invitations",
                "survey_id": "surveys",
                "contact_id": "contacts",
                "account_id": "accounts",
            },
        ),
        Entity(
            "follow_ups",
            "crm",
            "follow_up_id",
            (
                Column("follow_up_id", "string", True),
                Column("response_id", "string", True),
                Column("account_id", "string"),
                Column("contact_id", "string"),
                Column("owner_id", "string"),
                Column("created_at", "timestamp", True),
                Column("first_contact_at", "timestamp"),
                Column("closed_at", "timestamp"),
                Column("status", "string", description="open/in_progress/completed/cancelled"),
                Column("updated_at", "timestamp"),
            ),
            "CRM tasks/cases logged to call a respondent back",
            {"response_id": "responses", "owner_id": "owners"},
        ),
        Entity(
            "renewals",
            "crm",
            "renewal_id",
            (
                Column("renewal_id", "string", True, "the renewal opportunity / deal id"),
                Column("account_id", "string", True),
                Column("renewal_type", "string", description="opportunity type / deal type as the source spelled it"),
                Column("stage_name", "string", description="stage as the source spelled it (StageName / dealstage)"),
                Column("amount", "float", description="the renewal's value (ARR renewed when won)"),
                Column("previous_amount", "float", description="ARR up for renewal (before the renewal)"),
                Column("close_date", "date", True, "expected or actual close date"),
                Column("is_closed", "bool", True),
                Column("is_won", "bool", True),
                Column("is_deleted", "bool"),
                Column("created_at", "timestamp"),
                Column("updated_at", "timestamp", True),
            ),
            "renewal opportunities (Salesforce Opportunity of a renewal type, HubSpot deal) and their outcome",
            {"account_id": "accounts"},
        ),
    )
}

# Load order respects references (parents first).
ENTITY_ORDER: tuple[str, ...] = (
    "owners",
    "accounts",
    "contacts",
    "surveys",
    "invitations",
    "responses",
    "follow_ups",
    "renewals",
)


def entity(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITY_ORDER)}") from None
