{#- The account dimension as of the run: one row per current CRM account (stg_crm__accounts:
    not deleted, created before as_of) with its segment, region, tier, ARR, owner and active
    flag at the latest period's close (int_account_periods: the version valid just before
    as_of), falling back to the current CRM row when there is no period yet, and its owner's
    team and name (owner_directory). What the governance pack and the worklist export read
    instead of the staging tables. -#}
with

latest_period as (

    select max(period_start) as period_start from {{ ref('int_periods') }}

),

as_of as (

    select {{ cxloop_as_of(var('as_of', none)) }} as as_of_ts

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

at_close as (

    select account_periods.*
    from {{ ref('int_account_periods') }} as account_periods
    inner join latest_period
        on account_periods.period_start = latest_period.period_start

),

owners as (

    select * from {{ ref('owner_directory') }}

),

resolved as (

    select
        accounts.account_id,
        accounts.account_name,
        accounts.renewal_date,
        case when at_close.account_id is null then accounts.segment else at_close.segment end as segment,
        case when at_close.account_id is null then accounts.region else at_close.region end as region,
        case when at_close.account_id is null then accounts.tier else at_close.tier end as tier,
        case when at_close.account_id is null then accounts.arr else at_close.arr end as arr,
        case when at_close.account_id is null then accounts.owner_id else at_close.owner_id end as owner_id,
        case when at_close.account_id is null then accounts.is_active else at_close.is_active end as is_active
    from accounts
    left join at_close
        on accounts.account_id = at_close.account_id

),

final as (

    select
        cast(as_of.as_of_ts as timestamp) as as_of,
        latest_period.period_start,
        cast(resolved.account_id as {{ cxloop_type('text') }}) as account_id,
        cast(resolved.account_name as {{ cxloop_type('text') }}) as account_name,
        cast(resolved.segment as {{ cxloop_type('text') }}) as segment,
        cast(resolved.region as {{ cxloop_type('text') }}) as region,
        cast(resolved.tier as {{ cxloop_type('text') }}) as tier,
        cast(resolved.arr as {{ cxloop_type('float8') }}) as arr,
        resolved.renewal_date,
        coalesce(cast(resolved.is_active as boolean), false) as is_active,
        cast(resolved.owner_id as {{ cxloop_type('text') }}) as owner_id,
        owners.owner_team,
        owners.owner_name,
        owners.is_active as owner_is_active
    from resolved
    cross join latest_period
    cross join as_of
    left join owners
        on resolved.owner_id = owners.owner_id

)

select * from final
