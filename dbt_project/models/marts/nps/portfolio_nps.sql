with

scores as (

    select * from {{ ref('int_account_period_scores') }}

),

groups as (

    select * from {{ ref('int_account_groups') }}
    where group_type in ('company', 'segment', 'region', 'owner')

),

population as (

    select
        period_start,
        group_type,
        group_value,
        sum(case when is_active then n_eligible else 0 end) as n_eligible_contacts,
        sum(case when is_active then 1 else 0 end) as n_active_accounts
    from groups
    group by period_start, group_type, group_value

),

responding_accounts as (

    select
        scores.period_start,
        scores.survey_type,
        groups.group_type,
        groups.group_value,
        scores.account_id,
        scores.n_scored,
        scores.promoters,
        scores.passives,
        scores.detractors,
        scores.role_weighted_nps as x,
        -- account_classified classes the account by its role-weighted mean score
        {{ cxloop_score_class('scores.weighted_mean_score') }} as account_class,
        coalesce(groups.arr, 0.0) as a
    from scores
    inner join groups
        on scores.period_start = groups.period_start
        and scores.account_id = groups.account_id

),

group_totals as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        count(*) as n_accounts,
        sum(n_scored) as n_scored,
        sum(promoters) as promoters,
        sum(passives) as passives,
        sum(detractors) as detractors,
        avg(x) as mean_x,
        sum(a) as sum_a,
        sum(a * x) as sum_ax,
        sum(case when account_class = 'promoter' then 1 else 0 end) as promoter_accounts,
        sum(case when account_class = 'passive' then 1 else 0 end) as passive_accounts,
        sum(case when account_class = 'detractor' then 1 else 0 end) as detractor_accounts
    from responding_accounts
    group by period_start, survey_type, group_type, group_value

),

group_estimates as (

    select
        group_totals.*,
        case when group_totals.sum_a > 0 then group_totals.sum_ax / group_totals.sum_a end as revenue_nps
    from group_totals

),

dispersion as (

    select
        ra.period_start,
        ra.survey_type,
        ra.group_type,
        ra.group_value,
        sum(power(ra.x - ge.mean_x, 2)) as ss_equal,
        sum(power(ra.a, 2) * power(ra.x - ge.revenue_nps, 2)) as ss_revenue
    from responding_accounts as ra
    inner join group_estimates as ge
        on ra.period_start = ge.period_start
        and ra.survey_type = ge.survey_type
        and ra.group_type = ge.group_type
        and ra.group_value = ge.group_value
    group by ra.period_start, ra.survey_type, ra.group_type, ra.group_value

),

combined as (

    select
        ge.*,
        dispersion.ss_equal,
        dispersion.ss_revenue,
        population.n_eligible_contacts,
        population.n_active_accounts
    from group_estimates as ge
    inner join dispersion
        on ge.period_start = dispersion.period_start
        and ge.survey_type = dispersion.survey_type
        and ge.group_type = dispersion.group_type
        and ge.group_value = dispersion.group_value
    inner join population
        on ge.period_start = population.period_start
        and ge.group_type = population.group_type
        and ge.group_value = population.group_value

),

respondent as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        'respondent' as method,
        n_accounts,
        n_scored,
        promoters,
        passives,
        detractors,
        n_eligible_contacts as n_population,
        {{ cxloop_nps('promoters', 'detractors', 'n_scored') }} as nps,
        10000.0 * {{ cxloop_wald_var('promoters', 'detractors', 'n_scored', 'n_eligible_contacts') }} as var_pts,
        100.0 * (
            {{ cxloop_wald_centre('promoters', 'detractors', 'n_scored') }}
            - {{ cxloop_z() }} * sqrt({{ cxloop_wald_var('promoters', 'detractors', 'n_scored', 'n_eligible_contacts') }})
        ) as ci_low_raw,
        100.0 * (
            {{ cxloop_wald_centre('promoters', 'detractors', 'n_scored') }}
            + {{ cxloop_z() }} * sqrt({{ cxloop_wald_var('promoters', 'detractors', 'n_scored', 'n_eligible_contacts') }})
        ) as ci_high_raw,
        n_scored >= {{ var('min_n_group') }} as is_reportable
    from combined

),

account_equal as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        'account_equal' as method,
        n_accounts,
        n_scored,
        cast(null as bigint) as promoters,
        cast(null as bigint) as passives,
        cast(null as bigint) as detractors,
        n_active_accounts as n_population,
        mean_x as nps,
        case
            when n_accounts > 1
                then ss_equal / cast(n_accounts - 1 as {{ cxloop_type('float8') }}) / cast(n_accounts as {{ cxloop_type('float8') }})
            else 0.0
        end * {{ cxloop_fpc('n_accounts', 'n_active_accounts') }} as var_pts,
        cast(null as {{ cxloop_type('float8') }}) as ci_low_raw,
        cast(null as {{ cxloop_type('float8') }}) as ci_high_raw,
        n_accounts >= {{ var('min_n_group') }} as is_reportable
    from combined

),

revenue_weighted as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        'revenue_weighted' as method,
        n_accounts,
        n_scored,
        cast(null as bigint) as promoters,
        cast(null as bigint) as passives,
        cast(null as bigint) as detractors,
        n_active_accounts as n_population,
        revenue_nps as nps,
        case
            when revenue_nps is null then null
            when n_accounts > 1
                then cast(n_accounts as {{ cxloop_type('float8') }}) / cast(n_accounts - 1 as {{ cxloop_type('float8') }})
                    * ss_revenue / power(sum_a, 2)
            else 0.0
        end * {{ cxloop_fpc('n_accounts', 'n_active_accounts') }} as var_pts,
        cast(null as {{ cxloop_type('float8') }}) as ci_low_raw,
        cast(null as {{ cxloop_type('float8') }}) as ci_high_raw,
        n_accounts >= {{ var('min_n_group') }} as is_reportable
    from combined

),

account_classified as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        'account_classified' as method,
        n_accounts,
        n_scored,
        promoter_accounts as promoters,
        passive_accounts as passives,
        detractor_accounts as detractors,
        n_active_accounts as n_population,
        {{ cxloop_nps('promoter_accounts', 'detractor_accounts', 'n_accounts') }} as nps,
        10000.0 * {{ cxloop_wald_var('promoter_accounts', 'detractor_accounts', 'n_accounts', 'n_active_accounts') }} as var_pts,
        100.0 * (
            {{ cxloop_wald_centre('promoter_accounts', 'detractor_accounts', 'n_accounts') }}
            - {{ cxloop_z() }} * sqrt({{ cxloop_wald_var('promoter_accounts', 'detractor_accounts', 'n_accounts', 'n_active_accounts') }})
        ) as ci_low_raw,
        100.0 * (
            {{ cxloop_wald_centre('promoter_accounts', 'detractor_accounts', 'n_accounts') }}
            + {{ cxloop_z() }} * sqrt({{ cxloop_wald_var('promoter_accounts', 'detractor_accounts', 'n_accounts', 'n_active_accounts') }})
        ) as ci_high_raw,
        n_accounts >= {{ var('min_n_group') }} as is_reportable
    from combined

),

methods as (

    select * from respondent
    union all
    select * from account_equal
    union all
    select * from revenue_weighted
    union all
    select * from account_classified

),

-- adjusted Wald methods: 100 * ((p' - d') -/+ z sqrt(var)); account means: nps -/+ z sqrt(var_pts)
bounds as (

    select
        *,
        case
            when method in ('respondent', 'account_classified') then ci_low_raw
            else nps - {{ cxloop_z() }} * sqrt(var_pts)
        end as ci_low_unclipped,
        case
            when method in ('respondent', 'account_classified') then ci_high_raw
            else nps + {{ cxloop_z() }} * sqrt(var_pts)
        end as ci_high_unclipped
    from methods

),

final as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        method,
        cast(n_accounts as integer) as n_accounts,
        cast(n_scored as integer) as n_scored,
        cast(promoters as integer) as promoters,
        cast(passives as integer) as passives,
        cast(detractors as integer) as detractors,
        cast(n_population as integer) as n_population,
        {{ cxloop_round('nps') }} as nps,
        {{ cxloop_round('var_pts') }} as var_pts,
        {{ cxloop_round(cxloop_clip('ci_low_unclipped')) }} as ci_low,
        {{ cxloop_round(cxloop_clip('ci_high_unclipped')) }} as ci_high,
        is_reportable
    from bounds

)

select * from final
