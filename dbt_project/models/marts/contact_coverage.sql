with

periods as (

    select * from {{ ref('int_periods') }}

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}
    where is_active

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

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
        accounts.account_id,
        accounts.tier,
        coalesce(slot_tiers.tier, '{{ var("default_coverage_tier") }}') as slot_tier
    from accounts
    left join slot_tiers
        on accounts.tier = slot_tiers.tier

),

-- one row per period x active account x role with slots
grid as (

    select
        periods.period_start,
        account_tiers.account_id,
        account_tiers.tier,
        account_tiers.slot_tier,
        coverage_slots.role,
        coverage_slots.required
    from periods
    cross join account_tiers
    inner join coverage_slots
        on account_tiers.slot_tier = coverage_slots.tier

),

on_file as (

    select
        account_id,
        buying_role as role,
        count(*) as n_contacts
    from contacts
    where is_active
    group by account_id, buying_role

),

invited as (

    select
        {{ cxloop_period_start('invitations.sent_at') }} as period_start,
        invitations.account_id,
        coalesce(contacts.buying_role, 'unknown') as role,
        count(distinct invitations.contact_id) as n_contacts
    from invitations
    left join contacts
        on invitations.contact_id = contacts.contact_id
    where invitations.delivery_status = 'delivered'
    group by 1, 2, 3

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

responders as (

    select
        period_start,
        account_id,
        count(distinct contact_id) as n_responding_contacts
    from responses
    where is_scored
    group by period_start, account_id

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
        on grid.account_id = on_file.account_id
        and grid.role = on_file.role
    left join invited
        on grid.period_start = invited.period_start
        and grid.account_id = invited.account_id
        and grid.role = invited.role
    left join responded
        on grid.period_start = responded.period_start
        and grid.account_id = responded.account_id
        and grid.role = responded.role

),

per_account as (

    select
        period_start,
        account_id,
        tier,
        slot_tier,
        sum(required) as slots_required,
        sum(case when n_on_file < required then n_on_file else required end) as slots_on_file,
        sum(case when n_invited < required then n_invited else required end) as slots_invited,
        sum(case when n_responded < required then n_responded else required end) as slots_responded,
        sum(case when role = 'decision_maker' then n_on_file else 0 end) as decision_makers_on_file,
        sum(case when role = 'decision_maker' then n_responded else 0 end) as decision_makers_responded
    from slots
    group by period_start, account_id, tier, slot_tier

),

final as (

    select
        per_account.period_start,
        per_account.account_id,
        per_account.tier,
        per_account.slot_tier,
        cast(per_account.slots_required as integer) as slots_required,
        cast(per_account.slots_on_file as integer) as slots_on_file,
        cast(per_account.slots_invited as integer) as slots_invited,
        cast(per_account.slots_responded as integer) as slots_responded,
        case when per_account.slots_required > 0
            then cast(per_account.slots_on_file as float8) / cast(per_account.slots_required as float8)
        end as coverage_on_file,
        case when per_account.slots_required > 0
            then cast(per_account.slots_invited as float8) / cast(per_account.slots_required as float8)
        end as coverage_invited,
        case when per_account.slots_required > 0
            then cast(per_account.slots_responded as float8) / cast(per_account.slots_required as float8)
        end as coverage_responded,
        per_account.decision_makers_on_file > 0 as has_decision_maker_on_file,
        per_account.decision_makers_responded > 0 as has_decision_maker_response,
        cast(coalesce(responders.n_responding_contacts, 0) as integer) as n_responding_contacts,
        coalesce(responders.n_responding_contacts, 0) = 1 as is_single_threaded
    from per_account
    left join responders
        on per_account.period_start = responders.period_start
        and per_account.account_id = responders.account_id

)

select * from final
