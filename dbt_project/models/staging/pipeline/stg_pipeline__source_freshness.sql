with

source as (

    {{ cxloop_recorded_freshness(source('pipeline', 'source_freshness')) }}

),

renamed as (

    select
        cast(as_of as timestamp) as as_of,
        cast(source_name as {{ cxloop_type('text') }}) as source_name,
        cast(table_name as {{ cxloop_type('text') }}) as table_name,
        cast(source_system as {{ cxloop_type('text') }}) as source_system,
        cast(batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(status as {{ cxloop_type('text') }}) as status,
        cast(loaded_up_to as timestamp) as loaded_up_to,
        cast(reference_at as timestamp) as reference_at,
        cast(age_hours as {{ cxloop_type('float8') }}) as age_hours,
        cast(warn_after_hours as integer) as warn_after_hours,
        cast(error_after_hours as integer) as error_after_hours
    from source

),

final as (

    select * from renamed

)

select * from final
