with

periods as (

    select * from {{ ref('int_periods') }}

),

groups as (

    select * from {{ ref('int_account_groups') }}
    where group_type in ('company', 'segment', 'region', 'owner')

),

portfolio_nps as (

    select * from {{ ref('portfolio_nps') }}
    where survey_type = 'relationship'

),

response_rate as (

    select * from {{ ref('response_rate') }}
    where survey_type = 'relationship'
      and group_type in ('company', 'segment', 'region', 'owner')

),

coverage as (

    select * from {{ ref('contact_coverage') }}

),

follow_ups as (

    select * from {{ ref('follow_up_sla') }}

),

nps_kpis as (

    select
        period_start,
        group_type,
        group_value,
        'nps_' || method as kpi,
        nps as value,
        ci_low,
        ci_high,
        case when method = 'respondent' then n_scored else n_accounts end as n,
        cast(null as float8) as target
    from portfolio_nps

),

response_rate_kpis as (

    select
        period_start,
        group_type,
        group_value,
        'response_rate' as kpi,
        response_rate as value,
        cast(null as float8) as ci_low,
        cast(null as float8) as ci_high,
        delivered as n,
        cast({{ var('response_rate_target') }} as float8) as target
    from response_rate

),

-- active accounts of every group in every period, with their coverage flags
account_periods as (

    select
        coverage.period_start,
        groups.group_type,
        groups.group_value,
        coverage.account_id,
        coalesce(groups.arr, 0.0) as arr,
        coverage.n_responding_contacts > 0 as has_response,
        coverage.has_decision_maker_response
    from coverage
    inner join groups
        on coverage.account_id = groups.account_id

),

coverage_totals as (

    select
        period_start,
        group_type,
        group_value,
        count(*) as n_accounts,
        sum(case when has_response then 1 else 0 end) as n_responding,
        sum(case when has_decision_maker_response then 1 else 0 end) as n_dm_responding,
        sum(arr) as total_arr,
        sum(case when has_response then arr else 0.0 end) as responding_arr
    from account_periods
    group by period_start, group_type, group_value

),

coverage_kpis as (

    select
        period_start, group_type, group_value,
        'account_coverage' as kpi,
        cast(n_responding as float8) / cast(n_accounts as float8) as value,
        cast(null as float8) as ci_low, cast(null as float8) as ci_high,
        n_accounts as n,
        cast(null as float8) as target
    from coverage_totals

    union all

    select
        period_start, group_type, group_value,
        'decision_maker_coverage' as kpi,
        cast(n_dm_responding as float8) / cast(n_accounts as float8) as value,
        cast(null as float8) as ci_low, cast(null as float8) as ci_high,
        n_accounts as n,
        cast(null as float8) as target
    from coverage_totals

    union all

    select
        period_start, group_type, group_value,
        'revenue_coverage' as kpi,
        responding_arr / total_arr as value,
        cast(null as float8) as ci_low, cast(null as float8) as ci_high,
        n_accounts as n,
        cast({{ var('revenue_coverage_target') }} as float8) as target
    from coverage_totals
    where total_arr > 0

),

follow_up_groups as (

    select
        follow_ups.period_start,
        groups.group_type,
        groups.group_value,
        follow_ups.sla_status,
        follow_ups.is_completed,
        follow_ups.is_completion_due
    from follow_ups
    inner join groups
        on follow_ups.account_id = groups.account_id

),

follow_up_totals as (

    select
        period_start,
        group_type,
        group_value,
        sum(case when sla_status = 'met' then 1 else 0 end) as n_met,
        sum(case when sla_status in ('met', 'breached', 'missing') then 1 else 0 end) as n_sla_decided,
        sum(case when is_completion_due and is_completed then 1 else 0 end) as n_completed,
        sum(case when is_completion_due then 1 else 0 end) as n_due
    from follow_up_groups
    group by period_start, group_type, group_value

),

follow_up_kpis as (

    select
        period_start, group_type, group_value,
        'sla_attainment' as kpi,
        cast(n_met as float8) / cast(n_sla_decided as float8) as value,
        cast(null as float8) as ci_low, cast(null as float8) as ci_high,
        n_sla_decided as n,
        cast({{ var('sla_attainment_target') }} as float8) as target
    from follow_up_totals
    where n_sla_decided > 0

    union all

    select
        period_start, group_type, group_value,
        'follow_up_completion_rate' as kpi,
        cast(n_completed as float8) / cast(n_due as float8) as value,
        cast(null as float8) as ci_low, cast(null as float8) as ci_high,
        n_due as n,
        cast(null as float8) as target
    from follow_up_totals
    where n_due > 0

),

all_kpis as (

    select * from nps_kpis
    union all
    select * from response_rate_kpis
    union all
    select * from coverage_kpis
    union all
    select * from follow_up_kpis

),

final as (

    select
        all_kpis.period_start,
        cast(all_kpis.group_type as text) as group_type,
        cast(all_kpis.group_value as text) as group_value,
        cast(all_kpis.kpi as text) as kpi,
        all_kpis.value,
        all_kpis.ci_low,
        all_kpis.ci_high,
        cast(all_kpis.n as integer) as n,
        all_kpis.target,
        case when all_kpis.target is not null and all_kpis.value is not null
            then all_kpis.value >= all_kpis.target
        end as meets_target,
        all_kpis.n >= {{ var('min_n_group') }} as is_reportable
    from all_kpis
    inner join periods
        on all_kpis.period_start = periods.period_start

)

select * from final
