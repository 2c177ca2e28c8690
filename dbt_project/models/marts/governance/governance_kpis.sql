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
        cast(null as {{ cxloop_type('float8') }}) as target
    from portfolio_nps

),

response_rate_kpis as (

    select
        period_start,
        group_type,
        group_value,
        'response_rate' as kpi,
        response_rate as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        delivered as n,
        cast({{ var('response_rate_target') }} as {{ cxloop_type('float8') }}) as target
    from response_rate

),

portfolio_coverage as (

    select * from {{ ref('portfolio_coverage') }}
    where group_type in ('company', 'segment', 'region', 'owner')

),

coverage_kpis as (

    select
        period_start,
        group_type,
        group_value,
        'account_coverage' as kpi,
        account_coverage as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        active_accounts as n,
        coverage_target as target
    from portfolio_coverage

    union all

    select
        period_start,
        group_type,
        group_value,
        'decision_maker_coverage' as kpi,
        decision_maker_coverage as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        active_accounts as n,
        coverage_target as target
    from portfolio_coverage

    union all

    select
        period_start,
        group_type,
        group_value,
        'revenue_coverage' as kpi,
        revenue_coverage as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        active_accounts as n,
        revenue_coverage_target as target
    from portfolio_coverage
    where active_arr > 0

    union all

    -- CRM data quality: active accounts with an active decision maker on file at period close
    select
        period_start,
        group_type,
        group_value,
        'decision_maker_on_file_rate' as kpi,
        decision_maker_on_file_rate as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        active_accounts as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from portfolio_coverage

),

-- CRM data quality: active contacts of active accounts at period close with a known buying role
contact_periods as (

    select * from {{ ref('int_contact_periods') }}
    where is_active

),

known_role_totals as (

    select
        groups.period_start,
        groups.group_type,
        groups.group_value,
        count(*) as n_contacts,
        sum(case when contact_periods.buying_role <> 'unknown' then 1 else 0 end) as n_known
    from contact_periods
    inner join groups
        on contact_periods.period_start = groups.period_start
        and contact_periods.account_id = groups.account_id
    where groups.is_active
    group by groups.period_start, groups.group_type, groups.group_value

),

-- CRM data quality: invitations of the send period that bounced / all invitations sent
invitations as (

    select
        {{ cxloop_period_start('sent_at') }} as period_start,
        account_id,
        delivery_status
    from {{ ref('stg_survey__invitations') }}

),

invitation_totals as (

    select
        invitations.period_start,
        groups.group_type,
        groups.group_value,
        count(*) as n_sent,
        sum(case when invitations.delivery_status = 'bounced' then 1 else 0 end) as n_bounced
    from invitations
    inner join groups
        on invitations.period_start = groups.period_start
        and invitations.account_id = groups.account_id
    group by invitations.period_start, groups.group_type, groups.group_value

),

data_quality_kpis as (

    select
        period_start,
        group_type,
        group_value,
        'known_buying_role_rate' as kpi,
        cast(n_known as {{ cxloop_type('float8') }}) / cast(n_contacts as {{ cxloop_type('float8') }}) as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_contacts as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from known_role_totals

    union all

    select
        period_start,
        group_type,
        group_value,
        'invitation_bounce_rate' as kpi,
        cast(n_bounced as {{ cxloop_type('float8') }}) / cast(n_sent as {{ cxloop_type('float8') }}) as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_sent as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from invitation_totals

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
        on follow_ups.period_start = groups.period_start
        and follow_ups.account_id = groups.account_id

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
        period_start,
        group_type,
        group_value,
        'sla_attainment' as kpi,
        cast(n_met as {{ cxloop_type('float8') }}) / cast(n_sla_decided as {{ cxloop_type('float8') }}) as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_sla_decided as n,
        cast({{ var('sla_attainment_target') }} as {{ cxloop_type('float8') }}) as target
    from follow_up_totals
    where n_sla_decided > 0

    union all

    select
        period_start,
        group_type,
        group_value,
        'follow_up_completion_rate' as kpi,
        cast(n_completed as {{ cxloop_type('float8') }}) / cast(n_due as {{ cxloop_type('float8') }}) as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_due as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from follow_up_totals
    where n_due > 0

),

-- revenue at risk (contract 7.6): the latest period, company level, from revenue_at_risk
revenue_at_risk as (

    select * from {{ ref('revenue_at_risk') }}

),

revenue_totals as (

    select
        period_start,
        {{ cxloop_exact_sum('arr_at_risk') }} as arr_at_risk,
        {{ cxloop_exact_sum('arr_in_window') }} as arr_in_window,
        sum(n_at_risk) as n_at_risk,
        sum(n_accounts_in_window) as n_in_window
    from revenue_at_risk
    group by period_start

),

revenue_by_class as (

    select
        period_start,
        account_class,
        {{ cxloop_exact_sum('arr') }} as arr,
        sum(n_accounts) as n_accounts
    from revenue_at_risk
    where account_class in ('promoter', 'passive', 'detractor')
    group by period_start, account_class

),

revenue_kpis as (

    select
        period_start,
        'company' as group_type,
        'all' as group_value,
        'arr_at_risk' as kpi,
        arr_at_risk as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_at_risk as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from revenue_totals

    union all

    select
        period_start,
        'company' as group_type,
        'all' as group_value,
        'arr_at_risk_rate' as kpi,
        arr_at_risk / arr_in_window as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_in_window as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from revenue_totals
    where arr_in_window > 0

    union all

    select
        period_start,
        'company' as group_type,
        'all' as group_value,
        'arr_' || account_class || '_accounts' as kpi,
        arr as value,
        cast(null as {{ cxloop_type('float8') }}) as ci_low,
        cast(null as {{ cxloop_type('float8') }}) as ci_high,
        n_accounts as n,
        cast(null as {{ cxloop_type('float8') }}) as target
    from revenue_by_class

),

all_kpis as (

    select * from nps_kpis
    union all
    select * from response_rate_kpis
    union all
    select * from coverage_kpis
    union all
    select * from follow_up_kpis
    union all
    select * from data_quality_kpis
    union all
    select * from revenue_kpis

),

final as (

    select
        all_kpis.period_start,
        cast(all_kpis.group_type as {{ cxloop_type('text') }}) as group_type,
        cast(all_kpis.group_value as {{ cxloop_type('text') }}) as group_value,
        cast(all_kpis.kpi as {{ cxloop_type('text') }}) as kpi,
        {{ cxloop_round('all_kpis.value') }} as value,
        {{ cxloop_round('all_kpis.ci_low') }} as ci_low,
        {{ cxloop_round('all_kpis.ci_high') }} as ci_high,
        cast(all_kpis.n as integer) as n,
        all_kpis.target,
        case
            when all_kpis.target is not null and all_kpis.value is not null
                then all_kpis.value >= all_kpis.target
        end as meets_target,
        all_kpis.n >= {{ var('min_n_group') }} as is_reportable
    from all_kpis
    inner join periods
        on all_kpis.period_start = periods.period_start

)

select * from final
