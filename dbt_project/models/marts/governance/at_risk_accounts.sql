with

periods as (

    select * from {{ ref('int_periods') }}

),

latest_period as (

    select max(period_start) as period_start from periods

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}
    where is_active

),

counted as (

    select * from {{ ref('int_responses_counted') }}
    where survey_type = 'relationship'

),

account_nps as (

    select * from {{ ref('account_nps') }}
    where survey_type = 'relationship'
        and method = 'role_weighted'

),

coverage as (

    select * from {{ ref('contact_coverage') }}

),

as_of as (

    select {{ cxloop_as_of(var('as_of', none)) }} as as_of_ts

),

renewing as (

    select accounts.*
    from accounts
    cross join as_of
    where accounts.renewal_date >= cast(as_of.as_of_ts as date)
        and accounts.renewal_date <= cast({{ cxloop_add_days('as_of.as_of_ts', var('at_risk_renewal_days')) }} as date)

),

-- accounts whose decision maker's counted relationship response in the latest period is a detractor
detractor_decision_makers as (

    select distinct counted.account_id
    from counted
    inner join latest_period
        on counted.period_start = latest_period.period_start
    where counted.buying_role = 'decision_maker'
        and counted.score_value = -1

),

-- joins, not correlated subqueries: Postgres runs a correlated subquery once per account
-- (at 20,000 accounts this model took minutes there); account_nps (relationship,
-- role_weighted) and contact_coverage have one row per account and period (tested grains)
signals as (

    select
        renewing.account_id,
        latest_period.period_start,
        detractor_decision_makers.account_id is not null as has_detractor_decision_maker,
        coalesce(account_nps.is_significant_change and account_nps.nps < account_nps.nps_prev, false)
            as has_significant_drop,
        not coalesce(coverage.has_decision_maker_response, false) as has_no_decision_maker_response
    from renewing
    cross join latest_period
    left join detractor_decision_makers
        on renewing.account_id = detractor_decision_makers.account_id
    left join account_nps
        on renewing.account_id = account_nps.account_id
        and latest_period.period_start = account_nps.period_start
    left join coverage
        on renewing.account_id = coverage.account_id
        and latest_period.period_start = coverage.period_start

),

flagged as (

    select
        signals.period_start,
        renewing.account_id,
        renewing.arr,
        renewing.renewal_date,
        renewing.owner_id,
        renewing.segment,
        signals.has_detractor_decision_maker,
        signals.has_significant_drop,
        signals.has_no_decision_maker_response,
        {{ cxloop_concat_ws("', '", [
            "case when signals.has_detractor_decision_maker then 'detractor_decision_maker' end",
            "case when signals.has_significant_drop then 'significant_nps_drop' end",
            "case when signals.has_no_decision_maker_response then 'no_decision_maker_response' end"]) }}
            as risk_reasons
    from signals
    inner join renewing
        on signals.account_id = renewing.account_id
    where signals.has_detractor_decision_maker
        or signals.has_significant_drop
        or signals.has_no_decision_maker_response

),

final as (

    select
        period_start,
        account_id,
        arr,
        renewal_date,
        owner_id,
        segment,
        has_detractor_decision_maker,
        has_significant_drop,
        has_no_decision_maker_response,
        cast(risk_reasons as {{ cxloop_type('text') }}) as risk_reasons,
        cast(row_number() over (
            order by coalesce(arr, 0) desc, account_id
        ) as integer) as risk_rank
    from flagged

)

select * from final
