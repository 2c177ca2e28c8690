with

follow_ups as (

    select * from {{ ref('follow_up_sla') }}

),

segments as (

    select
        period_start,
        account_id,
        group_value as segment
    from {{ ref('int_account_groups') }}
    where group_type = 'segment'

),

tagged as (

    select
        follow_ups.*,
        coalesce(segments.segment, 'unknown') as segment
    from follow_ups
    left join segments
        on follow_ups.period_start = segments.period_start
        and follow_ups.account_id = segments.account_id

),

grouped as (

    select
        period_start,
        'company' as group_type,
        'all' as group_value,
        sla_status,
        is_completed,
        is_completion_due,
        next_score,
        is_recovered
    from tagged
    union all
    select
        period_start,
        'owner' as group_type,
        coalesce(owner_id, 'unknown') as group_value,
        sla_status,
        is_completed,
        is_completion_due,
        next_score,
        is_recovered
    from tagged
    union all
    select
        period_start,
        'team' as group_type,
        coalesce(team, 'unknown') as group_value,
        sla_status,
        is_completed,
        is_completion_due,
        next_score,
        is_recovered
    from tagged
    union all
    select
        period_start,
        'account' as group_type,
        account_id as group_value,
        sla_status,
        is_completed,
        is_completion_due,
        next_score,
        is_recovered
    from tagged
    union all
    select
        period_start,
        'segment' as group_type,
        segment as group_value,
        sla_status,
        is_completed,
        is_completion_due,
        next_score,
        is_recovered
    from tagged

),

totals as (

    select
        period_start,
        group_type,
        group_value,
        count(*) as required_follow_ups,
        sum(case when sla_status = 'met' then 1 else 0 end) as sla_met,
        sum(case when sla_status = 'breached' then 1 else 0 end) as sla_breached,
        sum(case when sla_status = 'missing' then 1 else 0 end) as sla_missing,
        sum(case when sla_status = 'active' then 1 else 0 end) as sla_active,
        sum(case when is_completion_due then 1 else 0 end) as completion_due,
        sum(case when is_completion_due and is_completed then 1 else 0 end) as completed,
        sum(case when next_score is not null then 1 else 0 end) as with_next_score,
        sum(case when is_recovered then 1 else 0 end) as recovered
    from grouped
    group by period_start, group_type, group_value

),

final as (

    select
        period_start,
        cast(group_type as {{ cxloop_type('text') }}) as group_type,
        cast(group_value as {{ cxloop_type('text') }}) as group_value,
        cast('{{ cxloop_sla_clock() }}' as {{ cxloop_type('text') }}) as sla_clock,
        -- the first-contact target on that clock, as follow_up_sla carries it (48 calendar
        -- hours, or sla_first_contact_business_hours business hours)
        cast((select max(follow_ups.first_contact_target_hours) from follow_ups) as {{ cxloop_type('float8') }})
            as first_contact_target_hours,
        cast(required_follow_ups as integer) as required_follow_ups,
        cast(sla_met as integer) as sla_met,
        cast(sla_breached as integer) as sla_breached,
        cast(sla_missing as integer) as sla_missing,
        cast(sla_active as integer) as sla_active,
        {{ cxloop_round('case when sla_met + sla_breached + sla_missing > 0
            then cast(sla_met as ' ~ cxloop_type('float8') ~ ') / cast(sla_met + sla_breached + sla_missing as ' ~ cxloop_type('float8') ~ ') end') }}
            as sla_attainment,
        cast({{ var('sla_attainment_target') }} as {{ cxloop_type('float8') }}) as sla_target,
        case
            when sla_met + sla_breached + sla_missing > 0
                then cast(sla_met as {{ cxloop_type('float8') }})
                    / cast(sla_met + sla_breached + sla_missing as {{ cxloop_type('float8') }})
                    >= {{ var('sla_attainment_target') }}
        end as meets_sla_target,
        cast(completion_due as integer) as completion_due,
        cast(completed as integer) as completed,
        {{ cxloop_round('case when completion_due > 0
            then cast(completed as ' ~ cxloop_type('float8') ~ ') / cast(completion_due as ' ~ cxloop_type('float8') ~ ') end') }}
            as completion_rate,
        cast(with_next_score as integer) as with_next_score,
        cast(recovered as integer) as recovered,
        {{ cxloop_round('case when with_next_score > 0
            then cast(recovered as ' ~ cxloop_type('float8') ~ ') / cast(with_next_score as ' ~ cxloop_type('float8') ~ ') end') }}
            as recovery_rate
    from totals

)

select * from final
