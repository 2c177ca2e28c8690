with

source as (

    select * from {{ source('crm', 'owners') }}

),

renamed as (

    select
        cast(owner_id as {{ cxloop_type('text') }}) as owner_id,
        cast(owner_name as {{ cxloop_type('text') }}) as owner_name,
        cast(team as {{ cxloop_type('text') }}) as team,
        cast(is_active as boolean) as is_active,
        cast(updated_at as timestamp) as updated_at,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed

)

select * from final
