{#- What each account team (owner) acts on, as of the run's as_of: one row per actionable item.
    Three kinds, each built from an existing model (nothing recomputed):
    - coverage_gap: an active account x role whose slots are short in the latest period
      (int_coverage_role_slots), at the first stage that falls short: on_file (recruit),
      invited (invite), responded (chase the response);
    - follow_up: a required follow-up (follow_up_sla) not closed before as_of, due or overdue;
    - promoter_activation: a decision maker whose latest counted relationship response
      (int_responses_counted) is a promoter, recorded within var worklist_promoter_days of
      as_of, still an active, not opted-out contact of the same active account.
    Grain and choices: the model's .yml and docs/metric-decisions.md. -#}
with

periods as (

    select * from {{ ref('int_periods') }}

),

latest_period as (

    select max(period_start) as period_start from periods

),

as_of as (

    select {{ cxloop_as_of(var('as_of', none)) }} as as_of_ts

),

-- active accounts as they were at the latest period's close (owner, segment, tier, ARR)
accounts_now as (

    select account_periods.*
    from {{ ref('int_account_periods') }} as account_periods
    inner join latest_period
        on account_periods.period_start = latest_period.period_start
    where account_periods.is_active

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

owners as (

    select * from {{ ref('stg_crm__owners') }}

),

slots as (

    select slots.*
    from {{ ref('int_coverage_role_slots') }} as slots
    inner join latest_period
        on slots.period_start = latest_period.period_start

),

follow_ups as (

    select * from {{ ref('follow_up_sla') }}

),

counted as (

    select * from {{ ref('int_responses_counted') }}
    where survey_type = 'relationship'

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

-- the first stage whose count is below the role's required slots
coverage_gaps as (

    select
        slots.account_id,
        slots.role,
        slots.required,
        slots.n_on_file,
        slots.n_invited,
        slots.n_responded,
        case
            when slots.n_on_file < slots.required then 'on_file'
            when slots.n_invited < slots.required then 'invited'
            else 'responded'
        end as status,
        case
            when slots.n_on_file < slots.required then slots.required - slots.n_on_file
            when slots.n_invited < slots.required then slots.required - slots.n_invited
            else slots.required - slots.n_responded
        end as shortfall
    from slots
    where slots.n_on_file < slots.required
        or slots.n_invited < slots.required
        or slots.n_responded < slots.required

),

coverage_items as (

    select
        'coverage_gap' as item_kind,
        coverage_gaps.status,
        case coverage_gaps.status
            when 'on_file' then 'recruit'
            when 'invited' then 'invite'
            else 'chase_response'
        end as next_step,
        accounts_now.owner_id,
        coverage_gaps.account_id,
        coverage_gaps.role,
        cast(null as {{ cxloop_type('text') }}) as contact_id,
        cast(null as {{ cxloop_type('text') }}) as response_id,
        cast(null as {{ cxloop_type('text') }}) as follow_up_id,
        cast(null as {{ cxloop_type('text') }}) as score_class,
        cast(null as timestamp) as recorded_at,
        cast(null as timestamp) as due_at,
        coverage_gaps.required,
        coverage_gaps.n_on_file,
        coverage_gaps.n_invited,
        coverage_gaps.n_responded,
        coverage_gaps.shortfall
    from coverage_gaps
    inner join accounts_now
        on coverage_gaps.account_id = accounts_now.account_id

),

-- open = not closed before as_of. Before the first contact the deadline is the first-contact
-- due time on the SLA clock (overdue once sla_status is breached or missing); after it, the
-- closure due time (overdue once is_completion_due)
open_follow_ups as (

    select
        follow_ups.*,
        case
            when follow_ups.first_contact_at is null and follow_ups.sla_status = 'active' then 'due'
            when follow_ups.first_contact_at is null then 'overdue'
            when follow_ups.is_completion_due then 'overdue'
            else 'due'
        end as status,
        case when follow_ups.first_contact_at is null then 'first_contact' else 'close' end as next_step,
        case
            when follow_ups.first_contact_at is not null then follow_ups.close_due_at
            when follow_ups.sla_clock = 'business' then follow_ups.first_contact_due_at_business
            else follow_ups.first_contact_due_at
        end as due_at
    from follow_ups
    where follow_ups.closed_at is null

),

follow_up_items as (

    select
        'follow_up' as item_kind,
        open_follow_ups.status,
        open_follow_ups.next_step,
        open_follow_ups.owner_id,
        open_follow_ups.account_id,
        responses.buying_role as role,
        open_follow_ups.contact_id,
        open_follow_ups.response_id,
        open_follow_ups.follow_up_id,
        responses.score_class,
        open_follow_ups.recorded_at,
        open_follow_ups.due_at,
        cast(null as integer) as required,
        cast(null as integer) as n_on_file,
        cast(null as integer) as n_invited,
        cast(null as integer) as n_responded,
        cast(null as integer) as shortfall
    from open_follow_ups
    inner join {{ ref('int_responses_enriched') }} as responses
        on open_follow_ups.response_id = responses.response_id

),

-- each contact's latest counted relationship response (over every period)
latest_counted as (

    select
        counted.*,
        row_number() over (
            partition by counted.contact_id
            order by counted.recorded_at desc, counted.response_id desc
        ) as latest_rank
    from counted

),

promoter_items as (

    select
        'promoter_activation' as item_kind,
        'promoter' as status,
        'ask_advocacy' as next_step,
        accounts_now.owner_id,
        latest_counted.account_id,
        latest_counted.buying_role as role,
        latest_counted.contact_id,
        latest_counted.response_id,
        cast(null as {{ cxloop_type('text') }}) as follow_up_id,
        latest_counted.score_class,
        latest_counted.recorded_at,
        cast(null as timestamp) as due_at,
        cast(null as integer) as required,
        cast(null as integer) as n_on_file,
        cast(null as integer) as n_invited,
        cast(null as integer) as n_responded,
        cast(null as integer) as shortfall
    from latest_counted
    cross join as_of
    inner join contacts
        on latest_counted.contact_id = contacts.contact_id
        and latest_counted.account_id = contacts.account_id
    inner join accounts_now
        on latest_counted.account_id = accounts_now.account_id
    where latest_counted.latest_rank = 1
        and latest_counted.score_class = 'promoter'
        and latest_counted.buying_role = 'decision_maker'
        and latest_counted.recorded_at >= {{ cxloop_add_days('as_of.as_of_ts', '-' ~ var('worklist_promoter_days')) }}
        and contacts.is_active
        and not contacts.opted_out

),

items as (

    select * from coverage_items
    union all
    select * from follow_up_items
    union all
    select * from promoter_items

),

final as (

    select
        latest_period.period_start,
        cast(items.owner_id as {{ cxloop_type('text') }}) as owner_id,
        owners.team,
        cast(row_number() over (
            partition by items.owner_id
            order by
                case
                    when items.item_kind = 'follow_up' and items.status = 'overdue' then 1
                    when items.item_kind = 'follow_up' then 2
                    when items.item_kind = 'coverage_gap' then 3
                    else 4
                end asc,
                items.due_at asc nulls last,
                coalesce(account_info.arr, 0) desc,
                items.account_id asc,
                case items.role when 'decision_maker' then 1 when 'influencer' then 2 when 'user' then 3 else 4 end asc,
                items.recorded_at asc nulls last,
                items.response_id asc
        ) as integer) as item_rank,
        cast(items.item_kind as {{ cxloop_type('text') }}) as item_kind,
        cast(items.status as {{ cxloop_type('text') }}) as status,
        cast(items.next_step as {{ cxloop_type('text') }}) as next_step,
        cast(items.account_id as {{ cxloop_type('text') }}) as account_id,
        account_info.segment,
        account_info.tier,
        cast(account_info.arr as {{ cxloop_type('float8') }}) as arr,
        accounts.renewal_date,
        cast(items.role as {{ cxloop_type('text') }}) as role,
        cast(items.contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(items.response_id as {{ cxloop_type('text') }}) as response_id,
        cast(items.follow_up_id as {{ cxloop_type('text') }}) as follow_up_id,
        cast(items.score_class as {{ cxloop_type('text') }}) as score_class,
        items.recorded_at,
        items.due_at,
        {{ cxloop_round('case when items.recorded_at is not null
            then ' ~ cxloop_hours_between('items.recorded_at', 'as_of.as_of_ts') ~ ' / 24.0 end') }}
            as age_days,
        cast(items.required as integer) as required,
        cast(items.n_on_file as integer) as n_on_file,
        cast(items.n_invited as integer) as n_invited,
        cast(items.n_responded as integer) as n_responded,
        cast(items.shortfall as integer) as shortfall
    from items
    cross join latest_period
    cross join as_of
    -- the account's attributes at the latest period's close (null for a follow-up of an
    -- account no longer active or absent from the CRM)
    left join accounts_now as account_info
        on items.account_id = account_info.account_id
    left join accounts
        on items.account_id = accounts.account_id
    left join owners
        on items.owner_id = owners.owner_id

)

select * from final
