with

source as (

    select * from {{ source('crm', 'contacts') }}

),

renamed as (

    select
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(email_hash as {{ cxloop_type('text') }}) as email_hash,
        cast(email_domain_valid as boolean) as email_domain_valid,
        cast(title as {{ cxloop_type('text') }}) as title,
        coalesce(cast(buying_role as {{ cxloop_type('text') }}), 'unknown') as buying_role,
        cast(buying_role_source as {{ cxloop_type('text') }}) as buying_role_source,
        cast(is_active as boolean) as is_active,
        coalesce(cast(opted_out as boolean), false) as opted_out,
        coalesce(cast(is_deleted as boolean), false) as is_deleted,
        cast(updated_at as timestamp) as updated_at,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed
    where not is_deleted

)

select * from final
