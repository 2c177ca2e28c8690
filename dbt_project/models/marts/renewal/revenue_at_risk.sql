{#- Revenue at risk (monetised NPS), as of the latest period: the ARR of the active accounts
    with a renewal_date from the date of as_of on, by renewal quarter and by the account's NPS
    class in the latest period (account_classified's class: relationship surveys,
    cxloop_score_class of the role-weighted mean score; unclassified without a relationship
    response in the period). The at-risk part: accounts renewing within var
    at_risk_renewal_days (120) days of as_of with a detractor decision maker or no
    decision-maker response - the flags of at_risk_accounts, reused. Null ARR counts as 0. -#}
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

active_accounts as (

    select * from {{ ref('stg_crm__accounts') }}
    where is_active

),

upcoming as (

    select
        active_accounts.account_id,
        coalesce(active_accounts.arr, 0) as arr,
        active_accounts.renewal_date,
        active_accounts.renewal_date
        <= cast({{ cxloop_add_days('as_of.as_of_ts', var('at_risk_renewal_days')) }} as date) as is_in_window
    from active_accounts
    cross join as_of
    where active_accounts.renewal_date >= cast(as_of.as_of_ts as date)

),

scores as (

    select scores.*
    from {{ ref('int_account_period_scores') }} as scores
    inner join latest_period
        on scores.period_start = latest_period.period_start
    where scores.survey_type = 'relationship'

),

at_risk as (

    select * from {{ ref('at_risk_accounts') }}

),

classed as (

    select
        latest_period.period_start,
        {{ cxloop_period_start('cast(upcoming.renewal_date as timestamp)', 'quarter') }} as renewal_quarter,
        coalesce({{ cxloop_score_class('scores.weighted_mean_score') }}, 'unclassified') as account_class,
        upcoming.arr,
        upcoming.is_in_window,
        upcoming.is_in_window and coalesce(at_risk.has_detractor_decision_maker, false)
            as has_detractor_decision_maker,
        upcoming.is_in_window and coalesce(at_risk.has_no_decision_maker_response, false)
            as has_no_decision_maker_response
    from upcoming
    inner join latest_period
        on latest_period.period_start is not null
    left join scores
        on upcoming.account_id = scores.account_id
    left join at_risk
        on upcoming.account_id = at_risk.account_id

),

final as (

    select
        period_start,
        renewal_quarter,
        cast(account_class as {{ cxloop_type('text') }}) as account_class,
        cast(count(*) as integer) as n_accounts,
        {{ cxloop_round(cxloop_exact_sum('arr')) }} as arr,
        cast(sum(case when is_in_window then 1 else 0 end) as integer) as n_accounts_in_window,
        {{ cxloop_round(cxloop_exact_sum('case when is_in_window then arr else 0 end')) }} as arr_in_window,
        cast(
            sum(case when has_detractor_decision_maker or has_no_decision_maker_response then 1 else 0 end)
            as integer
        ) as n_at_risk,
        {{ cxloop_round(cxloop_exact_sum(
            'case when has_detractor_decision_maker or has_no_decision_maker_response then arr else 0 end')) }}
            as arr_at_risk,
        {{ cxloop_round(cxloop_exact_sum('case when has_detractor_decision_maker then arr else 0 end')) }}
            as arr_detractor_decision_maker,
        {{ cxloop_round(cxloop_exact_sum('case when has_no_decision_maker_response then arr else 0 end')) }}
            as arr_no_decision_maker_response
    from classed
    group by period_start, renewal_quarter, account_class

)

select * from final
