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

    select *
    from responses
    where score_class = 'detractor'
    {%- if var('follow_up_passives') | string | lower in ['true', '1', 'yes'] %}
       or score_class = 'passive'
    {%- endif %}

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
        coalesce(linked.owner_id, accounts.owner_id) as owner_id,
        linked.follow_up_id,
        linked.created_at as follow_up_created_at,
        -- timestamps at/after as_of are not known yet
        case when linked.first_contact_at < as_of.as_of_ts then linked.first_contact_at end as first_contact_at,
        case when linked.closed_at < as_of.as_of_ts then linked.closed_at end as closed_at,
        {{ cxloop_add_hours('required.recorded_at', 'sla_policy.first_contact_hours') }} as first_contact_due_at,
        {{ cxloop_add_days('required.recorded_at', 'sla_policy.close_days') }} as close_due_at,
        as_of.as_of_ts
    from required
    cross join sla_policy
    cross join as_of
    left join linked
        on required.response_id = linked.response_id
        and linked.link_rank = 1
    left join accounts
        on required.account_id = accounts.account_id

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
    from joined
    inner join responses as later
        on later.contact_id = joined.contact_id
        and later.is_scored
        and later.recorded_at > joined.closed_at
    where joined.closed_at is not null

),

classified as (

    select
        joined.*,
        case
            when joined.first_contact_at is not null and joined.first_contact_at <= joined.first_contact_due_at
                then 'met'
            when joined.first_contact_at is not null
                then 'breached'
            when joined.as_of_ts <= joined.first_contact_due_at
                then 'active'
            when joined.follow_up_id is not null
                then 'breached'
            else 'missing'
        end as sla_status,
        next_responses.next_score,
        next_responses.next_score_value
    from joined
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
        case when classified.first_contact_at is not null
            then {{ cxloop_hours_between('classified.recorded_at', 'classified.first_contact_at') }}
        end as hours_to_first_contact,
        case when classified.closed_at is not null
            then {{ cxloop_hours_between('classified.recorded_at', 'classified.closed_at') }}
        end as hours_to_close,
        classified.sla_status,
        case
            when classified.sla_status in ('breached', 'missing') then true
            when classified.sla_status = 'met' then false
        end as is_sla_breach,
        classified.closed_at is not null and classified.closed_at <= classified.close_due_at as is_completed,
        classified.close_due_at <= classified.as_of_ts as is_completion_due,
        classified.next_score,
        case when classified.next_score is not null
            then classified.next_score_value > classified.score_value
        end as is_recovered
    from classified
    left join owners
        on classified.owner_id = owners.owner_id

)

select * from final
