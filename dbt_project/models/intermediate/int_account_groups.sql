{#- Long mapping account x group (company 'all', segment, region, owner, tier) with the
    account attributes the portfolio marts weigh by. Covers every non-deleted account plus any
    account_id seen on an invitation or response but absent from the CRM (all attributes
    null -> group value 'unknown', not active, ARR null). -#}
with

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

referenced as (

    select account_id from {{ ref('stg_survey__responses') }}
    union
    select account_id from {{ ref('stg_survey__invitations') }}

),

all_accounts as (

    select account_id from accounts
    union
    select account_id from referenced

),

eligible as (

    select
        account_id,
        cast(count(*) as bigint) as n_eligible
    from contacts
    where is_active and not opted_out
    group by account_id

),

attributes as (

    select
        all_accounts.account_id,
        coalesce(accounts.is_active, false) as is_active,
        accounts.arr,
        coalesce(eligible.n_eligible, 0) as n_eligible,
        coalesce(accounts.segment, 'unknown') as segment,
        coalesce(accounts.region, 'unknown') as region,
        coalesce(accounts.owner_id, 'unknown') as owner,
        coalesce(accounts.tier, 'unknown') as tier
    from all_accounts
    left join accounts
        on all_accounts.account_id = accounts.account_id
    left join eligible
        on all_accounts.account_id = eligible.account_id

),

unpivoted as (

    select account_id, is_active, arr, n_eligible, 'company' as group_type, 'all' as group_value from attributes
    union all
    select account_id, is_active, arr, n_eligible, 'segment', segment from attributes
    union all
    select account_id, is_active, arr, n_eligible, 'region', region from attributes
    union all
    select account_id, is_active, arr, n_eligible, 'owner', owner from attributes
    union all
    select account_id, is_active, arr, n_eligible, 'tier', tier from attributes

),

final as (

    select
        account_id,
        cast(group_type as text) as group_type,
        cast(group_value as text) as group_value,
        is_active,
        arr,
        n_eligible
    from unpivoted

)

select * from final
