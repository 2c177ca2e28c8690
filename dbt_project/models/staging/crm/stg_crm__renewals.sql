with

source as (

    select * from {{ source('crm', 'renewals') }}

),

renamed as (

    select
        cast(renewal_id as {{ cxloop_type('text') }}) as renewal_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(renewal_type as {{ cxloop_type('text') }}) as renewal_type,
        cast(stage_name as {{ cxloop_type('text') }}) as stage_name,
        cast(amount as {{ cxloop_type('float8') }}) as amount,
        cast(previous_amount as {{ cxloop_type('float8') }}) as previous_amount,
        cast(close_date as date) as close_date,
        cast(is_closed as boolean) as is_closed,
        cast(is_won as boolean) as is_won,
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
