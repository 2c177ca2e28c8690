with

source as (

    select * from {{ source('gate', 'validation_results') }}

),

renamed as (

    select
        cast(batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(source as {{ cxloop_type('text') }}) as source,
        cast(entity as {{ cxloop_type('text') }}) as entity,
        cast(expectation as {{ cxloop_type('text') }}) as expectation,
        cast({{ adapter.quote('column') }} as {{ cxloop_type('text') }}) as column_name,
        cast(severity as {{ cxloop_type('text') }}) as severity,
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
