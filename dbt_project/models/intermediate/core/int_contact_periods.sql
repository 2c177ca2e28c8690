{#- Period x contact: the account, buying role, activity and opt-out each current contact
    (stg_crm__contacts, not deleted) had at the close of the period (the version valid just
    before least(period_end, as_of)); contacts missing from the snapshot keep current values. -#}
with

closes as (

    select
        period_start,
        period_close_at
    from {{ ref('int_periods') }}

),

contacts as (

    select * from {{ ref('stg_crm__contacts') }}

),

versions as (

    select * from {{ ref('int_contact_versions') }}

),

final as (

    select
        closes.period_start,
        closes.period_close_at,
        contacts.contact_id,
        versions.version_number,
        case when versions.contact_id is null then contacts.account_id else versions.account_id end as account_id,
        case when versions.contact_id is null then contacts.buying_role else versions.buying_role end as buying_role,
        case when versions.contact_id is null then contacts.is_active else versions.is_active end as is_active,
        case when versions.contact_id is null then contacts.opted_out else versions.opted_out end as opted_out
    from closes
    cross join contacts
    left join versions
        on contacts.contact_id = versions.contact_id
        and (versions.valid_from is null or closes.period_close_at > versions.valid_from)
        and (versions.valid_to is null or closes.period_close_at <= versions.valid_to)

)

select * from final
