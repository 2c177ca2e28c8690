{#- Incremental, typed copy of raw.invitations (data that only grows). Not filtered by as_of: the
    as_of window is applied by the view stg_survey__invitations on top, so a rerun with an earlier
    as_of stays correct. On an incremental run only the raw rows of batches not merged yet
    (macro cxloop_loaded_since_last_build) are read and merged on invitation_id: a re-delivered row replaces
    the stored one. Rows hard-deleted from raw stay until a --full-refresh. -#}
{{
    config(
        materialized=cxloop_incremental_materialization(),
        unique_key='invitation_id',
        incremental_strategy='merge',
        on_schema_change='append_new_columns'
    )
}}

with

source as (

    select * from {{ source('survey', 'invitations') }}
    {{ cxloop_loaded_since_last_build() }}

),

renamed as (

    select
        cast(invitation_id as {{ cxloop_type('text') }}) as invitation_id,
        cast(distribution_id as {{ cxloop_type('text') }}) as distribution_id,
        cast(survey_id as {{ cxloop_type('text') }}) as survey_id,
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(sent_at as timestamp) as sent_at,
        cast(delivery_status as {{ cxloop_type('text') }}) as delivery_status,
        cast(source_status as {{ cxloop_type('text') }}) as source_status,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id,
        cast(_source as {{ cxloop_type('text') }}) as source_system,
        cast(_loaded_at as timestamp) as loaded_at
    from source

)

select * from renamed
