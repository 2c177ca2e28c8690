{#- Period x account: the attributes each current account (stg_crm__accounts: not deleted,
    created before as_of) had at the close of the period, i.e. the version valid just before
    least(period_end, as_of). Accounts missing from the snapshot keep their current values. -#}
with

closes as (

    select
        period_start,
        period_close_at
    from {{ ref('int_periods') }}

),

accounts as (

    select * from {{ ref('stg_crm__accounts') }}

),

versions as (

    select * from {{ ref('int_account_versions') }}

),

final as (

    select
        closes.period_start,
        closes.period_close_at,
        accounts.account_id,
        versions.version_number,
        case when versions.account_id is null then accounts.segment else versions.segment end as segment,
        case when versions.account_id is null then accounts.region else versions.region end as region,
        case when versions.account_id is null then accounts.tier else versions.tier end as tier,
        case when versions.account_id is null then accounts.arr else versions.arr end as arr,
        case when versions.account_id is null then accounts.owner_id else versions.owner_id end as owner_id,
        case when versions.account_id is null then accounts.is_active else versions.is_active end as is_active
    from closes
    cross join accounts
    left join versions
        on accounts.account_id = versions.account_id
        and (versions.valid_from is null or closes.period_close_at > versions.valid_from)
        and (versions.valid_to is null or closes.period_close_at <= versions.valid_to)

)

select * from final
