with

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

surveys as (

    select * from {{ ref('stg_survey__surveys') }}

),

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
        -- role as of recorded_at; contacts absent from the snapshot keep their current role
        coalesce(contact_versions.buying_role, contacts.buying_role, 'unknown') as buying_role
    from responses
    left join surveys
        on responses.survey_id = surveys.survey_id
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
        rank_names.waterfall_role
    from joined
    left join role_weights
        on joined.buying_role = role_weights.role
    left join rank_names
        on role_weights.rank = rank_names.role_rank

)

select * from final
