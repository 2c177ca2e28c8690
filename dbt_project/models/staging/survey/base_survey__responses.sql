{#- Incremental, typed copy of raw.responses (data that only grows). Not filtered by as_of: the
    as_of window is applied by the view stg_survey__responses on top, so a rerun with an earlier
    as_of stays correct. On an incremental run only the raw rows of batches not merged yet
    (macro cxloop_loaded_since_last_build) are read and merged on response_id: a re-delivered row replaces
    the stored one. Rows hard-deleted from raw stay until a --full-refresh. -#}
{{
    config(
        materialized=cxloop_incremental_materialization(),
        unique_key='response_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns'
    )
}}

with

source as (

    select * from {{ source('survey', 'responses') }}
    {{ cxloop_loaded_since_last_build() }}

),

renamed as (

    select
        cast(response_id as {{ cxloop_type('text') }}) as response_id,
        cast(invitation_id as {{ cxloop_type('text') }}) as invitation_id,
        cast(survey_id as {{ cxloop_type('text') }}) as survey_id,
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(recorded_at as timestamp) as recorded_at,
        cast(nps_score as integer) as nps_score,
        cast(is_finished as boolean) as is_finished,
        cast(has_comment as boolean) as has_comment,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

)

select * from renamed
