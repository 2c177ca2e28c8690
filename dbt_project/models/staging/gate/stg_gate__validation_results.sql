with

source as (

    select * from {{ source('gate', 'validation_results') }}

),

renamed as (

    select
        cast(batch_id as text) as batch_id,
        cast(source as text) as source,
        cast(entity as text) as entity,
        cast(expectation as text) as expectation,
        cast({{ adapter.quote('column') }} as text) as column_name,
        cast(severity as text) as severity,
        cast(success as boolean) as success,
        cast(rows_checked as bigint) as rows_checked,
        cast(unexpected_count as bigint) as unexpected_count,
        cast(checked_at as timestamp) as checked_at
    from source

),

final as (

    select * from renamed

)

select * from final
