{#- Type-2 versions of every contact from snap_crm__contacts, typed like stg_crm__contacts
    (null buying_role -> 'unknown', null opted_out -> false). The first version's valid_from
    is opened to null, as in int_account_versions. -#}
with

snapshot as (

    {{ cxloop_crm_versions('snap_crm__contacts', 'contacts') }}

),

typed as (

    select
        cast(contact_id as {{ cxloop_type('text') }}) as contact_id,
        cast(account_id as {{ cxloop_type('text') }}) as account_id,
        coalesce(cast(buying_role as {{ cxloop_type('text') }}), 'unknown') as buying_role,
        cast(is_active as boolean) as is_active,
        coalesce(cast(opted_out as boolean), false) as opted_out,
        coalesce(cast(is_deleted as boolean), false) as is_deleted,
        cast(updated_at as timestamp) as updated_at,
        cast(dbt_valid_from as timestamp) as snapshot_valid_from,
        cast(dbt_valid_to as timestamp) as valid_to,
        row_number() over (partition by contact_id order by dbt_valid_from) as version_number
    from snapshot

),

final as (

    select
        contact_id,
        version_number,
        case when version_number = 1 then null else snapshot_valid_from end as valid_from,
        valid_to,
        snapshot_valid_from,
        account_id,
        buying_role,
        is_active,
        opted_out,
        is_deleted,
        updated_at
    from typed

)

select * from final
