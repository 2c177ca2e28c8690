{#- One row per calendar day from the day of the earliest response to as_of + var
    business_calendar_days_after days: the business window of that day from seed business_hours
    (UTC hours by ISO weekday; days absent from the seed have no business hours) and the
    cumulative business hours before the day. The business-hours clock of follow_up_sla:
    clock(t) = cum_hours_before(day of t) + hours of the day's window elapsed at t, so business
    hours between two instants = clock(t2) - clock(t1). No holiday calendar (documented gap). -#}
with

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

business_hours as (

    select * from {{ ref('business_hours') }}

),

bounds as (

    select
        cast(min(recorded_at) as date) as first_date,
        cast({{ cxloop_add_days(cxloop_as_of(var('as_of', none)), var('business_calendar_days_after')) }} as date) as last_date
    from responses

),

days as (

    {{ cxloop_day_series('(select first_date from bounds)', '(select last_date from bounds)') }}

),

windows as (

    select
        days.calendar_date,
        {{ cxloop_iso_day_of_week('days.calendar_date') }} as iso_day_of_week,
        {{ cxloop_add_hours('cast(days.calendar_date as timestamp)', 'business_hours.open_hour') }} as open_at,
        {{ cxloop_add_hours('cast(days.calendar_date as timestamp)', 'business_hours.close_hour') }} as close_at,
        coalesce(business_hours.close_hour - business_hours.open_hour, 0.0) as business_hours
    from days
    left join business_hours
        on {{ cxloop_iso_day_of_week('days.calendar_date') }} = business_hours.iso_day_of_week

),

final as (

    select
        calendar_date,
        iso_day_of_week,
        open_at,
        close_at,
        cast(business_hours as {{ cxloop_type('float8') }}) as business_hours,
        cast(coalesce(sum(business_hours) over (
            order by calendar_date rows between unbounded preceding and 1 preceding
        ), 0.0) as {{ cxloop_type('float8') }}) as cum_hours_before
    from windows

)

select * from final
