with

invitations as (

    select * from {{ ref('stg_survey__invitations') }}

),

surveys as (

    select * from {{ ref('stg_survey__surveys') }}

),

responses as (

    select * from {{ ref('stg_survey__responses') }}

),

groups as (

    select * from {{ ref('int_account_groups') }}

),

delivered as (

    select
        invitations.invitation_id,
        invitations.account_id,
        invitations.sent_at,
        surveys.survey_type,
        {{ cxloop_period_start('invitations.sent_at') }} as period_start
    from invitations
    inner join surveys
        on invitations.survey_id = surveys.survey_id
    where invitations.delivery_status = 'delivered'

),

-- responses recorded at/after sent_at and within the close-out window (inclusive);
-- staging already dropped responses at/after as_of
in_window as (

    select
        delivered.invitation_id,
        max(case when responses.nps_score is not null then 1 else 0 end) as has_scored
    from delivered
    inner join responses
        on delivered.invitation_id = responses.invitation_id
    where responses.recorded_at >= delivered.sent_at
        and responses.recorded_at <= {{ cxloop_add_days('delivered.sent_at', var('close_out_days')) }}
    group by delivered.invitation_id

),

invitation_outcomes as (

    select
        delivered.*,
        in_window.invitation_id is not null as is_responded,
        coalesce(in_window.has_scored, 0) = 1 as is_scored_responded
    from delivered
    left join in_window
        on delivered.invitation_id = in_window.invitation_id

),

-- per account first (each account has one group_value per group_type and period, a tested
-- grain of int_account_groups), so the join to the groups carries ~100k account rows, not
-- 1.2M invitations, and distinct accounts are counted as rows
per_account as (

    select
        period_start,
        survey_type,
        account_id,
        count(*) as delivered,
        sum(case when is_responded then 1 else 0 end) as responses,
        sum(case when is_scored_responded then 1 else 0 end) as scored_responses,
        max(case when is_responded then 1 else 0 end) as any_responded
    from invitation_outcomes
    group by period_start, survey_type, account_id

),

grouped as (

    select
        per_account.period_start,
        per_account.survey_type,
        groups.group_type,
        groups.group_value,
        sum(per_account.delivered) as delivered,
        sum(per_account.responses) as responses,
        sum(per_account.scored_responses) as scored_responses,
        count(*) as accounts_delivered,
        sum(per_account.any_responded) as accounts_responded
    from per_account
    inner join groups
        on per_account.period_start = groups.period_start
        and per_account.account_id = groups.account_id
    group by per_account.period_start, per_account.survey_type, groups.group_type, groups.group_value

),

-- the periods x survey types that sent invitations (any delivery status): their rate is measured
invited_cells as (

    select distinct
        {{ cxloop_period_start('invitations.sent_at') }} as period_start,
        surveys.survey_type
    from invitations
    inner join surveys
        on invitations.survey_id = surveys.survey_id

),

-- responses of a period x survey type that sent no invitation (a program that records only
-- responses: in-app or web NPS, links, exports of other tools): no rate can be measured, the
-- rows say so (rate_basis no_invitations) and count what was recorded
uninvited as (

    select
        {{ cxloop_period_start('responses.recorded_at') }} as period_start,
        surveys.survey_type,
        responses.account_id,
        case when responses.nps_score is not null then 1 else 0 end as is_scored
    from responses
    inner join surveys
        on responses.survey_id = surveys.survey_id

),

uninvited_per_account as (

    select
        uninvited.period_start,
        uninvited.survey_type,
        uninvited.account_id,
        count(*) as responses,
        sum(uninvited.is_scored) as scored_responses
    from uninvited
    left join invited_cells
        on uninvited.period_start = invited_cells.period_start
        and uninvited.survey_type = invited_cells.survey_type
    where invited_cells.period_start is null
    group by uninvited.period_start, uninvited.survey_type, uninvited.account_id

),

uninvited_grouped as (

    select
        uninvited_per_account.period_start,
        uninvited_per_account.survey_type,
        groups.group_type,
        groups.group_value,
        sum(uninvited_per_account.responses) as responses,
        sum(uninvited_per_account.scored_responses) as scored_responses,
        count(*) as accounts_responded
    from uninvited_per_account
    inner join groups
        on uninvited_per_account.period_start = groups.period_start
        and uninvited_per_account.account_id = groups.account_id
    group by
        uninvited_per_account.period_start,
        uninvited_per_account.survey_type,
        groups.group_type,
        groups.group_value

),

measured as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        delivered,
        responses,
        scored_responses,
        cast(responses as {{ cxloop_type('float8') }}) / cast(delivered as {{ cxloop_type('float8') }}) as response_rate,
        cast(scored_responses as {{ cxloop_type('float8') }}) / cast(delivered as {{ cxloop_type('float8') }}) as scored_response_rate,
        accounts_delivered,
        accounts_responded,
        cast(accounts_responded as {{ cxloop_type('float8') }})
        / cast(accounts_delivered as {{ cxloop_type('float8') }}) as account_response_rate,
        'invitations' as rate_basis
    from grouped

    union all

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        0 as delivered,
        responses,
        scored_responses,
        cast(null as {{ cxloop_type('float8') }}) as response_rate,
        cast(null as {{ cxloop_type('float8') }}) as scored_response_rate,
        0 as accounts_delivered,
        accounts_responded,
        cast(null as {{ cxloop_type('float8') }}) as account_response_rate,
        'no_invitations' as rate_basis
    from uninvited_grouped

),

final as (

    select
        period_start,
        survey_type,
        group_type,
        group_value,
        cast(delivered as integer) as delivered,
        cast(responses as integer) as responses,
        cast(scored_responses as integer) as scored_responses,
        {{ cxloop_round('response_rate') }} as response_rate,
        {{ cxloop_round('scored_response_rate') }} as scored_response_rate,
        cast(accounts_delivered as integer) as accounts_delivered,
        cast(accounts_responded as integer) as accounts_responded,
        {{ cxloop_round('account_response_rate') }} as account_response_rate,
        cast({{ var('response_rate_target') }} as {{ cxloop_type('float8') }}) as target,
        response_rate >= {{ var('response_rate_target') }} as meets_target,
        {{ cxloop_add_days('cast(' ~ cxloop_shift_period('period_start', 1) ~ ' as timestamp)', var('close_out_days')) }}
        <= {{ cxloop_as_of(var('as_of', none)) }} as is_cohort_closed,
        cast(rate_basis as {{ cxloop_type('text') }}) as rate_basis
    from measured

)

select * from final
