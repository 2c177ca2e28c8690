with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

slots as (

    select * from {{ ref('int_coverage_role_slots') }}

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
        {{ cxloop_round('case when per_account.slots_required > 0
            then cast(per_account.slots_on_file as ' ~ cxloop_type('float8') ~ ') / cast(per_account.slots_required as ' ~ cxloop_type('float8') ~ ') end') }}
            as coverage_on_file,
        {{ cxloop_round('case when per_account.slots_required > 0
            then cast(per_account.slots_invited as ' ~ cxloop_type('float8') ~ ') / cast(per_account.slots_required as ' ~ cxloop_type('float8') ~ ') end') }}
            as coverage_invited,
        {{ cxloop_round('case when per_account.slots_required > 0
            then cast(per_account.slots_responded as ' ~ cxloop_type('float8') ~ ') / cast(per_account.slots_required as ' ~ cxloop_type('float8') ~ ') end') }}
            as coverage_responded,
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
