{#- The empirical-Bayes Dirichlet prior of the bayes account NPS (contract 3.7): per period x
    survey_type x segment (the account's segment at the period close), a method-of-moments
    Dirichlet-multinomial fit over the segment's responding accounts; a segment too small to
    fit takes the fit over all the period's responding accounts of the survey type, and
    failing that the default Dirichlet(1, 1, 1). Macros in nps_bayes.sql. -#}
with

scores as (

    select * from {{ ref('int_account_period_scores') }}

),

segments as (

    select
        period_start,
        account_id,
        group_value as segment
    from {{ ref('int_account_groups') }}
    where group_type = 'segment'

),

accounts as (

    select
        scores.period_start,
        scores.survey_type,
        scores.account_id,
        coalesce(segments.segment, 'unknown') as segment,
        cast(scores.n_scored as {{ cxloop_type('float8') }}) as n,
        cast(scores.promoters as {{ cxloop_type('float8') }}) as c_p,
        cast(scores.passives as {{ cxloop_type('float8') }}) as c_a,
        cast(scores.detractors as {{ cxloop_type('float8') }}) as c_d
    from scores
    left join segments
        on scores.period_start = segments.period_start
        and scores.account_id = segments.account_id

),

-- the moment aggregates per segment, and over all segments (segment null)
aggregates as (

    select
        period_start,
        survey_type,
        segment,
        count(*) as m,
        sum(n) as total,
        sum(n * n) as sum_n2,
        sum(c_p) as c_p,
        sum(c_a) as c_a,
        sum(c_d) as c_d,
        sum(c_p * c_p / n) as sq_p,
        sum(c_a * c_a / n) as sq_a,
        sum(c_d * c_d / n) as sq_d
    from accounts
    group by period_start, survey_type, segment

    union all

    select
        period_start,
        survey_type,
        cast(null as {{ cxloop_type('text') }}) as segment,
        count(*) as m,
        sum(n) as total,
        sum(n * n) as sum_n2,
        sum(c_p) as c_p,
        sum(c_a) as c_a,
        sum(c_d) as c_d,
        sum(c_p * c_p / n) as sq_p,
        sum(c_a * c_a / n) as sq_a,
        sum(c_d * c_d / n) as sq_d
    from accounts
    group by period_start, survey_type

),

moments as (

    select
        *,
        {{ cxloop_bayes_rho('m', 'total', 'sum_n2', cxloop_bayes_x2('total', 'c_p', 'c_a', 'c_d', 'sq_p', 'sq_a', 'sq_d')) }} as rho
    from aggregates

),

fits as (

    select
        *,
        {{ cxloop_bayes_concentration('rho') }} as concentration,
        {{ cxloop_bayes_pi('c_p', 'total') }} as pi_p,
        {{ cxloop_bayes_pi('c_a', 'total') }} as pi_a,
        {{ cxloop_bayes_pi('c_d', 'total') }} as pi_d
    from moments

),

chosen as (

    select
        seg.period_start,
        seg.survey_type,
        seg.segment,
        cast(seg.m as integer) as n_accounts,
        cast(seg.total as integer) as n_scored,
        case
            when seg.rho is not null then 'segment'
            when pooled.rho is not null then 'all_segments'
            else 'default'
        end as prior_source,
        case
            when seg.rho is not null then seg.m
            when pooled.rho is not null then pooled.m
            else 0
        end as fit_n_accounts,
        coalesce(seg.rho, pooled.rho) as rho_moment,
        case
            when seg.rho is not null then seg.concentration * seg.pi_p
            when pooled.rho is not null then pooled.concentration * pooled.pi_p
            else {{ cxloop_bayes_default_alpha() }}
        end as alpha_promoter,
        case
            when seg.rho is not null then seg.concentration * seg.pi_a
            when pooled.rho is not null then pooled.concentration * pooled.pi_a
            else {{ cxloop_bayes_default_alpha() }}
        end as alpha_passive,
        case
            when seg.rho is not null then seg.concentration * seg.pi_d
            when pooled.rho is not null then pooled.concentration * pooled.pi_d
            else {{ cxloop_bayes_default_alpha() }}
        end as alpha_detractor
    from fits as seg
    inner join fits as pooled
        on seg.period_start = pooled.period_start
        and seg.survey_type = pooled.survey_type
        and pooled.segment is null
    where seg.segment is not null

),

final as (

    select
        period_start,
        survey_type,
        segment,
        n_accounts,
        n_scored,
        prior_source,
        cast(fit_n_accounts as integer) as fit_n_accounts,
        {{ cxloop_round('rho_moment') }} as rho_moment,
        {{ cxloop_round('alpha_promoter + alpha_passive + alpha_detractor') }} as concentration,
        {{ cxloop_round('alpha_promoter') }} as alpha_promoter,
        {{ cxloop_round('alpha_passive') }} as alpha_passive,
        {{ cxloop_round('alpha_detractor') }} as alpha_detractor,
        {{ cxloop_round('100.0 * (alpha_promoter - alpha_detractor) / (alpha_promoter + alpha_passive + alpha_detractor)') }} as prior_nps
    from chosen

)

select * from final
