{#- Every reporting period of the data: from the period of the earliest invitation sent_at
    to the period containing as_of - 1 microsecond (as_of is exclusive), gaps included. -#}
with

series as (

    {{ cxloop_period_spine(ref('stg_survey__invitations'), 'sent_at', cxloop_as_of(var('as_of', none))) }}

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
