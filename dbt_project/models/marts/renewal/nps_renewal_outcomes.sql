{#- Does NPS predict renewal? Every decided renewal (closed, close_date before the date of
    as_of) with the account's NPS class in the period before it: the last reporting period that
    ended before the close date, i.e. the period preceding the one holding close_date
    (cxloop_shift_period(cxloop_period_start(close_date), -1)). The class is the one of
    portfolio_nps' account_classified method: relationship surveys, the role-weighted mean
    score m of the account's counted responses (cxloop_score_class: promoter m >= 9, passive
    7 <= m < 9, detractor m < 7); no relationship response in that period: unclassified. -#}
with

as_of as (

    select cast({{ cxloop_as_of(var('as_of', none)) }} as date) as as_of_date

),

renewals as (

    select
        renewals.renewal_id,
        renewals.account_id,
        renewals.close_date,
        renewals.is_won,
        renewals.amount,
        renewals.previous_amount,
        {{ cxloop_shift_period(cxloop_period_start('renewals.close_date'), -1) }} as class_period_start
    from {{ ref('stg_crm__renewals') }} as renewals
    cross join as_of
    where renewals.is_closed
        and renewals.close_date < as_of.as_of_date

),

scores as (

    select * from {{ ref('int_account_period_scores') }}
    where survey_type = 'relationship'

),

classed as (

    select
        renewals.*,
        coalesce({{ cxloop_score_class('scores.weighted_mean_score') }}, 'unclassified') as account_class,
        renewals.previous_amount is not null and renewals.amount is not null as has_revenue
    from renewals
    left join scores
        on renewals.account_id = scores.account_id
        and renewals.class_period_start = scores.period_start

),

per_class as (

    select
        account_class,
        count(*) as n_renewals,
        sum(case when is_won then 1 else 0 end) as n_won,
        sum(case when has_revenue then 1 else 0 end) as n_with_revenue,
        {{ cxloop_exact_sum('case when has_revenue then previous_amount end') }} as previous_arr,
        {{ cxloop_exact_sum('case when has_revenue then (case when is_won then amount else 0 end) end') }}
            as renewed_arr
    from classed
    group by account_class

    union all

    select
        'all' as account_class,
        count(*) as n_renewals,
        sum(case when is_won then 1 else 0 end) as n_won,
        sum(case when has_revenue then 1 else 0 end) as n_with_revenue,
        {{ cxloop_exact_sum('case when has_revenue then previous_amount end') }} as previous_arr,
        {{ cxloop_exact_sum('case when has_revenue then (case when is_won then amount else 0 end) end') }}
            as renewed_arr
    from classed
    having count(*) > 0

),

rates as (

    select
        account_class,
        n_renewals,
        n_won,
        cast(n_won as {{ cxloop_type('float8') }}) / cast(n_renewals as {{ cxloop_type('float8') }}) as renewal_rate,
        {{ cxloop_wilson_low('n_won', 'n_renewals') }} as ci_low,
        {{ cxloop_wilson_high('n_won', 'n_renewals') }} as ci_high,
        n_with_revenue,
        previous_arr,
        renewed_arr,
        case when previous_arr > 0 then renewed_arr / previous_arr end as net_revenue_retention
    from per_class

),

promoters as (

    select * from rates
    where account_class = 'promoter'

),

detractors as (

    select * from rates
    where account_class = 'detractor'

),

-- promoter accounts minus detractor accounts: Newcombe's hybrid score interval
difference as (

    select
        'promoter_minus_detractor' as account_class,
        promoters.n_renewals + detractors.n_renewals as n_renewals,
        promoters.n_won + detractors.n_won as n_won,
        promoters.renewal_rate - detractors.renewal_rate as renewal_rate,
        {{ cxloop_newcombe_low('promoters.renewal_rate', 'promoters.ci_low', 'promoters.ci_high',
                               'detractors.renewal_rate', 'detractors.ci_low', 'detractors.ci_high') }} as ci_low,
        {{ cxloop_newcombe_high('promoters.renewal_rate', 'promoters.ci_low', 'promoters.ci_high',
                                'detractors.renewal_rate', 'detractors.ci_low', 'detractors.ci_high') }} as ci_high,
        promoters.n_with_revenue + detractors.n_with_revenue as n_with_revenue,
        cast(null as {{ cxloop_type('float8') }}) as previous_arr,
        cast(null as {{ cxloop_type('float8') }}) as renewed_arr,
        promoters.net_revenue_retention - detractors.net_revenue_retention as net_revenue_retention,
        least(promoters.n_renewals, detractors.n_renewals) as n_smallest
    from promoters
    cross join detractors

),

all_rows as (

    select
        rates.*,
        rates.n_renewals as n_smallest
    from rates
    union all
    select * from difference

),

final as (

    select
        cast(account_class as {{ cxloop_type('text') }}) as account_class,
        cast(n_renewals as integer) as n_renewals,
        cast(n_won as integer) as n_won,
        {{ cxloop_round('renewal_rate') }} as renewal_rate,
        {{ cxloop_round('ci_low') }} as renewal_rate_ci_low,
        {{ cxloop_round('ci_high') }} as renewal_rate_ci_high,
        cast(n_with_revenue as integer) as n_with_revenue,
        {{ cxloop_round('previous_arr') }} as previous_arr,
        {{ cxloop_round('renewed_arr') }} as renewed_arr,
        {{ cxloop_round('net_revenue_retention') }} as net_revenue_retention,
        n_smallest >= {{ var('min_n_group') }} as is_reportable
    from all_rows

)

select * from final
