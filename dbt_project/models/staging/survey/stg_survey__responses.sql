with

source as (

    select * from {{ source('survey', 'responses') }}

),

renamed as (

    select
        cast(response_id as text) as response_id,
        cast(invitation_id as text) as invitation_id,
        cast(survey_id as text) as survey_id,
        cast(contact_id as text) as contact_id,
        cast(account_id as text) as account_id,
        cast(recorded_at as timestamp) as recorded_at,
        cast(nps_score as integer) as nps_score,
        cast(is_finished as boolean) as is_finished,
        cast(has_comment as boolean) as has_comment,
        cast(_batch_id as text) as batch_id,
        cast(_source as text) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

),

final as (

    select * from renamed
    where recorded_at < {{ cxloop_as_of(var('as_of', none)) }}

)

select * from final
