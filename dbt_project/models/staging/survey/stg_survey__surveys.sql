with

source as (

    select * from {{ source('survey', 'surveys') }}

),

renamed as (

    select
        cast(survey_id as {{ cxloop_type('text') }}) as survey_id,
        cast(survey_name as {{ cxloop_type('text') }}) as survey_name,
        cast(survey_type as {{ cxloop_type('text') }}) as survey_type,
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
