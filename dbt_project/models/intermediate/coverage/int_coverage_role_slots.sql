{#- Period x active account x role with slots (seed coverage_slots, by the account's tier at
    the period's close): required slots and the contacts of that role on file (at the period's
    close), invited (delivered invitation sent in the period, role when sent) and responded
    (scored response recorded in the period, role when recorded). -#}
with

-- accounts as they were at the close of each period (type-2); active ones get a row
account_periods as (

    select * from {{ ref('int_account_periods') }}
    where is_active

),

-- contacts as they were at the close of each period (on file)
contact_periods as (

    select * from {{ ref('int_contact_periods') }}

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

contact_versions as (

    select * from {{ ref('int_contact_versions') }}

),

invitations as (

    select * from {{ ref('stg_survey__invitations') }}

),

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

coverage_slots as (

    select * from {{ ref('coverage_slots') }}

),

slot_tiers as (

    select distinct tier from coverage_slots

),

account_tiers as (

    select
        account_periods.period_start,
        account_periods.account_id,
        account_periods.tier,
        coalesce(slot_tiers.tier, '{{ var("default_coverage_tier") }}') as slot_tier
    from account_periods
    left join slot_tiers
        on account_periods.tier = slot_tiers.tier

),

-- one row per period x active account x role with slots
grid as (

    select
        account_tiers.period_start,
        account_tiers.account_id,
        account_tiers.tier,
        account_tiers.slot_tier,
        coverage_slots.role,
        coverage_slots.required
    from account_tiers
    inner join coverage_slots
        on account_tiers.slot_tier = coverage_slots.tier

),

on_file as (

    select
        period_start,
        account_id,
        buying_role as role,
        count(*) as n_contacts
    from contact_periods
    where is_active
    group by period_start, account_id, buying_role

),

delivered as (

    select
        {{ cxloop_period_start('invitations.sent_at') }} as period_start,
        invitations.account_id,
        -- the contact's role when the invitation was sent (type-2), else its current role
        coalesce(contact_versions.buying_role, contacts.buying_role, 'unknown') as role,
        invitations.contact_id
    from invitations
    left join contacts
        on invitations.contact_id = contacts.contact_id
    left join contact_versions
        on invitations.contact_id = contact_versions.contact_id
        and (contact_versions.valid_from is null or invitations.sent_at >= contact_versions.valid_from)
        and (contact_versions.valid_to is null or invitations.sent_at < contact_versions.valid_to)
    where invitations.delivery_status = 'delivered'

),

invited as (

    select
        period_start,
        account_id,
        role,
        count(distinct contact_id) as n_contacts
    from delivered
    group by period_start, account_id, role

),

responded as (

    select
        period_start,
        account_id,
        buying_role as role,
        count(distinct contact_id) as n_contacts
    from responses
    where is_scored
    group by period_start, account_id, buying_role

),

slots as (

    select
        grid.period_start,
        grid.account_id,
        grid.tier,
        grid.slot_tier,
        grid.role,
        grid.required,
        coalesce(on_file.n_contacts, 0) as n_on_file,
        coalesce(invited.n_contacts, 0) as n_invited,
        coalesce(responded.n_contacts, 0) as n_responded
    from grid
    left join on_file
        on grid.period_start = on_file.period_start
        and grid.account_id = on_file.account_id
        and grid.role = on_file.role
    left join invited
        on grid.period_start = invited.period_start
        and grid.account_id = invited.account_id
        and grid.role = invited.role
    left join responded
        on grid.period_start = responded.period_start
        and grid.account_id = responded.account_id
        and grid.role = responded.role

)

select * from slots
