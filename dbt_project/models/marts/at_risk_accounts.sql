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

signals as (

    select
        renewing.account_id,
        latest_period.period_start,
        exists (
            select 1 from counted
            where counted.account_id = renewing.account_id
              and counted.period_start = latest_period.period_start
              and counted.buying_role = 'decision_maker'
              and counted.score_value = -1
        ) as has_detractor_decision_maker,
        coalesce((
            select account_nps.is_significant_change and account_nps.nps < account_nps.nps_prev
            from account_nps
            where account_nps.account_id = renewing.account_id
              and account_nps.period_start = latest_period.period_start
        ), false) as has_significant_drop,
        not coalesce((
            select coverage.has_decision_maker_response
            from coverage
            where coverage.account_id = renewing.account_id
              and coverage.period_start = latest_period.period_start
        ), false) as has_no_decision_maker_response
    from renewing
    cross join latest_period

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
        cast(risk_reasons as text) as risk_reasons,
        cast(row_number() over (
            order by coalesce(arr, 0) desc, account_id
        ) as integer) as risk_rank
    from flagged

)

select * from final
