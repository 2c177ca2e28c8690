{#- Per period x survey_type x account with >= 1 counted response: the sums every account
    method needs. Waterfall: the highest-ranked role (smallest role_rank) among the counted
    responses; its responses pooled. Incremental by period, as
    int_responses_counted. -#}
{{
    config(
        materialized=cxloop_incremental_materialization(),
        unique_key='period_start',
        incremental_strategy=cxloop_incremental_strategy(),
        on_schema_change='fail',
        pre_hook=["{{ cxloop_delete_touched_periods() }}"]
    )
}}
-- depends_on: {{ ref('int_responses_enriched') }}  (the pre-hook reads its build_seq)
with

counted as (

    select * from {{ ref('int_responses_counted') }}
    {{ cxloop_periods_to_build() }}

),

top_rank as (

    select
        period_start,
        survey_type,
        account_id,
        min(role_rank) as waterfall_rank
    from counted
    group by period_start, survey_type, account_id

),

totals as (

    select
        period_start,
        survey_type,
        account_id,
        cast(count(*) as bigint) as n_scored,
        cast(sum(case when score_value = 1 then 1 else 0 end) as bigint) as promoters,
        cast(sum(case when score_value = 0 then 1 else 0 end) as bigint) as passives,
        cast(sum(case when score_value = -1 then 1 else 0 end) as bigint) as detractors,
        cast(sum(role_weight) as {{ cxloop_type('float8') }}) as sum_weight,
        cast(sum(role_weight * score_value) as {{ cxloop_type('float8') }}) as sum_weighted_value,
        cast(sum(role_weight * nps_score) as {{ cxloop_type('float8') }}) as sum_weighted_score
    from counted
    group by period_start, survey_type, account_id

),

waterfall as (

    select
        counted.period_start,
        counted.survey_type,
        counted.account_id,
        min(counted.waterfall_role) as waterfall_role,
        cast(count(*) as bigint) as wf_n_scored,
        cast(sum(case when counted.score_value = 1 then 1 else 0 end) as bigint) as wf_promoters,
        cast(sum(case when counted.score_value = 0 then 1 else 0 end) as bigint) as wf_passives,
        cast(sum(case when counted.score_value = -1 then 1 else 0 end) as bigint) as wf_detractors
    from counted
    inner join top_rank
        on counted.period_start = top_rank.period_start
        and counted.survey_type = top_rank.survey_type
        and counted.account_id = top_rank.account_id
        and counted.role_rank = top_rank.waterfall_rank
    group by counted.period_start, counted.survey_type, counted.account_id

),

final as (

    select
        totals.period_start,
        totals.survey_type,
        totals.account_id,
        totals.n_scored,
        totals.promoters,
        totals.passives,
        totals.detractors,
        {{ cxloop_nps('totals.promoters', 'totals.detractors', 'totals.n_scored') }} as pooled_nps,
        totals.sum_weight,
        100.0 * cast(totals.sum_weighted_value as {{ cxloop_type('float8') }})
        / cast(totals.sum_weight as {{ cxloop_type('float8') }}) as role_weighted_nps,
        cast(totals.sum_weighted_score as {{ cxloop_type('float8') }})
        / cast(totals.sum_weight as {{ cxloop_type('float8') }}) as weighted_mean_score,
        waterfall.waterfall_role,
        waterfall.wf_n_scored,
        waterfall.wf_promoters,
        waterfall.wf_passives,
        waterfall.wf_detractors,
        {{ cxloop_nps('waterfall.wf_promoters', 'waterfall.wf_detractors', 'waterfall.wf_n_scored') }} as waterfall_nps,
        cast((select max(seqs.enriched_build_seq) from counted as seqs) as bigint) as enriched_build_seq
    from totals
    inner join waterfall
        on totals.period_start = waterfall.period_start
        and totals.survey_type = waterfall.survey_type
        and totals.account_id = waterfall.account_id

)

select * from final
