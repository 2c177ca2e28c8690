{#- NPS de-duplication: per period x survey_type x contact, the latest scored response
    (greatest recorded_at, ties broken by the greatest response_id). Incremental by period: a
    build rebuilds only the periods whose responses changed (macros/incremental.sql). -#}
{{
    config(
        materialized=cxloop_incremental_materialization(),
        unique_key='period_start',
        incremental_strategy=cxloop_incremental_strategy(),
        on_schema_change='fail',
        pre_hook=["{{ cxloop_delete_touched_periods() }}"]
    )
}}
with

responses as (

    select * from {{ ref('int_responses_enriched') }}
    {{ cxloop_periods_to_build() }}

),

scored as (

    select
        *,
        row_number() over (
            partition by period_start, survey_type, contact_id
            order by recorded_at desc, response_id desc
        ) as recency_rank
    from responses
    where is_scored

),

final as (

    select
        response_id,
        invitation_id,
        survey_id,
        survey_type,
        contact_id,
        account_id,
        recorded_at,
        period_start,
        nps_score,
        score_class,
        score_value,
        buying_role,
        role_weight,
        role_rank,
        waterfall_role,
        cast((select max(seqs.build_seq) from {{ ref('int_responses_enriched') }} as seqs) as bigint) as enriched_build_seq
    from scored
    where recency_rank = 1

)

select * from final
