with

scores as (

    select * from {{ ref('int_account_period_scores') }}

),

accounts as (

    select
        period_start,
        account_id,
        n_eligible
    from {{ ref('int_account_groups') }}
    where group_type = 'company'

),

methods as (

    select
        period_start,
        survey_type,
        account_id,
        'pooled' as method,
        cast(null as text) as waterfall_role,
        n_scored,
        promoters,
        passives,
        detractors,
        pooled_nps as nps
    from scores

    union all

    select
        period_start,
        survey_type,
        account_id,
        'role_weighted' as method,
        cast(null as text) as waterfall_role,
        n_scored,
        promoters,
        passives,
        detractors,
        role_weighted_nps as nps
    from scores

    union all

    select
        period_start,
        survey_type,
        account_id,
        'waterfall' as method,
        waterfall_role,
        wf_n_scored,
        wf_promoters,
        wf_passives,
        wf_detractors,
        waterfall_nps as nps
    from scores

),

with_population as (

    select
        methods.*,
        coalesce(accounts.n_eligible, 0) as n_eligible
    from methods
    left join accounts
        on methods.period_start = accounts.period_start
        and methods.account_id = accounts.account_id

),

with_interval as (

    select
        *,
        {{ cxloop_wald_centre('promoters', 'detractors', 'n_scored') }} as wald_centre,
        {{ cxloop_wald_var('promoters', 'detractors', 'n_scored', 'n_eligible') }} as wald_var
    from with_population

),

current_rows as (

    select
        period_start,
        survey_type,
        account_id,
        method,
        waterfall_role,
        n_scored,
        n_eligible,
        promoters,
        passives,
        detractors,
        nps,
        10000.0 * wald_var as var_pts,
        {{ cxloop_clip('100.0 * (wald_centre - ' ~ cxloop_z() ~ ' * sqrt(wald_var))') }} as ci_low,
        {{ cxloop_clip('100.0 * (wald_centre + ' ~ cxloop_z() ~ ' * sqrt(wald_var))') }} as ci_high,
        n_scored >= {{ var('min_n_account') }} as is_reportable
    from with_interval

),

final as (

    select
        cur.period_start,
        cur.survey_type,
        cur.account_id,
        cur.method,
        cur.waterfall_role,
        cast(cur.n_scored as integer) as n_scored,
        cast(cur.n_eligible as integer) as n_eligible,
        cast(cur.promoters as integer) as promoters,
        cast(cur.passives as integer) as passives,
        cast(cur.detractors as integer) as detractors,
        {{ cxloop_round('cur.nps') }} as nps,
        {{ cxloop_round('cur.var_pts') }} as var_pts,
        {{ cxloop_round('cur.ci_low') }} as ci_low,
        {{ cxloop_round('cur.ci_high') }} as ci_high,
        cur.is_reportable,
        {{ cxloop_round('prev.nps') }} as nps_prev,
        {{ cxloop_round('prev.var_pts') }} as var_pts_prev,
        case
            when prev.nps is null then null
            else abs(cur.nps - prev.nps) > {{ cxloop_z() }} * sqrt(cur.var_pts + prev.var_pts)
        end as is_significant_change
    from current_rows as cur
    left join current_rows as prev
        on prev.period_start = {{ cxloop_shift_period('cur.period_start', -1) }}
        and cur.survey_type = prev.survey_type
        and cur.account_id = prev.account_id
        and cur.method = prev.method

)

select * from final
