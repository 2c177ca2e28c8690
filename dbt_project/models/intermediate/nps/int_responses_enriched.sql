{#- Incremental on response_id: a build rebuilds only the responses that are new in the as_of
    window, re-delivered (another batch id), whose contact's raw row was re-delivered (the
    contact's role history comes from it) or whose survey's type changed (survey rows come again
    in every Qualtrics batch: their batch id would rebuild every response), and
    drops the rows no longer in the window (post-hook: a rerun with an earlier as_of). Each row
    carries the build_seq of the build that last wrote it and, when a rebuild replaced an earlier
    row, that row's period (replaced_period_start): the period models downstream rebuild the
    periods those touch (macro cxloop_delete_touched_periods). A change to seed role_weights
    needs a --full-refresh. -#}
{{
    config(
        materialized=cxloop_incremental_materialization(),
        unique_key='response_id',
        incremental_strategy=cxloop_incremental_strategy(),
        on_schema_change='fail',
        post_hook=[
            "{% if is_incremental() %}delete from {{ this }} where recorded_at >= {{ cxloop_as_of(var('as_of', none)) }}{% endif %}"
        ]
    )
}}

with

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

surveys as (

    select * from {{ ref('stg_survey__surveys') }}

),

-- the raw contact row's batch (deleted rows too): a re-delivered contact changes its versions
contact_batches as (

    select
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(_batch_id as {{ cxloop_type('text') }}) as batch_id
    from {{ source('crm', 'contacts') }}

),

{% if is_incremental() %}
    previous as (

        select
            response_id,
            period_start,
            batch_id,
            contact_batch_id,
            survey_type
        from {{ this }}

    ),

    changed as (

        select
            responses.response_id,
            previous.period_start as replaced_period_start
        from responses
        left join previous
            on responses.response_id = previous.response_id
        left join contact_batches
            on responses.contact_id = contact_batches.contact_id
        left join surveys
            on responses.survey_id = surveys.survey_id
        where previous.response_id is null
            or previous.batch_id is distinct from responses.batch_id
            or previous.contact_batch_id is distinct from contact_batches.batch_id
            or previous.survey_type is distinct from surveys.survey_type
            -- the program's period grain changed (quarter <-> month): every row moves period
            or previous.period_start is distinct from {{ cxloop_period_start('responses.recorded_at') }}

    ),
{% endif %}

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

-- the contact's CRM version valid when the response was recorded (type-2 snapshot)
contact_versions as (

    select * from {{ ref('int_contact_versions') }}

),

role_weights as (

    select * from {{ ref('role_weights') }}

),

-- roles sharing a waterfall rank are reported under the first role name of that rank
-- (other and unknown share rank 4 and are reported as 'other')
rank_names as (

    select
        rank as role_rank,
        min(role) as waterfall_role
    from role_weights
    group by rank

),

joined as (

    select
        responses.response_id,
        responses.invitation_id,
        responses.survey_id,
        surveys.survey_type,
        responses.contact_id,
        responses.account_id,
        responses.recorded_at,
        responses.nps_score,
        responses.is_finished,
        responses.batch_id,
        contact_batches.batch_id as contact_batch_id,
        cast({% if is_incremental() %}changed.replaced_period_start{% else %}null{% endif %} as date) as replaced_period_start,
        -- role as of recorded_at; contacts absent from the snapshot keep their current role
        coalesce(contact_versions.buying_role, contacts.buying_role, 'unknown') as buying_role
    from responses
    {% if is_incremental() %}
        inner join changed
            on responses.response_id = changed.response_id
    {% endif %}
    left join surveys
        on responses.survey_id = surveys.survey_id
    left join contact_batches
        on responses.contact_id = contact_batches.contact_id
    left join contacts
        on responses.contact_id = contacts.contact_id
    left join contact_versions
        on responses.contact_id = contact_versions.contact_id
        and (contact_versions.valid_from is null or responses.recorded_at >= contact_versions.valid_from)
        and (contact_versions.valid_to is null or responses.recorded_at < contact_versions.valid_to)

),

final as (

    select
        joined.*,
        {{ cxloop_period_start('joined.recorded_at') }} as period_start,
        joined.nps_score is not null as is_scored,
        {{ cxloop_score_class('joined.nps_score') }} as score_class,
        {{ cxloop_score_value('joined.nps_score') }} as score_value,
        role_weights.weight as role_weight,
        role_weights.rank as role_rank,
        rank_names.waterfall_role,
        cast({{ cxloop_next_build_seq() }} as bigint) as build_seq
    from joined
    left join role_weights
        on joined.buying_role = role_weights.role
    left join rank_names
        on role_weights.rank = rank_names.role_rank

)

select * from final
