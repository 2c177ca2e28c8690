with

scores as (

    select * from {{ ref('int_account_period_scores') }}

),

segment_prior as (

    select * from {{ ref('account_nps_prior') }}

),

segments as (

    select
        period_start,
        account_id,
        group_value as segment
    from {{ ref('int_account_groups') }}
    where group_type = 'segment'

),

role_weights as (

    select * from {{ ref('role_weights') }}

),

-- the account's eligible contacts at the period close (the N of n_eligible) with their role
-- weight; a role outside the seed weighs as other
eligible_contacts as (

    select
        contacts.period_start,
        contacts.account_id,
        contacts.contact_id,
        cast(coalesce(
            role_weights.weight,
            (
                select other_weight.weight
                from role_weights as other_weight
                where other_weight.role = 'other'
            )
        ) as {{ cxloop_type('float8') }}) as role_weight
    from {{ ref('int_contact_periods') }} as contacts
    left join role_weights
        on contacts.buying_role = role_weights.role
    where contacts.is_active and not contacts.opted_out

),

counted as (

    select
        period_start,
        survey_type,
        account_id,
        contact_id
    from {{ ref('int_responses_counted') }}

),

-- per account x survey type: the eligible contacts without a counted response of the account
-- (the non-responders the bayes method predicts): count, sum and sum of squares of weights
non_responders as (

    select
        scores.period_start,
        scores.survey_type,
        scores.account_id,
        count(*) as m_non,
        sum(eligible_contacts.role_weight) as w_non,
        sum(eligible_contacts.role_weight * eligible_contacts.role_weight) as q_non
    from scores
    inner join eligible_contacts
        on scores.period_start = eligible_contacts.period_start
        and scores.account_id = eligible_contacts.account_id
    left join counted
        on scores.period_start = counted.period_start
        and scores.survey_type = counted.survey_type
        and scores.account_id = counted.account_id
        and eligible_contacts.contact_id = counted.contact_id
    where counted.contact_id is null
    group by scores.period_start, scores.survey_type, scores.account_id

),

-- bayes (contract 3.7): Dirichlet posterior a = alpha(segment prior) + unweighted counts;
-- responders known (S_R = sum w s over W_R = sum w), non-responders from the posterior predictive
bayes_inputs as (

    select
        scores.period_start,
        scores.survey_type,
        scores.account_id,
        scores.n_scored,
        scores.promoters,
        scores.passives,
        scores.detractors,
        cast(scores.sum_weight as {{ cxloop_type('float8') }}) as w_resp,
        cast(scores.role_weighted_nps as {{ cxloop_type('float8') }})
        * cast(scores.sum_weight as {{ cxloop_type('float8') }}) / 100.0 as s_resp,
        coalesce(non_responders.w_non, 0.0) as w_non,
        coalesce(non_responders.q_non, 0.0) as q_non,
        coalesce(segment_prior.alpha_promoter, {{ cxloop_bayes_default_alpha() }}) + scores.promoters as a_p,
        coalesce(segment_prior.alpha_passive, {{ cxloop_bayes_default_alpha() }}) + scores.passives as a_a,
        coalesce(segment_prior.alpha_detractor, {{ cxloop_bayes_default_alpha() }}) + scores.detractors as a_d
    from scores
    left join segments
        on scores.period_start = segments.period_start
        and scores.account_id = segments.account_id
    left join segment_prior
        on scores.period_start = segment_prior.period_start
        and scores.survey_type = segment_prior.survey_type
        and coalesce(segments.segment, 'unknown') = segment_prior.segment
    left join non_responders
        on scores.period_start = non_responders.period_start
        and scores.survey_type = non_responders.survey_type
        and scores.account_id = non_responders.account_id

),

bayes as (

    select
        period_start,
        survey_type,
        account_id,
        n_scored,
        promoters,
        passives,
        detractors,
        {{ cxloop_bayes_mean('a_p', 'a_a', 'a_d', 's_resp', 'w_resp', 'w_non') }} as nps,
        {{ cxloop_bayes_var('a_p', 'a_a', 'a_d', 'w_resp', 'w_non', 'q_non') }} as var_pts
    from bayes_inputs

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
        cast(null as {{ cxloop_type('text') }}) as waterfall_role,
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
        cast(null as {{ cxloop_type('text') }}) as waterfall_role,
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

    union all

    select
        bayes.period_start,
        bayes.survey_type,
        bayes.account_id,
        'bayes' as method,
        cast(null as {{ cxloop_type('text') }}) as waterfall_role,
        bayes.n_scored,
        coalesce(accounts.n_eligible, 0) as n_eligible,
        bayes.promoters,
        bayes.passives,
        bayes.detractors,
        bayes.nps,
        bayes.var_pts,
        {{ cxloop_clip('bayes.nps - ' ~ cxloop_z() ~ ' * sqrt(bayes.var_pts)') }} as ci_low,
        {{ cxloop_clip('bayes.nps + ' ~ cxloop_z() ~ ' * sqrt(bayes.var_pts)') }} as ci_high,
        bayes.n_scored >= {{ var('min_n_account') }} as is_reportable
    from bayes
    left join accounts
        on bayes.period_start = accounts.period_start
        and bayes.account_id = accounts.account_id

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
