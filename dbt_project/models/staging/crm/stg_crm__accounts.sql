with

source as (

    select * from {{ source('crm', 'accounts') }}

),

renamed as (

    select
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(account_name as {{ cxloop_type('text') }}) as account_name,
        cast(segment as {{ cxloop_type('text') }}) as segment,
        cast(region as {{ cxloop_type('text') }}) as region,
        cast(tier as {{ cxloop_type('text') }}) as tier,
        cast(arr as {{ cxloop_type('float8') }}) as arr,
        cast(owner_id as {{ cxloop_type('text') }}) as owner_id,
        cast(renewal_date as date) as renewal_date,
        cast(is_active as boolean) as is_active,
        coalesce(cast(is_deleted as boolean), false) as is_deleted,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed
    where not is_deleted
        and (created_at is null or created_at < {{ cxloop_as_of(var('as_of', none)) }})

)

select * from final
