with

results as (

    select * from {{ ref('stg_gate__validation_results') }}

),

final as (

    select
        batch_id,
        source,
        entity,
        expectation,
        column_name,
        severity,
        success,
        rows_checked,
        unexpected_count,
        {{ cxloop_round('case when rows_checked > 0 then cast(unexpected_count as float8) / cast(rows_checked as float8) end') }}
            as unexpected_fraction,
        checked_at
    from results

)

select * from final
