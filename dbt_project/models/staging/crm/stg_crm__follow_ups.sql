with

source as (

    select * from {{ source('crm', 'follow_ups') }}

),

renamed as (

    select
        cast(follow_up_id as {{ cxloop_type('text') }}) as follow_up_id,
        cast(response_id as {{ cxloop_type('text') }}) as response_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(owner_id as {{ cxloop_type('text') }}) as owner_id,
        cast(created_at as timestamp) as created_at,
        cast(first_contact_at as timestamp) as first_contact_at,
        cast(closed_at as timestamp) as closed_at,
        cast(status as {{ cxloop_type('text') }}) as status,
        cast(updated_at as timestamp) as updated_at,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed
    where created_at < {{ cxloop_as_of(var('as_of', none)) }}

)

select * from final
