with

source as (

    select * from {{ source('survey', 'invitations') }}

),

renamed as (

    select
        cast(invitation_id as text) as invitation_id,
        cast(distribution_id as text) as distribution_id,
        cast(survey_id as text) as survey_id,
        cast(contact_id as text) as contact_id,
        cast(account_id as text) as account_id,
        cast(sent_at as timestamp) as sent_at,
        cast(delivery_status as text) as delivery_status,
        cast(source_status as text) as source_status,
        cast(_batch_id as text) as batch_id,
        cast(_source as text) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed
    where sent_at < {{ cxloop_as_of(var('as_of', none)) }}

)

select * from final
