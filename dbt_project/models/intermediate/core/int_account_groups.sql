{#- Long mapping period x account x group (company 'all', segment, region, owner, tier) with
    the account attributes the portfolio marts weigh by, all as they were at the close of the
    period (int_account_periods, type-2). Covers every current account plus any account_id
    seen on an invitation or response but absent from the CRM (all attributes null -> group
    value 'unknown', not active, ARR null, no eligible contacts). n_eligible = the account's
    contacts that were active and not opted out at the period's close. -#}
with

periods as (

    select period_start from {{ ref('int_periods') }}

),

account_periods as (

    select * from {{ ref('int_account_periods') }}

),

contact_periods as (

    select * from {{ ref('int_contact_periods') }}

),

referenced as (

    select account_id from {{ ref('stg_survey__responses') }}
    union
    select account_id from {{ ref('stg_survey__invitations') }}

),

unknown_accounts as (

    select
        periods.period_start,
        referenced.account_id
    from referenced
    cross join periods
    where referenced.account_id not in (select crm_accounts.account_id from {{ ref('stg_crm__accounts') }} as crm_accounts)

),

eligible as (

    select
        period_start,
        account_id,
        cast(count(*) as bigint) as n_eligible
    from contact_periods
    where is_active and not opted_out
    group by period_start, account_id

),

attributes as (

    select
        account_periods.period_start,
        account_periods.account_id,
        coalesce(account_periods.is_active, false) as is_active,
        account_periods.arr,
        coalesce(account_periods.segment, 'unknown') as segment,
        coalesce(account_periods.region, 'unknown') as region,
        coalesce(account_periods.owner_id, 'unknown') as owner,
        coalesce(account_periods.tier, 'unknown') as tier
    from account_periods

    union all

    select
        period_start,
        account_id,
        false as is_active,
        cast(null as {{ cxloop_type('float8') }}) as arr,
        'unknown' as segment,
        'unknown' as region,
        'unknown' as owner,
        'unknown' as tier
    from unknown_accounts

),

with_eligible as (

    select
        attributes.*,
        coalesce(eligible.n_eligible, 0) as n_eligible
    from attributes
    left join eligible
        on attributes.period_start = eligible.period_start
        and attributes.account_id = eligible.account_id

),

unpivoted as (

    select
        period_start,
        account_id,
        is_active,
        arr,
        n_eligible,
        'company' as group_type,
        'all' as group_value
    from with_eligible
    union all
    select
        period_start,
        account_id,
        is_active,
        arr,
        n_eligible,
        'segment' as group_type,
        segment as group_value
    from with_eligible
    union all
    select
        period_start,
        account_id,
        is_active,
        arr,
        n_eligible,
        'region' as group_type,
        region as group_value
    from with_eligible
    union all
    select
        period_start,
        account_id,
        is_active,
        arr,
        n_eligible,
        'owner' as group_type,
        owner as group_value
    from with_eligible
    union all
    select
        period_start,
        account_id,
        is_active,
        arr,
        n_eligible,
        'tier' as group_type,
        tier as group_value
    from with_eligible

),

final as (

    select
        period_start,
        account_id,
        cast(group_type as {{ cxloop_type('text') }}) as group_type,
        cast(group_value as {{ cxloop_type('text') }}) as group_value,
        is_active,
        arr,
        n_eligible
    from unpivoted

)

select * from final
