with

results as (

    select * from {{ ref('stg_gate__validation_results') }}

),

freshness as (

    select * from {{ ref('stg_pipeline__source_freshness') }}
    where as_of = {{ cxloop_as_of(var('as_of', none)) }}

),

expectations as (

    select
        batch_id,
        source,
        entity,
        'expectation' as check_kind,
        expectation,
        column_name,
        severity,
        success,
        rows_checked,
        unexpected_count,
        {{ cxloop_round('case when rows_checked > 0 then cast(unexpected_count as ' ~ cxloop_type('float8')
            ~ ') / cast(rows_checked as ' ~ cxloop_type('float8') ~ ') end') }}
            as unexpected_fraction,
        checked_at,
        cast(null as {{ cxloop_type('text') }}) as freshness_status,
        cast(null as timestamp) as loaded_up_to,
        cast(null as timestamp) as reference_at,
        cast(null as {{ cxloop_type('float8') }}) as age_hours,
        cast(null as integer) as warn_after_hours,
        cast(null as integer) as error_after_hours
    from results

),

source_freshness as (

    select
        batch_id,
        coalesce(source_system, source_name) as source,
        table_name as entity,
        'freshness' as check_kind,
        'source_freshness' as expectation,
        cast(null as {{ cxloop_type('text') }}) as column_name,
        case when status in ('pass', 'warn') then 'warn' else 'error' end as severity,
        status = 'pass' as success,
        cast(null as bigint) as rows_checked,
        cast(null as bigint) as unexpected_count,
        cast(null as {{ cxloop_type('float8') }}) as unexpected_fraction,
        cast(null as timestamp) as checked_at,
        status as freshness_status,
        loaded_up_to,
        reference_at,
        {{ cxloop_round('age_hours') }} as age_hours,
        warn_after_hours,
        error_after_hours
    from freshness

),

final as (

    select * from expectations
    union all
    select * from source_freshness

)

select * from final
