with

responses as (

    select * from {{ ref('int_responses_enriched') }}

),

follow_ups as (

    select * from {{ ref('stg_crm__follow_ups') }}

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

account_versions as (

    select * from {{ ref('int_account_versions') }}

),

calendar as (

    select * from {{ ref('int_business_calendar') }}

),

owners as (

    select * from {{ ref('stg_crm__owners') }}

),

sla_policy as (

    select * from {{ ref('sla_policy') }}

),

as_of as (

    select {{ cxloop_as_of(var('as_of', none)) }} as as_of_ts

),

required as (

    {%- set required_classes = ['detractor'] %}
    {%- if var('follow_up_passives') | string | lower in ['true', '1', 'yes'] %}
        {%- set required_classes = ['detractor', 'passive'] %}
    {%- endif %}
    select *
    from responses
    where score_class in ('{{ required_classes | join("', '") }}')

),

linked as (

    select
        *,
        row_number() over (
            partition by response_id
            order by created_at asc, follow_up_id asc
        ) as link_rank
    from follow_ups

),

joined as (

    select
        required.response_id,
        required.period_start,
        required.survey_type,
        required.account_id,
        required.contact_id,
        required.recorded_at,
        required.nps_score,
        required.score_value,
        -- task owner, else the account owner as of recorded_at (type-2), else the current one
        coalesce(
            linked.owner_id,
            case when account_versions.account_id is not null then account_versions.owner_id else accounts.owner_id end
        ) as owner_id,
        linked.follow_up_id,
        linked.created_at as follow_up_created_at,
        -- timestamps at/after as_of are not known yet
        case when linked.first_contact_at < as_of.as_of_ts then linked.first_contact_at end as first_contact_at,
        case when linked.closed_at < as_of.as_of_ts then linked.closed_at end as closed_at,
        {{ cxloop_add_hours('required.recorded_at', 'sla_policy.first_contact_hours') }} as first_contact_due_at,
        {{ cxloop_add_days('required.recorded_at', 'sla_policy.close_days') }} as close_due_at,
        cast({{ var('sla_first_contact_business_hours') }} as {{ cxloop_type('float8') }}) as first_contact_business_hours,
        cast({{ var('sla_first_contact_business_hours') }} as {{ cxloop_type('float8') }}) as business_first_contact_target_hours,
        cast(sla_policy.first_contact_hours as {{ cxloop_type('float8') }}) as calendar_first_contact_target_hours,
        as_of.as_of_ts
    from required
    cross join sla_policy
    cross join as_of
    left join linked
        on required.response_id = linked.response_id
        and linked.link_rank = 1
    left join accounts
        on required.account_id = accounts.account_id
    left join account_versions
        on required.account_id = account_versions.account_id
        and (account_versions.valid_from is null or required.recorded_at >= account_versions.valid_from)
        and (account_versions.valid_to is null or required.recorded_at < account_versions.valid_to)

),

-- business-hours clock: clock(t) = business hours elapsed from the calendar's start to t
clocked as (

    select
        joined.*,
        {{ cxloop_business_clock('rec', 'joined.recorded_at') }} as recorded_clock,
        {{ cxloop_business_clock('fc', 'joined.first_contact_at') }} as first_contact_clock,
        {{ cxloop_business_clock('cl', 'joined.closed_at') }} as closed_clock
    from joined
    left join calendar as rec
        on rec.calendar_date = cast(joined.recorded_at as date)
    left join calendar as fc
        on fc.calendar_date = cast(joined.first_contact_at as date)
    left join calendar as cl
        on cl.calendar_date = cast(joined.closed_at as date)

),

-- the business-clock due time: the last instant at which no more than
-- first_contact_business_hours of business time have elapsed since recorded_at. The day is
-- the one whose business window holds clock reading recorded_clock + target, half-open
-- [open, close): when the target is reached exactly at a day's close, the clock stands still
-- until the next opening, so the due time is that next opening (a contact at 18:00 on the
-- due day has used exactly the target and is met; docs/metric-decisions.md)
business_due as (

    select
        clocked.response_id,
        {{ cxloop_add_hours('due_day.open_at',
            'clocked.recorded_clock + clocked.first_contact_business_hours - due_day.cum_hours_before') }}
            as first_contact_due_at_business
    from clocked
    inner join calendar as due_day
        on due_day.business_hours > 0
        and due_day.cum_hours_before <= clocked.recorded_clock + clocked.first_contact_business_hours
        and due_day.cum_hours_before + due_day.business_hours > clocked.recorded_clock + clocked.first_contact_business_hours

),

with_due as (

    select
        clocked.*,
        business_due.first_contact_due_at_business
    from clocked
    left join business_due
        on clocked.response_id = business_due.response_id

),

next_responses as (

    select
        joined.response_id,
        later.nps_score as next_score,
        later.score_value as next_score_value,
        row_number() over (
            partition by joined.response_id
            order by later.recorded_at asc, later.response_id asc
        ) as next_rank
    from with_due as joined
    inner join responses as later
        on joined.contact_id = later.contact_id
        and later.is_scored
        and joined.closed_at < later.recorded_at
    where joined.closed_at is not null

),

classified as (

    select
        joined.*,
        {{ cxloop_sla_status('joined.first_contact_due_at') }} as sla_status_calendar,
        {{ cxloop_sla_status('joined.first_contact_due_at_business') }} as sla_status_business,
        next_responses.next_score,
        next_responses.next_score_value
    from with_due as joined
    left join next_responses
        on joined.response_id = next_responses.response_id
        and next_responses.next_rank = 1

),

final as (

    select
        classified.response_id,
        classified.period_start,
        classified.survey_type,
        classified.account_id,
        classified.contact_id,
        classified.owner_id,
        owners.team,
        classified.follow_up_id,
        classified.recorded_at,
        classified.nps_score,
        classified.first_contact_due_at,
        classified.close_due_at,
        classified.first_contact_at,
        classified.closed_at,
        {{ cxloop_round(cxloop_hours_between('classified.recorded_at', 'classified.first_contact_at')) }}
            as calendar_hours_to_first_contact,
        {{ cxloop_round(cxloop_hours_between('classified.recorded_at', 'classified.closed_at')) }}
            as calendar_hours_to_close,
        cast(classified.calendar_first_contact_target_hours as {{ cxloop_type('float8') }}) as calendar_first_contact_target_hours,
        cast('{{ cxloop_sla_clock() }}' as {{ cxloop_type('text') }}) as sla_clock,
        cast(classified.{{ cxloop_sla_clock() }}_first_contact_target_hours as {{ cxloop_type('float8') }})
            as first_contact_target_hours,
        classified.sla_status_{{ cxloop_sla_clock() }} as sla_status,
        case
            when classified.sla_status_{{ cxloop_sla_clock() }} in ('breached', 'missing') then true
            when classified.sla_status_{{ cxloop_sla_clock() }} = 'met' then false
        end as is_sla_breach,
        classified.first_contact_due_at_business,
        {{ cxloop_round('case when classified.first_contact_at is not null
            then classified.first_contact_clock - classified.recorded_clock end') }}
            as business_hours_to_first_contact,
        {{ cxloop_round('case when classified.closed_at is not null
            then classified.closed_clock - classified.recorded_clock end') }}
            as business_hours_to_close,
        cast(classified.business_first_contact_target_hours as {{ cxloop_type('float8') }}) as business_first_contact_target_hours,
        classified.sla_status_calendar,
        classified.sla_status_business,
        classified.closed_at is not null and classified.closed_at <= classified.close_due_at as is_completed,
        classified.close_due_at <= classified.as_of_ts as is_completion_due,
        classified.next_score,
        case
            when classified.next_score is not null
                then classified.next_score_value > classified.score_value
        end as is_recovered
    from classified
    left join owners
        on classified.owner_id = owners.owner_id

)

select * from final
