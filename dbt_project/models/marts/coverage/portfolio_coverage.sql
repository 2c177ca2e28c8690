with

coverage as (

    select * from {{ ref('contact_coverage') }}

),

groups as (

    select * from {{ ref('int_account_groups') }}

),

-- every active account of a period (contact_coverage has exactly those) in each of its groups
account_groups as (

    select
        coverage.period_start,
        groups.group_type,
        groups.group_value,
        coverage.account_id,
        coalesce(groups.arr, 0.0) as arr,
        coverage.n_responding_contacts > 0 as has_response,
        coverage.has_decision_maker_response,
        coverage.has_decision_maker_on_file
    from coverage
    inner join groups
        on coverage.period_start = groups.period_start
        and coverage.account_id = groups.account_id

),

totals as (

    select
        period_start,
        group_type,
        group_value,
        count(*) as active_accounts,
        sum(case when has_response then 1 else 0 end) as accounts_responded,
        sum(case when has_decision_maker_response then 1 else 0 end) as accounts_decision_maker_responded,
        sum(case when has_decision_maker_on_file then 1 else 0 end) as accounts_decision_maker_on_file,
        -- ARR sums as exact decimals: a float sum would depend on the order of the rows
        {{ cxloop_exact_sum('arr') }} as active_arr,
        {{ cxloop_exact_sum('case when has_response then arr else 0.0 end') }} as responded_arr
    from account_groups
    group by period_start, group_type, group_value

),

rates as (

    select
        totals.*,
        cast(totals.accounts_responded as {{ cxloop_type('float8') }})
        / cast(totals.active_accounts as {{ cxloop_type('float8') }}) as account_coverage,
        cast(totals.accounts_decision_maker_responded as {{ cxloop_type('float8') }})
        / cast(totals.active_accounts as {{ cxloop_type('float8') }}) as decision_maker_coverage,
        case when totals.active_arr > 0 then totals.responded_arr / totals.active_arr end as revenue_coverage,
        cast(totals.accounts_decision_maker_on_file as {{ cxloop_type('float8') }})
        / cast(totals.active_accounts as {{ cxloop_type('float8') }}) as decision_maker_on_file_rate
    from totals

),

final as (

    select
        period_start,
        cast(group_type as {{ cxloop_type('text') }}) as group_type,
        cast(group_value as {{ cxloop_type('text') }}) as group_value,
        cast(active_accounts as integer) as active_accounts,
        cast(accounts_responded as integer) as accounts_responded,
        cast(accounts_decision_maker_responded as integer) as accounts_decision_maker_responded,
        cast(accounts_decision_maker_on_file as integer) as accounts_decision_maker_on_file,
        cast(active_arr as {{ cxloop_type('float8') }}) as active_arr,
        cast(responded_arr as {{ cxloop_type('float8') }}) as responded_arr,
        {{ cxloop_round('account_coverage') }} as account_coverage,
        {{ cxloop_round('decision_maker_coverage') }} as decision_maker_coverage,
        {{ cxloop_round('revenue_coverage') }} as revenue_coverage,
        {{ cxloop_round('decision_maker_on_file_rate') }} as decision_maker_on_file_rate,
        cast({{ var('coverage_target') }} as {{ cxloop_type('float8') }}) as coverage_target,
        cast({{ var('revenue_coverage_target') }} as {{ cxloop_type('float8') }}) as revenue_coverage_target,
        account_coverage >= {{ var('coverage_target') }} as meets_account_coverage_target,
        decision_maker_coverage >= {{ var('coverage_target') }} as meets_decision_maker_coverage_target,
        case
            when revenue_coverage is not null
                then revenue_coverage >= {{ var('revenue_coverage_target') }}
        end as meets_revenue_coverage_target
    from rates

)

select * from final
