{#- Every reporting period of the data: from the period of the earliest dated fact (invitation
    sent_at, response recorded_at, follow-up created_at) to the period containing
    as_of - 1 microsecond (as_of is exclusive), gaps included. A program that records only
    responses (no invitations) gets its periods from the responses. -#}
with

dated_facts as (

    select sent_at as fact_at from {{ ref('stg_survey__invitations') }}
    union all
    select recorded_at as fact_at from {{ ref('stg_survey__responses') }}
    union all
    select created_at as fact_at from {{ ref('stg_crm__follow_ups') }}

),

series as (

    {{ cxloop_period_spine('dated_facts', 'fact_at', cxloop_as_of(var('as_of', none))) }}

),

final as (

    select
        period_start,
        {{ cxloop_shift_period('period_start', 1) }} as period_end,
        {{ cxloop_shift_period('period_start', -1) }} as previous_period_start,
        -- the instant (exclusive) at which the period's CRM attributes are read: the period end,
        -- or as_of for the period still running
        case
            when cast({{ cxloop_shift_period('period_start', 1) }} as timestamp) < {{ cxloop_as_of(var('as_of', none)) }}
                then cast({{ cxloop_shift_period('period_start', 1) }} as timestamp)
            else {{ cxloop_as_of(var('as_of', none)) }}
        end as period_close_at
    from series

)

select * from final
