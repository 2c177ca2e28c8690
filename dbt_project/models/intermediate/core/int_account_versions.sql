{#- Type-2 versions of every account from snap_crm__accounts, typed like stg_crm__accounts.
    valid_from of an account's FIRST version is opened to null (-infinity): a time before the
    first captured version reads the earliest version known (the graceful fallback when the
    snapshot holds a single version, e.g. after the first pipeline run). A time t reads the
    version with (valid_from is null or valid_from <= t) and (valid_to is null or t < valid_to):
    exactly one version per account. -#}
with

snapshot as (

    {{ cxloop_crm_versions('snap_crm__accounts', 'accounts') }}

),

typed as (

    select
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        cast(segment as {{ cxloop_type('text') }}) as segment,
        cast(region as {{ cxloop_type('text') }}) as region,
        cast(tier as {{ cxloop_type('text') }}) as tier,
        cast(arr as {{ cxloop_type('float8') }}) as arr,
        cast(owner_id as {{ cxloop_type('text') }}) as owner_id,
        cast(is_active as boolean) as is_active,
        coalesce(cast(is_deleted as boolean), false) as is_deleted,
        cast(updated_at as timestamp) as updated_at,
        cast(dbt_valid_from as timestamp) as snapshot_valid_from,
        cast(dbt_valid_to as timestamp) as valid_to,
        row_number() over (partition by account_id order by dbt_valid_from) as version_number
    from snapshot

),

final as (

    select
        account_id,
        version_number,
        case when version_number = 1 then null else snapshot_valid_from end as valid_from,
        valid_to,
        snapshot_valid_from,
        segment,
        region,
        tier,
        arr,
        owner_id,
        is_active,
        is_deleted,
        updated_at
    from typed

)

select * from final
